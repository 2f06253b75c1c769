"""Checkpoint I/O of the LLM trainers: files that cannot run code, atomic writes, the last K kept.

A save is a folder (issue 19, RELIABILITY.md "Files on disk are input"):

* ``checkpoint.json``: the format, the run id, the update count and every entry of the state
  that JSON holds exactly (config, counters, episode log, sampler position, ...);
* ``<entry>.safetensors``: each entry that is a flat ``{name: tensor}`` dict (the weights);
* ``tensors.pt``: the rest (optimizer and RNG state, self-play snapshots), read back with
  ``torch.load(weights_only=True)``, which builds tensors and plain containers only.

Nothing is unpickled on load, so a shared or planted checkpoint cannot run code; a save in the
older format (one pickled ``state.pt``) is refused with a message, never opened.
:func:`save_checkpoint` writes to a temporary folder, fsyncs and renames it atomically, and keeps
the newest K saves *of its own run*; :func:`load_checkpoint` takes the intact save with the most
updates of the folder's run (its recorded run id and update count, never file times), skipping a
corrupt one with a warning; :class:`CheckpointSchedule` says when to save.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as dump_safetensors

from llm_gym.agents.run_folder import RunLock, folder_run_id

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
META_FILE = "checkpoint.json"
TENSORS_FILE = "tensors.pt"
WEIGHTS_SUFFIX = ".safetensors"
LEGACY_FILE = "state.pt"  # the format before issue 19: one pickled dict, never loaded now
STATE_FILE = META_FILE  # the file whose presence marks a complete save
SAVE_FORMAT = "llm_gym.checkpoint/2"
# What reading a torn, truncated or tampered save raises (JSON, safetensors, torch's
# weights-only unpickler, zip and stream errors).
_CORRUPT_ERRORS = (RuntimeError, EOFError, ValueError, LookupError, TypeError, AttributeError,
                   OSError, pickle.UnpicklingError, zipfile.BadZipFile, SafetensorError)
_ENTRY_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # a weights entry becomes a file name


@dataclass(frozen=True)
class SaveInfo:
    """What a save's ``checkpoint.json`` says about it (read without loading any tensor)."""

    path: Path
    run_id: str | None
    updates: int


# ---------------------------------------------------------------------------- encoding
def _is_weights(key: str, value: Any) -> bool:
    return (isinstance(value, dict) and bool(value) and bool(_ENTRY_NAME.match(key))
            and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                    for k, v in value.items()))


def _json_exact(value: Any) -> bool:
    """Whether ``value`` comes back from JSON equal (tuples, int keys and NaN do not)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        return False


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (tied embeddings) or are not contiguous.
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if not tensor.is_contiguous() or tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.contiguous().clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def _write_file(path: Path, write: Any) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _write_save(folder: Path, state: dict[str, Any], run_id: str | None, updates: int) -> None:
    """The files of one save (see the module docstring) in ``folder``."""
    plain: dict[str, Any] = {}
    weights: dict[str, dict[str, torch.Tensor]] = {}
    rest: dict[str, Any] = {}
    for key, value in state.items():
        if _is_weights(key, value):
            weights[key] = value
        elif _json_exact(value):
            plain[key] = value
        else:
            rest[key] = value
    for key, tensors in weights.items():
        data = dump_safetensors(_storable(tensors))
        _write_file(folder / f"{key}{WEIGHTS_SUFFIX}", lambda h, d=data: h.write(d))
    _write_file(folder / TENSORS_FILE, lambda h: torch.save(rest, h))
    meta = {"format": SAVE_FORMAT, "run_id": run_id, "updates": int(updates),
            "weights": sorted(weights), "state": plain}
    _write_file(folder / META_FILE, lambda h: h.write(json.dumps(meta, indent=1).encode()))


def _read_meta(folder: Path) -> dict[str, Any]:
    meta = json.loads(_regular(folder / META_FILE).read_text())
    if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
        raise ValueError(f"{folder / META_FILE} is not an llm_gym save ({SAVE_FORMAT})")
    if not isinstance(meta.get("updates"), int) or not isinstance(meta.get("state"), dict):
        raise ValueError(f"{folder / META_FILE} has no update count or state")
    if not (meta.get("run_id") is None or isinstance(meta["run_id"], str)):
        raise ValueError(f"{folder / META_FILE} has a run id that is not a string")
    return meta


def _regular(path: Path) -> Path:
    # A planted FIFO or a link to /dev/zero would hang the read or fill the memory.
    if not path.is_file():
        raise ValueError(f"{path} is missing or not a regular file")
    return path


def _read_save(folder: Path) -> dict[str, Any]:
    """The state :func:`_write_save` wrote; nothing on the way is unpickled."""
    meta = _read_meta(folder)
    state = dict(meta["state"])
    for key in meta.get("weights", []):
        if not isinstance(key, str) or not _ENTRY_NAME.match(key):
            raise ValueError(f"{folder / META_FILE} names a bad weights entry {key!r}")
        state[key] = load_safetensors(_regular(folder / f"{key}{WEIGHTS_SUFFIX}").read_bytes())
    # weights_only: tensors, numbers, strings and containers; any other object is refused.
    rest = torch.load(_regular(folder / TENSORS_FILE), map_location="cpu", weights_only=True)
    if not isinstance(rest, dict):
        raise ValueError(f"{folder / TENSORS_FILE} holds no dict")
    state.update(rest)
    return state


def save_info(folder: str | Path) -> SaveInfo:
    """The run id and update count a save records.

    Raises:
        ValueError: ``folder`` holds no readable ``checkpoint.json`` of this format.
    """
    folder = Path(folder)
    try:
        meta = _read_meta(folder)
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder} is not a readable llm_gym save ({err})") from err
    return SaveInfo(folder, meta.get("run_id"), meta["updates"])


def legacy_message(folder: Path) -> str:
    """The one line for a save in the pickled format of llm_gym before issue 19."""
    return (f"{folder} is a checkpoint in the old format (one pickled {LEGACY_FILE}), which "
            "llm_gym no longer opens because unpickling a file can run code; train the run "
            "again, or, only if you wrote it yourself, convert it once with "
            f"llm_gym.agents.checkpoints.convert_legacy_save({str(folder)!r})")


def convert_legacy_save(folder: str | Path) -> Path:
    """Rewrite a save of the old pickled format in the current one, in place.

    Unpickling runs whatever code the file names: call this only on saves you wrote yourself.
    """
    folder = Path(folder)
    state = torch.load(folder / LEGACY_FILE, map_location="cpu", weights_only=False)
    updates = int(state.get("counters", {}).get("num_updates", 0))
    write_state_dir(folder, state, run_id=None, updates=updates)
    return folder


# ---------------------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _state_updates(state: dict[str, Any]) -> int:
    counters = state.get("counters")
    return int(counters.get("num_updates", 0)) if isinstance(counters, dict) else 0


def write_state_dir(path: str | Path, state: dict[str, Any], *, run_id: str | None = None,
                    updates: int | None = None) -> Path:
    """Write ``state`` as a save at ``path`` so that ``path`` appears complete or not at all.

    The files are written in a temporary sibling folder, fsync'ed, and the folder renamed onto
    ``path`` (an existing ``path`` is moved aside first and removed after the rename). A write
    that fails (or is interrupted) removes its temporary folder and leaves ``path`` as it was.

    Args:
        path: the save folder.
        state: a dict of tensors, JSON values and containers of them.
        run_id: the run the save belongs to (retention and resume go by it).
        updates: the update count it records (default: ``state["counters"]["num_updates"]``).

    Raises:
        OSError: ``ENOSPC`` with the path when the disk is full.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    updates = _state_updates(state) if updates is None else int(updates)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        _write_save(tmp, state, run_id, updates)
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


def _disk_full(err: BaseException | None) -> bool:
    # torch.save reports a full disk as RuntimeError("... file write failed"), without errno.
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(err, RuntimeError) and "write failed" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int = 3,
                    run_id: str | None = None) -> Path:
    """Write ``state`` as checkpoint ``step`` (its update count) of run ``run_id``, atomically.

    The save goes to a temporary folder in ``directory``, is fsync'ed, and the folder is renamed
    to ``checkpoint-<step>`` (:func:`write_state_dir`): a kill at any moment leaves the previous
    checkpoints loadable. Then the run's own saves beyond the newest ``keep`` (by recorded update
    count) are deleted: never the new one, never one of another run or one it cannot read.

    Example:
        >>> import tempfile
        >>> path = save_checkpoint(tempfile.mkdtemp(), 1, {"x": 1})
        >>> load_checkpoint(path)["x"]
        1
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the last good checkpoint), got {keep}")
    directory = Path(directory)
    target = directory / f"{CHECKPOINT_PREFIX}{step:09d}"
    _refuse_foreign(target, run_id)
    final = write_state_dir(target, state, run_id=run_id, updates=step)
    own = [info for info in _readable(list_checkpoints(directory))
           if info.run_id == run_id and info.path != final]
    own.sort(key=lambda info: (info.updates, info.path.name))
    for info in own[: max(0, len(own) - (keep - 1))]:
        shutil.rmtree(info.path, ignore_errors=True)
    return final


def _refuse_foreign(target: Path, run_id: str | None) -> None:
    """Replacing a readable save of another run would delete it: refuse."""
    if not (target / META_FILE).is_file():
        return
    try:
        owner = save_info(target).run_id
    except ValueError:  # a torn save: nothing readable to keep
        return
    if owner != run_id:
        raise FileExistsError(f"{target} is a checkpoint of run {owner}, not of this run "
                              f"{run_id}; write this run's checkpoints to another folder")


# ---------------------------------------------------------------------------- finding
def _readable(folders: list[Path]) -> list[SaveInfo]:
    found = []
    for folder in folders:
        try:
            found.append(save_info(folder))
        except ValueError as err:
            logger.warning("skipping unreadable checkpoint %s (%s)", folder, err)
    return found


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete saves in ``directory`` by folder name (half-written temp folders skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.name.startswith(CHECKPOINT_PREFIX) and (p / META_FILE).is_file())


def _legacy_saves(path: Path) -> list[Path]:
    folders = [path, path / "agent", *(p for d in (path, path / "checkpoints") if d.is_dir()
                                       for p in d.iterdir() if p.name.startswith(
                                           CHECKPOINT_PREFIX))]
    return [p for p in folders if (p / LEGACY_FILE).is_file() and not (p / META_FILE).is_file()]


def _owner(path: Path) -> str | None:
    """The run id of the run folder ``path`` is (or whose ``checkpoints/`` it is), if recorded."""
    owner = folder_run_id(path)
    if owner is None and path.name == "checkpoints":
        owner = folder_run_id(path.parent)
    return owner


def _survey(path: Path, run_id: str | None) -> tuple[list[SaveInfo], list[Path]]:
    """The readable saves at or inside ``path`` of the run, most updates first; unreadable ones."""
    if (path / META_FILE).is_file():
        folders = [path]
    else:
        folders = list_checkpoints(path) + list_checkpoints(path / "checkpoints")
        if (path / "agent" / META_FILE).is_file():
            folders.append(path / "agent")
    infos = _readable(folders)
    broken = [p for p in folders if p not in {i.path for i in infos}]
    owner = run_id if run_id is not None else _owner(path)
    if owner is not None and folders != [path]:
        for info in infos:
            if info.run_id != owner:
                logger.warning("ignoring checkpoint %s: it belongs to run %s, not to run %s of "
                               "%s", info.path, info.run_id, owner, path)
        infos = [info for info in infos if info.run_id == owner]
    # The final agent/ save wins a tie with the checkpoint of the same update.
    infos.sort(key=lambda i: (i.updates, i.path.name == "agent", i.path.name), reverse=True)
    return infos, broken


def checkpoint_candidates(path: str | Path, run_id: str | None = None) -> list[Path]:
    """Complete saves of one run at or inside ``path``, the one with the most updates first.

    ``path`` may be a save itself, a folder of checkpoints, or a run folder: its
    ``checkpoints/checkpoint-*`` and its final ``agent/`` save are all candidates. In a run
    folder only the saves of its run (``run_id``, else the one ``run.json`` or the folder's lock
    records) count; the order is each save's recorded update count, never a file time or name.
    """
    return [info.path for info in _survey(Path(path), run_id)[0]]


def latest_checkpoint(path: str | Path, run_id: str | None = None) -> Path | None:
    """The save with the most updates at or inside ``path`` (see :func:`checkpoint_candidates`).

    Raises:
        ValueError: the only saves there are of the old pickled format (never opened).
    """
    found = checkpoint_candidates(path, run_id)
    if not found:
        _refuse_legacy(Path(path))
    return found[0] if found else None


def _refuse_legacy(path: Path) -> None:
    legacy = _legacy_saves(path)
    if legacy:
        raise ValueError(legacy_message(legacy[0]))


def load_checkpoint(path: str | Path, run_id: str | None = None) -> dict[str, Any]:
    """Load the newest intact save of a run at or inside ``path`` (a save, checkpoints or a run).

    A corrupt newest save is skipped with a warning naming it, and the previous one is loaded.
    A save of the old pickled format is never opened (the error says what to do).

    Raises:
        FileNotFoundError: nothing complete at or inside ``path``.
        ValueError: every candidate is corrupt (each is named), or only old-format saves.
    """
    path = Path(path)
    infos, broken = _survey(path, run_id)
    if not infos and not broken:
        _refuse_legacy(path)
        raise FileNotFoundError(f"no complete checkpoint at or inside {path}; pass a folder "
                                "written by save() or checkpoint()")
    for legacy in _legacy_saves(path):
        logger.warning("ignoring a save: %s", legacy_message(legacy))
    failed = [str(p) for p in broken]
    for info in infos:
        try:
            return _read_save(info.path)
        except _CORRUPT_ERRORS as err:
            logger.warning("skipping corrupt checkpoint %s (%s: %s); trying the previous one",
                           info.path, type(err).__name__, err)
            failed.append(str(info.path))
    raise ValueError(f"every checkpoint at or inside {path} is corrupt ({', '.join(failed)}); "
                     "delete them and start the run again")


class CheckpointSchedule:
    """When to checkpoint: every ``every`` updates or ``minutes`` of wall-clock, whichever first.

    The first checkpoint of a ``learn`` call comes early, after ``first_updates`` updates or
    ``first_minutes`` minutes (whichever first, each capped by the regular interval), so a run
    killed in its first minutes still has something to resume (issue 21: with the defaults of 50
    updates or 10 minutes, a ``kill -9`` after 25 s lost the run). Then the regular cadence.
    With both intervals 0 there are no checkpoints at all.

    Args:
        every: updates between checkpoints (0: no count-based ones).
        minutes: wall-clock minutes between checkpoints (0: no time-based ones).
        first_updates: updates before the first checkpoint.
        first_minutes: wall-clock minutes before the first checkpoint.

    Example:
        >>> schedule = CheckpointSchedule(every=4, minutes=0)
        >>> [n for n in range(1, 13) if schedule.due(n)]  # early at 3, then every 4
        [3, 4, 8, 12]
    """

    FIRST_UPDATES = 3
    FIRST_MINUTES = 1.0

    def __init__(self, every: int, minutes: float, first_updates: int = FIRST_UPDATES,
                 first_minutes: float = FIRST_MINUTES) -> None:
        if every < 0 or minutes < 0:
            raise ValueError(f"checkpoint intervals must be >= 0 (0 turns one off), got every="
                             f"{every}, minutes={minutes}")
        self.every, self.seconds = int(every), 60.0 * float(minutes)
        enabled = self.every > 0 or self.seconds > 0
        self.first_updates = min(first_updates, self.every or first_updates) if enabled else 0
        self.first_seconds = (min(60.0 * first_minutes, self.seconds or 60.0 * first_minutes)
                              if enabled else 0.0)
        self._last = time.monotonic()
        self._updates = 0  # updates seen by this schedule (this learn call)
        self._first_done = not enabled

    def due(self, updates: int) -> bool:
        """Whether to checkpoint after update number ``updates`` (resets the clock if so)."""
        now = time.monotonic()
        self._updates += 1
        if not self._first_done:
            early = (self._updates >= self.first_updates
                     or now - self._last >= self.first_seconds)
            if not early and not (self.every > 0 and updates % self.every == 0):
                return False
            self._first_done, self._last = True, now
            return True
        by_count = self.every > 0 and updates % self.every == 0
        by_time = self.seconds > 0 and now - self._last >= self.seconds
        if by_count or by_time:
            self._last = now
            return True
        return False


def claim_run_folder(lock: RunLock, run_id: str) -> None:
    """Refuse a locked folder whose checkpoints belong to another run; else record ``run_id``.

    Raises:
        FileExistsError: ``checkpoints/`` holds saves of another run (named, with the fix).
    """
    others = set()
    for folder in list_checkpoints(lock.folder / "checkpoints"):
        with contextlib.suppress(ValueError):  # unreadable: not a run we can name
            others.add(save_info(folder).run_id)
    others.discard(run_id)
    if not others:
        # Writes torn by a kill: no one else writes here while we hold the lock.
        for torn in (lock.folder / "checkpoints").glob(".tmp-*"):
            shutil.rmtree(torn, ignore_errors=True)
    if others:
        raise FileExistsError(
            f"log_dir {lock.folder} holds checkpoints of another run (run id "
            f"{', '.join(sorted(str(o) for o in others))}); continue that run with "
            f"learn(..., resume_from={str(lock.folder)!r}) or load(), or pass another "
            "log_dir")
    lock.record(run_id)
