"""Every trainer learns from the wrapped env's reward (issue 7)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import llm_gym  # noqa: F401
from llm_gym.agents.factory import make_agent
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.agents.ppo import PPOAgent, PPOConfig
from llm_gym.wrappers import LengthPenalty, RewardTerms

ARITH = "llm_gym/Arithmetic-v0"
LENGTH = [{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]
SMALL_GRPO = GRPOConfig(group_size=2, prompts_per_batch=2)
KWARGS = {"max_new_tokens": 4}


def _first_metrics(agent) -> dict:
    seen = []
    agent.learn(1, callback=lambda m: seen.append(m) or False)
    return seen[0]


def _assert_shaped(metrics: dict) -> None:
    # Each episode's return is its env reward plus 0.5 per token: the trainer saw the shaped
    # reward, and the term reaches the metrics.
    assert metrics["reward/length_penalty"] == pytest.approx(-0.5 * metrics["rollout/ep_len_mean"])
    assert metrics["rollout/ep_rew_mean"] == pytest.approx(
        metrics["reward/env"] + metrics["reward/length_penalty"], abs=1e-5)


def test_grpo_trains_on_a_wrapper_list():
    agent = GRPOAgent(ARITH, "tiny", SMALL_GRPO, env_kwargs=KWARGS, wrappers=LENGTH)
    _assert_shaped(_first_metrics(agent))


@pytest.mark.parametrize("form", ["single", "sync"])
def test_grpo_takes_wrapped_single_envs_and_sync_vector_envs(form):
    def make():
        return LengthPenalty(gym.make(ARITH, **KWARGS), 0.5)

    env = make() if form == "single" else gym.vector.SyncVectorEnv(
        [make] * 2, autoreset_mode="Disabled")
    agent = GRPOAgent(env, "tiny", SMALL_GRPO)
    assert agent.wrappers[0].name == "LengthPenalty" and agent.envs.num_envs == 4
    _assert_shaped(_first_metrics(agent))


def test_ppo_trains_on_a_wrapper_list_on_token_and_classic_envs():
    config = PPOConfig(num_envs=2, num_steps=8)
    agent = PPOAgent(ARITH, "tiny", config, env_kwargs=KWARGS, wrappers=LENGTH)
    _assert_shaped(_first_metrics(agent))
    classic = PPOAgent("CartPole-v1", config=config, wrappers=LENGTH).learn(16)
    # CartPole pays +1 per step; the penalty takes 0.5 of it.
    assert all(r.episode_return == pytest.approx(0.5 * r.length) for r in classic.episode_log)


@pytest.mark.parametrize("name", ["sb3-ppo", "q-learning"])
def test_the_same_list_works_for_sb3_and_classic_agents(name):
    config = {"n_steps": 64, "batch_size": 32} if name == "sb3-ppo" else None
    agent = make_agent(name, "CartPole-v1" if name == "sb3-ppo" else "llm_gym/LeftRight-v0",
                       config=config, wrappers=LENGTH)
    agent.learn(128)
    record = agent.episode_log[0]
    unshaped = record.length if name == "sb3-ppo" else None
    if unshaped is not None:
        assert record.episode_return == pytest.approx(unshaped - 0.5 * record.length)
    else:  # LeftRight's returns are at most +5; the penalty makes every step cost 0.5
        assert all(r.episode_return <= 5 - 0.5 * r.length for r in agent.episode_log)


def test_a_bad_wrapper_fails_before_any_model_is_built():
    with pytest.raises(ValueError, match="unknown wrapper 'LenghtPenalty'"):
        make_agent("grpo", ARITH, wrappers=[{"name": "LenghtPenalty"}])
    with pytest.raises(ValueError, match="LengthPenalty does not take"):
        make_agent("ppo", "CartPole-v1", wrappers=[{"name": "LengthPenalty",
                                                    "kwargs": {"weight": 1}}])
    with pytest.raises(TypeError, match="FormatBonus.*CartPole"):
        make_agent("sb3-ppo", "CartPole-v1", wrappers=[{"name": "FormatBonus",
                                                        "kwargs": {"pattern": "x"}}])


def test_the_stack_is_saved_and_rebuilt_on_load(tmp_path):
    agent = GRPOAgent(ARITH, "tiny", SMALL_GRPO, env_kwargs=KWARGS, wrappers=LENGTH)
    agent.save(tmp_path / "grpo")
    loaded = GRPOAgent.load(tmp_path / "grpo")
    assert loaded.wrappers.to_json() == LENGTH and type(loaded.envs).__name__ == "LengthPenalty"
    ppo = PPOAgent(ARITH, "tiny", PPOConfig(num_envs=2, num_steps=8), env_kwargs=KWARGS,
                   wrappers=LENGTH)
    ppo.save(tmp_path / "ppo")
    assert PPOAgent.load(tmp_path / "ppo").wrappers.to_json() == LENGTH


def test_a_wrapper_that_raises_is_counted_and_stops_the_run_cleanly(tmp_path):
    def boom(*_):
        raise RuntimeError("broken term")

    env = RewardTerms(gym.make(ARITH, **KWARGS), {"boom": boom})
    config = GRPOConfig(group_size=2, prompts_per_batch=2, max_reward_failures=2,
                        checkpoint_every=1)
    agent = GRPOAgent(env, "tiny", config, log_dir=tmp_path)
    metrics = []
    agent.learn(10**6, callback=metrics.append)
    assert metrics[0]["reward/dropped"] == 4 and metrics[0]["reward/dropped_wrapper"] == 4
    assert "rewards failed" in agent.stop_reason and agent.num_updates == 2
    assert all(torch.isfinite(p).all() for p in agent.model.parameters())
    # A checkpoint whose stack holds a Python function asks for it back on load.
    with pytest.raises(ValueError, match="wrappers="):
        GRPOAgent.load(tmp_path / "checkpoints")


def test_a_shaped_return_cannot_fake_success_in_a_comparison():
    from llm_gym.agents.compare import RunSpec, run_one

    bonus = [{"name": "RewardTerms", "kwargs": {"terms": {"bonus": lambda *_: 10.0}}}]
    spec = RunSpec("llm_gym/LeftRightText-v0", "grpo", 1, config={"group_size": 2,
                   "prompts_per_batch": 1}, wrappers=bonus, env_kwargs={"max_new_tokens": 4})
    evaluation = run_one(spec, eval_episodes=2).evaluation
    # LeftRightText has no success flag: success is the return reaching +5, and only the
    # env's own return counts, however large the shaped one.
    assert evaluation.mean_return > 5 > evaluation.env_return
    assert evaluation.success_rate == 0.0


def test_make_agent_takes_wrapped_envs():
    from llm_gym.wrappers import make_env

    envs = make_env(ARITH, 4, env_kwargs=KWARGS, wrappers=LENGTH, autoreset_mode="Disabled")
    agent = make_agent("grpo", envs, config={"group_size": 2, "prompts_per_batch": 2})
    _assert_shaped(_first_metrics(agent))
    sb3 = make_agent("sb3-ppo", LengthPenalty(gym.make("CartPole-v1"), 0.5),
                     config={"n_steps": 64, "batch_size": 32}).learn(128)
    record = sb3.episode_log[0]
    assert record.episode_return == pytest.approx(0.5 * record.length)
    with pytest.raises(TypeError, match="single env"):
        make_agent("sb3-ppo", make_env("CartPole-v1", 2))
