"""The multi-armed bandit: k arms with unknown mean rewards, a fixed number of pulls."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from llm_gym.token_env import warn_unrenderable

ARM_TYPES = ("bernoulli", "gaussian")


class BanditEnv(gym.Env[np.ndarray, int]):
    """A k-armed bandit played for `horizon` pulls, with the regret of every pull in `info`.

    ## Description
    Each episode is one bandit instance: at reset the arm means are drawn from `self.np_random`
    (so a seed fixes them). Bernoulli arms have means uniform in [0, 1] and pay 1 with that
    probability, else 0; Gaussian arms have means drawn from N(0, 1) and pay N(mean, 1), the
    10-armed testbed of Sutton & Barto (2018, ch. 2). With `drift > 0` the arms are
    non-stationary: after every pull each mean takes an independent N(0, drift²) step
    (Sutton & Barto, exercise 2.5), clipped to [0, 1] for Bernoulli arms.

    ## Action Space
    `Discrete(num_arms)`: the arm to pull.

    ## Observation Space
    `Box((2 * num_arms,), float64)`: the first `num_arms` entries count the pulls of each arm
    so far, the last `num_arms` hold each arm's mean reward so far (0 for an arm never pulled);
    ``obs.reshape(2, num_arms)`` splits them. These are the sufficient statistics of the
    stationary bandit, so index policies (ε-greedy, UCB1, Thompson sampling) are functions of
    the observation alone and an agent's ``predict`` needs no hidden memory. (Flat rather than
    2-D: SB3's MLP policies expect a vector.) The step count is the sum of the counts.

    ## Rewards
    The arm's payoff. `info["regret"]` is the pull's pseudo-regret: the best arm's mean minus
    the pulled arm's mean, both before any drift (Lattimore & Szepesvári 2020, ch. 4). Their
    sum over the horizon is the cumulative regret that `llm-gym compare` plots.

    ## Episode End
    Terminated after `horizon` pulls: the problem is those pulls, and the observation carries
    the step count, so this is a true end and not a time limit.

    ## Arguments
    `num_arms` (default 10), `horizon` (default 500), `arm_type` ("bernoulli" or "gaussian"),
    `drift` (default 0: stationary), `render_mode` (`None` or `"ansi"`).

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/Bandit-v0", num_arms=3, horizon=5)
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(1)
        >>> obs[:3].tolist(), info["regret"] >= 0.0
        ([0.0, 1.0, 0.0], True)
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self, num_arms: int = 10, horizon: int = 500, arm_type: str = "bernoulli",
        drift: float = 0.0, render_mode: str | None = None,
    ) -> None:
        _check_arguments(num_arms, horizon, arm_type, drift)
        self.num_arms, self.horizon = int(num_arms), int(horizon)
        self.arm_type, self.drift = arm_type, float(drift)
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.num_arms)
        low = np.zeros((2, self.num_arms))
        high = np.full((2, self.num_arms), float(self.horizon))
        if arm_type == "bernoulli":
            high[1] = 1.0
        else:
            low[1], high[1] = -np.inf, np.inf
        self.observation_space = spaces.Box(low.ravel(), high.ravel(), dtype=np.float64)
        self.arm_means = np.zeros(self.num_arms)
        self.counts = np.zeros(self.num_arms)
        self.reward_sums = np.zeros(self.num_arms)
        self._needs_reset = True  # stepping before reset or after the last pull is an error

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.arm_type == "bernoulli":
            self.arm_means = self.np_random.uniform(0.0, 1.0, self.num_arms)
        else:
            self.arm_means = self.np_random.normal(0.0, 1.0, self.num_arms)
        self.counts = np.zeros(self.num_arms)
        self.reward_sums = np.zeros(self.num_arms)
        self._needs_reset = False
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # Discrete.contains accepts True as 1 and 5.0 as 5; neither names an arm.
        if (isinstance(action, (bool, np.bool_, float, np.floating))
                or not self.action_space.contains(action)):
            raise ValueError(f"action must be an arm index in [0, {self.num_arms}), got "
                             f"{action!r}")
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the last pull; "
                               "call reset()")
        arm = int(action)
        mean = self.arm_means[arm]
        if self.arm_type == "bernoulli":
            reward = float(self.np_random.random() < mean)
        else:
            reward = float(self.np_random.normal(mean, 1.0))
        regret = float(self.arm_means.max() - mean)
        self.counts[arm] += 1
        self.reward_sums[arm] += reward
        self._drift_means()
        terminated = int(self.counts.sum()) >= self.horizon
        self._needs_reset = terminated
        return self._obs(), reward, terminated, False, {"regret": regret}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            warn_unrenderable(self)
            return None
        counts, means = self._obs().reshape(2, self.num_arms)
        return " ".join(f"{arm}:{int(n)}x{mean:.2f}"
                        for arm, (n, mean) in enumerate(zip(counts, means, strict=True)))

    def _drift_means(self) -> None:
        if self.drift == 0.0:
            return
        self.arm_means = self.arm_means + self.np_random.normal(0.0, self.drift, self.num_arms)
        if self.arm_type == "bernoulli":
            self.arm_means = np.clip(self.arm_means, 0.0, 1.0)

    def _obs(self) -> np.ndarray:
        means = np.divide(self.reward_sums, self.counts, out=np.zeros(self.num_arms),
                          where=self.counts > 0)
        return np.concatenate([self.counts, means])


def _check_arguments(num_arms: Any, horizon: Any, arm_type: Any, drift: Any) -> None:
    for name, value in (("num_arms", num_arms), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if num_arms < 2:
        raise ValueError(f"num_arms must be at least 2, got {num_arms}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if arm_type not in ARM_TYPES:
        raise ValueError(f"arm_type must be one of {ARM_TYPES}, got {arm_type!r}")
    if (isinstance(drift, bool) or not isinstance(drift, (int, float))
            or not 0.0 <= drift < np.inf):
        raise ValueError(f"drift must be a number >= 0 (0: stationary arms), got {drift!r}")
