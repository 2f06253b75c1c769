"""Runs survive interruption (issue 14): SIGTERM, corrupt checkpoints, replayed metrics, a full
disk, and GRPO's step budget."""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from llm_gym.agents import training
from llm_gym.agents.checkpoints import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    write_state_dir,
)
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.cli import main
from llm_gym.token_env import Task, TokenEnv, TurnResult
from llm_gym.vector import TokenVectorEnv

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


class OneTokenEnv(TokenEnv):
    """Exactly one agent token per episode, so a rollout batch is exactly ``rows`` steps."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_new_tokens=1, max_length=32, **kwargs)

    @property
    def num_tasks(self) -> int:
        return 4

    def sample_task(self, index: int | None) -> Task:
        index = int(self.np_random.integers(4)) if index is None else index
        return Task(messages=[{"role": "user", "content": f"q{index}"}], index=index)

    def end_turn(self, response, response_ids, finished) -> TurnResult:
        return TurnResult(reward=float(bool(response_ids) and response_ids[0] % 2 == 0))


ROWS = 8
CONFIG = GRPOConfig(group_size=4, prompts_per_batch=2, learning_rate=1e-2,
                    checkpoint_every=2, checkpoint_minutes=0)


def grpo(log_dir=None) -> GRPOAgent:
    envs = TokenVectorEnv(OneTokenEnv, ROWS, autoreset_mode="Disabled")
    return GRPOAgent(envs, "tiny", CONFIG, seed=1, log_dir=log_dir)


def metric_steps(folder) -> list[float]:
    with open(folder / "metrics.csv", newline="") as handle:
        return [float(row["step"]) for row in csv.DictReader(handle)]


# ------------------------------------------------------------------------------ SIGTERM
def test_sigterm_checkpoints_and_resume_continues(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "grpo.json"
    # No periodic checkpoints: the one found must come from the signal.
    config.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2,
                                  "checkpoint_every": 0, "checkpoint_minutes": 0}))
    argv = ["train", "--env", "llm_gym/Arithmetic-v0", "--agent", "grpo", "--model", "tiny",
            "--env-kwargs", '{"max_new_tokens": 4}', "--config", str(config),
            "--timesteps", "1000000", "--log-dir", str(run), "--no-progress",
            "--eval-episodes", "1"]
    child = subprocess.Popen([sys.executable, "-m", "llm_gym", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").is_file():  # at least one update done
        assert child.poll() is None, child.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no update in 120 s"
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err[-2000:]
    assert f"resume with: llm-gym train --resume {run}" in err
    saved = json.loads((run / "run.json").read_text())
    assert saved["agent"] == "grpo" and saved["timesteps"] == 1_000_000
    checkpoints = list_checkpoints(run / "checkpoints")
    assert len(checkpoints) == 1
    done = load_checkpoint(run)["counters"]["num_timesteps"]
    assert done == saved["num_timesteps"] > 0

    assert main(["train", "--resume", str(run), "--timesteps", str(done + 20),
                 "--no-progress", "--eval-episodes", "1"]) == 0
    out = capsys.readouterr().out
    resumed = json.loads((run / "run.json").read_text())
    assert resumed["timesteps"] == done + 20
    assert resumed["num_timesteps"] > done
    assert f"took {resumed['num_timesteps']} env steps" in out
    steps = metric_steps(run)
    assert steps == sorted(set(steps))  # no row logged twice


def test_first_signal_asks_to_stop_and_a_second_stops_at_once():
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or Ray's once a test started Ray
    with training.stop_on_signals(graceful=True):
        os.kill(os.getpid(), signal.SIGTERM)
        assert training.stop_requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert not training.stop_requested()
    assert signal.getsignal(signal.SIGTERM) is before


def test_resume_of_a_run_killed_before_its_first_checkpoint_says_so(tmp_path, capsys):
    (tmp_path / "run.json").write_text(json.dumps({
        "agent": "grpo", "env": "llm_gym/Arithmetic-v0", "env_kwargs": {}, "wrappers": [],
        "seed": 0, "model": "tiny", "config": None, "timesteps": 100, "num_timesteps": 0}))
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint there yet" in capsys.readouterr().err


# ------------------------------------------------------------------------------ corruption
def test_corrupt_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, 1, {"step": 1})
    newest = save_checkpoint(folder, 2, {"step": 2})
    (newest / "tensors.pt").write_bytes(b"torn write")
    with caplog.at_level(logging.WARNING, logger="llm_gym.agents.checkpoints"):
        assert load_checkpoint(tmp_path)["step"] == 1  # a run folder: looks in checkpoints/
    assert str(newest) in caplog.text
    (folder / "checkpoint-000000001" / "checkpoint.json").write_bytes(b"")
    with pytest.raises(ValueError, match="checkpoint-000000001") as error:
        load_checkpoint(tmp_path)
    assert "checkpoint-000000002" in str(error.value)


def test_resume_takes_the_save_with_most_updates_of_agent_and_checkpoints(tmp_path):
    save_checkpoint(tmp_path / "checkpoints", 5, {"step": 5})
    write_state_dir(tmp_path / "agent", {"step": 6}, updates=6)
    assert load_checkpoint(tmp_path)["step"] == 6
    save_checkpoint(tmp_path / "checkpoints", 7, {"step": 7})
    assert load_checkpoint(tmp_path)["step"] == 7
    # The recorded update count decides, not the file time: touching an older save changes
    # nothing.
    os.utime(tmp_path / "checkpoints" / "checkpoint-000000005" / "checkpoint.json",
             ns=(2**62, 2**62))
    assert load_checkpoint(tmp_path)["step"] == 7


# ------------------------------------------------------------------------------ metrics
def test_resume_drops_metrics_rows_past_the_checkpoint(tmp_path):
    agent = grpo(tmp_path)
    updates = []

    def crash_after_three(metrics):
        updates.append(metrics["time/env_steps"])
        if len(updates) == 3:
            raise RuntimeError("killed")  # after update 3's row, before its checkpoint

    with pytest.raises(RuntimeError, match="killed"):
        agent.learn(10 * ROWS, callback=crash_after_three)
    agent.close()
    assert metric_steps(tmp_path) == updates == [8.0, 16.0, 24.0]
    resumed = GRPOAgent.load(tmp_path, env=TokenVectorEnv(OneTokenEnv, ROWS,
                                                          autoreset_mode="Disabled"),
                             log_dir=tmp_path)
    assert resumed.num_timesteps == 16  # checkpoint 2
    resumed.learn(5 * ROWS, reset_num_timesteps=False)
    resumed.close()
    assert metric_steps(tmp_path) == [8.0 * i for i in range(1, 8)]


# ------------------------------------------------------------------------------ full disk
@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed "
                 "writing file data/0: file write failed"),
])
def test_full_disk_names_the_path_and_removes_the_partial_write(tmp_path, monkeypatch,
                                                                failure):
    save_checkpoint(tmp_path, 1, {"step": 1})

    def full_disk(obj, handle):
        handle.write(b"x" * 1000)
        raise failure

    monkeypatch.setattr(training.torch, "save", full_disk)
    with pytest.raises(OSError, match="no space left on device while writing "
                       f"{tmp_path / 'checkpoint-000000002'}") as error:
        save_checkpoint(tmp_path, 2, {"step": 2})
    assert error.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000000001"]
    assert load_checkpoint(tmp_path)["step"] == 1


# ------------------------------------------------------------------------------ budget
@pytest.mark.parametrize(("budget", "taken"), [(1, 8), (9, 8), (12, 16), (20, 24), (24, 24)])
def test_grpo_stops_within_half_a_batch_of_its_budget(budget, taken):
    agent = grpo().learn(budget)
    assert agent.num_timesteps == taken
    assert abs(agent.num_timesteps - budget) <= ROWS // 2 or agent.num_updates == 1
