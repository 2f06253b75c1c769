"""Checkpoint I/O of the LLM trainers: atomic writes, the last K kept, a corrupt save skipped.

:func:`save_checkpoint` writes to a temporary folder, fsyncs and renames it atomically, and keeps
the last K (a failed write, a full disk included, removes its partial folder);
:class:`CheckpointSchedule` says when (every N updates or M minutes); :func:`load_checkpoint`
takes the newest intact save of a run, skipping a corrupt one with a warning (RELIABILITY.md,
Training).
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

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
