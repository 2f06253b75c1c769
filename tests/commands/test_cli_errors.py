"""Every mistake a new user makes gets one clear line, exit code 2 and the fix (issue 14)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from llm_gym.cli import main

CODE_HINT = "--env-kwargs '{\"data_files\": \"path/to/train.jsonl\"}'"

# (argv, what stderr must say). The same mistake under train, eval and play where it applies.
MISTAKES = {
    "train-env-typo": (["train", "--env", "llm_gym/LeftRigth-v0", "--agent", "random"],
                       ["Did you mean: `LeftRight`?", "llm-gym list"]),
    "train-env-no-namespace": (["train", "--env", "LeftRight-v0", "--agent", "random"],
                               ["Did you mean `llm_gym/LeftRight-v0`?"]),
    "train-code-no-data": (["train", "--env", "llm_gym/Code-v0", "--agent", "random"],
                           [CODE_HINT, "test_list", "HF_HUB_OFFLINE"]),
    "train-gsm8k-no-data": (["train", "--env", "llm_gym/GSM8K-v0", "--agent", "grpo"],
                            [CODE_HINT, "columns question and answer"]),
    "train-model-path": (["train", "--env", "llm_gym/Arithmetic-v0", "--agent", "grpo",
                          "--model", "./models/no-such-sft"],
                         ["model path './models/no-such-sft' does not exist"]),
    "train-env-kwarg": (["train", "--env", "llm_gym/LeftRightText-v0", "--agent", "random",
                         "--env-kwargs", '{"constrainted": true}'],
                        ["no keyword 'constrainted'", "did you mean 'constrained'?",
                         "valid --env-kwargs keys: constrained, invalid_penalty"]),
    "eval-env-typo": (["eval", "--env", "llm_gym/Arithmetc-v0", "--model", "tiny"],
                      ["Did you mean: `Arithmetic`?"]),
    "eval-math-no-data": (["eval", "--env", "llm_gym/Math-v0", "--model", "tiny"],
                          [CODE_HINT, "question/problem and answer/solution"]),
    "eval-model-path": (["eval", "--env", "llm_gym/Arithmetic-v0", "--model",
                         "./models/no-such-sft"], ["does not exist"]),
    "eval-env-kwarg": (["eval", "--env", "llm_gym/Arithmetic-v0", "--model", "tiny",
                        "--env-kwargs", '{"digit": 2}'],
                       ["did you mean 'digits'?", "valid --env-kwargs keys"]),
    "play-env-typo": (["play", "llm_gym/FrozenLakeTxt-v0"], ["Did you mean: `FrozenLakeText`?"]),
    "play-code-no-data": (["play", "llm_gym/Code-v0"], [CODE_HINT]),
    "play-env-kwarg": (["play", "llm_gym/LeftRight-v0", "--env-kwargs", '{"max_step": 3}'],
                       ["did you mean 'max_steps'?", "max_steps, render_mode"]),
    "compare-env-typo": (["compare", "--envs", "llm_gym/LeftRight-v0,llm_gym/LeftRigth-v0",
                          "--agents", "random", "--timesteps", "10"],
                         ["Did you mean: `LeftRight`?"]),
    "compare-env-kwarg": (["compare", "--envs", "llm_gym/LeftRight-v0", "--agents", "random",
                           "--timesteps", "10", "--env-kwargs",
                           '{"llm_gym/LeftRight-v0": {"max_step": 3}}'],
                          ["did you mean 'max_steps'?"]),
}


@pytest.fixture
def empty_dataset_cache(tmp_path, monkeypatch):
    """No cached hub dataset: offline, every dataset env must then ask for data_files."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")


@pytest.mark.parametrize(("argv", "says"), list(MISTAKES.values()), ids=list(MISTAKES))
def test_mistake_is_one_line_exit_2_naming_the_fix(argv, says, empty_dataset_cache, tmp_path,
                                                   capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a train that wrongly ran would write runs/ here
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # play would read its moves here
    assert main([*argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert 1 <= len(err) <= 3, captured.err
    assert err[-1].startswith(f"llm-gym {argv[0]}: error: ")
    for text in says:
        assert text in captured.err
    assert not (tmp_path / "runs").exists()  # failed before anything ran


def test_an_unreachable_hub_online_gets_the_cli_hint(monkeypatch):
    # Online, the env itself raises ConnectionError (after datasets gave up); the CLI turns it
    # into the --env-kwargs form instead of the Python data_files= wording.
    from argparse import Namespace

    from llm_gym.cli import user_error

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    err = ConnectionError("could not load dataset 'openai/gsm8k'. Offline, pass data_files=")
    message = user_error(err, Namespace(env="llm_gym/GSM8K-v0"))
    assert "cannot be reached" in message and CODE_HINT in message
    assert "columns question and answer" in message


def test_the_process_prints_no_traceback(tmp_path):
    # In a fresh process: what a user sees on the terminal, warnings and logging included.
    proc = subprocess.run(
        [sys.executable, "-m", "llm_gym", "train", "--env", "llm_gym/Code-v0", "--agent",
         "random", "--env-kwargs", json.dumps({"constrainted": True})],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 3 and "Traceback" not in proc.stderr, proc.stderr
    assert "no keyword 'constrainted'" in lines[-1]


def test_a_bug_keeps_its_traceback(monkeypatch):
    # Only a user's mistake becomes a message; an unexpected error must stay visible.
    def broken(args):
        raise KeyError("internal")

    import llm_gym.commands.list_play as list_play

    monkeypatch.setattr(list_play, "run_list", broken)
    with pytest.raises(KeyError, match="internal"):
        main(["list"])
