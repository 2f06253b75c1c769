"""Metrics of the LLM trainers: reward integrity counters, TensorBoard/CSV rows, the curve.

* Reward integrity: the env layer (:func:`llm_gym.token_env.score_turns`) turns a NaN, ``None``
  or an exception from a reward into a named ``reward_error``; the rollout marks the sample
  invalid, :func:`reward_counters` counts it and :class:`RewardFailures` stops a run after
  repeated failures.
* Metrics: :class:`MetricsLogger` writes CSV and, per ``report_to``, TensorBoard and W&B
  (``rollout/``, ``train/``, ``time/``, ``reward/`` prefixes), :func:`drop_metrics_after`
  trims rows a resumed run logs again, and :func:`plot_reward_curve` draws a PNG.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def reward_counters(infos: Iterable[dict[str, Any]], valid: Iterable[bool]) -> dict[str, float]:
    """``reward/...`` metrics of one batch: dropped samples, verdicts and reward terms.

    With :func:`tool_counters`' ``tools/...`` metrics when the episodes called tools.

    Dropped samples are counted by cause, env verdicts by name, and every named reward term
    (``info["reward_components"]`` of shaping wrappers) as its mean episode sum,
    ``reward/<term>``.

    Example:
        >>> reward_counters([{"episode_reward_components": {"env": 1.0, "length": -0.5}},
        ...                  {"reward_error": "nan"}], [True, False])["reward/length"]
        -0.5
    """
    infos = list(infos)
    counts: dict[str, float] = {"reward/dropped": 0.0}
    terms: dict[str, list[float]] = {}
    for info, ok in zip(infos, valid, strict=True):
        if ok:
            for name, value in info.get("episode_reward_components", {}).items():
                terms.setdefault(name, []).append(float(value))
        if not ok:
            counts["reward/dropped"] += 1
            cause = str(info.get("reward_error", "nan"))
            cause = cause.split(":")[0]
            counts[f"reward/dropped_{cause}"] = counts.get(f"reward/dropped_{cause}", 0.0) + 1
        verdict = info.get("verdict")
        if verdict is not None:
            key = f"reward/verdict_{verdict}"
            counts[key] = counts.get(key, 0.0) + 1
    for name, values in terms.items():
        counts[f"reward/{name}"] = float(np.mean(values))
    return {**counts, **tool_counters(infos)}


def tool_counters(infos: Iterable[dict[str, Any]]) -> dict[str, float]:
    """``tools/...`` metrics of one batch of tool-env episodes (empty for envs without tools).

    Means per episode of the counts :class:`~llm_gym.tools.env.ToolEnv` keeps in
    ``info["tools"]`` (calls, errors, parse_failures, latency_s), and ``tools/call_rate``, the
    share of episodes that made at least one call.

    Example:
        >>> tool_counters([{"tools": {"calls": 2, "errors": 1}}, {"tools": {"calls": 0}}])
        {'tools/calls': 1.0, 'tools/errors': 0.5, 'tools/call_rate': 0.5}
    """
    episodes = [info["tools"] for info in infos if isinstance(info.get("tools"), dict)]
    if not episodes:
        return {}
    keys = dict.fromkeys(key for counts in episodes for key in counts)
    out = {f"tools/{key}": float(np.mean([float(c.get(key, 0.0)) for c in episodes]))
           for key in keys}
    out["tools/call_rate"] = float(np.mean([float(c.get("calls", 0) > 0) for c in episodes]))
    return out


class RewardFailures:
    """Counts consecutive batches in which most samples had a broken reward.

    Args:
        max_consecutive: stop after this many bad batches in a row.
        max_fraction: a batch is bad when more than this fraction of its samples was dropped.
    """

    def __init__(self, max_consecutive: int = 3, max_fraction: float = 0.5) -> None:
        self.max_consecutive = max_consecutive
        self.max_fraction = max_fraction
        self.consecutive = 0
        self.total_dropped = 0

    def update(self, dropped: int, total: int) -> bool:
        """Record a batch; True when the run should stop."""
        self.total_dropped += dropped
        bad = total == 0 or dropped / total > self.max_fraction
        self.consecutive = self.consecutive + 1 if bad else 0
        return self.consecutive >= self.max_consecutive


# ---------------------------------------------------------------------------- metrics
# Where metrics go besides metrics.csv: transformers' and TRL's ``report_to`` names.
REPORT_TO = ("tensorboard", "wandb", "none")


def parse_report_to(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"tensorboard,wandb"`` or a list → a checked tuple; ``"none"`` (or ``None``) → ``()``.

    Example:
        >>> parse_report_to("wandb, tensorboard"), parse_report_to("none")
        (('wandb', 'tensorboard'), ())
    """
    if value is None or (not isinstance(value, str) and len(value) == 0):  # already "none"
        return ()
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(REPORT_TO))
    if unknown or not names or ("none" in names and len(names) > 1):
        raise ValueError(f"report_to must be one or more of {', '.join(REPORT_TO[:2])} "
                         f"(comma-separated) or 'none', got {value!r}")
    return tuple(n for n in dict.fromkeys(names) if n != "none")


class MetricsLogger:
    """Scalars to ``metrics.csv`` in ``log_dir`` (or nowhere), TensorBoard (``tb/``) and W&B.

    ``report_to`` names the trackers, as transformers and TRL do: ``"tensorboard"`` (the
    default; needs ``log_dir``), ``"wandb"`` (the ``wandb`` extra; the run's ``config`` is
    logged with it, and W&B's own ``WANDB_MODE=offline``, ``WANDB_PROJECT`` and
    ``WANDB_DIR`` are honoured), or none.

    Example:
        >>> import tempfile
        >>> log = MetricsLogger(tempfile.mkdtemp())
        >>> log.log({"rollout/ep_rew_mean": 1.0}, step=1)
        >>> log.close()
    """

    def __init__(self, log_dir: str | Path | None,
                 report_to: str | Sequence[str] | None = ("tensorboard",),
                 config: Mapping[str, Any] | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.report_to = parse_report_to(report_to)
        self.rows: list[dict[str, float]] = []
        self._writer = None
        self._wandb = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if "tensorboard" in self.report_to:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.log_dir / "tb"))
        if "wandb" in self.report_to:
            self._wandb = _start_wandb(self.log_dir, config)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record one row of scalars at ``step`` (env steps)."""
        row = {"step": float(step), **{k: float(v) for k, v in metrics.items()}}
        self.rows.append(row)
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(key, float(value), step)
        if self.log_dir is not None:
            self._write_csv(row)
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)

    def _write_csv(self, row: dict[str, float]) -> None:
        path = self.log_dir / "metrics.csv"
        header: list[str] = []
        if path.exists():
            with open(path, newline="") as handle:
                header = next(csv.reader(handle), [])
        if header and set(row) <= set(header):
            with open(path, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=header).writerow(row)
            return
        # A new key appeared: rewrite the file with the wider header (files stay small).
        old_rows = []
        if path.exists():
            with open(path, newline="") as handle:
                old_rows = list(csv.DictReader(handle))
        fields = list(dict.fromkeys([*header, *row]))
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows([*old_rows, row])

    def close(self) -> None:
        """Flush and close the writers."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _start_wandb(log_dir: Path | None, config: Mapping[str, Any] | None) -> Any:
    try:
        import wandb
    except ImportError:
        raise ValueError("report_to 'wandb' needs W&B: pip install 'llm_gym[wandb]' "
                         "(WANDB_MODE=offline logs without an account)") from None
    name = log_dir.name if log_dir is not None else None
    directory = os.environ.get("WANDB_DIR") or (str(log_dir) if log_dir is not None else None)
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "llm_gym"), name=name,
                      dir=directory, config=dict(config or {}), reinit="finish_previous")


def drop_metrics_after(log_dir: str | Path | None, step: int) -> None:
    """Remove ``metrics.csv`` rows past ``step``: a resumed run logs those steps again.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> log = MetricsLogger(folder)
        >>> for step in (1, 2, 3):
        ...     log.log({"train/loss": 0.5}, step=step)
        >>> log.close()
        >>> drop_metrics_after(folder, 2)
        >>> len(Path(folder, "metrics.csv").read_text().splitlines())  # header and two rows
        3
    """
    if log_dir is None or not (Path(log_dir) / "metrics.csv").is_file():
        return
    path = Path(log_dir) / "metrics.csv"
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [row for row in rows if float(row["step"]) <= step]
    if len(kept) == len(rows):
        return
    tmp = path.with_name(".metrics.csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)


def plot_reward_curve(records: list[Any], path: str | Path, title: str = "reward") -> Path | None:
    """PNG of episode return (and a moving average) against env steps; None if no records."""
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r.env_steps for r in records])
    returns = np.array([r.episode_return for r in records], dtype=float)
    window = max(1, len(returns) // 20)
    smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, returns, ".", alpha=0.25, label="episode return")
    if window > 1:  # a "moving average" of one episode is the episode itself
        ax.plot(steps[window - 1:], smooth, label=f"moving average ({window})")
    ax.set_xlabel("env steps (agent tokens)")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def progress_bar(total: int, enabled: bool, initial: int = 0) -> Any:
    """A tqdm bar over env steps, or None when disabled."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="tok", desc="learn", dynamic_ncols=True)
