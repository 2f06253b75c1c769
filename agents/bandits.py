"""Bandit baselines: ε-greedy (fixed or decaying ε), UCB1 and Thompson sampling.

**Within an episode** (one bandit instance, ``horizon`` pulls) each agent learns from the
observation: ``llm_gym/Bandit-v0`` shows every arm's pull count and mean reward so far, the
sufficient statistics of a stationary bandit. So each policy is a function of the observation
and the agent's own RNG, and ``predict`` plays the full algorithm on any episode, including the
fresh instances of an evaluation, with no hidden memory to reset.

**Across episodes** nothing carries over: every episode is a new instance with new means, and
these algorithms keep no prior to learn (UCB1 and ε-greedy have none; Thompson sampling starts
each episode from the uniform Beta(1, 1), or N(0, 1) for Gaussian arms, which is the prior the
env draws its means from). ``learn`` plays episodes so that ``episode_log`` (and the regret
that ``llm-gym compare`` records) has a curve on the same axes as every other agent.

``deterministic`` is accepted and ignored: exploration is part of each algorithm (a purely
greedy ε-greedy is another algorithm), so evaluation plays them as they are.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.agents.base import AgentEnvMismatch, EpisodeRecord
from llm_gym.agents.tabular import EpisodicAgent


def check_bandit(env: gym.Env, agent_name: str) -> None:
    """Raise :class:`AgentEnvMismatch` unless ``env`` (under any wrappers) is a BanditEnv.

    The shapes alone cannot tell: CartPole's Box(4,) and Discrete(2) look like two arms.
    """
    from llm_gym.envs.bandit import BanditEnv

    if not isinstance(env.unwrapped, BanditEnv):
        env_id = env.spec.id if env.spec else type(env.unwrapped).__name__
        raise AgentEnvMismatch(
            f"{agent_name} needs a bandit's observation (each arm's pull count and mean "
            f"reward), which {env_id} does not give. Use it on llm_gym/Bandit-v0")


class BanditAgent(EpisodicAgent):
    """Shared part of the bandit baselines: split the observation, act, save and load.

    Subclasses implement :meth:`choose`.
    """

    name = "bandit"

    @classmethod
    def check_env(cls, env: gym.Env) -> None:
        """Raise :class:`AgentEnvMismatch` unless ``env`` is a bandit env."""
        check_bandit(env, cls.name)

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        self.check_env(env)
        super().__init__(env, seed)
        self.num_arms = int(env.action_space.n)

    def choose(self, counts: np.ndarray, means: np.ndarray) -> int:
        """The arm to pull given each arm's pull count and mean reward so far."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments (besides env and seed), as saved."""
        return {}

    def train_action(self, obs: Any, progress: float) -> int:
        return self._act(obs)

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """The algorithm's arm for one observation or a batch (``deterministic`` is ignored)."""
        obs = np.asarray(observation, dtype=np.float64)
        if obs.ndim == 1:
            return np.int64(self._act(obs)), state
        return np.array([self._act(row) for row in obs], dtype=np.int64), state

    def _act(self, obs: Any) -> int:
        counts, means = np.asarray(obs, dtype=np.float64).reshape(2, self.num_arms)
        return self.choose(counts, means)

    def _argmax(self, values: np.ndarray) -> int:
        # Ties at random: with equal estimates (at the start) index order would bias to arm 0.
        best = np.flatnonzero(values == values.max())
        return int(best[0] if len(best) == 1 else self.rng.choice(best))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write hyperparameters, RNG state, counters and episode log to ``path`` (JSON)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"class": type(self).__name__, "hyperparameters": self.hyperparameters(),
                "seed": self.seed, "num_timesteps": self.num_timesteps,
                "wall_offset": self._wall_offset, "rng": self.rng.bit_generator.state,
                "episode_log": [r.to_dict() for r in self.episode_log]}
        tmp = path.with_name(path.name + ".tmp")  # write then rename: never a half file
        tmp.write_text(json.dumps(meta))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | None = None, **kwargs: Any) -> BanditAgent:
        """Rebuild a saved agent on ``env`` (needed: it fixes the number of arms)."""
        path = Path(path)
        if env is None:
            raise ValueError(f"{cls.__name__}.load needs env= (a bandit env) to know the arms")
        if not path.is_file():
            raise FileNotFoundError(f"no saved {cls.name} agent at {path}")
        meta = json.loads(path.read_text())
        if meta.get("class") != cls.__name__:
            raise ValueError(f"{path} holds a {meta.get('class')}, not a {cls.__name__}; load "
                             "it with its own class")
        agent = cls(env, **{**meta["hyperparameters"], **kwargs}, seed=meta["seed"])
        agent.num_timesteps = int(meta["num_timesteps"])
        agent._wall_offset = float(meta["wall_offset"])
        agent.rng.bit_generator.state = meta["rng"]
        agent.episode_log = [EpisodeRecord(**r) for r in meta["episode_log"]]
        return agent


class EpsilonGreedyAgent(BanditAgent):
    """ε-greedy: a random arm with probability ε, else the best mean so far.

    With ``decay_c`` set, ε decays within each episode as ``min(1, decay_c * k / t)`` at pull
    ``t`` of a k-armed bandit: the ε_n-greedy of Auer, Cesa-Bianchi & Fischer (2002), whose
    ``c / d²`` is folded into ``decay_c``; its regret grows logarithmically, a fixed ε's
    linearly.

    Args:
        env: ``llm_gym/Bandit-v0``, possibly wrapped.
        epsilon: the fixed exploration rate (unused when ``decay_c`` is set).
        decay_c: the decay constant, or ``None`` for a fixed ε.
        seed: seeds exploration, tie-breaking and the env resets.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/Bandit-v0", horizon=100)
        >>> agent = EpsilonGreedyAgent(env, epsilon=0.1).learn(100)
        >>> agent.episode_log[0].length
        100
    """

    name = "epsilon-greedy"

    def __init__(self, env: gym.Env, epsilon: float = 0.1, decay_c: float | None = None,
                 seed: int = 0) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if decay_c is not None and not decay_c > 0.0:
            raise ValueError(f"decay_c must be > 0 (or None for a fixed epsilon), got {decay_c}")
        super().__init__(env, seed)
        self.epsilon = float(epsilon)
        self.decay_c = None if decay_c is None else float(decay_c)

    def hyperparameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "decay_c": self.decay_c}

    def current_epsilon(self, pulls: int) -> float:
        """ε for the next pull, after ``pulls`` pulls of this episode."""
        if self.decay_c is None:
            return self.epsilon
        return min(1.0, self.decay_c * self.num_arms / (pulls + 1))

    def choose(self, counts: np.ndarray, means: np.ndarray) -> int:
        if self.rng.random() < self.current_epsilon(int(counts.sum())):
            return int(self.rng.integers(self.num_arms))
        return self._argmax(means)


class UCB1Agent(BanditAgent):
    """UCB1 (Auer, Cesa-Bianchi & Fischer 2002): the arm with the highest upper confidence bound.

    Each arm is pulled once, then the arm maximizing ``mean + sqrt(exploration * ln t / n)``,
    where ``t`` is the pulls so far and ``n`` the arm's; ``exploration = 2`` is UCB1's bound for
    rewards in [0, 1], whose regret grows as log t.

    Args:
        env: ``llm_gym/Bandit-v0``, possibly wrapped.
        exploration: the constant under the square root (2 in the paper).
        seed: seeds tie-breaking and the env resets.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> agent = UCB1Agent(gym.make("llm_gym/Bandit-v0", num_arms=3))
        >>> int(agent.predict([1, 1, 0, 1.0, 1.0, 0.0])[0])  # the arm never pulled first
        2
    """

    name = "ucb1"

    def __init__(self, env: gym.Env, exploration: float = 2.0, seed: int = 0) -> None:
        if not exploration >= 0.0:
            raise ValueError(f"exploration must be >= 0, got {exploration}")
        super().__init__(env, seed)
        self.exploration = float(exploration)

    def hyperparameters(self) -> dict[str, Any]:
        return {"exploration": self.exploration}

    def choose(self, counts: np.ndarray, means: np.ndarray) -> int:
        untried = np.flatnonzero(counts == 0)
        if len(untried):
            return int(untried[0])
        bonus = np.sqrt(self.exploration * math.log(counts.sum()) / counts)
        return self._argmax(means + bonus)


class ThompsonAgent(BanditAgent):
    """Thompson sampling (Thompson 1933): pull the arm whose sampled mean is highest.

    Bernoulli arms: a Beta(1 + successes, 1 + failures) posterior per arm (Agrawal & Goyal
    2012). Gaussian arms (unit noise): a N(sum / (n + 1), 1 / (n + 1)) posterior from a N(0, 1)
    prior (Agrawal & Goyal 2013), the env's own prior and noise.

    Args:
        env: ``llm_gym/Bandit-v0``, possibly wrapped.
        arm_type: ``"bernoulli"`` or ``"gaussian"`` (default: the env's ``arm_type``).
        seed: seeds the posterior samples and the env resets.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/Bandit-v0", horizon=200)
        >>> agent = ThompsonAgent(env).learn(200)
        >>> agent.episode_log[0].episode_return > 0
        True
    """

    name = "thompson"

    def __init__(self, env: gym.Env, arm_type: str | None = None, seed: int = 0) -> None:
        arm_type = arm_type or getattr(env.unwrapped, "arm_type", "bernoulli")
        if arm_type not in ("bernoulli", "gaussian"):
            raise ValueError(f"arm_type must be 'bernoulli' or 'gaussian', got {arm_type!r}")
        super().__init__(env, seed)
        self.arm_type = arm_type

    def hyperparameters(self) -> dict[str, Any]:
        return {"arm_type": self.arm_type}

    def choose(self, counts: np.ndarray, means: np.ndarray) -> int:
        sums = counts * means
        if self.arm_type == "bernoulli":
            samples = self.rng.beta(1.0 + sums, 1.0 + counts - sums)
        else:
            samples = self.rng.normal(sums / (counts + 1.0), 1.0 / np.sqrt(counts + 1.0))
        return self._argmax(samples)
