from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llm_gym.agents import training
from llm_gym.agents.checkpoints import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.agents.lm_trainer import parameter_hash
from llm_gym.agents.training import TaskSampler
from llm_gym.token_env import Task, TokenEnv, TurnResult
from llm_gym.vector import TokenVectorEnv

COMPARED = ("train/loss", "train/policy_loss", "train/grad_norm", "rollout/ep_rew_mean",
            "rollout/ep_len_mean", "train/kl", "time/env_steps")


@pytest.fixture(autouse=True)
def deterministic_cpu():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


class FirstLetterEnv(TokenEnv):
    """Up to two tokens; reward 1 when the first is a lowercase letter (a learnable signal)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_new_tokens=2, max_length=24, **kwargs)

    @property
    def num_tasks(self) -> int:
        return 6

    def sample_task(self, index: int | None) -> Task:
        index = int(self.np_random.integers(6)) if index is None else index
        return Task(messages=[{"role": "user", "content": f"q{index}"}], index=index)

    def end_turn(self, response, response_ids, finished) -> TurnResult:
        return TurnResult(reward=float(bool(response_ids) and 97 <= response_ids[0] <= 122))


CONFIG = GRPOConfig(group_size=4, prompts_per_batch=2, learning_rate=2e-2, kl_coef=0.05,
                    update_epochs=2, num_minibatches=2, checkpoint_every=1, keep_checkpoints=2,
                    deterministic=True)


def make_envs() -> TokenVectorEnv:
    return TokenVectorEnv(FirstLetterEnv, 8, autoreset_mode="Disabled")


def make_agent(log_dir) -> GRPOAgent:
    return GRPOAgent(make_envs(), "tiny", CONFIG, seed=3, log_dir=log_dir)


def run(agent: GRPOAgent, total: int, stop_after: int | None = None, **kwargs):
    rows: list[dict] = []
    prompts: list[int] = []
    take = agent.sampler.take

    def recording_take(count: int) -> list[int]:
        out = take(count)
        prompts.extend(out)
        return out

    agent.sampler.take = recording_take

    def callback(metrics: dict) -> bool:
        rows.append({k: metrics[k] for k in COMPARED if k in metrics})
        return stop_after is None or len(rows) < stop_after

    agent.learn(total, callback=callback, **kwargs)
    return rows, prompts


TOTAL = 100


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The uninterrupted reference run: per-update metrics, prompts, final parameter hash."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    agent = make_agent(tmp_path_factory.mktemp("full"))
    rows, prompts = run(agent, TOTAL)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)
    assert len(rows) >= 6
    assert any(row["train/grad_norm"] > 0 for row in rows)  # the weights really move
    return rows, prompts, parameter_hash(agent.model)


def test_resume_after_interruption_is_exact(tmp_path, full_run) -> None:
    full_rows, full_prompts, full_hash = full_run
    cut = 3
    _, first_prompts = run(make_agent(tmp_path / "cut"), TOTAL, stop_after=cut)
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name.endswith(f"{cut:09d}")
    # A fresh process would rebuild the agent from the checkpoint alone.
    resumed = GRPOAgent.load(tmp_path / "cut" / "checkpoints", env=make_envs(),
                             log_dir=tmp_path / "cut")
    assert resumed.num_updates == cut
    rest_rows, rest_prompts = run(resumed, TOTAL, resume_from=tmp_path / "cut" / "checkpoints")
    assert rest_rows == full_rows[cut:]
    assert first_prompts + rest_prompts == full_prompts  # no prompt replayed or skipped
    assert parameter_hash(resumed.model) == full_hash


CHILD = """
import sys, time, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_resume import TOTAL, make_agent
agent = make_agent({log_dir!r})
agent.learn(TOTAL, callback=lambda m: time.sleep(0.3))
"""


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_is_exact(tmp_path, full_run) -> None:
    full_rows, _, full_hash = full_run
    log_dir = tmp_path / "killed"
    code = CHILD.format(tests=str(Path(__file__).parent), log_dir=str(log_dir))
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ,
                             "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list_checkpoints(log_dir / "checkpoints")) < 2:
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the child wrote no checkpoints in 120 s"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    latest = latest_checkpoint(log_dir / "checkpoints")
    resumed = GRPOAgent.load(latest, env=make_envs(), log_dir=log_dir)
    done = resumed.num_updates
    assert 2 <= done < len(full_rows)
    rest_rows, _ = run(resumed, TOTAL, resume_from=latest)
    assert rest_rows == full_rows[done:]
    assert parameter_hash(resumed.model) == full_hash


def test_killed_checkpoint_write_leaves_previous_loadable(tmp_path, monkeypatch) -> None:
    directory = tmp_path / "ckpts"
    save_checkpoint(directory, 1, {"step": 1, "w": torch.ones(3)})

    def dying_save(obj, handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(training.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(directory, 2, {"step": 2})
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(directory)] == ["checkpoint-000000001"]
    assert load_checkpoint(directory)["step"] == 1


def test_retention_keeps_newest(tmp_path) -> None:
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    assert [p.name[-1] for p in list_checkpoints(tmp_path)] == ["4", "5"]
    save_checkpoint(tmp_path, 5, {"step": "again"}, keep=1)
    assert load_checkpoint(tmp_path)["step"] == "again"
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 6, {}, keep=0)


def test_task_sampler_state_round_trip() -> None:
    a = TaskSampler(5, seed=1)
    first = a.take(7)
    b = TaskSampler(5, seed=1)
    b.load_state_dict(a.state_dict())
    assert a.take(9) == b.take(9)
    assert sorted(first[:5]) == [0, 1, 2, 3, 4]  # each epoch is a permutation
    unbounded = TaskSampler(None)
    assert unbounded.take(3) == [0, 1, 2]
