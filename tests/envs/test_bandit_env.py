"""The bandit in both faces: seeded means, per-pull regret, drift, the twin, the arm-name mask."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.envs.bandit import BanditEnv

CLASSIC, TEXT = "llm_gym/Bandit-v0", "llm_gym/BanditText-v0"


def _pull(text: gym.Env, arm: int) -> tuple:
    """Name ``arm`` in the text face, end the turn; return the turn's step."""
    tokenizer = text.unwrapped.tokenizer
    tokens = [*tokenizer.encode(str(arm)), tokenizer.eos_token_id]
    for token in tokens:
        step = text.step(token)
    return step


@pytest.mark.parametrize("arm_type", ["bernoulli", "gaussian"])
def test_a_seed_fixes_the_means_and_another_seed_changes_them(arm_type):
    env = BanditEnv(arm_type=arm_type)
    env.reset(seed=3)
    first = env.arm_means.copy()
    env.reset(seed=3)
    np.testing.assert_array_equal(env.arm_means, first)
    env.reset(seed=4)
    assert not np.array_equal(env.arm_means, first)
    env.reset()  # unseeded: the next instance of the same generator, a new bandit
    assert not np.array_equal(env.arm_means, first)


def test_observation_counts_pulls_and_averages_rewards_and_regret_is_the_gap():
    env = BanditEnv(num_arms=4, horizon=50)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8,) and not obs.any()
    rewards = {arm: [] for arm in range(4)}
    for t in range(50):
        arm = t % 3  # arm 3 is never pulled
        means = env.arm_means.copy()
        obs, reward, terminated, truncated, info = env.step(arm)
        rewards[arm].append(reward)
        assert reward in (0.0, 1.0)
        assert info["regret"] == pytest.approx(means.max() - means[arm])
        assert terminated == (t == 49) and not truncated
    assert obs[:4].tolist() == [17.0, 17.0, 16.0, 0.0]
    assert obs[4:].tolist() == pytest.approx([np.mean(rewards[a]) if rewards[a] else 0.0
                                             for a in range(4)])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_bernoulli_payoffs_follow_the_means():
    env = BanditEnv(num_arms=2, horizon=20_000)
    env.reset(seed=1)
    for _ in range(20_000):
        obs, *_ = env.step(0)
    assert obs[2] == pytest.approx(env.arm_means[0], abs=0.02)


def test_pulling_the_best_arm_has_zero_regret_and_the_worst_the_full_gap():
    env = BanditEnv(arm_type="gaussian")
    env.reset(seed=2)
    best, worst = int(np.argmax(env.arm_means)), int(np.argmin(env.arm_means))
    assert env.step(best)[4]["regret"] == 0.0
    gap = env.arm_means.max() - env.arm_means.min()
    assert env.step(worst)[4]["regret"] == pytest.approx(gap)


def test_drift_moves_the_means_and_no_drift_keeps_them():
    still, drifting = BanditEnv(), BanditEnv(drift=0.05)
    for env in (still, drifting):
        env.reset(seed=0)
    start = drifting.arm_means.copy()
    for _ in range(100):
        still.step(0)
        drifting.step(0)
    np.testing.assert_array_equal(still.arm_means, start)
    assert not np.allclose(drifting.arm_means, start)
    assert ((drifting.arm_means >= 0) & (drifting.arm_means <= 1)).all()  # Bernoulli: clipped


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_arms": 1}, "num_arms"), ({"num_arms": 2.5}, "num_arms"), ({"horizon": 0}, "horizon"),
    ({"arm_type": "poisson"}, "arm_type"), ({"drift": -0.1}, "drift"),
    ({"drift": float("nan")}, "drift"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        gym.make(CLASSIC, **kwargs)


@pytest.mark.parametrize("env_kwargs", [
    {}, {"arm_type": "gaussian"}, {"drift": 0.02}, {"num_arms": 12, "horizon": 60},
])
@pytest.mark.parametrize("seed", range(6))
def test_twins_give_identical_rewards_for_the_same_pulls(seed, env_kwargs):
    horizon = env_kwargs.get("horizon", 80)
    kwargs = {"horizon": horizon, **env_kwargs}
    classic, text = gym.make(CLASSIC, **kwargs), gym.make(TEXT, **kwargs)
    arms = np.random.default_rng(seed).integers(0, classic.action_space.n, size=2 * horizon)
    for episode in range(2):  # the second episode continues both generators unseeded
        classic.reset(seed=seed if episode == 0 else None)
        text.reset(seed=seed if episode == 0 else None)
        for arm in arms[episode * horizon:(episode + 1) * horizon]:
            _, reward, terminated, truncated, info = classic.step(arm)
            _, text_reward, text_terminated, text_truncated, text_info = _pull(text, arm)
            assert (text_reward, text_terminated, text_truncated) == (
                reward, terminated, truncated), f"seed {seed}, arm {arm}"
            assert text_info["regret"] == info["regret"]
            assert text_info["classic_action"] == arm
        assert terminated and text_terminated  # the default max_length fits the horizon


def test_text_face_appends_the_history_and_replies_with_the_payoff():
    env = gym.make(TEXT, horizon=5, render_mode="ansi")
    env.reset(seed=0)
    before, *_ = _pull(env, 4)
    length = int(before["attention_mask"].sum())
    after, reward, *_ = _pull(env, 2)
    np.testing.assert_array_equal(after["input_ids"][:length], before["input_ids"][:length])
    assert env.render().rstrip().endswith(
        f"2<|im_end|>\n<|im_start|>user\nReward {reward:.0f}.<|im_end|>\n<|im_start|>assistant")


def test_invalid_reply_pulls_nothing_and_costs_the_penalty():
    env = gym.make(TEXT, horizon=3, invalid_penalty=-0.5)
    env.reset(seed=0)
    tokenizer = env.unwrapped.tokenizer
    for token in [*tokenizer.encode("arm 3"), tokenizer.eos_token_id]:
        _, reward, terminated, _, info = env.step(token)
    assert (reward, terminated, info["valid_action"]) == (-0.5, False, False)
    assert "regret" not in info
    assert env.unwrapped.classic_env.counts.sum() == 0


def test_constrained_mask_allows_only_arm_names_then_the_end_of_turn():
    env = gym.make(TEXT, num_arms=12, horizon=3, constrained=True)
    obs, _ = env.reset(seed=0)
    tokenizer = env.unwrapped.tokenizer
    allowed = {tokenizer.decode([t]) for t in np.flatnonzero(obs["action_mask"])}
    assert allowed == set("0123456789")
    obs, *_ = env.step(tokenizer.encode("1")[0])  # "1" is an arm, and starts 10 and 11
    allowed = set(np.flatnonzero(obs["action_mask"]).tolist())
    assert allowed == {*tokenizer.encode("0"), *tokenizer.encode("1"), tokenizer.eos_token_id}


def test_an_index_pins_the_instance_and_the_seed_only_the_payoffs():
    from llm_gym.envs.bandit_text import INSTANCE_SEED

    rows = [gym.make(TEXT, horizon=40) for _ in range(3)]
    for seed, env in enumerate(rows):
        _, info = env.reset(seed=seed, options={"index": 7})
        assert info["task_index"] == 7
    means = [env.unwrapped.classic_env.arm_means for env in rows]
    classic = gym.make(CLASSIC, horizon=40)
    classic.reset(seed=INSTANCE_SEED + 7)  # item 7 is Bandit-v0's instance of this seed
    for m in means:
        np.testing.assert_array_equal(m, classic.unwrapped.arm_means)
    payoffs = [[_pull(env, arm)[1] for arm in range(10) for _ in range(4)] for env in rows]
    assert payoffs[0] != payoffs[1]  # each row has its own luck on the same bandit
    other = gym.make(TEXT, horizon=40)
    other.reset(seed=0, options={"index": 8})
    assert not np.array_equal(other.unwrapped.classic_env.arm_means, means[0])
    again = gym.make(TEXT, horizon=40)
    again.reset(seed=0, options={"index": 7})  # same seed and index: the same episode
    assert [_pull(again, arm)[1] for arm in range(10) for _ in range(4)] == payoffs[0]
    unpinned = gym.make(TEXT, horizon=40)
    unpinned.reset(seed=3)  # no index: still the seed's instance, as Bandit-v0
    classic.reset(seed=3)
    np.testing.assert_array_equal(unpinned.unwrapped.classic_env.arm_means,
                                  classic.unwrapped.arm_means)


def test_a_grpo_group_plays_one_instance_and_groups_differ():
    from llm_gym.agents.grpo import GRPOAgent, GRPOConfig

    agent = GRPOAgent(TEXT, "tiny", GRPOConfig(group_size=3, prompts_per_batch=2),
                      env_kwargs={"horizon": 2, "num_arms": 3, "constrained": True}, seed=0)
    batch, _, _ = agent.collect_batch()
    assert batch.task_index.tolist() == [0, 0, 0, 1, 1, 1]
    means = [env.unwrapped.classic_env.arm_means for env in agent.envs.unwrapped.envs]
    for group in (means[:3], means[3:]):
        for row in group[1:]:
            np.testing.assert_array_equal(row, group[0])
    assert not np.array_equal(means[0], means[3])
    agent.close()
