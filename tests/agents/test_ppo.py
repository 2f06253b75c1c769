"""PPO: the shared math (GAE, KL placement, clipped losses) by hand, and both faces end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from llm_gym.agents.ppo import PPOAgent, PPOConfig
from llm_gym.agents.ppo_algorithm import (
    agent_token_index,
    compute_gae,
    kl_penalized_rewards,
    ppo_losses,
    token_gae,
    whiten,
)
from llm_gym.models import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


# ----------------------------------------------------------------------------- advantages


def test_compute_gae_matches_hand_computation():
    # Two steps then an episode end (termination), then one step of a new episode that is cut
    # at the rollout's end and bootstraps with next_values = 4.
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 1.0, 2.0]])
    next_values = torch.tensor([[1.0, 0.0, 4.0]])
    dones = torch.tensor([[0, 1, 0]])
    gamma, lam = 0.9, 0.8
    d0 = 1 + 0.9 * 1.0 - 0.5   # 1.4
    d1 = 2 + 0.0 - 1.0         # 1.0
    d2 = 3 + 0.9 * 4.0 - 2.0   # 4.6
    expected = [d0 + gamma * lam * d1, d1, d2]
    adv, ret = compute_gae(rewards, values, next_values, dones, gamma, lam)
    assert adv[0].tolist() == pytest.approx(expected)
    assert ret[0].tolist() == pytest.approx([e + v for e, v in zip(expected, [0.5, 1.0, 2.0],
                                                                   strict=True)])


def test_token_gae_skips_env_tokens_and_bootstraps_zero_at_the_end():
    # Conversation: prompt P P, agent turn A A, env reply E E, agent turn A A, padding.
    #               pos 0 1      2 3           4 5          6 7           8
    agent = torch.tensor([[0, 0, 1, 1, 0, 0, 1, 1, 0]])
    rewards = torch.tensor([[0, 0, 0, -1.0, 0, 0, 0, 10.0, 0]])
    # Values off the agent's tokens are nonsense on purpose: they must not be used.
    values = torch.tensor([[99.0, 99.0, 1.0, 2.0, 99.0, 99.0, 3.0, 4.0, 99.0]])
    gamma, lam = 0.5, 0.5
    # Packed agent steps k=0..3: r = [0, -1, 0, 10], v = [1, 2, 3, 4], next v = [2, 3, 4, 0].
    deltas = [0 + 0.5 * 2 - 1, -1 + 0.5 * 3 - 2, 0 + 0.5 * 4 - 3, 10 + 0 - 4]
    packed = [0.0] * 4
    running = 0.0
    for k in reversed(range(4)):
        running = deltas[k] + gamma * lam * running
        packed[k] = running
    adv, ret = token_gae(rewards, values, agent, gamma, lam)
    expected = torch.zeros(1, 9)
    expected[0, [2, 3, 6, 7]] = torch.tensor(packed)
    assert torch.allclose(adv, expected)
    assert torch.allclose(ret[0, [2, 3, 6, 7]], expected[0, [2, 3, 6, 7]] + values[0, [2, 3, 6, 7]])
    assert ret[0, [0, 1, 4, 5, 8]].abs().sum() == 0


def test_token_gae_with_gamma_one_gives_rewards_to_go_over_uneven_rows():
    agent = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0]])
    rewards = torch.tensor([[0, 1.0, 2.0, 3.0, 0], [0, 0, 7.0, 0, 0]])
    adv, _ = token_gae(rewards, torch.zeros(2, 5), agent, 1.0, 1.0)
    assert adv.tolist() == [[0, 6.0, 5.0, 3.0, 0], [0, 0, 7.0, 0, 0]]


def test_agent_token_index_packs_positions_in_order():
    index, valid = agent_token_index(torch.tensor([[0, 1, 0, 1], [1, 0, 0, 0]]))
    assert index.tolist() == [[1, 3], [0, 0]]
    assert valid.tolist() == [[True, True], [True, False]]


def test_kl_penalty_lands_on_agent_tokens_only_and_keeps_env_rewards():
    agent = torch.tensor([[0, 1, 1, 0, 1]])
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0, 5.0]])
    logprobs = torch.tensor([[-9.0, -1.0, -2.0, -9.0, -0.5]])
    ref = torch.tensor([[-1.0, -1.5, -1.0, -3.0, -0.5]])
    out, kl = kl_penalized_rewards(rewards, logprobs, ref, agent, kl_coef=0.1)
    assert kl[0].tolist() == pytest.approx([0, 0.5, -1.0, 0, 0])
    assert out[0].tolist() == pytest.approx([0, -0.05, 1.1, 0, 5.0])


def test_whiten_uses_only_masked_entries():
    x = torch.tensor([1.0, 3.0, 100.0])
    out = whiten(x, torch.tensor([1, 1, 0]))
    assert out.tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)


# ----------------------------------------------------------------------------- losses


def test_value_clip_takes_the_larger_error():
    one = torch.ones(1, 1)
    # v moved 0 -> 2 with clip 0.2: v_clip = 0.2, so (0.2 - 3)^2 = 7.84 beats (2 - 3)^2 = 1.
    out = ppo_losses(0 * one, 0 * one, one, 2 * one, 0 * one, 3 * one, one, 0.2, 0.2)
    assert float(out["value_loss"]) == pytest.approx(0.5 * 7.84)
    # No clip: plain 0.5 * (v - R)^2.
    out = ppo_losses(0 * one, 0 * one, one, 2 * one, 0 * one, 3 * one, one, 0.2, None)
    assert float(out["value_loss"]) == pytest.approx(0.5)
    # Moving past the target: the clipped value is farther from it, the unclipped error wins.
    out = ppo_losses(0 * one, 0 * one, one, 5 * one, 0 * one, 3 * one, one, 0.2, 0.2)
    assert float(out["value_loss"]) == pytest.approx(0.5 * (0.2 - 3) ** 2)


def test_policy_clip_and_diagnostics():
    new = torch.log(torch.tensor([[1.5, 0.5]]))
    old = torch.zeros(1, 2)
    adv = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    out = ppo_losses(new, old, adv, old, old, old, mask, 0.2, None)
    # Positive advantage: ratio 1.5 is clipped to 1.2; ratio 0.5 keeps its (worse) value 0.5.
    assert float(out["policy_loss"]) == pytest.approx(-(1.2 + 0.5) / 2)
    assert float(out["clip_fraction"]) == pytest.approx(1.0)
    expected_kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert float(out["approx_kl"]) == pytest.approx(expected_kl)


def test_losses_ignore_masked_steps():
    mask = torch.tensor([[1.0, 0.0]])
    huge = torch.tensor([[0.0, 50.0]])
    out = ppo_losses(huge, torch.zeros(1, 2), torch.ones(1, 2), huge, torch.zeros(1, 2),
                     torch.zeros(1, 2), mask, 0.2, 0.2)
    assert float(out["policy_loss"]) == pytest.approx(-1.0)
    assert float(out["value_loss"]) == 0.0


# ----------------------------------------------------------------------------- config


def test_config_from_toml_and_json(tmp_path):
    toml = tmp_path / "ppo.toml"
    toml.write_text("gamma = 0.5\nkl_coef = 0.0\nvf_clip_coef = 0.1\n")
    cfg = PPOConfig.from_file(toml)
    assert (cfg.gamma, cfg.kl_coef, cfg.vf_clip_coef) == (0.5, 0.0, 0.1)
    js = tmp_path / "ppo.json"
    js.write_text(json.dumps({"num_envs": 3}))
    assert PPOConfig.from_file(js).num_envs == 3


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    path = tmp_path / "ppo.json"
    path.write_text(json.dumps({"gama": 0.5}))
    with pytest.raises(ValueError, match="gama"):
        PPOConfig.from_file(path)
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.5)
    with pytest.raises(ValueError, match="num_envs"):
        PPOConfig(num_envs=0)
    with pytest.raises(ValueError, match=".toml or .json"):
        PPOConfig.from_file(tmp_path / "ppo.yaml")


# ----------------------------------------------------------------------------- classic face


def test_classic_leftright_learns_the_optimal_return():
    cfg = PPOConfig(num_envs=4, num_steps=32, gamma=0.99)
    agent = PPOAgent("llm_gym/LeftRight-v0", config=cfg, seed=0).learn(3000)
    result = agent.evaluate(num_episodes=3)
    assert result["mean_return"] == 5.0  # right, right: -5 + 10
    assert [int(agent.predict(obs, deterministic=True)[0]) for obs in (2, 3)] == [2, 2]
    assert agent.episode_log[-1].episode_return == 5.0


def test_classic_cartpole_smoke_and_metrics():
    seen = []
    cfg = PPOConfig(num_envs=2, num_steps=64, update_epochs=2)
    agent = PPOAgent("CartPole-v1", config=cfg, seed=1)
    agent.learn(256, callback=lambda m: seen.append(m))
    assert agent.num_timesteps == 256 and len(seen) == 2
    for key in ("train/loss", "train/policy_loss", "train/value_loss", "train/entropy",
                "train/clip_fraction", "train/grad_norm", "train/lr", "rollout/ep_rew_mean",
                "time/fps", "time/rollout_s", "time/update_s"):
        assert math.isfinite(seen[-1][key]), key
    obs = np.zeros((3, 4), dtype=np.float32)
    actions, _ = agent.predict(obs)
    assert actions.shape == (3,) and actions.dtype == np.int64


def test_callback_false_stops_training():
    agent = PPOAgent("llm_gym/LeftRight-v0", config=PPOConfig(num_envs=2, num_steps=8))
    agent.learn(10_000, callback=lambda m: False)
    assert agent.iteration == 1 and agent.num_timesteps == 16


def test_classic_save_load_round_trip(tmp_path):
    agent = PPOAgent("llm_gym/LeftRight-v0", config=PPOConfig(num_envs=2, num_steps=16), seed=3)
    agent.learn(64)
    agent.save(tmp_path / "ckpt")
    loaded = PPOAgent.load(tmp_path / "ckpt")
    for a, b in zip(agent.policy.net.parameters(), loaded.policy.net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert loaded.num_timesteps == 64 and len(loaded.episode_log) == len(agent.episode_log)
    loaded.learn(32, reset_num_timesteps=False)
    assert loaded.num_timesteps == 96


# ----------------------------------------------------------------------------- token face

SMALL = {"num_envs": 2, "num_minibatches": 2, "update_epochs": 2, "learning_rate": 1e-3}


def _token_agent(env_id: str, seed: int = 0, **cfg) -> PPOAgent:
    config = PPOConfig(**{**SMALL, **cfg})
    model, _ = tiny_model(hidden_size=32, num_layers=1)
    return PPOAgent(env_id, model, config, env_kwargs={"max_new_tokens": 4}, seed=seed)


def _params(agent: PPOAgent) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.policy.net.parameters()]


def _one_iteration(agent: PPOAgent) -> dict:
    seen = []
    agent.learn(10**9, callback=lambda m: seen.append(m) or False, reset_num_timesteps=False)
    return seen[-1]


@pytest.mark.parametrize("env_id", ["llm_gym/LeftRightText-v0", "llm_gym/Arithmetic-v0"])
def test_token_ppo_smoke(env_id):
    agent = _token_agent(env_id)
    before = _params(agent)
    metrics = _one_iteration(agent)
    for key in ("train/loss", "train/policy_loss", "train/value_loss", "train/kl",
                "train/entropy", "train/clip_fraction", "train/grad_norm", "rollout/tokens",
                "rollout/ep_rew_mean", "time/tokens_per_s"):
        assert math.isfinite(metrics[key]), key
    assert len(agent.episode_log) == 2
    assert agent.num_timesteps == sum(r.length for r in agent.episode_log) > 0
    after = _params(agent)
    assert all(torch.isfinite(p).all() for p in after)
    if all(r.episode_return == 0 for r in agent.episode_log):
        # No reward and no KL yet (the reference is the policy itself): zero advantages and
        # zero value error, so an exact no-op, not a division by zero.
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    else:
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
        # The value head trained too (it starts at exactly zero).
        assert agent.policy.net.value_head.linear.weight.abs().sum() > 0
    # The rollout's sampling log-probs and the update's recomputed ones agree.
    assert metrics["rollout/logprob_drift"] < 1e-3


def test_token_reference_model_frozen_and_optional():
    agent = _token_agent("llm_gym/LeftRightText-v0")
    ref = [p.detach().clone() for p in agent.policy.ref.parameters()]
    _one_iteration(agent)
    assert all(torch.equal(a, b) for a, b in zip(ref, agent.policy.ref.parameters(), strict=True))
    assert _token_agent("llm_gym/LeftRightText-v0", kl_coef=0.0).policy.ref is None


def test_token_predict_single_and_batched():
    import gymnasium as gym

    agent = _token_agent("llm_gym/LeftRightText-v0")
    env = gym.make("llm_gym/LeftRightText-v0", max_new_tokens=4)
    obs, _ = env.reset(seed=0)
    action, state = agent.predict(obs, deterministic=True)
    assert isinstance(action, np.int64) and state is None
    assert 0 <= action < env.action_space.n
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    actions, _ = agent.predict(batch, deterministic=True)
    assert actions.tolist() == [action, action]


def test_token_evaluate_is_greedy_and_repeatable():
    agent = _token_agent("llm_gym/LeftRightText-v0")
    first = agent.evaluate(num_episodes=3)
    assert first["episodes"] == 3 and len(first["returns"]) == 3
    assert agent.evaluate(num_episodes=3) == first


def test_token_save_load_and_exact_resume(tmp_path):
    straight = _token_agent("llm_gym/LeftRightText-v0", seed=5)
    _one_iteration(straight)
    _one_iteration(straight)

    interrupted = _token_agent("llm_gym/LeftRightText-v0", seed=5)
    _one_iteration(interrupted)
    interrupted.save(tmp_path / "ckpt")
    resumed = PPOAgent.load(tmp_path / "ckpt")
    for a, b in zip(_params(interrupted), _params(resumed), strict=True):
        assert torch.equal(a, b)
    assert resumed.policy.ref is not None
    for a, b in zip(interrupted.policy.ref.parameters(), resumed.policy.ref.parameters(),
                    strict=True):
        assert torch.equal(a, b)
    _one_iteration(resumed)

    assert resumed.num_timesteps == straight.num_timesteps
    assert [r.episode_return for r in resumed.episode_log] == [
        r.episode_return for r in straight.episode_log]
    for a, b in zip(_params(straight), _params(resumed), strict=True):
        assert torch.equal(a, b)


def _arithmetic_envs(num_envs: int = 2, **kwargs):
    import gymnasium as gym

    return gym.make_vec("llm_gym/Arithmetic-v0", num_envs, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", max_new_tokens=4, **kwargs)


def _raise(*args, **kwargs):
    raise RuntimeError("grader crashed")


def test_broken_rewards_are_dropped_counted_and_stop_the_run(tmp_path):
    envs = _arithmetic_envs()
    envs.envs[0].end_turn = _raise  # row 0's reward always raises; row 1 is honest
    model, _ = tiny_model(hidden_size=32, num_layers=1)
    agent = PPOAgent(envs, model, PPOConfig(**SMALL, max_reward_failures=2), seed=0)
    metrics = _one_iteration(agent)
    assert metrics["reward/dropped"] == 1 and metrics["reward/dropped_exception"] == 1
    assert all(torch.isfinite(p).all() for p in _params(agent))

    envs = _arithmetic_envs()
    for env in envs.envs:
        env.end_turn = _raise
    agent = PPOAgent(envs, model, PPOConfig(**SMALL, max_reward_failures=2,
                                            checkpoint_every=1), seed=0, log_dir=tmp_path)
    agent.learn(10**9)
    assert agent.iteration == 2 and "rewards failed" in agent.stop_reason
    assert all(torch.isfinite(p).all() for p in _params(agent))
    # The checkpoint of the last update before the stop is there and loads.
    assert PPOAgent.load(tmp_path, env=_arithmetic_envs()).iteration == 1


def test_finite_task_pool_is_walked_in_epochs():
    envs = _arithmetic_envs(num_envs=2, num_tasks=4)
    model, _ = tiny_model(hidden_size=32, num_layers=1)
    agent = PPOAgent(envs, model, PPOConfig(**SMALL), seed=0)
    seen = []
    for _ in range(2):
        _one_iteration(agent)
        seen.extend(int(env.task.index) for env in envs.envs)
    assert sorted(seen) == [0, 1, 2, 3]


def test_log_dir_gets_metrics_checkpoints_and_curve(tmp_path):
    import csv

    agent = PPOAgent("llm_gym/LeftRight-v0", seed=0, log_dir=tmp_path,
                     config=PPOConfig(num_envs=2, num_steps=16, checkpoint_every=1,
                                      keep_checkpoints=2))
    agent.learn(96)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 3 and float(rows[-1]["step"]) == 96
    assert {"train/value_loss", "rollout/ep_rew_mean", "time/fps"} <= set(rows[0])
    assert len(list((tmp_path / "checkpoints").iterdir())) == 2  # keep_checkpoints
    assert (tmp_path / "reward_curve.png").stat().st_size > 0
    resumed = PPOAgent.load(tmp_path)  # the newest checkpoint in the log dir
    assert resumed.num_timesteps == 96 and resumed.iteration == 3


def test_multi_turn_rewards_reach_the_first_token_through_env_replies():
    # Constrained decoding makes every reply a valid move, so episodes span several turns with
    # env-injected tokens between them. With gamma = lambda = 1, zero values and no KL, the
    # first agent token's advantage is the whole episode's return.
    import gymnasium as gym

    from llm_gym.agents.rollout import collect_rollouts

    envs = gym.make_vec("llm_gym/LeftRightText-v0", 2, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", constrained=True)
    model, _ = tiny_model(hidden_size=32, num_layers=1)
    batch = collect_rollouts(model, envs, seed=0, generator=torch.Generator().manual_seed(0))
    agent_rows = batch.agent_mask.bool()
    first = agent_rows.float().argmax(1)
    last = batch.attention_mask.sum(1) - 1
    between = [(~agent_rows[i, first[i]:last[i]]).any() for i in range(2)]
    assert any(between), "expected env replies between the agent's turns"
    adv, _ = token_gae(batch.rewards, torch.zeros_like(batch.rewards), batch.agent_mask, 1.0, 1.0)
    assert adv[torch.arange(2), first].tolist() == pytest.approx(batch.returns.tolist())


def test_token_resume_from_a_log_dir_matches_an_uninterrupted_run(tmp_path):
    straight = _token_agent("llm_gym/LeftRightText-v0", seed=7)
    straight.learn(20)
    assert straight.iteration >= 2

    first = _token_agent("llm_gym/LeftRightText-v0", seed=7)
    first.log_dir = tmp_path
    first.learn(20, callback=lambda m: False)  # "killed" after one update (checkpoint kept)
    again = _token_agent("llm_gym/LeftRightText-v0", seed=7)
    again.learn(20, resume_from=tmp_path)

    assert again.iteration == straight.iteration
    assert again.num_timesteps == straight.num_timesteps
    for a, b in zip(_params(straight), _params(again), strict=True):
        assert torch.equal(a, b)


def _constrained_agent(**cfg) -> PPOAgent:
    config = PPOConfig(**{**SMALL, "num_envs": 4, "kl_coef": 0.05, **cfg})
    model, _ = tiny_model(hidden_size=32, num_layers=1)
    return PPOAgent("llm_gym/LeftRightText-v0", model, config, seed=0,
                    env_kwargs={"max_new_tokens": 8, "constrained": True, "max_length": 400})


def test_kl_penalty_under_action_masks_is_zero_then_a_proper_estimate(caplog):
    from llm_gym.agents.rollout import collect_rollouts, sequence_logprobs

    with caplog.at_level("WARNING"):
        agent = _constrained_agent()
    assert "kl_coef=0" not in caplog.text  # the old "biased under masks" warning is gone
    seen: list[dict] = []
    agent.learn(10**9, callback=lambda m: seen.append(m) or len(seen) < 4,
                reset_num_timesteps=False)
    # Reference == policy before the first update: the per-token KL is exactly 0, and the
    # masked scores equal the rollout's recorded (masked) sampling log-probs.
    assert seen[0]["train/kl"] == 0.0
    assert all(m["rollout/logprob_drift"] < 1e-3 for m in seen)
    # After a few updates, the k1 estimate over a fresh rollout is a KL of the distributions
    # sampled from (it went to -5.8 per token when scored without the mask).
    policy = agent.policy
    batch = collect_rollouts(policy.net.model, policy.envs, seed=123,
                             generator=torch.Generator().manual_seed(5))
    assert batch.action_masks is not None
    agent_tokens = batch.agent_mask.bool()
    ids, attention = batch.input_ids, batch.attention_mask
    logprobs, _, ref = policy.score(ids, attention, batch.action_masks)
    k1 = (logprobs - ref)[agent_tokens]
    # A sample mean of k1 is noisy around the true KL (>= 0); -5.8 was the unmasked bug.
    assert float(k1.mean()) >= -0.05
    torch.testing.assert_close(logprobs[agent_tokens], batch.old_logprobs[agent_tokens],
                               atol=1e-4, rtol=0)
    with torch.no_grad():
        unmasked = policy.net(ids, attention)[0] - sequence_logprobs(
            policy.ref, ids, attention, vocab_size=policy.net.num_actions)
    assert not torch.allclose(k1, unmasked[agent_tokens], atol=1e-3)


def test_kl_without_masks_keeps_its_old_value():
    agent = _token_agent("llm_gym/Arithmetic-v0")
    metrics = _one_iteration(agent)
    assert metrics["train/kl"] == 0.0  # reference == policy at the first rollout
    assert metrics["rollout/logprob_drift"] < 1e-3
