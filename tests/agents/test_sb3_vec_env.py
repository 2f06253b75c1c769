"""The SB3 VecEnv adapter of Gymnasium vector envs: SB3's contract, autoreset, action masks.

SB3's ``check_env`` takes single envs only, so the VecEnv contract is checked here directly.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from llm_gym.agents.sb3_vec_env import SB3VecEnv, make_sb3_vec_env

TEXT = "llm_gym/LeftRightText-v0"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def token_vec(n: int, **kwargs) -> SB3VecEnv:
    return SB3VecEnv(gym.make_vec(TEXT, n, vectorization_mode="vector_entry_point",
                                  autoreset_mode="Disabled", **kwargs))


def sync_vec(n: int, **kwargs) -> SB3VecEnv:
    return SB3VecEnv(gym.make_vec(TEXT, n, vectorization_mode="sync",
                                  vector_kwargs={"autoreset_mode": "SameStep"}, **kwargs))


def assert_batch(obs, venv):
    assert set(obs) == set(venv.observation_space.spaces)
    for key, space in venv.observation_space.spaces.items():
        assert obs[key].shape == (venv.num_envs, *space.shape), key
        assert obs[key].dtype == space.dtype, key
        assert all(space.contains(row) for row in obs[key]), key


def test_reset_and_step_follow_the_vecenv_contract():
    venv = token_vec(3, constrained=True)
    assert venv.observation_space == venv.envs.single_observation_space
    assert venv.action_space.n == 260
    venv.seed(0)
    obs = venv.reset()
    assert_batch(obs, venv)
    assert len(venv.reset_infos) == 3 and all("prompt_tokens" in i for i in venv.reset_infos)
    venv.step_async(venv.action_masks().argmax(axis=1))
    obs, rewards, dones, infos = venv.step_wait()
    assert_batch(obs, venv)
    assert rewards.shape == (3,) and rewards.dtype == np.float32
    assert dones.shape == (3,) and dones.dtype == bool
    assert isinstance(infos, list) and len(infos) == 3
    assert all(isinstance(i, dict) and i["TimeLimit.truncated"] is False for i in infos)
    with pytest.raises(RuntimeError, match="step_async"):
        venv.step_wait()


def test_seeded_resets_repeat():
    first, second = token_vec(2), token_vec(2)
    first.seed(5)
    second.seed(5)
    a, b = first.reset(), second.reset()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def _walk(venv: SB3VecEnv, steps: int, seed: int = 0):
    """Random allowed tokens, the same for any venv of the same size and seed."""
    rng = np.random.default_rng(seed)
    venv.seed(seed)
    venv.reset()
    out = []
    for _ in range(steps):
        masks = venv.action_masks()
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        out.append(venv.step(actions))
    return out


def test_batched_and_sync_vector_envs_agree_through_autoresets():
    # Disabled autoreset (TokenVectorEnv, reset here) and SameStep (SyncVectorEnv, reset by
    # Gymnasium) must give SB3 the same transitions, terminal observations included.
    batched, sync = token_vec(2, constrained=True), sync_vec(2, constrained=True)
    a, b = _walk(batched, 300), _walk(sync, 300)
    ended = 0
    for (obs_a, rew_a, done_a, info_a), (obs_b, rew_b, done_b, info_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(done_a, done_b)
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        for i in np.flatnonzero(done_a):
            ended += 1
            final_a, final_b = info_a[i]["terminal_observation"], info_b[i]["terminal_observation"]
            for key in final_a:
                np.testing.assert_array_equal(final_a[key], final_b[key])
            # The returned observation is the next episode's prompt, the terminal one is not.
            assert obs_a["agent_mask"][i].sum() == 0 < final_a["agent_mask"].sum()
            assert info_a[i]["TimeLimit.truncated"] == info_b[i]["TimeLimit.truncated"]
    assert ended >= 2, "no episode ended: the autoreset path was not exercised"


def test_a_turn_past_max_new_tokens_is_a_time_limit_end():
    venv = token_vec(2, max_new_tokens=2)
    venv.reset()
    letter = venv.envs.unwrapped.tokenizer.encode("a")[0]  # never ends the turn
    for _ in range(2):
        obs, _, dones, infos = venv.step(np.full(2, letter))
    assert dones.all()
    assert all(i["TimeLimit.truncated"] for i in infos)
    assert (obs["agent_mask"].sum(axis=1) == 0).all()  # both rows were reset


def test_action_masks_reach_maskable_ppo_and_it_learns():
    from sb3_contrib import MaskablePPO

    class CountInvalid(BaseCallback):
        invalid = 0
        turns = 0

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "valid_action" in info:
                    self.turns += 1
                    self.invalid += not info["valid_action"]
            return True

    venv = VecMonitor(make_sb3_vec_env(TEXT, 4, env_kwargs={"constrained": True}))
    venv.reset()
    masks = venv.env_method("action_masks")
    assert len(masks) == 4 and masks[0].dtype == bool and masks[0].sum() < masks[0].size
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=64, batch_size=64, seed=0)
    counter = CountInvalid()
    model.learn(512, callback=counter)
    assert model.num_timesteps >= 512
    assert counter.turns > 0 and counter.invalid == 0  # every sampled reply was a valid word
    assert len(model.ep_info_buffer) > 0  # VecMonitor saw whole episodes through the adapter


def test_unmasked_envs_say_so_and_bad_envs_are_refused():
    from sb3_contrib.common.maskable.utils import is_masking_supported

    assert is_masking_supported(token_vec(2))
    cartpole = make_sb3_vec_env("CartPole-v1", 2)
    assert not is_masking_supported(cartpole)
    assert cartpole.reset().shape == (2, 4)
    with pytest.raises(ValueError, match="autoreset_mode"):
        SB3VecEnv(gym.make_vec(TEXT, 2, vectorization_mode="vector_entry_point"))
    with pytest.raises(TypeError, match="DummyVecEnv"):
        SB3VecEnv(gym.make(TEXT))


def test_live_buffers_are_copied_so_sb3_keeps_the_previous_observation():
    # TokenVectorEnv(copy=False) hands out its buffers; SB3 stores the observation of step t
    # and reads it after step t+1, so the adapter must not pass the live arrays on.
    venv = token_vec(2, copy=False, constrained=True)
    before = venv.reset()
    kept = {key: value.copy() for key, value in before.items()}
    after, *_ = venv.step(venv.action_masks().argmax(axis=1))
    for key in kept:
        np.testing.assert_array_equal(before[key], kept[key])
    assert (after["attention_mask"].sum(axis=1) == kept["attention_mask"].sum(axis=1) + 1).all()


def test_a_wrapper_stack_shapes_the_reward_sb3_sees():
    stack = [{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]
    plain = make_sb3_vec_env(TEXT, 2, env_kwargs={"constrained": True}, seed=0)
    shaped = make_sb3_vec_env(TEXT, 2, env_kwargs={"constrained": True}, wrappers=stack, seed=0)
    plain.reset()
    shaped.reset()
    actions = plain.action_masks().argmax(axis=1)
    _, plain_reward, *_ = plain.step(actions)
    _, shaped_reward, *_ = shaped.step(actions)
    assert (shaped_reward < plain_reward).all()  # one token each: a length penalty per row
