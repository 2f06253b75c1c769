"""Where a run's metrics go (``--report-to``), set on a built agent of any kind (issue 21).

The LLM trainers log through :class:`~llm_gym.agents.metrics.MetricsLogger`: their
``report_to`` and ``run_config`` attributes choose TensorBoard and/or W&B (with the run config)
besides ``metrics.csv``, and ``metrics_dir`` gives an agent without a ``log_dir`` (a compare
run) a folder for them. SB3 models write TensorBoard through their own ``tensorboard_log``:
``none`` clears it. W&B reaches only the LLM trainers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llm_gym.agents.metrics import parse_report_to


def reports_to_wandb(agent: Any) -> bool:
    """Whether ``agent`` can send its metrics to W&B (the trainer-core LLM agents)."""
    return hasattr(agent, "run_config") and hasattr(agent, "report_to")


def configure_reporting(agent: Any, report_to: str | Sequence[str] | None,
                        run_config: Mapping[str, Any] | None = None,
                        metrics_dir: str | Path | None = None) -> tuple[str, ...]:
    """Point ``agent``'s metrics at ``report_to``; returns the checked tracker names.

    Args:
        agent: a built agent (an LLM trainer, an SB3 model, a table agent).
        report_to: ``"tensorboard"``, ``"wandb"``, both comma-separated, or ``"none"``;
            ``None`` leaves the agent's default (TensorBoard where it has a folder).
        run_config: what W&B records as the run's config (``llm-gym train``: run.json).
        metrics_dir: where an LLM trainer without a ``log_dir`` writes ``metrics.csv`` and
            TensorBoard, and an SB3 model its TensorBoard logs (compare runs).

    Raises:
        ValueError: an unknown tracker name.

    Example:
        >>> from llm_gym.agents.factory import make_agent
        >>> agent = make_agent("ppo", "llm_gym/LeftRight-v0")
        >>> configure_reporting(agent, "none"), agent.report_to
        ((), ())
    """
    if report_to is None:
        return ("tensorboard",)
    names = parse_report_to(report_to)
    if reports_to_wandb(agent):
        agent.report_to = names
        if run_config is not None:
            agent.run_config = dict(run_config)
        if metrics_dir is not None and getattr(agent, "log_dir", None) is None:
            agent.metrics_dir = Path(metrics_dir)
    elif hasattr(agent, "tensorboard_log"):  # SB3: its own TensorBoard writer
        if "tensorboard" not in names:
            agent.tensorboard_log = None
        elif metrics_dir is not None and agent.tensorboard_log is None:
            agent.tensorboard_log = str(metrics_dir)
    return names
