"""Evaluate any agent with the SB3 interface: N deterministic episodes, return and success.

Success per episode is what the env says (``info["success"]`` / ``info["is_success"]``), else
the episode's return reaching the env's ``reward_threshold`` (Gymnasium's spec field: 475 for
CartPole-v1, 200 for LunarLander-v3, 0.7 for FrozenLake-v1), else the known optimum of the
llm_gym walks (+5), else ``None`` (unknown, left out of the success rate).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.agents.base import episode_success

# Ids whose registration has no reward_threshold but whose success is still well defined.
SUCCESS_THRESHOLDS = {
    "llm_gym/LeftRight-v0": 5.0,       # the optimal return: right, right
    "llm_gym/LeftRightText-v0": 5.0,   # same MDP; any invalid reply drops below +5
    "llm_gym/FrozenLakeText-v0": 0.7,  # FrozenLake-v1's own threshold
}
# Ids whose success threshold is also the best return possible (plots call the line "optimum").
OPTIMAL_AT_THRESHOLD = frozenset({"llm_gym/LeftRight-v0", "llm_gym/LeftRightText-v0"})


@dataclass
class EvalResult:
    """Summary of an evaluation.

    Attributes:
        mean_return: mean undiscounted episode return.
        std_return: its standard deviation over episodes.
        success_rate: fraction of episodes that succeeded (``None`` when the env cannot say).
        mean_length: mean number of env steps per episode.
        episodes: how many episodes were played.
        returns: every episode's return.
        env_return: mean unshaped return, the env's own reward (the ``env`` reward term) under
            shaping wrappers; equal to ``mean_return`` without them.
        env_returns: every episode's unshaped return.
    """

    mean_return: float
    std_return: float
    success_rate: float | None
    mean_length: float
    episodes: int
    returns: list[float]
    env_return: float | None = None
    env_returns: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for JSON: a value that is not a finite number (NaN) becomes ``None``."""
        return json_ready(asdict(self))


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None``, at any depth.

    ``json.dumps`` writes NaN as the bare word ``NaN``, which is not JSON (issue 14); writers
    call this and then dump with ``allow_nan=False``, so a NaN that slips past fails loudly.

    Example:
        >>> json_ready({"std": float("nan"), "returns": [1.0, float("inf")], "n": 2})
        {'std': None, 'returns': [1.0, None], 'n': 2}
    """
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def success_threshold(env: gym.Env | str) -> float | None:
    """The return at which an episode of ``env`` (an env or an id) counts as a success."""
    spec = gym.spec(env) if isinstance(env, str) else env.spec
    if spec is None:
        return None
    if spec.reward_threshold is not None:
        return float(spec.reward_threshold)
    return SUCCESS_THRESHOLDS.get(spec.id)


def is_success(info: dict[str, Any], episode_return: float, threshold: float | None) -> bool | None:
    """Whether an episode succeeded: the env's own flag, else the return against ``threshold``."""
    flag = episode_success(info, episode_return, True)
    if flag is not None:
        return flag
    return None if threshold is None else episode_return >= threshold - 1e-9


def evaluate_agent(
    agent: Any, env: gym.Env, num_episodes: int = 10, *, deterministic: bool = True, seed: int = 0,
) -> EvalResult:
    """Play ``num_episodes`` episodes of ``env`` with ``agent.predict`` and summarize them.

    Episode ``i`` is reset with seed ``seed + i``, so two agents are compared on the same starts.
    Agents whose env exposes ``action_masks()`` (MaskablePPO) get the mask passed to ``predict``.

    Args:
        agent: anything with SB3's ``predict(observation, deterministic=...)``.
        env: a single (not vector) Gymnasium env.
        num_episodes: episodes to play (at least 1).
        deterministic: greedy actions (the policy's mode) instead of samples.
        seed: seed of the first episode.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> from llm_gym.agents.greedy import RandomAgent
        >>> env = gym.make("llm_gym/LeftRight-v0")
        >>> evaluate_agent(RandomAgent(env), env, num_episodes=2).episodes
        2
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
    threshold = success_threshold(env)
    masked = _wants_masks(agent, env)
    returns, env_returns, lengths, successes = [], [], [], []
    for i in range(num_episodes):
        obs, info = env.reset(seed=seed + i)
        total, env_total, length, done = 0.0, 0.0, 0, False
        while not done:
            kwargs = {"action_masks": env.get_wrapper_attr("action_masks")()} if masked else {}
            action, _ = agent.predict(obs, deterministic=deterministic, **kwargs)
            obs, reward, terminated, truncated, info = env.step(_scalar(action))
            total += float(reward)
            env_total += float(info.get("reward_components", {}).get("env", reward))
            length += 1
            done = terminated or truncated
        returns.append(total)
        env_returns.append(env_total)
        lengths.append(length)
        # Success is a task metric: judged on the unshaped return, so shaping cannot fake it.
        successes.append(is_success(info, env_total, threshold))
    known = [s for s in successes if s is not None]
    return EvalResult(
        mean_return=float(np.mean(returns)), std_return=float(np.std(returns)),
        success_rate=float(np.mean(known)) if known else None,
        mean_length=float(np.mean(lengths)), episodes=num_episodes, returns=returns,
        env_return=float(np.mean(env_returns)), env_returns=env_returns,
    )


def _wants_masks(agent: Any, env: gym.Env) -> bool:
    # MaskablePPO.predict takes action_masks (without them it may pick masked tokens); so does
    # RandomAgent. Pass them whenever both sides support it.
    try:
        params = inspect.signature(agent.predict).parameters
        env.get_wrapper_attr("action_masks")
    except (AttributeError, TypeError, ValueError):
        return False
    return "action_masks" in params


def _scalar(action: Any) -> Any:
    # SB3's predict returns a 0-d or (1,) array for a single observation; envs want a scalar.
    array = np.asarray(action)
    if array.size != 1:
        raise ValueError(f"predict returned {array.size} actions for one observation")
    return array.reshape(()).item() if array.dtype.kind in "iu" else array.reshape(())
