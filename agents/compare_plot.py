"""The learning-curve figure of a comparison: one panel per env, one line per agent (variant)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llm_gym.agents.evaluation import success_threshold


def plot_learning_curves(results: Sequence[Any], path: Path, window: int = 20) -> None:
    """Return vs env steps, one panel per env, one line per agent and variant (mean of seeds)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, works with no display
    import matplotlib.pyplot as plt

    env_ids = list(dict.fromkeys(r.spec.env_id for r in results))
    fig, axes = plt.subplots(1, max(1, len(env_ids)), figsize=(5 * max(1, len(env_ids)), 3.8),
                             squeeze=False)
    for ax, env_id in zip(axes[0], env_ids, strict=False):
        names = list(dict.fromkeys(r.spec.curve_name for r in results
                                   if r.spec.env_id == env_id))
        for name in names:
            runs = [r for r in results if r.spec.env_id == env_id and r.spec.curve_name == name]
            curve = _mean_curve(runs, window)
            if curve is not None:
                ax.plot(*curve, label=name)
        threshold = success_threshold(env_id)
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
        ax.set_title(env_id)
        ax.set_xlabel("env steps (tokens on token envs)")
        ax.set_ylabel(f"episode return (mean of {window})")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _mean_curve(runs: Sequence[Any], window: int) -> tuple[np.ndarray, np.ndarray] | None:
    curves = []
    for run in runs:
        if not run.episodes:
            continue
        steps = np.array([r.env_steps for r in run.episodes], dtype=float)
        returns = np.array([r.episode_return for r in run.episodes], dtype=float)
        kernel = np.ones(min(window, len(returns)))
        smooth = np.convolve(returns, kernel, "full")[: len(returns)] / np.convolve(
            np.ones_like(returns), kernel, "full")[: len(returns)]  # trailing mean, short at start
        curves.append((steps, smooth))
    if not curves:
        return None
    grid = np.linspace(0, max(c[0][-1] for c in curves), 200)
    return grid, np.mean([np.interp(grid, s, v) for s, v in curves], axis=0)
