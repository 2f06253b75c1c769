"""Baselines that do not plan: a one-step greedy learner and a uniform random agent.

The greedy agent is the control of the left/right walk: it learns the immediate reward of each
action exactly, yet from the start it prefers -1 (left/stay) to -5 (stepping on the trap), so it
never reaches the +10 goal behind the trap. Any agent that reaches +5 must look past one step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.agents.tabular import EpisodicAgent, QLearningAgent


class GreedyAgent(QLearningAgent):
    """Q-learning with γ = 0: an estimate of each action's immediate reward, acted on greedily.

    Args:
        env: a Gymnasium env with ``Discrete`` observation and action spaces.
        learning_rate: α of the running estimate.
        exploration_initial_eps / exploration_final_eps / exploration_fraction: ε-greedy
            exploration while learning, as :class:`QLearningAgent`.
        seed: seeds exploration, tie-breaking and the env resets.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> agent = GreedyAgent(gym.make("llm_gym/LeftRight-v0")).learn(2000)
        >>> int(agent.predict(2, deterministic=True)[0]) != 2  # never steps onto the trap
        True
    """

    name = "greedy"

    def __init__(
        self, env: gym.Env, learning_rate: float = 0.5, exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.05, exploration_fraction: float = 0.5, seed: int = 0,
        gamma: float = 0.0,
    ) -> None:
        if gamma != 0.0:
            raise ValueError(f"GreedyAgent looks one step ahead only (gamma=0), got gamma={gamma};"
                             " use QLearningAgent for a discounted learner")
        super().__init__(env, learning_rate, 0.0, exploration_initial_eps, exploration_final_eps,
                         exploration_fraction, seed)


class RandomAgent(EpisodicAgent):
    """Uniform random actions (among the allowed tokens when the env has ``action_masks``).

    ``learn`` only plays, so that the random baseline has a curve on the same axes.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> agent = RandomAgent(gym.make("llm_gym/LeftRight-v0")).learn(100)
        >>> len(agent.episode_log) > 0
        True
    """

    name = "random"

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        super().__init__(env, seed)
        self.env.action_space.seed(seed)
        self._masks = _mask_fn(env)

    def train_action(self, obs: Any, progress: float) -> Any:
        return self._sample(self._masks() if self._masks is not None else None)

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None,
        deterministic: bool = False, action_masks: np.ndarray | None = None,
    ) -> tuple[Any, Any]:
        """A random action, among ``action_masks`` when given (``observation`` is not used)."""
        return self._sample(action_masks), state

    def save(self, path: str) -> None:
        """Nothing to save: a random agent has no parameters."""

    @classmethod
    def load(cls, path: str, env: gym.Env | None = None, **kwargs: Any) -> RandomAgent:
        """A fresh random agent (there is nothing to load)."""
        if env is None:
            raise ValueError("RandomAgent.load needs env= to know the action space")
        return cls(env, **kwargs)

    def _sample(self, mask: np.ndarray | None) -> Any:
        if mask is None:
            return self.env.action_space.sample()
        return np.int64(self.rng.choice(np.flatnonzero(mask)))


def _mask_fn(env: gym.Env) -> Any:
    try:
        return env.get_wrapper_attr("action_masks")
    except AttributeError:
        return None
