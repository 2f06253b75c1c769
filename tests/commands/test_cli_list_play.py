"""``llm-gym list`` and ``llm-gym play`` driven through stdin."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

import llm_gym
from llm_gym.cli import main
from llm_gym.envs.arithmetic import ArithmeticEnv


def play(monkeypatch, capsys, argv: list[str], stdin: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["play", *argv])
    return code, capsys.readouterr().out


def test_list_shows_every_id_with_kind_and_dataset(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "KIND", "DATASET"]
    end = lines.index("")  # the multi-agent games follow in their own section
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:end]}
    assert set(rows) == set(llm_gym.env_ids()) | {"llm_gym/OpenEnv-v0"}
    assert rows["llm_gym/OpenEnv-v0"] == ["token", "server"]
    games = {line.split()[0]: line.split()[1] for line in lines[end + 3:]}
    assert games == {"tictactoe_text_v0": "AEC", "connect_four_text_v0": "AEC",
                     "rps_text_v0": "Parallel", "prisoners_dilemma_text_v0": "Parallel"}
    assert rows["llm_gym/Arithmetic-v0"] == ["token", "no"]
    assert rows["llm_gym/LeftRight-v0"] == ["classic", "no"]
    assert rows["llm_gym/GSM8K-v0"] == ["token", "yes"]
    arithmetic = next(line for line in lines if line.startswith("llm_gym/Arithmetic-v0"))
    assert "Answer one integer arithmetic question" in arithmetic


def test_list_runs_as_a_module():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "llm_gym", "list"], capture_output=True,
                         text=True, env=env, timeout=60, check=True).stdout
    assert "llm_gym/LeftRightText-v0" in out


def test_play_arithmetic_correct_answer(monkeypatch, capsys):
    env = ArithmeticEnv()
    env.reset(seed=3)
    answer = env.task.answer  # the CLI's env draws the same item from the same seed
    code, out = play(monkeypatch, capsys, ["llm_gym/Arithmetic-v0", "--seed", "3"], f"{answer}\n")
    assert code == 0
    assert f"What is {env.task.metadata['question']}?" in out
    assert "reward 1" in out and "correct=True" in out
    assert "episode terminated: return 1 after 1 steps" in out


def test_play_token_env_multi_turn_and_eof(monkeypatch, capsys):
    code, out = play(monkeypatch, capsys, ["llm_gym/LeftRightText-v0", "--seed", "0"], "stay\n")
    assert code == 0
    assert "reward -1" in out and "You are at position 0." in out
    assert "(end of input) return so far: -1 after 1 steps" in out


def test_play_classic_env_by_number_and_name(monkeypatch, capsys):
    code, out = play(monkeypatch, capsys, ["llm_gym/LeftRight-v0", "--seed", "0"],
                     "jump\n2\nRIGHT\n")
    assert code == 0
    assert "not an action: 'jump'" in out
    assert "reward -5" in out and "reward 10" in out
    assert "episode terminated: return 5 after 2 steps" in out
    assert "..A.G" in out  # the ansi render


def test_play_a_game_view_against_minimax(monkeypatch, capsys):
    # Cells 1, 2, 3, ... in turn: the taken ones are refused, minimax wins or draws.
    code, out = play(monkeypatch, capsys, ["llm_gym/TicTacToe-v0", "--opponent", "minimax",
                                           "--seed", "0"], "".join(f"{c}\n" for c in range(1, 10)))
    assert code == 0 and "episode terminated" in out
    assert "return 1" not in out  # never a win against minimax
    assert main(["play", "llm_gym/LeftRight-v0", "--opponent", "minimax"]) == 2
    assert "--opponent is for the game views" in capsys.readouterr().err


def test_play_several_episodes_until_eof(monkeypatch, capsys):
    code, out = play(monkeypatch, capsys, ["llm_gym/LeftRight-v0", "--episodes", "3"],
                     "2\n2\n2\n")
    assert code == 0
    assert out.count("episode terminated: return 5") == 1
    assert "(end of input) return so far: -5 after 1 steps" in out


def test_play_env_kwargs(monkeypatch, capsys):
    code, out = play(monkeypatch, capsys, ["llm_gym/Arithmetic-v0", "--seed", "0",
                                           "--env-kwargs", '{"digits": 3}'], "1\n")
    assert code == 0
    question = out.split("What is ")[1].split("?")[0]
    assert all(len(part) == 3 for part in question.split()[::2])


@pytest.mark.parametrize(("argv", "message"), [
    (["llm_gym/Nope-v0"], "llm-gym list"),
    (["llm_gym/Arithmetic-v0", "--env-kwargs", "[1]"], "JSON object"),
    (["llm_gym/Arithmetic-v0", "--env-kwargs", '{"digits": 0}'], "digits"),
    (["llm_gym/Arithmetic-v0", "--episodes", "0"], "episodes"),
    (["Pendulum-v1"], "Discrete"),
])
def test_play_errors_exit_2_with_a_message(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["play", *argv]) == 2
    assert message in capsys.readouterr().err
