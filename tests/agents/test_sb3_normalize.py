"""SB3's VecNormalize on token envs: token ids stay integers (issue 21)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from llm_gym.agents.sb3_vec_env import TokenVecNormalize, make_sb3_vec_env

TEXT = "llm_gym/LeftRightText-v0"

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


class _IdsAndScore(gym.Env):
    """A Dict observation with an integer key and a float key."""

    observation_space = gym.spaces.Dict({
        "input_ids": gym.spaces.Box(0, 255, (4,), np.int64),
        "score": gym.spaces.Box(-100.0, 100.0, (2,), np.float32)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        return self._obs(), 1.0, False, False, {}

    def _obs(self):
        return {"input_ids": self.np_random.integers(0, 256, 4),
                "score": self.np_random.normal(50.0, 10.0, 2).astype(np.float32)}


def test_plain_vecnormalize_would_turn_token_ids_into_floats():
    # The failure TokenVecNormalize exists for; if SB3 ever skips integer keys, this fails.
    obs = VecNormalize(make_sb3_vec_env(TEXT, 2, seed=0)).reset()
    assert obs["input_ids"].dtype == np.float32


def test_token_vecnormalize_leaves_token_ids_and_masks_as_the_env_gave_them():
    raw = make_sb3_vec_env(TEXT, 2, seed=0)
    venv = TokenVecNormalize(make_sb3_vec_env(TEXT, 2, seed=0), gamma=0.9)
    obs, expected = venv.reset(), raw.reset()
    for _ in range(5):
        for key in expected:
            assert obs[key].dtype == expected[key].dtype, key
            np.testing.assert_array_equal(obs[key], expected[key])
        actions = venv.action_masks().argmax(axis=1)
        obs, rewards, _, _ = venv.step(actions)
        expected, raw_rewards, _, _ = raw.step(actions)
    assert venv.norm_reward and not venv.norm_obs
    assert venv.get_original_reward().tolist() == raw_rewards.tolist()


def test_token_vecnormalize_refuses_integer_keys_in_one_line():
    with pytest.raises(ValueError, match=r"will not normalise \['input_ids'\]") as err:
        TokenVecNormalize(make_sb3_vec_env(TEXT, 2), norm_obs_keys=["input_ids"])
    assert "\n" not in str(err.value)


def test_token_vecnormalize_normalises_only_the_float_keys_and_round_trips(tmp_path):
    venv = TokenVecNormalize(DummyVecEnv([_IdsAndScore]))
    venv.seed(0)
    for _ in range(20):
        obs, *_ = venv.step(np.zeros(1, dtype=np.int64))
    assert venv.norm_obs_keys == ["score"] and venv.norm_obs
    assert obs["input_ids"].dtype == np.int64 and obs["input_ids"].max() > 1
    assert obs["score"].dtype == np.float32 and abs(float(obs["score"].mean())) < 5  # ~N(0, 1)
    venv.save(tmp_path / "norm.pkl")
    loaded = TokenVecNormalize.load(tmp_path / "norm.pkl", DummyVecEnv([_IdsAndScore]))
    assert type(loaded) is TokenVecNormalize and loaded.norm_obs_keys == ["score"]


def test_sb3_ppo_learns_through_token_vecnormalize():
    venv = TokenVecNormalize(make_sb3_vec_env(TEXT, 2, seed=0))
    model = PPO("MultiInputPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0)
    model.learn(32)
    assert model.num_timesteps >= 32
