"""Regret of agents on bandit envs: record it while they train, aggregate it, plot it.

Bandit envs (``llm_gym/Bandit-v0`` and its text twin) put each pull's pseudo-regret (best mean
minus the pulled arm's mean) in ``info["regret"]``. :class:`RegretRecorder` collects it under
any agent that steps a single env (the bandit baselines, random, SB3), so
``llm-gym compare`` can show cumulative regret against pulls next to the usual returns. The
LLM trainers step batched envs of their own and are not recorded here.

The curve counts pulls, not env steps: on the text face a pull is a whole valid turn.
Cumulative regret runs over all of a run's training pulls, so with ``--timesteps`` equal to the
horizon it is the textbook regret of one bandit instance per seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.agents.factory import LLM_AGENTS


class RegretRecorder(gym.Wrapper):
    """Append ``info["regret"]`` of every step that has one to ``regrets``.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = RegretRecorder(gym.make("llm_gym/Bandit-v0", horizon=3))
        >>> _ = env.reset(seed=0)
        >>> for arm in (0, 1, 2):
        ...     _ = env.step(arm)
        >>> len(env.regrets)
        3
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.regrets: list[float] = []

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "regret" in info:
            self.regrets.append(float(info["regret"]))
        return obs, reward, terminated, truncated, info


def is_bandit(env: gym.Env) -> bool:
    """Whether ``env`` (under any wrappers) is one of llm_gym's bandit envs."""
    from llm_gym.envs.bandit import BanditEnv
    from llm_gym.envs.bandit_text import BanditTextEnv

    return isinstance(env.unwrapped, (BanditEnv, BanditTextEnv))


def regret_training_env(spec: Any) -> tuple[Any, RegretRecorder | None]:
    """What ``make_agent`` should build ``spec``'s agent on: a recorded bandit env, or the id.

    Returns ``(env_or_id, recorder)``; ``recorder`` is ``None`` (and the id is returned) when
    the env is no bandit or the agent is an LLM trainer, which steps batched envs of its own.
    """
    if spec.agent in LLM_AGENTS:
        return spec.env_id, None
    env = gym.make(spec.env_id, **(spec.env_kwargs or {}))
    if not is_bandit(env):
        env.close()
        return spec.env_id, None
    recorder = RegretRecorder(env)
    return recorder, recorder


def cumulative_regret(runs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(pulls, mean, std) of cumulative regret over ``runs`` (their ``regret`` lists).

    Runs are cut to the shortest one, so every point averages the same seeds. ``None`` when
    no run recorded regret.

    Example:
        >>> from types import SimpleNamespace as Run
        >>> pulls, mean, std = cumulative_regret([Run(regret=[0.5, 0.0]), Run(regret=[0.1, 0.2])])
        >>> pulls.tolist(), mean.round(2).tolist(), std.round(2).tolist()
        ([1, 2], [0.3, 0.4], [0.2, 0.1])
    """
    curves = [np.cumsum(r.regret) for r in runs if getattr(r, "regret", None)]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    stacked = np.stack([c[:length] for c in curves])
    return np.arange(1, length + 1), stacked.mean(axis=0), stacked.std(axis=0)


def regret_columns(runs: Sequence[Any]) -> dict[str, float | None]:
    """The table's ``regret`` (mean final cumulative regret over seeds) and ``regret_std``."""
    finals = [float(np.sum(r.regret)) for r in runs if getattr(r, "regret", None)]
    if len(finals) != len(runs) or not finals:
        return {"regret": None, "regret_std": None}
    return {"regret": float(np.mean(finals)), "regret_std": float(np.std(finals))}


def plot_regret(runs: Sequence[Any], path: Path) -> Path | None:
    """Cumulative regret vs pulls, mean and ±1 std over seeds: one panel per bandit env.

    Writes ``path`` and returns it, or returns ``None`` (writing nothing) when no run
    recorded regret.
    """
    runs = [r for r in runs if getattr(r, "regret", None)]
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    env_ids = list(dict.fromkeys(r.spec.env_id for r in runs))
    names = list(dict.fromkeys(r.spec.curve_name for r in runs))
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    fig, axes = plt.subplots(1, len(env_ids), figsize=(5.5 * len(env_ids), 4), squeeze=False)
    for ax, env_id in zip(axes[0], env_ids, strict=True):
        for i, name in enumerate(names):
            group = [r for r in runs if r.spec.env_id == env_id and r.spec.curve_name == name]
            curve = cumulative_regret(group)
            if curve is None:
                continue
            pulls, mean, std = curve
            colour = palette[i % len(palette)]
            seeds = f"{len(group)} seed" + ("s" if len(group) > 1 else "")
            ax.plot(pulls, mean, color=colour, label=f"{name} ({seeds})")
            ax.fill_between(pulls, mean - std, mean + std, color=colour, alpha=0.15)
        ax.set_title(env_id)
        ax.set_xlabel("pulls")
        ax.set_ylabel("cumulative regret (mean ± 1 std over seeds)")
        ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
