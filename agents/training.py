"""Training machinery shared by the LLM agents (GRPO, PPO).

* Determinism: :func:`seed_everything`, :func:`rng_state` / :func:`set_rng_state`.
* Data position: :class:`TaskSampler` hands out task indices in seeded shuffled epochs and can
  say exactly where it is, so a resumed run neither replays nor skips a prompt.
* Checkpoints: :func:`save_checkpoint` writes to a temporary folder, fsyncs and renames it
  atomically, and keeps the last K (a failed write, a full disk included, removes its partial
  folder); :class:`CheckpointSchedule` says when (every N updates or M minutes);
  :func:`load_checkpoint` takes the newest intact save of a run, skipping a corrupt one with a
  warning (RELIABILITY.md, Training).
* Interruption: :func:`stop_on_signals` turns Ctrl-C/SIGTERM into a request that ``learn``
  honours after the current update, checkpointing and raising :class:`TrainingInterrupted`.
* Reward integrity: the env layer (:func:`llm_gym.token_env.score_turns`) turns a NaN, ``None``
  or an exception from a reward into a named ``reward_error``; the rollout marks the sample
  invalid, :func:`reward_counters` counts it and :class:`RewardFailures` stops a run after
  repeated failures.
* Metrics: :class:`MetricsLogger` writes TensorBoard and CSV (``rollout/``, ``train/``, ``time/``
  prefixes) and :func:`plot_reward_curve` a PNG.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import logging
import os
import pickle
import random
import shutil
import signal
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "state.pt"
# Periodic checkpoints of the LLM agents: a kill loses at most this much work (issue 14).
DEFAULT_CHECKPOINT_EVERY = 50  # updates
DEFAULT_CHECKPOINT_MINUTES = 10.0
# What torch.load raises on a torn or overwritten file (pickle, zip and stream errors).
_CORRUPT_ERRORS = (RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError,
                   zipfile.BadZipFile)


# ---------------------------------------------------------------------------- determinism
def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; optionally make torch deterministic (CPU exact resume).

    Example:
        >>> seed_everything(0)
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Snapshot of python, numpy and torch RNG states plus named torch generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(),
             "generators": {k: g.get_state() for k, g in (generators or {}).items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None
                  ) -> None:
    """Restore a snapshot from :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in (generators or {}).items():
        generator.set_state(state["generators"][name])


# ---------------------------------------------------------------------------- data position
class TaskSampler:
    """Task indices in seeded shuffled epochs (or 0, 1, 2, ... when the env is unbounded).

    Args:
        num_tasks: items the env has (``env.num_tasks``), or ``None`` for procedural envs whose
            item ``i`` is a pure function of ``i``.
        seed: seed of the per-epoch shuffles.

    Example:
        >>> sampler = TaskSampler(4, seed=0)
        >>> sorted(sampler.take(4))
        [0, 1, 2, 3]
    """

    def __init__(self, num_tasks: int | None, seed: int = 0) -> None:
        if num_tasks is not None and num_tasks < 1:
            raise ValueError(f"num_tasks must be positive or None, got {num_tasks}")
        self.num_tasks = num_tasks
        self.seed = int(seed)
        self.epoch = 0
        self.cursor = 0  # next position in the current epoch (or next index if unbounded)
        self.used = 0  # indices handed out so far

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_tasks)

    def take(self, count: int) -> list[int]:
        """The next ``count`` task indices."""
        out: list[int] = []
        while len(out) < count:
            if self.num_tasks is None:
                out.append(self.cursor)
                self.cursor += 1
                continue
            if self.cursor >= self.num_tasks:
                self.epoch, self.cursor = self.epoch + 1, 0
            order = self._order()
            take = min(count - len(out), self.num_tasks - self.cursor)
            out.extend(int(i) for i in order[self.cursor : self.cursor + take])
            self.cursor += take
        self.used += count
        return out

    def state_dict(self) -> dict[str, Any]:
        """Where the sampler is (for checkpoints)."""
        return {"num_tasks": self.num_tasks, "seed": self.seed, "epoch": self.epoch,
                "cursor": self.cursor, "used": self.used}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`."""
        self.num_tasks, self.seed = state["num_tasks"], state["seed"]
        self.epoch, self.cursor, self.used = state["epoch"], state["cursor"], state["used"]


# ---------------------------------------------------------------------------- checkpoints
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_state_dir(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path/state.pt`` so that ``path`` appears complete or not at all.

    The file is written in a temporary sibling folder, fsync'ed, and the folder renamed onto
    ``path`` (an existing ``path`` is moved aside first and removed after the rename). A write
    that fails (or is interrupted) removes its temporary folder and leaves ``path`` as it was.

    Raises:
        OSError: ``ENOSPC`` with the path when the disk is full.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        with open(tmp / STATE_FILE, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(tmp)
    except BaseException as err:
        # A partial write of a multi-GB state would keep the disk full (issue 14).
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(err):
            raise OSError(errno.ENOSPC, f"no space left on device while writing {path}; the "
                          "partial write was removed and the previous checkpoint kept; free "
                          "space there or pass another --log-dir") from err
        raise
    old = None
    if path.exists():  # e.g. the same step saved again at the end of learn
        old = Path(tempfile.mkdtemp(prefix=".old-", dir=path.parent))
        os.rename(path, old / "previous")
    os.rename(tmp, path)
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _disk_full(err: BaseException) -> bool:
    # torch.save reports a full disk as RuntimeError("... file write failed"), without errno.
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(err, RuntimeError) and "write failed" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int = 3
                    ) -> Path:
    """Write ``state`` (anything ``torch.save`` takes) as checkpoint ``step``, atomically.

    The state goes to a temporary folder in ``directory``, is fsync'ed, and the folder is renamed
    to ``checkpoint-<step>`` (:func:`write_state_dir`): a kill at any moment leaves the previous
    checkpoints loadable. Then all but the newest ``keep`` are deleted (never the new one).

    Example:
        >>> import tempfile
        >>> path = save_checkpoint(tempfile.mkdtemp(), 1, {"x": 1})
        >>> load_checkpoint(path)["x"]
        1
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the last good checkpoint), got {keep}")
    directory = Path(directory)
    final = write_state_dir(directory / f"{CHECKPOINT_PREFIX}{step:09d}", state)
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first (half-written temp folders skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir()
             if p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def checkpoint_candidates(path: str | Path) -> list[Path]:
    """Complete saves at or inside ``path``, newest first.

    ``path`` may be a save itself, a folder of checkpoints, or a run folder: its
    ``checkpoints/checkpoint-*`` and its final ``agent/`` save are all candidates, ordered by
    when they were written.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return [path]
    found = list_checkpoints(path) + list_checkpoints(path / "checkpoints")
    if (path / "agent" / STATE_FILE).is_file():
        found.append(path / "agent")
    return sorted(found, key=lambda p: ((p / STATE_FILE).stat().st_mtime_ns, p.name),
                  reverse=True)


def latest_checkpoint(path: str | Path) -> Path | None:
    """The newest complete save at or inside ``path`` (see :func:`checkpoint_candidates`)."""
    found = checkpoint_candidates(path)
    return found[0] if found else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load the newest intact save at or inside ``path`` (a save, checkpoints or a run folder).

    A corrupt newest save is skipped with a warning naming it, and the previous one is loaded.

    Raises:
        FileNotFoundError: nothing complete at or inside ``path``.
        ValueError: every candidate is corrupt (each is named).
    """
    candidates = checkpoint_candidates(path)
    if not candidates:
        raise FileNotFoundError(f"no complete checkpoint at or inside {path}; pass a folder "
                                "written by save() or checkpoint()")
    broken: list[str] = []
    for candidate in candidates:
        file = candidate / STATE_FILE
        try:
            # Our own files: optimizer states, RNG tuples and config dicts need full unpickling.
            return torch.load(file, map_location="cpu", weights_only=False)
        except _CORRUPT_ERRORS as err:
            logger.warning("skipping corrupt checkpoint %s (%s: %s); trying the previous one",
                           file, type(err).__name__, err)
            broken.append(str(file))
    raise ValueError(f"every checkpoint at or inside {path} is corrupt ({', '.join(broken)}); "
                     "delete them and start the run again")


class CheckpointSchedule:
    """When to checkpoint: every ``every`` updates or ``minutes`` of wall-clock, whichever first.

    Args:
        every: updates between checkpoints (0: no count-based ones).
        minutes: wall-clock minutes between checkpoints (0: no time-based ones).

    Example:
        >>> schedule = CheckpointSchedule(every=2, minutes=0)
        >>> [schedule.due(n) for n in (1, 2, 3, 4)]
        [False, True, False, True]
    """

    def __init__(self, every: int, minutes: float) -> None:
        if every < 0 or minutes < 0:
            raise ValueError(f"checkpoint intervals must be >= 0 (0 turns one off), got every="
                             f"{every}, minutes={minutes}")
        self.every, self.seconds = int(every), 60.0 * float(minutes)
        self._last = time.monotonic()

    def due(self, updates: int) -> bool:
        """Whether to checkpoint after update number ``updates`` (resets the clock if so)."""
        now = time.monotonic()
        by_count = self.every > 0 and updates % self.every == 0
        by_time = self.seconds > 0 and now - self._last >= self.seconds
        if by_count or by_time:
            self._last = now
            return True
        return False


# ---------------------------------------------------------------------------- interruption
class TrainingInterrupted(KeyboardInterrupt):
    """``learn`` stopped on Ctrl-C/SIGTERM after saving ``checkpoint`` (None without log_dir)."""

    def __init__(self, checkpoint: Path | None, num_timesteps: int) -> None:
        super().__init__(f"interrupted at {num_timesteps} env steps")
        self.checkpoint = checkpoint
        self.num_timesteps = num_timesteps


_stop = threading.Event()


def stop_requested() -> bool:
    """Whether a signal asked training to stop (see :func:`stop_on_signals`)."""
    return _stop.is_set()


@contextlib.contextmanager
def stop_on_signals(graceful: bool = True) -> Iterator[None]:
    """Handle SIGINT and SIGTERM while training (main thread only; elsewhere a no-op).

    With ``graceful`` the first signal only sets :func:`stop_requested`, which the LLM agents'
    ``learn`` honours after the current update (then checkpoints and raises
    :class:`TrainingInterrupted`); a second signal raises ``KeyboardInterrupt`` at once.
    Without it, both signals raise ``KeyboardInterrupt`` at once (agents that cannot stop
    between updates).
    """
    _stop.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if graceful and not _stop.is_set():
            _stop.set()
            logger.warning("%s: stopping after the current update (again to stop now)",
                           signal.Signals(signum).name)
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop.clear()


# ---------------------------------------------------------------------------- reward integrity
def learn_target(
    agent: Any, total_timesteps: int, reset_num_timesteps: bool, resume_from: str | Path | None
) -> int:
    """The step count at which ``learn`` stops, with SB3's counting semantics.

    With ``resume_from`` the agent's state is restored first and ``total_timesteps`` is the
    total of the whole run, so a resumed run stops where the uninterrupted one would. Otherwise
    ``reset_num_timesteps`` restarts the count at 0, or ``total_timesteps`` come on top of it.
    """
    if int(total_timesteps) < 1:
        raise ValueError(f"total_timesteps must be at least 1, got {total_timesteps}")
    if resume_from is not None:
        agent.load_state(load_checkpoint(resume_from))
        return int(total_timesteps)
    if reset_num_timesteps:
        agent.num_timesteps = 0
        return int(total_timesteps)
    return agent.num_timesteps + int(total_timesteps)


def reward_counters(infos: Iterable[dict[str, Any]], valid: Iterable[bool]) -> dict[str, float]:
    """``reward/...`` metrics of one batch: dropped samples, verdicts and reward terms.

    Dropped samples are counted by cause, env verdicts by name, and every named reward term
    (``info["reward_components"]`` of shaping wrappers) as its mean episode sum,
    ``reward/<term>``.

    Example:
        >>> reward_counters([{"episode_reward_components": {"env": 1.0, "length": -0.5}},
        ...                  {"reward_error": "nan"}], [True, False])["reward/length"]
        -0.5
    """
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
    return counts


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
class MetricsLogger:
    """Scalars to TensorBoard (``tb/``) and ``metrics.csv`` in ``log_dir`` (or nowhere).

    Example:
        >>> import tempfile
        >>> log = MetricsLogger(tempfile.mkdtemp())
        >>> log.log({"rollout/ep_rew_mean": 1.0}, step=1)
        >>> log.close()
    """

    def __init__(self, log_dir: str | Path | None, use_wandb: bool = False,
                 wandb_kwargs: dict[str, Any] | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.rows: list[dict[str, float]] = []
        self._writer = None
        self._wandb = None
        if self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.log_dir / "tb"))
        if use_wandb:
            import wandb

            self._wandb = wandb.init(**(wandb_kwargs or {}))

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record one row of scalars at ``step`` (env steps)."""
        row = {"step": float(step), **{k: float(v) for k, v in metrics.items()}}
        self.rows.append(row)
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(key, float(value), step)
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
