"""Sandbox slots: one UID each, held machine-wide by an ``flock``; ending every process of a UID.

A slot's UID (``uid_base + slot``) is used by one :class:`~llm_gym.sandbox.runner.Sandbox` at
a time on the whole machine — other pools, other processes included — so ``RLIMIT_NPROC``,
counted per UID, confines a fork bomb to its own slot, and :func:`reap_uid` can end everything
a run left behind without touching anyone else's processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator

from llm_gym.sandbox.isolation import STATE_DIR
from llm_gym.sandbox.run_types import SandboxUnavailable

_UID_RE = re.compile(rb"\nUid:\s+(\d+)\s+(\d+)\s+(\d+)")


def _lock_dir() -> str:
    """Where the machine-wide lock files live (one folder per user when not root)."""
    lock_dir = STATE_DIR if os.geteuid() == 0 else os.path.join(
        tempfile.gettempdir(), f"llm_gym_sandbox-{os.geteuid()}")
    os.makedirs(lock_dir, mode=0o755, exist_ok=True)
    return lock_dir


@contextlib.contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``name`` in :func:`_lock_dir` (waits for other holders)."""
    fd = os.open(os.path.join(_lock_dir(), name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire_slot(first: int, uid_base: int, span: int = 1000) -> tuple[int, int]:
    """Lock the first free slot at or above ``first`` (machine-wide, released on exit)."""
    lock_dir = _lock_dir()
    for slot in range(first, first + span):
        fd = os.open(os.path.join(lock_dir, f"slot-{uid_base + slot}.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    raise SandboxUnavailable(f"all sandbox slots {first}..{first + span - 1} are in use")


def pids_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real, effective or saved UID is ``uid``."""
    return [int(name) for name in os.listdir("/proc")
            if name.isdigit() and _has_uid(int(name), uid, live_only=True)]


def reap_uid(uid: int, timeout: float = 2.0) -> bool:
    """SIGKILL every process of ``uid`` until none is left; False if some outlived ``timeout``."""
    if uid == os.geteuid() or uid == 0:
        raise ValueError(f"refusing to kill every process of uid {uid} (it is not a slot UID)")
    end = time.monotonic() + timeout
    while True:
        pids = pids_of_uid(uid)
        if not pids:
            return True
        if time.monotonic() > end:
            return False
        for pid in pids:
            _kill_if_uid(pid, uid)
        time.sleep(0.005)


def _kill_if_uid(pid: int, uid: int) -> None:
    # Pin the process with a pidfd, then re-check its UID, so a recycled pid is never hit.
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if _has_uid(pid, uid):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def _has_uid(pid: int, uid: int, live_only: bool = False) -> bool:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return False
    uids = _UID_RE.search(status)
    if not uids or uid not in map(int, uids.groups()):
        return False
    return not (live_only and b"\nState:\tZ" in status)
