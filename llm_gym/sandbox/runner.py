"""Run one untrusted Python program in an isolated, time- and resource-limited process.

A :class:`Sandbox` owns one *slot*: a UID (``uid_base + slot``) that no other slot, pool or
process on the machine uses at the same time (an ``flock`` on a per-UID lock file), so
``RLIMIT_NPROC`` — counted per UID — confines a fork bomb to its own slot, and a cgroup
(:mod:`llm_gym.sandbox.cgroup`) that bounds the run's total memory — processes, shared memory,
tmpfs files, kernel memory — and process count. Each run:

1. passes the program on a ``memfd`` (never written into a shared place), stdin ``/dev/null``,
   an empty environment plus ``MALLOC_ARENA_MAX=2`` and single-threaded BLAS;
2. starts ``python -I -S`` under the isolation of :mod:`llm_gym.sandbox.isolation` (an empty
   root: the standard library and nothing else of the host) with rlimits on CPU, address
   space, processes, file size, open files and core dumps, inside the slot's cgroup;
3. reads stdout/stderr without blocking, each up to a byte cap (an output bomb is killed, never
   buffered), optionally next to a trusted *peer* process wired to the program by two pipes;
4. at the wall deadline (or when done) SIGKILLs the process group, the pid namespace (its init
   dies, the kernel kills the rest), every process of the slot's cgroup and every process still
   running as the slot UID, and waits until none is left (and the memory it held is free)
   before the slot is used again.

Model code runs under a seccomp filter (:mod:`llm_gym.sandbox.seccomp_policy`: no nested
namespaces, io_uring, bpf, ptrace, mount ...). The deadline does not depend on this process
staying alive: every process of a run dies with the thread that started it
(:func:`~llm_gym.sandbox.isolation.tie_to_parent`), a watchdog inside the run enforces the wall
limit (:func:`~llm_gym.sandbox.confine.arm_wall`), and whoever opens the slot next kills what is
left of its cgroup and UID first.

This module is the entrance (:class:`Sandbox`, :func:`detect_isolation`); the limits and the
result of a run are in :mod:`llm_gym.sandbox.run_types`, the slot locks and UID reaping in
:mod:`llm_gym.sandbox.slots`, and one run's processes and pipes in :mod:`llm_gym.sandbox.process`.

Example:
    >>> with Sandbox(allow_degraded=True) as box:  # doctest: +SKIP
    ...     box.run("print(6 * 7)").stdout.strip()
    '42'
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

from llm_gym.sandbox.cgroup import SlotCgroup
from llm_gym.sandbox.isolation import Isolation, choose_isolation, level_notes
from llm_gym.sandbox.process import _Run
from llm_gym.sandbox.run_types import RunResult, SandboxConfig, SandboxUnavailable, Status
from llm_gym.sandbox.scripts import PythonScript, stdlib_source
from llm_gym.sandbox.seccomp_policy import MISSING_NOTE, policy_bpf
from llm_gym.sandbox.slots import _acquire_slot, _machine_lock, pids_of_uid, reap_uid

# The sandbox's public names, importable from here; most are defined in run_types and slots.
__all__ = ["RunResult", "Sandbox", "SandboxConfig", "SandboxUnavailable", "Status",
           "detect_isolation", "pids_of_uid", "reap_uid"]


class Sandbox:
    """One sandbox slot: runs programs one at a time (use :class:`SandboxPool` for many).

    Args:
        slot: preferred slot number; the first free slot at or above it is taken.
        config: limits; ``timeout`` is the default wall deadline of :meth:`run`.
        allow_degraded: run even without namespaces (see :mod:`llm_gym.sandbox.isolation`).

    Raises:
        SandboxUnavailable: namespaces are unavailable and ``allow_degraded`` is false.
    """

    def __init__(self, slot: int = 0, config: SandboxConfig | None = None, *,
                 allow_degraded: bool | None = None) -> None:
        self.config = config or SandboxConfig()
        allow = self.config.allow_degraded if allow_degraded is None else allow_degraded
        self.isolation: Isolation = detect_isolation()
        if self.isolation.degraded and not allow:
            raise SandboxUnavailable(
                f"no namespace isolation on this machine ({self.isolation.reason}); refusing to "
                "run untrusted code. Pass allow_degraded=True to run it with rlimits only"
            )
        self.slot, self._lock_fd = _acquire_slot(slot, self.config.uid_base)
        self.uid = self.config.uid_base + self.slot
        self.cgroup: SlotCgroup | None = None
        if self.isolation.level == "root":
            self.cgroup = SlotCgroup.create(f"slot-{self.uid}", self.config.run_memory_mb << 20,
                                            self.config.nproc + 2)  # + unshare and its shell
        # A run of a killed owner (kill -9 of a trainer) may still hold the slot: end it first.
        if self.isolation.per_slot_uid:
            reap_uid(self.uid)
        if self.cgroup is not None:
            self.cgroup.kill()
            self.cgroup.release(self.config.run_memory_mb << 18)
        self.notes = [*self.isolation.notes, *(self.cgroup.notes if self.cgroup else [])]

    @property
    def degraded(self) -> bool:
        return self.isolation.degraded

    def close(self) -> None:
        """Release the slot (its UID may then be used by another sandbox)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, program: str, *, timeout: float | None = None, bootstrap: str | None = None,
            mode: str = "main", peer: PythonScript | None = None,
            peer_input: bytes = b"") -> RunResult:
        """Run ``program`` and return within ``timeout`` (+ kill and cleanup time).

        Args:
            program: Python source, untrusted.
            timeout: wall deadline in seconds (default ``config.timeout``).
            bootstrap: sandbox-side script (default :mod:`llm_gym.sandbox.bootstrap`).
            mode: ``"main"`` runs the program as ``__main__``; ``"serve"`` runs it as a call
                server for ``peer`` (see :mod:`llm_gym.rewards.code`).
            peer: a trusted script started next to the program; it gets the request write end
                and the response read end as its last argument, JSON ``{"req": fd, "resp":
                fd}``, and ``peer_input`` on stdin. The run ends when the peer exits.
            peer_input: bytes for the peer's stdin.
        """
        if self._lock_fd is None:
            raise RuntimeError("this Sandbox is closed; create a new one")
        timeout = float(self.config.timeout if timeout is None else timeout)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        start = time.monotonic()
        run = _Run(self.isolation, self.uid, self.config, program, timeout,
                   bootstrap or _BOOTSTRAP, mode, peer, peer_input, self.cgroup)
        try:
            result = run.supervise(start + timeout)
        finally:
            run.cleanup()
        result.duration = time.monotonic() - start
        result.notes.extend(self.notes)
        return result


_BOOTSTRAP = stdlib_source("wire_encode", "wire", "confine", "bootstrap")


@functools.cache
def detect_isolation() -> Isolation:
    """The best isolation this machine offers, probed once per process by a real run.

    Example:
        >>> detect_isolation().level in ("root", "userns", "degraded")
        True
    """
    found: dict[str, str] = {}
    iso = choose_isolation(lambda candidate: _probe(candidate, found))
    notes = level_notes(iso.level, found.get(iso.level, ""))
    if policy_bpf() is None:
        notes.append(MISSING_NOTE)
    return dataclasses.replace(iso, notes=tuple(notes))


def _probe(iso: Isolation, found: dict[str, str]) -> str:
    """Run a trivial program at ``iso``'s level as UID 49999; '' when it worked.

    The program also reads back the run's ``user.max_user_namespaces`` into ``found``.

    Every process probes as the same UID, and a run's cleanup kills every process of its UID,
    so probes hold a machine-wide lock: two processes starting sandboxes at once (Ray scoring
    actors) would otherwise kill each other's probe and both conclude there is no isolation.
    """
    with _machine_lock("probe-49999.lock"):
        run = _Run(iso, 49999, SandboxConfig(tmp_mb=1), _PROBE, 10.0, _BOOTSTRAP, "main", None,
                   b"")
        try:
            result = run.supervise(time.monotonic() + 10.0)
        finally:
            run.cleanup()
    lines = result.stdout.split()
    if result.status != Status.OK or lines[:1] != ["True"]:
        return f"{result.status} {result.returncode}: {result.stderr.strip()[-300:]}"
    found[iso.level] = lines[1] if len(lines) > 1 else ""
    return ""


_PROBE = ("import os\nprint(os.getuid() != 0)\ntry:\n"
          "    print(open('/proc/sys/user/max_user_namespaces').read().strip())\n"
          "except OSError:\n    print('unreadable')\n")

