"""Greedy evaluations every N env steps while an agent learns (``--eval-every``, issue 21).

:class:`PeriodicEval` hooks into whatever the agent offers: a trainer hook for llm_gym's LLM
trainers (the ``eval/*`` metrics land in the update's row of ``metrics.csv``, TensorBoard and
W&B), a callback for SB3 models (recorded in SB3's own logger) and for the other agents. The
evaluations also give ``compare``'s steps-to-solve, and :func:`write_eval_curve` draws them.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_gym.agents.evaluation import EvalResult

HOOK_NAME = "periodic_eval"


def eval_metrics(result: EvalResult) -> dict[str, float]:
    """``eval/*`` metrics of one greedy evaluation (success rate where the env says it).

    Example:
        >>> eval_metrics(EvalResult(mean_return=1.0, std_return=0.0, success_rate=None,
        ...                         mean_length=3.0, episodes=2, returns=[1.0, 1.0]))
        {'eval/mean_return': 1.0, 'eval/std_return': 0.0, 'eval/mean_length': 3.0}
    """
    metrics = {"eval/mean_return": result.mean_return, "eval/std_return": result.std_return,
               "eval/mean_length": result.mean_length}
    if result.success_rate is not None:
        metrics["eval/success_rate"] = result.success_rate
    if result.env_return is not None and result.env_return != result.mean_return:
        metrics["eval/env_return"] = result.env_return  # unshaped, beside the shaped return
    return {key: float(value) for key, value in metrics.items()}


def is_sb3_model(agent: Any) -> bool:
    """Whether ``agent`` is an SB3 model (without importing SB3 when nothing did yet)."""
    if "stable_baselines3" not in sys.modules:  # then no SB3 model exists
        return False
    from stable_baselines3.common.base_class import BaseAlgorithm

    return isinstance(agent, BaseAlgorithm)


class PeriodicEval:
    """Evaluate ``agent`` with ``evaluate()`` every ``every`` env steps of its training.

    Args:
        agent: the agent being trained (its ``num_timesteps`` drives the schedule).
        evaluate: plays the greedy evaluation episodes and returns their result.
        every: env steps between evaluations (``None`` or 0: none during training).
        solve_rate: the success rate that counts as solved (:attr:`solved_at`).

    Attributes:
        history: ``(env steps, success rate)`` of every evaluation recorded.
        results: ``(env steps, EvalResult)`` of every evaluation recorded.
        solved_at: steps from which every evaluation reached ``solve_rate`` (``None``: not).
        seconds: time spent evaluating (kept out of the run's training wall-clock).
    """

    def __init__(self, agent: Any, evaluate: Callable[[], EvalResult], every: int | None,
                 solve_rate: float = 1.0) -> None:
        self.agent, self.evaluate, self.every = agent, evaluate, every
        self.solve_rate = solve_rate
        self.history: list[tuple[int, float | None]] = []
        self.results: list[tuple[int, EvalResult]] = []
        self.next_eval = every or 0
        self.solved_at: int | None = None
        self.seconds = 0.0

    def check(self, *_: Any) -> bool:
        """Evaluate if ``every`` steps passed since the last one; always go on (a callback)."""
        self._due_result()
        return True

    def _due_result(self) -> EvalResult | None:
        steps = int(getattr(self.agent, "num_timesteps", 0))
        if not self.every or steps < self.next_eval:
            return None
        self.next_eval = steps + self.every
        start = time.perf_counter()
        result = self.evaluate()
        self.seconds += time.perf_counter() - start
        self.record(steps, result)
        return result

    def record(self, steps: int, result: EvalResult) -> None:
        """Add an evaluation made at ``steps`` (also the ones before and after training)."""
        # Solved from the first success after the last failure: a lucky untrained policy (or a
        # policy that later unlearns) does not count.
        rate = result.success_rate
        if self.results and self.results[-1][0] == steps:  # the final one, right after a due one
            self.history.pop()
            self.results.pop()
        self.history.append((steps, rate))
        self.results.append((steps, result))
        if rate is None or rate < self.solve_rate - 1e-9:
            self.solved_at = None
        elif self.solved_at is None:
            self.solved_at = steps

    # ---------------------------------------------------------------- trainer hook protocol
    def on_update(self, trainer: Any) -> dict[str, float]:
        """After each update of an LLM trainer: the ``eval/*`` metrics when one was due."""
        result = self._due_result()
        return {} if result is None else eval_metrics(result)

    def state_dict(self) -> dict[str, Any]:
        """Nothing to checkpoint: a resumed run evaluates again from its step count."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing was saved (see :meth:`state_dict`)."""

    # ---------------------------------------------------------------- attaching
    def callback(self) -> Any:
        """What to pass to ``learn(callback=...)``; ``None`` when a trainer hook does the work."""
        if not self.every:
            return None
        if hasattr(self.agent, "add_hook"):  # llm_gym's trainers: metrics in the update's row
            self.agent.add_hook(HOOK_NAME, self)
            return None
        if is_sb3_model(self.agent):
            from stable_baselines3.common.callbacks import ConvertCallback

            return ConvertCallback(self._sb3_check)
        return self.check

    def _sb3_check(self, *_: Any) -> bool:
        result = self._due_result()
        if result is not None:  # into SB3's own logger: its TensorBoard and stdout tables
            for key, value in eval_metrics(result).items():
                self.agent.logger.record(key, value)
        return True


def write_eval_curve(results: list[tuple[int, EvalResult]], folder: Path,
                     title: str = "greedy evaluation") -> list[Path]:
    """``eval_curve.csv`` and ``eval_curve.png`` of ``results`` in ``folder``; the files."""
    if not results:
        return []
    csv_path, png_path = folder / "eval_curve.csv", folder / "eval_curve.png"
    rows = [{"env_steps": steps, **{k.removeprefix("eval/"): v
                                    for k, v in eval_metrics(result).items()}}
            for steps, result in results]
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["env_steps"] for row in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [row["mean_return"] for row in rows], "o-", label="greedy return")
    if all("env_return" in row for row in rows):
        ax.plot(steps, [row["env_return"] for row in rows], "s--", label="unshaped env return")
    if all("success_rate" in row for row in rows):
        ax.plot(steps, [row["success_rate"] for row in rows], "^:", label="success rate")
    ax.set_xlabel("env steps (agent tokens on token envs)")
    ax.set_ylabel(f"mean over {results[-1][1].episodes} greedy episodes")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return [csv_path, png_path]


class ProgressReport:
    """Calls ``report(steps, metrics)`` as training passes each ``fraction`` of ``total`` steps.

    A callback for ``learn`` (``compare`` prints a line per report, issue 21: nothing showed
    until a run ended). ``metrics`` are the latest the agent passed its callback (an LLM
    trainer's update metrics, a table agent's episode metrics; empty for SB3).

    Example:
        >>> lines = []
        >>> class Agent:
        ...     num_timesteps = 0
        >>> agent = Agent()
        >>> progress = ProgressReport(agent, 100, lambda steps, m: lines.append(steps), 0.5)
        >>> for agent.num_timesteps in (20, 50, 70, 100):
        ...     _ = progress({})
        >>> lines
        [50, 100]
    """

    def __init__(self, agent: Any, total: int, report: Callable[[int, dict[str, float]], None],
                 fraction: float = 0.1) -> None:
        self.agent, self.report = agent, report
        self.start = int(getattr(agent, "num_timesteps", 0))
        self.step = max(1, int(total * fraction))
        self.next = self.start + self.step

    def __call__(self, metrics: dict[str, float] | None = None, *_: Any) -> bool:
        steps = int(getattr(self.agent, "num_timesteps", 0))
        if steps >= self.next:
            self.next = steps + self.step - (steps - self.start) % self.step
            self.report(steps, dict(metrics) if isinstance(metrics, dict) else {})
        return True


def combine_callbacks(agent: Any, *callbacks: Any) -> Any:
    """One ``learn`` callback running each of ``callbacks`` (``None`` ones left out).

    The callbacks take the agent's callback argument and return False to stop; for an SB3
    model they become SB3 callbacks (an SB3 ``BaseCallback`` is taken as it is).
    """
    callbacks = tuple(c for c in callbacks if c is not None)
    if not callbacks:
        return None
    if is_sb3_model(agent):
        from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback

        return CallbackList([c if isinstance(c, BaseCallback) else ConvertCallback(
            lambda _locals, _globals, c=c: c({}) is not False) for c in callbacks])
    if len(callbacks) == 1:
        return callbacks[0]

    def run_all(*args: Any) -> bool:
        return all([c(*args) is not False for c in callbacks])  # every one runs

    return run_all
