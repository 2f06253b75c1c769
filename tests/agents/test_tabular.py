"""Q-learning solves the left/right walk; the one-step greedy agent and random play do not."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

from llm_gym.agents.base import AgentEnvMismatch
from llm_gym.agents.evaluation import evaluate_agent, success_threshold
from llm_gym.agents.greedy import GreedyAgent, RandomAgent
from llm_gym.agents.tabular import QLearningAgent

WALK = "llm_gym/LeftRight-v0"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_q_learning_reaches_the_optimal_return_in_seconds(seed):
    start = time.perf_counter()
    agent = QLearningAgent(gym.make(WALK), seed=seed).learn(2_000)
    assert time.perf_counter() - start < 5
    result = evaluate_agent(agent, gym.make(WALK), num_episodes=3)
    assert result.mean_return == 5.0
    assert result.success_rate == 1.0
    assert result.mean_length == 2.0
    # Right from the start and right from the trap cell: the table learned to look past -5.
    assert np.argmax(agent.q_table[2]) == 2 and np.argmax(agent.q_table[3]) == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_one_step_agent_never_reaches_plus_five(seed):
    agent = GreedyAgent(gym.make(WALK), seed=seed).learn(4_000)
    result = evaluate_agent(agent, gym.make(WALK), num_episodes=3)
    assert result.mean_return < 5.0
    assert result.success_rate == 0.0
    # It learned the immediate rewards exactly, which is why it avoids the trap.
    assert agent.q_table[2, 2] == pytest.approx(-5.0, abs=0.01)
    assert agent.q_table[2, 0] == pytest.approx(-1.0, abs=0.01)


def test_greedy_refuses_a_discount():
    with pytest.raises(ValueError, match="gamma=0"):
        GreedyAgent(gym.make(WALK), gamma=0.9)


def test_episode_log_is_a_learning_curve():
    agent = QLearningAgent(gym.make(WALK), seed=0).learn(2_000)
    log = agent.episode_log
    assert log and log[-1].env_steps <= 2_000
    assert [r.env_steps for r in log] == sorted(r.env_steps for r in log)
    assert sum(r.length for r in log) == log[-1].env_steps
    early = np.mean([r.episode_return for r in log[:20]])
    late = np.mean([r.episode_return for r in log[-20:]])
    assert late > early


def test_callback_false_stops_learning():
    agent = QLearningAgent(gym.make(WALK), seed=0)
    agent.learn(5_000, callback=lambda metrics: len(agent.episode_log) < 3)
    assert len(agent.episode_log) == 3
    assert agent.num_timesteps == agent.episode_log[-1].env_steps


def test_save_load_round_trip_and_resume(tmp_path):
    agent = QLearningAgent(gym.make(WALK), seed=3, learning_rate=0.3).learn(1_000)
    agent.save(tmp_path / "q")
    loaded = QLearningAgent.load(tmp_path / "q", env=gym.make(WALK))
    np.testing.assert_array_equal(loaded.q_table, agent.q_table)
    assert loaded.learning_rate == 0.3 and loaded.num_timesteps == 1_000
    assert len(loaded.episode_log) == len(agent.episode_log)
    # Resuming from the saved state continues exactly like the original would have.
    agent.learn(500)
    loaded.learn(500)
    np.testing.assert_array_equal(loaded.q_table, agent.q_table)
    assert loaded.num_timesteps == 1_500


def test_load_rejects_a_missing_file_and_a_wrong_env(tmp_path):
    with pytest.raises(FileNotFoundError):
        QLearningAgent.load(tmp_path / "nope")
    QLearningAgent(gym.make(WALK)).save(tmp_path / "q.npz")
    with pytest.raises(ValueError, match="shape"):
        QLearningAgent.load(tmp_path / "q.npz", env=gym.make("FrozenLake-v1"))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "llm_gym/LeftRightText-v0"])
def test_tabular_agents_refuse_non_discrete_envs(env_id):
    with pytest.raises(AgentEnvMismatch, match="Discrete observation"):
        QLearningAgent(gym.make(env_id))


@pytest.mark.parametrize("kwargs", [{"learning_rate": 0.0}, {"gamma": 1.5},
                                    {"exploration_fraction": 0.0}])
def test_bad_hyperparameters_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        QLearningAgent(gym.make(WALK), **kwargs)


def test_random_agent_respects_the_action_mask():
    env = gym.make("llm_gym/LeftRightText-v0", constrained=True)
    agent = RandomAgent(env, seed=0).learn(300)
    assert agent.episode_log and agent.episode_log[-1].tokens > agent.episode_log[-1].env_steps
    # Masked random replies are always one of the three words: every turn is a valid action.
    play = gym.make("llm_gym/LeftRightText-v0", constrained=True)
    obs, _ = play.reset(seed=1)
    turns, done = [], False
    while not done:
        action, _ = agent.predict(obs, action_masks=play.unwrapped.action_masks())
        obs, _, terminated, truncated, info = play.step(action)
        done = terminated or truncated
        if "valid_action" in info:
            turns.append(info["valid_action"])
    assert turns and all(turns)


def test_success_thresholds():
    assert success_threshold(gym.make(WALK)) == 5.0
    assert success_threshold("CartPole-v1") == 475.0
    assert success_threshold("FrozenLake-v1") == 0.7
