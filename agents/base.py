"""The one agent interface every llm_gym agent (and every SB3 model) satisfies.

It is SB3's: ``learn(total_timesteps, callback=None, progress_bar=...) -> self``,
``predict(observation, state=None, episode_start=None, deterministic=False) -> (action, state)``,
``save(path)`` and ``load(path)``. SB3 models satisfy it as they are.

Learning curves are lists of :class:`EpisodeRecord`: llm_gym agents keep theirs in
``agent.episode_log``; for any other agent, wrap the env in :class:`EpisodeRecorder`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Agent(Protocol):
    """What ``llm-gym train`` and ``llm-gym compare`` need from an agent."""

    def learn(self, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> Any:
        """Train for ``total_timesteps`` env steps (tokens, for token envs); return self."""
        ...

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Action(s) for an observation (single or batched), and the recurrent state."""
        ...

    def save(self, path: str | Path) -> None:
        """Write everything needed to predict (and resume training) to ``path``."""
        ...


class AgentEnvMismatch(ValueError):
    """The agent cannot act in the env (e.g. q-learning on a token env)."""


@dataclass
class EpisodeRecord:
    """One finished training episode, the unit of every learning curve.

    Attributes:
        env_steps: env steps taken by the agent so far, this episode included.
        tokens: tokens in the agent's observations so far (0 for classic envs).
        episode_return: the episode's undiscounted return.
        length: the episode's number of steps.
        success: whether the episode solved the task (None when the env does not say).
        wall_time: seconds since training started.
        env_return: the episode's unshaped return (the ``env`` term of the shaping wrappers'
            ``info["reward_components"]``) when the env is shaped; ``None`` otherwise.
    """

    env_steps: int
    tokens: int
    episode_return: float
    length: int
    success: bool | None
    wall_time: float
    env_return: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, for CSV and JSON."""
        return asdict(self)


def env_reward(info: dict[str, Any]) -> float | None:
    """A step's unshaped env reward under shaping wrappers (``None`` when unshaped).

    Example:
        >>> env_reward({"reward_components": {"env": 1.0, "length_penalty": -0.1}})
        1.0
    """
    terms = info.get("reward_components")
    return float(terms["env"]) if isinstance(terms, dict) and "env" in terms else None


class EnvReturn:
    """Sums :func:`env_reward` over an episode; ``None`` unless every step reported one."""

    def __init__(self) -> None:
        self.total: float | None = 0.0

    def add(self, info: dict[str, Any]) -> None:
        """Add one step's unshaped reward (or mark the episode unshaped)."""
        reward = env_reward(info)
        self.total = None if reward is None or self.total is None else self.total + reward

    def pop(self) -> float | None:
        """The episode's unshaped return; starts the next episode."""
        total, self.total = self.total, 0.0
        return total


def episode_success(info: dict[str, Any], episode_return: float, terminated: bool) -> bool | None:
    """Whether an episode succeeded, as the env reports it in its final ``info``.

    Reads ``info["success"]`` or ``info["is_success"]``; ``None`` when the env says neither
    (a return threshold would be a guess, so none is made).
    """
    for key in ("success", "is_success"):
        if key in info:
            return bool(info[key])
    return None


class EpisodeRecorder(gym.Wrapper):
    """Append an :class:`EpisodeRecord` to ``records`` at the end of every episode.

    Use it to get learning curves from agents that do not keep their own (SB3 models).

    Example:
        >>> import gymnasium as gym
        >>> env = EpisodeRecorder(gym.make("CartPole-v1"))
        >>> _ = env.reset(seed=0)
    """

    def __init__(self, env: gym.Env, records: list[EpisodeRecord] | None = None) -> None:
        super().__init__(env)
        self.records: list[EpisodeRecord] = records if records is not None else []
        self.env_steps = 0
        self._start = time.perf_counter()
        self._return = 0.0
        self._length = 0
        self._env_return = EnvReturn()

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._return, self._length = 0.0, 0
        self._env_return.pop()
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.env_steps += 1
        self._return += float(reward)
        self._length += 1
        self._env_return.add(info)
        if terminated or truncated:
            self.records.append(EpisodeRecord(
                env_steps=self.env_steps, tokens=0, episode_return=self._return,
                length=self._length, success=episode_success(info, self._return, terminated),
                wall_time=time.perf_counter() - self._start, env_return=self._env_return.pop(),
            ))
        return obs, reward, terminated, truncated, info
