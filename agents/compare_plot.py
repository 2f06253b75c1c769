"""The learning-curve figure of a comparison: one panel per env, one line per agent (variant)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llm_gym.agents.evaluation import OPTIMAL_AT_THRESHOLD, success_threshold


def plot_learning_curves(results: Sequence[Any], path: Path, window: int = 20) -> None:
    """Write :func:`learning_curve_figure` of ``results`` to the PNG ``path``."""
    fig = learning_curve_figure(results, window)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # "tight": keep the legend below the axes
    import matplotlib.pyplot as plt

    plt.close(fig)


def learning_curve_figure(results: Sequence[Any], window: int = 20) -> Any:
    """Training-episode return vs env steps: one panel per env, one line per agent (variant).

    The curves are the training episodes, played with the agent's exploring (sampled)
    actions, while the comparison table reports a greedy evaluation; the labels say so, since
    the two differ (a greedy policy often scores above its own training curve). An agent keeps
    its colour in every panel; the legend sits below the panels so it never hides a curve.
    When some run trained on a shaped reward, a second row shows the unshaped env return of the
    same episodes (an unshaped run's return is its env return), because the shaped return alone
    says nothing about the task (issue 21).

    Example:
        >>> from llm_gym.agents.compare import plan_runs, run_one
        >>> runs, _ = plan_runs(["llm_gym/LeftRight-v0"], ["q-learning"], 200)
        >>> fig = learning_curve_figure([run_one(runs[0], eval_episodes=1)])
        >>> [text.get_text() for text in fig.legends[0].get_texts()]
        ['q-learning', 'optimum (5)']
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, works with no display
    import matplotlib.pyplot as plt

    env_ids = list(dict.fromkeys(r.spec.env_id for r in results))
    names = list(dict.fromkeys(r.spec.curve_name for r in results))
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    colours = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    panels = max(1, len(env_ids))
    shaped = any(e.env_return is not None for r in results for e in r.episodes)
    rows = [("episode_return", "training-episode return")]
    if shaped:
        rows.append(("env_return", "unshaped env return"))
    fig, axes = plt.subplots(len(rows), panels, figsize=(5 * panels, 3.8 * len(rows)),
                             squeeze=False)
    for row, (key, label) in enumerate(rows):
        for ax, env_id in zip(axes[row], env_ids, strict=False):
            for name in names:
                runs = [r for r in results
                        if r.spec.env_id == env_id and r.spec.curve_name == name
                        and (row == 0 or _knows_env_return(r))]
                curve = _mean_curve(runs, window, key)
                if curve is not None:
                    ax.plot(*curve, label=name, color=colours[name])
            _reference_line(ax, env_id)
            ax.set_title(env_id if row == 0 else f"{env_id}: unshaped env return")
            ax.set_xlabel("env steps (tokens on token envs)")
            ax.set_ylabel(f"{label}\n(trailing mean of {window})")
    fig.suptitle("Learning curves of the training episodes (exploring, sampled actions)\n"
                 "the table's returns come from a greedy evaluation", fontsize="medium")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        handles.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    # Agents first, in run order, then the reference lines: the same order in every figure.
    order = [n for n in names if n in handles] + [k for k in handles if k not in colours]
    handles = {label: handles[label] for label in order}
    fig.tight_layout()
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="upper center", fontsize="small",
                   bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 4), frameon=False)
    return fig


def _reference_line(ax: Any, env_id: str) -> None:
    """The env's optimum (or, where the optimum is unknown, its success threshold), labelled."""
    threshold = success_threshold(env_id)
    if threshold is None:
        return
    kind = "optimum" if env_id in OPTIMAL_AT_THRESHOLD else "success threshold"
    ax.axhline(threshold, color="grey", linestyle=":", linewidth=1,
               label=f"{kind} ({threshold:g})")


def _knows_env_return(run: Any) -> bool:
    """Whether ``run``'s episodes give its unshaped return.

    An agent that records no env return on a shaped env (PPO today) is left out of the unshaped
    row rather than shown there with its shaped return.
    """
    return not run.spec.wrappers or any(e.env_return is not None for e in run.episodes)


def _mean_curve(runs: Sequence[Any], window: int, key: str = "episode_return"
                ) -> tuple[np.ndarray, np.ndarray] | None:
    curves = []
    for run in runs:
        if not run.episodes:
            continue
        steps = np.array([r.env_steps for r in run.episodes], dtype=float)
        # An unshaped episode's env return is its return.
        returns = np.array([r.episode_return if getattr(r, key) is None else getattr(r, key)
                            for r in run.episodes], dtype=float)
        kernel = np.ones(min(window, len(returns)))
        smooth = np.convolve(returns, kernel, "full")[: len(returns)] / np.convolve(
            np.ones_like(returns), kernel, "full")[: len(returns)]  # trailing mean, short at start
        curves.append((steps, smooth))
    if not curves:
        return None
    # From the first finished episode: before it there is no return to show.
    grid = np.linspace(min(c[0][0] for c in curves), max(c[0][-1] for c in curves), 200)
    return grid, np.mean([np.interp(grid, s, v) for s, v in curves], axis=0)
