"""Tabular Q-learning (Watkins & Dayan 1992) for classic envs with discrete states and actions.

One readable file: a config of hyperparameters, an ε-greedy behaviour policy whose ε decays
linearly over a fraction of the budget (as SB3's DQN), and the one-step Q-learning update
``Q[s, a] += α (r + γ max_a' Q[s', a'] (1 - terminated) - Q[s, a])``. A truncated episode
(time limit) still bootstraps from ``s'``: the state is not terminal, the clock ran out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import trange

from llm_gym.agents.base import AgentEnvMismatch, EnvReturn, EpisodeRecord, episode_success


def check_discrete(env: gym.Env, agent_name: str) -> None:
    """Raise :class:`AgentEnvMismatch` unless ``env`` has Discrete observations and actions."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Discrete) or not isinstance(
        act_space, gym.spaces.Discrete
    ):
        env_id = env.spec.id if env.spec else type(env.unwrapped).__name__
        raise AgentEnvMismatch(
            f"{agent_name} needs Discrete observation and action spaces; {env_id} has "
            f"observation space {_short(obs_space)} and action space {_short(act_space)}. Use "
            "it on llm_gym/LeftRight-v0 or FrozenLake-v1, or pick an SB3 agent (sb3-ppo)"
        )


def _short(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Dict):  # a token env's repr runs to hundreds of characters
        return f"Dict({', '.join(space.spaces)})"
    return str(space) if isinstance(space, gym.spaces.Discrete) else f"Box{space.shape}"


class EpisodicAgent:
    """Shared loop of the table agents: step the env, update, log every finished episode.

    Subclasses implement :meth:`train_action` (behaviour policy) and :meth:`update`.
    """

    name = "agent"

    @classmethod
    def check_env(cls, env: gym.Env) -> None:
        """Raise :class:`AgentEnvMismatch` when the agent cannot act in ``env`` (here: never)."""

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        self.env = env
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.num_timesteps = 0
        self.episode_log: list[EpisodeRecord] = []
        self._wall_offset = 0.0  # training seconds before a save/load, so curves continue
        # On a token env, curves count conversation tokens as the LLM agents do.
        self._token_env = isinstance(env.observation_space, gym.spaces.Dict)
        self.num_tokens = 0

    def train_action(self, obs: Any, progress: float) -> int:
        """The action to take while learning (``progress`` = fraction of the budget used)."""
        raise NotImplementedError

    def update(self, obs: Any, action: int, reward: float, next_obs: Any, terminated: bool) -> None:
        """Learn from one transition."""

    def learn(
        self, total_timesteps: int, callback: Callable[[dict[str, Any]], bool | None] | None = None,
        progress_bar: bool = False,
    ) -> EpisodicAgent:
        """Train for ``total_timesteps`` env steps; ``callback(metrics)`` returning False stops.

        The callback is called at the end of every episode with ``rollout/ep_rew_mean`` (last
        100 episodes), ``rollout/ep_len_mean`` and ``time/env_steps``.
        """
        if total_timesteps < 1:
            raise ValueError(f"total_timesteps must be at least 1, got {total_timesteps}")
        start = time.perf_counter()
        obs, _ = self.env.reset(seed=self.seed + len(self.episode_log))
        ret, length = 0.0, 0
        self._env_return = EnvReturn()  # the unshaped return beside the shaped one
        for step in trange(total_timesteps, disable=not progress_bar, unit="step"):
            action = self.train_action(obs, step / total_timesteps)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            self.update(obs, action, float(reward), next_obs, terminated)
            self.num_timesteps += 1
            ret, length, obs = ret + float(reward), length + 1, next_obs
            self._env_return.add(info)
            if terminated or truncated:
                self._record(ret, length, info, terminated, start, next_obs)
                if callback is not None and callback(self._metrics()) is False:
                    break
                obs, _ = self.env.reset(seed=self.seed + len(self.episode_log))
                ret, length = 0.0, 0
        self._wall_offset += time.perf_counter() - start
        return self

    def _record(self, ret: float, length: int, info: dict, terminated: bool, start: float,
                last_obs: Any) -> None:
        if self._token_env:
            self.num_tokens += int(np.asarray(last_obs["attention_mask"]).sum())
        self.episode_log.append(EpisodeRecord(
            env_steps=self.num_timesteps, tokens=self.num_tokens, episode_return=ret,
            length=length,
            success=episode_success(info, ret, terminated),
            wall_time=self._wall_offset + time.perf_counter() - start,
            env_return=self._env_return.pop(),
        ))

    def _metrics(self) -> dict[str, Any]:
        recent = self.episode_log[-100:]
        return {
            "rollout/ep_rew_mean": float(np.mean([r.episode_return for r in recent])),
            "rollout/ep_len_mean": float(np.mean([r.length for r in recent])),
            "time/env_steps": self.num_timesteps,
        }


class QLearningAgent(EpisodicAgent):
    """ε-greedy tabular Q-learning with linearly decaying ε, for Discrete-by-Discrete envs.

    Args:
        env: a Gymnasium env with ``Discrete`` observation and action spaces.
        learning_rate: α, the step size of the update.
        gamma: γ, the discount factor.
        exploration_initial_eps: ε at the start of ``learn``.
        exploration_final_eps: ε after ``exploration_fraction`` of the budget.
        exploration_fraction: fraction of ``total_timesteps`` over which ε decays.
        seed: seeds exploration, tie-breaking and the env resets.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> agent = QLearningAgent(gym.make("llm_gym/LeftRight-v0")).learn(2000)
        >>> int(agent.predict(2, deterministic=True)[0])  # from the start: go right
        2
    """

    name = "q-learning"

    @classmethod
    def check_env(cls, env: gym.Env) -> None:
        """Raise :class:`AgentEnvMismatch` unless ``env`` has Discrete spaces."""
        check_discrete(env, cls.name)

    def __init__(
        self, env: gym.Env, learning_rate: float = 0.5, gamma: float = 0.99,
        exploration_initial_eps: float = 1.0, exploration_final_eps: float = 0.05,
        exploration_fraction: float = 0.5, seed: int = 0,
    ) -> None:
        self.check_env(env)
        if not 0.0 < learning_rate <= 1.0:
            raise ValueError(f"learning_rate must be in (0, 1], got {learning_rate}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if not 0.0 < exploration_fraction <= 1.0:
            raise ValueError(f"exploration_fraction must be in (0, 1], got {exploration_fraction}")
        super().__init__(env, seed)
        self.learning_rate = float(learning_rate)
        self.gamma = float(gamma)
        self.exploration_initial_eps = float(exploration_initial_eps)
        self.exploration_final_eps = float(exploration_final_eps)
        self.exploration_fraction = float(exploration_fraction)
        self.q_table = np.zeros((env.observation_space.n, env.action_space.n), dtype=np.float64)

    def epsilon(self, progress: float) -> float:
        """ε after ``progress`` (0..1) of the budget: linear decay, then flat."""
        frac = min(1.0, progress / self.exploration_fraction)
        return self.exploration_initial_eps + frac * (
            self.exploration_final_eps - self.exploration_initial_eps)

    def train_action(self, obs: Any, progress: float) -> int:
        if self.rng.random() < self.epsilon(progress):
            return int(self.rng.integers(self.q_table.shape[1]))
        return self._greedy(int(obs))

    def update(self, obs: Any, action: int, reward: float, next_obs: Any, terminated: bool) -> None:
        bootstrap = 0.0 if terminated else self.gamma * float(self.q_table[int(next_obs)].max())
        td_error = reward + bootstrap - self.q_table[int(obs), action]
        self.q_table[int(obs), action] += self.learning_rate * td_error

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Greedy action(s) for one state or an array of states (ε only while learning)."""
        obs = np.asarray(observation, dtype=np.int64)
        if obs.ndim == 0:
            return np.int64(self._greedy(int(obs))), state
        return np.array([self._greedy(int(o)) for o in obs], dtype=np.int64), state

    def _greedy(self, state: int) -> int:
        # Break ties at random: an untrained table would otherwise always pick action 0.
        row = self.q_table[state]
        best = np.flatnonzero(row == row.max())
        return int(best[0] if len(best) == 1 else self.rng.choice(best))

    # ------------------------------------------------------------------ persistence
    def hyperparameters(self) -> dict[str, float]:
        """Constructor arguments, as saved."""
        return {"learning_rate": self.learning_rate, "gamma": self.gamma,
                "exploration_initial_eps": self.exploration_initial_eps,
                "exploration_final_eps": self.exploration_final_eps,
                "exploration_fraction": self.exploration_fraction}

    def save(self, path: str | Path) -> None:
        """Write the table, hyperparameters, RNG state and episode log to ``path`` (.npz)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "class": type(self).__name__, "hyperparameters": self.hyperparameters(),
            "seed": self.seed, "num_timesteps": self.num_timesteps,
            "wall_offset": self._wall_offset, "rng": self.rng.bit_generator.state,
            "episode_log": [r.to_dict() for r in self.episode_log],
        }
        tmp = path.with_name(path.name + ".tmp.npz")  # write then rename: never a half file
        np.savez(tmp, q_table=self.q_table, meta=np.array(json.dumps(meta)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | None = None, **kwargs: Any) -> QLearningAgent:
        """Rebuild a saved agent; ``env`` is needed to keep learning (and to predict shapes)."""
        path = Path(path)
        if not path.exists() and path.with_name(path.name + ".npz").exists():
            path = path.with_name(path.name + ".npz")
        if not path.exists():
            raise FileNotFoundError(f"no saved {cls.name} agent at {path}")
        with np.load(path) as data:
            q_table, meta = data["q_table"], json.loads(str(data["meta"]))
        if env is None:
            env = gym.Env()
            env.observation_space = gym.spaces.Discrete(q_table.shape[0])
            env.action_space = gym.spaces.Discrete(q_table.shape[1])
        agent = cls._from_saved(env, meta["hyperparameters"], meta["seed"], **kwargs)
        if agent.q_table.shape != q_table.shape:
            raise ValueError(f"saved table has shape {q_table.shape} but the env needs "
                             f"{agent.q_table.shape}; load it with the env it was trained on")
        agent.q_table[:] = q_table
        agent.num_timesteps = int(meta["num_timesteps"])
        agent._wall_offset = float(meta["wall_offset"])
        agent.rng.bit_generator.state = meta["rng"]
        agent.episode_log = [EpisodeRecord(**r) for r in meta["episode_log"]]
        return agent

    @classmethod
    def _from_saved(cls, env: gym.Env, hyper: dict, seed: int, **kwargs: Any) -> QLearningAgent:
        return cls(env, **{**hyper, **kwargs}, seed=seed)
