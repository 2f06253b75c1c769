"""``kill -9`` of ``llm-gym train`` at several moments, then ``--resume`` until done (issue 19).

The API-level version is tests/agents/test_resume.py; this one drives the CLI the way a user does. A
tiny deterministic GRPO run is SIGKILLed after its first checkpoint, in the middle of a
checkpoint write (the ``.tmp-`` folder holds the weights but not yet ``checkpoint.json``), and
again after a resume wrote a checkpoint of its own; ``llm-gym train --resume DIR`` is run until it
exits 0, and the final parameters equal those of an uninterrupted CLI run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_gym.agents.checkpoints import list_checkpoints, save_info
from llm_gym.agents.grpo import GRPOAgent
from llm_gym.agents.lm_trainer import parameter_hash

pytestmark = pytest.mark.slow

CONFIG = {"group_size": 2, "prompts_per_batch": 2, "learning_rate": 2e-2, "kl_coef": 0.05,
          "checkpoint_every": 1, "checkpoint_minutes": 0, "keep_checkpoints": 2,
          "deterministic": True}
TOTAL = 64  # at most 16 agent tokens an update (fewer when answers end early): 4+ updates
# The child is the CLI itself (python -m llm_gym); with SLOW_WRITE it pauses inside each
# checkpoint write, after the weights and before checkpoint.json, so a kill can land there.
CHILD = """
import os, runpy, sys, time
if os.environ.get("SLOW_WRITE"):
    from llm_gym.agents import checkpoints
    write = checkpoints._write_file
    def slow(path, content):
        write(path, content)
        if path.name == "tensors.pt":
            time.sleep(float(os.environ["SLOW_WRITE"]))
    checkpoints._write_file = slow
sys.argv = ["llm_gym", *sys.argv[1:]]
runpy.run_module("llm_gym", run_name="__main__", alter_sys=True)
"""
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def argv(config: Path, run: Path) -> list[str]:
    return ["train", "--env", "llm_gym/Arithmetic-v0", "--agent", "grpo", "--model", "tiny",
            "--env-kwargs", '{"max_new_tokens": 4}', "--config", str(config), "--seed", "3",
            "--timesteps", str(TOTAL), "--log-dir", str(run), "--no-progress",
            "--eval-episodes", "1"]


def start(args: list[str], slow_write: float | None = None) -> subprocess.Popen:
    env = {**ENV, **({"SLOW_WRITE": str(slow_write)} if slow_write else {})}
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(args: list[str]) -> None:
    child = start(args)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-3000:]


def kill_when(child: subprocess.Popen, ready: Callable[[], bool]) -> None:
    """SIGKILL ``child`` as soon as ``ready()`` holds (polled); it must not finish first."""
    deadline = time.monotonic() + 240
    while not ready():
        assert child.poll() is None, f"the run ended before the kill: {child.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "the moment to kill never came in 240 s"
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def updates(run: Path) -> list[int]:
    return [save_info(p).updates for p in list_checkpoints(run / "checkpoints")]


def writing(run: Path) -> bool:
    """A checkpoint write is under way: its temp folder has the tensors, not the metadata."""
    folder = run / "checkpoints"
    return folder.is_dir() and any((p / "tensors.pt").exists() and not (p / "checkpoint.json")
                                   .exists() for p in folder.glob(".tmp-*"))


def final_hash(run: Path) -> str:
    return parameter_hash(GRPOAgent.load(run / "agent").model)


def test_kill_9_at_several_moments_then_resume_matches_an_uninterrupted_run(tmp_path) -> None:
    config = tmp_path / "grpo.json"
    config.write_text(json.dumps(CONFIG))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    finish(argv(config, straight))
    resume = ["train", "--resume", str(killed), "--no-progress", "--eval-episodes", "1"]

    kill_when(start(argv(config, killed)), lambda: len(updates(killed)) >= 1)
    first = max(updates(killed))
    kill_when(start(resume, slow_write=1.0), lambda: writing(killed))
    assert not list(killed.glob("checkpoints/.tmp-*/checkpoint.json"))
    second = max(updates(killed))  # the torn write is not a checkpoint
    kill_when(start(resume), lambda: max(updates(killed)) > second)
    assert first <= second < max(updates(killed))
    finish(resume)
    assert not list(killed.glob("checkpoints/.tmp-*"))  # a torn write is cleared on resume

    steps = [json.loads((r / "run.json").read_text())["num_timesteps"] for r in (killed, straight)]
    assert steps[0] == steps[1] >= TOTAL - 8  # within half a batch of the total
    assert final_hash(killed) == final_hash(straight)


def test_kill_9_after_the_first_updates_with_default_checkpoints_resumes(tmp_path) -> None:
    """Issue 21: the defaults (every 50 updates or 10 minutes) lost a run killed early; the first
    checkpoint now comes after 3 updates, so a kill just after them leaves a run to resume."""
    config = tmp_path / "grpo.json"
    config.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2,
                                  "deterministic": True}))  # default checkpoint cadence
    run = tmp_path / "run"
    args = [*argv(config, run)]
    args[args.index("--timesteps") + 1] = "400"  # far more than 3 updates
    child = start(args)
    kill_when(child, lambda: len(updates(run)) >= 1)
    assert updates(run) == [3]
    finish(["train", "--resume", str(run), "--no-progress", "--eval-episodes", "1"])
    saved = json.loads((run / "run.json").read_text())
    assert saved["num_timesteps"] >= 400 - 8
