"""One task, two faces: the classic env and its token twin give the same rewards and flags."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import llm_gym  # noqa: F401  (registers the ids)


def _text_step(env: gym.Env, word: str) -> tuple[float, bool, bool, dict]:
    """Write ``word`` then end the turn; return the turn's reward, flags and info."""
    tokenizer = env.unwrapped.tokenizer
    tokens = [*tokenizer.encode(word), tokenizer.eos_token_id]
    for i, token in enumerate(tokens):
        _, reward, terminated, truncated, info = env.step(token)
        if i < len(tokens) - 1:
            assert (reward, terminated, truncated) == (0.0, False, False), "reward mid-turn"
    return reward, terminated, truncated, info


def _compare_episodes(classic: gym.Env, text: gym.Env, actions: np.ndarray, seed: int,
                      episodes: int) -> list[float]:
    """Play ``actions`` in both faces over several episodes; return the classic returns."""
    words = text.unwrapped.action_words
    returns: list[float] = []
    actions_left = iter(actions.tolist())
    for episode in range(episodes):
        episode_seed = seed if episode == 0 else None  # later resets continue the same RNGs
        classic.reset(seed=episode_seed)
        text.reset(seed=episode_seed)
        total, text_total, done = 0.0, 0.0, False
        while not done:
            action = next(actions_left)
            _, reward, terminated, truncated, info = classic.step(action)
            text_reward, *text_flags, text_info = _text_step(text, words[action])
            where = f"seed {seed}, episode {episode}, action {action}"
            assert (text_reward, *text_flags) == (reward, terminated, truncated), where
            assert text_info["classic_action"] == action
            assert {k: text_info[k] for k in info} == info, where
            total, text_total = total + reward, text_total + text_reward
            done = terminated or truncated
        assert text_total == total
        returns.append(total)
    return returns


@pytest.mark.parametrize("seed", range(40))
def test_left_right_twins_agree(seed):
    rng = np.random.default_rng(seed)
    # Lean left on some seeds so episodes run into the 20-step time limit.
    lean = [0.6, 0.3, 0.1] if seed % 2 else [1 / 3] * 3
    actions = rng.choice(3, size=400, p=lean)
    classic = gym.make("llm_gym/LeftRight-v0")
    text = gym.make("llm_gym/LeftRightText-v0")
    returns = _compare_episodes(classic, text, actions, seed, episodes=4)
    assert len(returns) == 4


def test_left_right_twins_agree_at_the_time_limit():
    classic = gym.make("llm_gym/LeftRight-v0")
    text = gym.make("llm_gym/LeftRightText-v0")
    actions = np.zeros(40, dtype=np.int64)  # always left: never reaches the goal
    assert _compare_episodes(classic, text, actions, seed=0, episodes=2) == [-20.0, -20.0]


@pytest.mark.parametrize("is_slippery", [False, True])
@pytest.mark.parametrize("seed", range(15))
def test_frozen_lake_twins_agree(seed, is_slippery):
    rng = np.random.default_rng(seed)
    actions = rng.choice(4, size=2000, p=[0.15, 0.35, 0.35, 0.15])  # towards the goal
    classic = gym.make("FrozenLake-v1", is_slippery=is_slippery)
    text = gym.make("llm_gym/FrozenLakeText-v0", is_slippery=is_slippery)
    _compare_episodes(classic, text, actions, seed, episodes=3)


def test_frozen_lake_slippery_twins_reach_the_goal_sometimes():
    # The comparison above means little if no episode ever pays: check it does somewhere.
    rewards = []
    for seed in range(15):
        rng = np.random.default_rng(seed)
        actions = rng.choice(4, size=2000, p=[0.15, 0.35, 0.35, 0.15])
        classic = gym.make("FrozenLake-v1", is_slippery=True)
        text = gym.make("llm_gym/FrozenLakeText-v0", is_slippery=True)
        rewards += _compare_episodes(classic, text, actions, seed, episodes=3)
    assert 0 < sum(rewards) < len(rewards)
