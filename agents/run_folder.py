"""A run owns its folder: one writer at a time, and a fresh run never writes into another's.

A training run with a log dir holds an exclusive ``fcntl.flock`` on ``<folder>/run.lock`` for as
long as it writes there (the kernel drops it when the process ends, ``kill -9`` included), and
records its run id in that file; a second writer is refused while the lock is held
(RELIABILITY.md "Files on disk are input", issue 19). :func:`default_run_dir` gives
``llm-gym train`` a fresh timestamped folder, as TensorBoard does; :func:`holds_run` and
:func:`clear_run` back its refusal of a folder that holds a run and its ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "run.lock"
RUN_FILE = "run.json"
# What llm-gym train writes in a run folder; --overwrite removes these and nothing else (an
# explicit --log-dir may be a folder that holds the user's other files too).
RUN_ARTIFACTS = ("checkpoints", RUN_FILE, "agent", "agent.zip", "agent.npz", "agent.json",
                 "metrics.csv", "eval.json", "episodes.csv", "reward_curve.png",
                 "learning_curve.png", "tb")
_held: dict[Path, list[int]] = {}  # lock file -> [fd, holders in this process]


class RunFolderInUse(OSError):
    """Another process holds the folder's lock (it is training there now)."""


class RunLock:
    """This process's hold on a run folder's lock (see :func:`lock_run_folder`)."""

    def __init__(self, folder: Path, file: Path) -> None:
        self.folder, self.file = folder, file
        self._released = False

    def record(self, run_id: str) -> None:
        """Write ``run_id`` into the lock file: the folder's run from now on."""
        fd = _held[self.file][0]
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run_id": run_id, "pid": os.getpid()}).encode(), 0)
        os.fsync(fd)

    def release(self) -> None:
        """Let go of the lock (the last holder in this process unlocks and closes it)."""
        if self._released:
            return
        self._released = True
        entry = _held[self.file]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self.file]
            os.close(entry[0])  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_folder(folder: str | Path) -> RunLock:
    """Take the exclusive lock of ``folder`` (created if missing), or fail at once.

    Holders in one process share the lock (the CLI takes it, then the trainer's ``learn``).

    Raises:
        RunFolderInUse: another process holds it.

    Example:
        >>> import tempfile
        >>> with lock_run_folder(tempfile.mkdtemp()) as lock:
        ...     lock.record("run-1")
        >>> folder_run_id(lock.folder)
        'run-1'
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    file = (folder / LOCK_FILE).resolve()
    if file in _held:
        _held[file][1] += 1
        return RunLock(folder, file)
    fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunFolderInUse(f"{folder} is in use: another llm-gym run holds {file} and is "
                             "writing there; wait for it to end, or pass another --log-dir"
                             ) from None
    _held[file] = [fd, 1]
    return RunLock(folder, file)


@contextlib.contextmanager
def locked(folder: str | Path | None) -> Iterator[RunLock | None]:
    """:func:`lock_run_folder` for a ``with`` block; ``None`` (no lock) without a folder."""
    if folder is None:
        yield None
        return
    with lock_run_folder(folder) as lock:
        yield lock


def folder_run_id(folder: str | Path) -> str | None:
    """The run id ``run.json`` or the lock file of ``folder`` records, if any."""
    for name in (RUN_FILE, LOCK_FILE):
        try:
            value = json.loads((Path(folder) / name).read_text()).get("run_id")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str):
            return value
    return None


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds (part of) a run: its run.json, checkpoints or agent save."""
    folder = Path(folder)
    checkpoints = folder / "checkpoints"
    return ((folder / RUN_FILE).exists() or any((folder / n).exists() for n in RUN_ARTIFACTS[2:6])
            or (checkpoints.is_dir() and any(checkpoints.iterdir())))


def clear_run(lock: RunLock) -> None:
    """Remove the run artifacts of the locked folder (``--overwrite``; other files stay)."""
    for name in RUN_ARTIFACTS:
        path = lock.folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def default_run_dir(base: str | Path) -> Path:
    """A new folder ``<base>-<YYYYmmdd-HHMMSS>`` (``-1``, ``-2``, ... if taken), created now.

    Creating it claims it: two commands started in the same second get different folders.
    """
    stamp = f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
    for suffix in ("", *(f"-{n}" for n in range(1, 1000))):
        path = Path(stamp + suffix)
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{stamp}-1 ... -999 all exist; pass --log-dir")
