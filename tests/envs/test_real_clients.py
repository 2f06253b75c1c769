"""Every registered id works with real clients, unmodified (issue 14, point 3).

SB3's ``make_vec_env`` always passes ``render_mode="rgb_array"``; TorchRL-style clients build
an info spec from ``reset`` and read the same keys, with the same types, from every ``step``.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

from llm_gym.token_env import TokenEnv

# Gymnasium's make warns about a mode outside metadata["render_modes"]; that is the client's
# documented behaviour, not a defect here.
pytestmark = pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")


def test_sb3_make_vec_env_builds_resets_and_steps(registered_env_id, env_kwargs):
    venv = make_vec_env(registered_env_id, n_envs=2, seed=0,
                        env_kwargs=env_kwargs(registered_env_id))
    try:
        assert venv.render_mode == "rgb_array"  # what SB3 passed, stored as Gymnasium does
        venv.reset()
        actions = np.array([venv.action_space.sample() for _ in range(2)])
        _, rewards, _, infos = venv.step(actions)
        assert rewards.shape == (2,) and len(infos) == 2
    finally:
        venv.close()


def test_unsupported_render_mode_renders_nothing_with_one_warning(registered_env_id, make_env):
    env = make_env(registered_env_id, render_mode="rgb_array").unwrapped
    assert env.render_mode == "rgb_array"
    assert env.metadata["render_modes"] == ["ansi"]
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="cannot render in mode 'rgb_array'"):
        assert env.render() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert env.render() is None  # warned once per env, not on every frame


def _actions(env: TokenEnv) -> list[int]:
    # One ordinary token, then the end-of-turn token: both a mid-turn step and a turn end.
    stop = min(env.tokenizer.stop_token_ids)
    other = next(t for t in range(env.vocab_size) if t not in env.tokenizer.stop_token_ids)
    return [other, stop]


def test_step_info_repeats_the_reset_info_keys_and_types(registered_token_env_id, make_env,
                                                         trace_length):
    env = make_env(registered_token_env_id)
    token_env = env.unwrapped
    for seed in range(2):
        _, reset_info = env.reset(seed=seed)
        assert isinstance(reset_info["task_index"], int)
        assert reset_info["task_index"] >= -1
        done, steps = False, 0
        while not done and steps < trace_length(registered_token_env_id, 40):
            action = _actions(token_env)[steps % 2]
            _, _, terminated, truncated, info = env.step(action)
            done, steps = terminated or truncated, steps + 1
            for key, value in reset_info.items():
                assert key in info, (registered_token_env_id, key, info)
                assert type(info[key]) is type(value), (key, info[key], value)
            assert info["task_index"] == reset_info["task_index"]
        assert steps > 1


def test_classic_text_envs_report_minus_one_not_none():
    env = gym.make("llm_gym/LeftRightText-v0")
    _, info = env.reset(seed=0)
    assert info["task_index"] == -1
