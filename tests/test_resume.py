from __future__ import annotations

import pytest
import torch

from llm_gym.agents import training
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig, parameter_hash
from llm_gym.agents.training import (
    TaskSampler,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
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


CONFIG = GRPOConfig(group_size=4, prompts_per_batch=2, learning_rate=2e-2, beta=0.05,
                    num_epochs=2, num_minibatches=2, checkpoint_every=1, keep_checkpoints=2,
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


def test_resume_after_interruption_is_exact(tmp_path) -> None:
    total = 100
    full_agent = make_agent(tmp_path / "full")
    full_rows, full_prompts = run(full_agent, total)
    assert len(full_rows) >= 6
    assert any(row["train/grad_norm"] > 0 for row in full_rows)  # the weights really move
    cut = 3
    _, first_prompts = run(make_agent(tmp_path / "cut"), total, stop_after=cut)
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name.endswith(f"{cut:09d}")
    # A fresh process would rebuild the agent from the checkpoint alone.
    resumed = GRPOAgent.load(tmp_path / "cut" / "checkpoints", env=make_envs(),
                             log_dir=tmp_path / "cut")
    assert resumed.num_updates == cut
    rest_rows, rest_prompts = run(resumed, total, resume_from=tmp_path / "cut" / "checkpoints")
    assert rest_rows == full_rows[cut:]
    assert first_prompts + rest_prompts == full_prompts  # no prompt replayed or skipped
    assert parameter_hash(resumed.model) == parameter_hash(full_agent.model)


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
