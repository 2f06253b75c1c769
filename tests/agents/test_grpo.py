from __future__ import annotations

import importlib.util
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from llm_gym.agents.advantages import group_advantages
from llm_gym.agents.checkpoints import latest_checkpoint, load_checkpoint
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.agents.grpo_algorithm import grpo_loss
from llm_gym.agents.lm_trainer import parameter_hash
from llm_gym.models import tiny_model
from llm_gym.token_env import Task, TokenEnv, TurnResult
from llm_gym.vector import TokenVectorEnv

# LoRA is the optional `lora` extra (peft); .ci/install installs it.
needs_peft = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="needs peft (pip install 'llm_gym[lora]')"
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


class LetterEnv(TokenEnv):
    """One token per episode; reward 1 when it is a lowercase ASCII letter (26 of 260 tokens)."""

    failure: str | None = None  # "nan", "none" or "raise": the reward breaks that way

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_new_tokens", 1)
        kwargs.setdefault("max_length", 24)
        super().__init__(**kwargs)

    @property
    def num_tasks(self) -> int:
        return 8

    def sample_task(self, index: int | None) -> Task:
        index = int(self.np_random.integers(8)) if index is None else index
        return Task(messages=[{"role": "user", "content": f"q{index}"}], index=index)

    def end_turn(self, response, response_ids, finished) -> TurnResult:
        if LetterEnv.failure == "raise":
            raise RuntimeError("grader crashed")
        if LetterEnv.failure == "none":
            return TurnResult(reward=None)
        if LetterEnv.failure == "nan":
            return TurnResult(reward=math.nan)
        hit = bool(response_ids) and 97 <= response_ids[0] <= 122
        return TurnResult(reward=float(hit), info={"success": hit})


def letter_agent(config: GRPOConfig, seed: int = 0, **kwargs) -> GRPOAgent:
    envs = TokenVectorEnv(LetterEnv, config.group_size * config.prompts_per_batch,
                          autoreset_mode="Disabled")
    return GRPOAgent(envs, tiny_model(seed=seed)[0], config, seed=seed, **kwargs)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_grpo_learns_a_trivial_token_task(loss_type) -> None:
    config = GRPOConfig(group_size=8, prompts_per_batch=4, learning_rate=2e-2,
                        loss_type=loss_type)
    agent = letter_agent(config)
    rewards: list[float] = []

    def record(metrics: dict) -> bool:
        rewards.append(metrics["rollout/ep_rew_mean"])
        return len(rewards) < 10  # ten updates, whatever the sampling rounds cost

    agent.learn(10**6, callback=record)
    assert len(rewards) == 10
    before, after = np.mean(rewards[:2]), np.mean(rewards[-2:])
    # Random policy: ~26/260 = 0.1. A clear improvement, far beyond sampling noise.
    assert before < 0.3
    assert after > before + 0.4, rewards


def test_all_equal_group_gives_zero_advantage() -> None:
    returns = torch.tensor([1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.0, 1.0, 0.5])
    valid = torch.ones(9, dtype=torch.bool)
    for scale in (True, False):
        adv = group_advantages(returns, valid, 3, scale=scale)
        assert torch.isfinite(adv).all()
        assert torch.equal(adv[:6], torch.zeros(6))
        assert adv[6] < 0 < adv[7]
    assert torch.allclose(group_advantages(returns, valid, 3, scale=False)[6:],
                          torch.tensor([-0.5, 0.5, 0.0]))


def test_invalid_rows_are_left_out_of_group_statistics() -> None:
    returns = torch.tensor([1.0, 0.0, float("nan"), 5.0, float("nan"), 2.0])
    valid = torch.tensor([True, True, False, True, False, False])
    adv = group_advantages(returns, valid, 3, scale=False)
    assert torch.isfinite(adv).all()
    assert adv.tolist() == [0.5, -0.5, 0.0, 0.0, 0.0, 0.0]  # group 2: one valid row, no signal


def test_loss_aggregations_differ_only_in_normalisation() -> None:
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])
    adv = torch.tensor([1.0, 1.0])
    norm = {"sequences": 2.0, "tokens": 5.0, "max_completion_length": 8.0}
    values = {lt: float(grpo_loss(logp, logp, adv, mask, GRPOConfig(loss_type=lt), norm)[0])
              for lt in ("grpo", "dr_grpo", "dapo")}
    assert values["grpo"] == pytest.approx(-1.0)           # mean of per-sequence means
    assert values["dr_grpo"] == pytest.approx(-5 / 16)     # sum / (B * L)
    assert values["dapo"] == pytest.approx(-1.0)           # sum / tokens
    clipped = grpo_loss(logp + 1.0, logp, adv, mask, GRPOConfig(loss_type="dapo"), norm)[1]
    assert float(clipped["clip_fraction"]) == pytest.approx(1.0)


def test_dapo_clip_higher_and_dynamic_sampling_defaults() -> None:
    config = GRPOConfig(loss_type="dapo")
    assert config.effective_clip_coef_high == 0.28 and config.uses_dynamic_sampling
    assert not GRPOConfig().uses_dynamic_sampling
    assert not GRPOConfig(loss_type="dr_grpo").scales_rewards


def test_dynamic_sampling_drops_all_equal_groups(monkeypatch) -> None:
    config = GRPOConfig(group_size=2, prompts_per_batch=2, loss_type="dapo",
                        max_sampling_rounds=2)
    agent = letter_agent(config, seed=1)
    monkeypatch.setattr(LetterEnv, "failure", None)
    # A fresh tiny model rarely writes a letter (~10%): with this seed the first round has
    # all-zero groups to drop and a second round runs.
    batch, adv, stats = agent.collect_batch()
    assert stats["rollout/groups_dropped_equal"] >= 1
    assert stats["rollout/sampling_rounds"] == 2
    # Every sampled group is counted, dropped or kept (what a plain GRPO run pays for nothing).
    assert stats["rollout/sampled_groups"] == 4
    assert stats["rollout/equal_groups"] == stats["rollout/groups_dropped_equal"] >= 1
    assert batch.num_rows == len(adv) and torch.all(adv.view(-1, 2).abs().sum(1) > 0)


@pytest.mark.parametrize("failure", ["nan", "none", "raise"])
def test_broken_reward_is_dropped_counted_and_stops_cleanly(monkeypatch, tmp_path, failure):
    config = GRPOConfig(group_size=2, prompts_per_batch=2, learning_rate=1e-2,
                        checkpoint_every=1, max_reward_failures=2)
    agent = letter_agent(config, log_dir=tmp_path)
    agent.learn(8)
    good = latest_checkpoint(tmp_path / "checkpoints")
    assert good is not None
    monkeypatch.setattr(LetterEnv, "failure", failure)
    metrics: list[dict] = []
    agent.learn(1000, callback=metrics.append)
    assert agent.stop_reason is not None and len(metrics) == 2
    assert metrics[0]["reward/dropped"] == 4
    key = {"nan": "nan", "none": "none", "raise": "exception"}[failure]
    assert metrics[0][f"reward/dropped_{key}"] == 4
    assert all(torch.isfinite(p).all() for p in agent.model.parameters())
    state = load_checkpoint(tmp_path / "checkpoints")
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert latest_checkpoint(tmp_path / "checkpoints").name >= good.name


def test_smoke_learn_predict_evaluate_save_load(tmp_path) -> None:
    config = GRPOConfig(group_size=2, prompts_per_batch=2, kl_coef=0.1, update_epochs=2,
                        num_minibatches=2, micro_batch_size=1)
    agent = GRPOAgent("llm_gym/Arithmetic-v0", "tiny", config,
                      env_kwargs={"max_new_tokens": 3}, log_dir=tmp_path / "run")
    metrics: list[dict] = []
    agent.learn(20, callback=metrics.append)
    assert agent.num_timesteps >= 20 and agent.episode_log
    assert "train/kl" in metrics[-1] and metrics[-1]["train/kl"] >= 0
    for key in ("rollout/ep_rew_mean", "time/rollout_s", "time/update_s", "time/tokens_per_s"):
        assert key in metrics[-1]
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert (tmp_path / "run" / "reward_curve.png").is_file()
    obs, _ = gym.make("llm_gym/Arithmetic-v0", max_new_tokens=3).reset(seed=0)
    action, _ = agent.predict(obs, deterministic=True)
    assert isinstance(action, np.int64) and 0 <= action < 260
    batch_obs = {k: np.stack([v, v]) for k, v in obs.items()}
    actions, _ = agent.predict(batch_obs, deterministic=True)
    assert actions.shape == (2,) and actions[0] == action
    result = agent.evaluate(num_episodes=3, env_kwargs={"split": "test"})
    assert set(result) >= {"mean_return", "success_rate", "mean_length"}
    agent.save(tmp_path / "saved")
    loaded = GRPOAgent.load(tmp_path / "saved")
    assert parameter_hash(loaded.model) == parameter_hash(agent.model)
    assert loaded.num_timesteps == agent.num_timesteps
    assert loaded.predict(obs, deterministic=True)[0] == action


@needs_peft
def test_lora_with_kl_uses_the_disabled_adapter_as_reference() -> None:
    config = GRPOConfig(group_size=2, prompts_per_batch=1, kl_coef=0.5, lora={"r": 2},
                        learning_rate=1e-2)
    agent = GRPOAgent("llm_gym/Arithmetic-v0", "tiny", config, env_kwargs={"max_new_tokens": 2})
    assert agent.ref_model is None
    agent.learn(8)
    assert agent.num_updates >= 2


def test_config_from_file_rejects_unknown_keys(tmp_path) -> None:
    path = tmp_path / "grpo.json"
    path.write_text('{"loss_type": "dr_grpo", "lr": 1}')
    with pytest.raises(ValueError, match="lr"):
        GRPOConfig.from_file(path)
    path.write_text('{"loss_type": "dr_grpo"}')
    assert GRPOConfig.from_file(path).loss_type == "dr_grpo"
    with pytest.raises(ValueError, match="loss_type"):
        GRPOConfig(loss_type="ppo")
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)


def test_constrained_env_ratios_and_k3_use_the_action_masks() -> None:
    config = GRPOConfig(group_size=2, prompts_per_batch=2, kl_coef=0.1, num_minibatches=2,
                        micro_batch_size=1)
    agent = GRPOAgent("llm_gym/LeftRightText-v0", "tiny", config,
                      env_kwargs={"constrained": True, "max_new_tokens": 8, "max_length": 400})
    batch, advantages, _ = agent.collect_batch()
    assert batch.action_masks is not None
    agent_tokens = batch.agent_mask.bool()
    with torch.no_grad():
        # Rows in shuffled micro-batches see their own masks: the ratio to the rollout is 1.
        rows = torch.tensor([3, 0, 2, 1])
        logp = agent._logprobs(agent.model, batch, rows)
        masked_old = batch.old_logprobs[rows][agent_tokens[rows]]
        torch.testing.assert_close(logp[agent_tokens[rows]], masked_old, atol=1e-4, rtol=0)
        ref = agent._ref_logprobs(batch)
    torch.testing.assert_close(ref[agent_tokens], batch.old_logprobs[agent_tokens],
                               atol=1e-4, rtol=0)
    metrics = agent.update(batch, advantages)
    # Policy == reference on the first minibatch step: the k3 estimate is ~0, never large.
    assert 0.0 <= metrics["train/kl"] < 1e-2
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["train/entropy"])
