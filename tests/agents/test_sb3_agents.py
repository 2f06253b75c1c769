"""SB3 agents on classic envs and on token envs (byte tokenizer, MaskablePPO with masks)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, DQN, PPO

from llm_gym.agents.base import AgentEnvMismatch
from llm_gym.agents.evaluation import evaluate_agent
from llm_gym.agents.factory import make_agent
from llm_gym.agents.sb3 import load_sb3_agent, make_sb3_agent

TEXT = "llm_gym/LeftRightText-v0"
SMALL = {PPO: {"n_steps": 64, "batch_size": 32}, A2C: {"n_steps": 8},
         DQN: {"learning_starts": 32, "buffer_size": 1_000, "train_freq": 4}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.mark.parametrize("env_id", ["llm_gym/LeftRight-v0", "FrozenLake-v1", "CartPole-v1",
                                    "LunarLander-v3"])
@pytest.mark.parametrize("algo", [PPO, A2C, DQN], ids=["ppo", "a2c", "dqn"])
def test_learn_save_load_round_trip_on_classic_envs(algo, env_id, tmp_path):
    model = make_sb3_agent(algo, env_id, seed=0, **SMALL[algo])
    model.learn(128)
    assert model.num_timesteps >= 128
    log = model.episode_log
    if env_id != "LunarLander-v3":  # its episodes can outlast 128 steps
        assert log and log[-1].env_steps <= model.num_timesteps
        assert sum(r.length for r in log) == log[-1].env_steps
    model.save(tmp_path / "model")
    loaded = load_sb3_agent(algo, tmp_path / "model.zip", env_id)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        a = model.predict(obs, deterministic=True)[0]
        b = loaded.predict(obs, deterministic=True)[0]
        np.testing.assert_array_equal(a, b)
        obs, _, terminated, truncated, _ = env.step(int(a))
        if terminated or truncated:
            obs, _ = env.reset()
    # The saved curve travels with the model and keeps growing after a resume.
    assert len(loaded.episode_log) == len(log)
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps >= model.num_timesteps + 64


def test_maskable_ppo_on_the_text_walk_only_writes_action_words(tmp_path):
    model = make_sb3_agent(MaskablePPO, TEXT, env_kwargs={"constrained": True}, seed=0,
                           n_steps=128, batch_size=64)
    assert type(model.get_env()).__name__ == "SB3VecEnv"  # the token env's own SB3 adapter
    model.learn(384)
    log = model.episode_log
    assert log, "no training episode finished in 384 tokens"
    assert all(r.tokens >= r.env_steps for r in log)  # tokens count whole conversations
    env = gym.make(TEXT, constrained=True)
    obs, _ = env.reset(seed=0)
    valid, done = [], False
    while not done:  # sampled (not greedy) actions, still inside the mask
        action, _ = model.predict(obs, action_masks=env.unwrapped.action_masks())
        obs, _, terminated, truncated, info = env.step(int(action))
        done = terminated or truncated
        if "valid_action" in info:
            valid.append(info["valid_action"])
    assert valid and all(valid)
    model.save(tmp_path / "mppo")
    loaded = load_sb3_agent(MaskablePPO, tmp_path / "mppo.zip", TEXT,
                            env_kwargs={"constrained": True})
    assert loaded.num_timesteps == model.num_timesteps
    result = evaluate_agent(loaded, gym.make(TEXT, constrained=True), num_episodes=1)
    assert result.success_rate is not None


@pytest.mark.parametrize("algo", [PPO, A2C], ids=["ppo", "a2c"])
def test_ppo_and_a2c_act_on_token_envs_with_multi_input_policy(algo):
    model = make_sb3_agent(algo, TEXT, seed=0, **SMALL[algo])
    assert type(model.policy).__name__ == "MultiInputActorCriticPolicy"
    model.learn(64)
    assert model.action_space.n == 260


def test_dqn_on_a_token_env_and_maskable_ppo_without_masks_are_refused():
    with pytest.raises(AgentEnvMismatch, match="replay buffer"):
        make_sb3_agent(DQN, TEXT)
    with pytest.raises(AgentEnvMismatch, match="action_masks"):
        make_agent("sb3-maskable-ppo", "CartPole-v1")
    with pytest.raises(ValueError, match="unknown agent 'sb3-sac'; choose one of: grpo, "):
        make_agent("sb3-sac", "CartPole-v1")


def test_the_text_face_of_a_token_env_is_refused_with_a_clear_error():
    from llm_gym.wrappers import TextInterface

    with pytest.raises(AgentEnvMismatch, match="token ids.*AnyText.*Leave the text face out"):
        make_agent("sb3-ppo", TextInterface(gym.make(TEXT)))
