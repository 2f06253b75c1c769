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

Example:
    >>> with Sandbox(allow_degraded=True) as box:  # doctest: +SKIP
    ...     box.run("print(6 * 7)").stdout.strip()
    '42'
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import functools
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from llm_gym.sandbox.cgroup import SlotCgroup, children
from llm_gym.sandbox.isolation import (
    STATE_DIR,
    Isolation,
    choose_isolation,
    empty_root_setup,
    level_notes,
    map_ids,
    tie_to_parent,
)
from llm_gym.sandbox.scripts import PythonScript, stdlib_source
from llm_gym.sandbox.seccomp_policy import MISSING_NOTE, policy_bpf

_CHILD_ENV = {"MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
              "LANG": "C.UTF-8"}
_READ = 1 << 16
_UID_RE = re.compile(rb"\nUid:\s+(\d+)\s+(\d+)\s+(\d+)")


class SandboxUnavailable(RuntimeError):
    """Namespaces are unavailable and degraded runs were not allowed."""


class Status(enum.StrEnum):
    """How a sandboxed run ended."""

    OK = "ok"                      # exited 0 (or served its peer until the peer finished)
    TIMEOUT = "timeout"            # wall deadline reached; everything was killed
    KILLED = "killed"              # died from a signal (segfault, CPU limit, ...)
    MEMORY = "memory"              # ran out of its address-space limit or the run's budget
    OUTPUT_LIMIT = "output_limit"  # wrote more than the stdout/stderr cap; killed
    ERROR = "error"                # exited non-zero (an uncaught exception, sys.exit(1) ...)


@dataclass(frozen=True)
class SandboxConfig:
    """Limits of one run. Sizes in MiB, times in seconds."""

    timeout: float = 5.0
    memory_mb: int = 256      # RLIMIT_AS per process
    nproc: int = 32           # RLIMIT_NPROC: processes + threads of the slot UID
    fsize_mb: int = 16        # RLIMIT_FSIZE: largest file it may write
    nofile: int = 64          # RLIMIT_NOFILE
    tmp_mb: int = 64          # size of the private tmpfs /tmp
    tmp_inodes: int = 4096    # files and directories in /tmp (a mkdir flood costs kernel memory)
    run_memory_mb: int = 512  # all memory of one run together (cgroup; see module doc)
    stdout_limit: int = 1 << 20
    stderr_limit: int = 1 << 16
    uid_base: int = 50000
    allow_degraded: bool = False

    def limits(self, timeout: float) -> dict[str, int]:
        return {"cpu": int(timeout) + 1, "as": self.memory_mb << 20, "nproc": self.nproc,
                "fsize": self.fsize_mb << 20, "nofile": self.nofile, "core": 0}


@dataclass
class RunResult:
    """What a run produced. Text is decoded with ``errors="replace"`` and capped."""

    status: Status
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    degraded: bool = False
    duration: float = 0.0
    peer_stdout: str = ""
    peer_stderr: str = ""
    peer_returncode: int | None = None
    notes: list[str] = field(default_factory=list)


class _Stream:
    """Non-blocking capped reader of one pipe."""

    def __init__(self, pipe, limit: int) -> None:
        self.fd, self.limit, self.data, self.over = pipe.fileno(), limit, bytearray(), False
        self.pipe = pipe
        os.set_blocking(self.fd, False)

    def pump(self) -> bool:
        """Read what is there; False at end of file."""
        try:
            chunk = os.read(self.fd, _READ)
        except BlockingIOError:
            return True
        room = self.limit - len(self.data)
        self.data += chunk[:max(room, 0)]
        self.over |= len(chunk) > room
        return bool(chunk)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


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
# The wall clock inside a run fires this long after the parent's deadline: only when the parent
# is gone (or starved) does it decide how a run ends.
WALL_GRACE = 1.0


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


class _Run:
    """The processes and pipes of one run."""

    def __init__(self, iso: Isolation, uid: int, cfg: SandboxConfig, program: str,
                 timeout: float, bootstrap: str, mode: str, peer: PythonScript | None,
                 peer_input: bytes, cgroup: SlotCgroup | None = None) -> None:
        self.iso, self.uid, self.cfg, self.workdir = iso, uid, cfg, None
        self.peer, self.cgroup = None, cgroup
        self.oom_before = cgroup.oom_kills() if cgroup else 0
        prog_fd = _memfd(program.encode("utf-8", errors="surrogatepass"))
        own: list[int] = [prog_fd]
        config = {"limits": self.cfg.limits(timeout), "program_fd": prog_fd, "mode": mode}
        peer_fds: list[int] = []
        if peer is not None:
            req_r, req_w = os.pipe()
            resp_r, resp_w = os.pipe()
            own += [req_r, resp_w]
            peer_fds = [req_w, resp_r]
            config.update(req_fd=req_r, resp_fd=resp_w)
        env = dict(_CHILD_ENV)
        if iso.degraded:
            self.workdir = tempfile.mkdtemp(prefix=f"llm_gym_sandbox_{uid}_")
            if iso.per_slot_uid:
                os.chown(self.workdir, uid, uid)
            config["cwd"] = env["HOME"] = env["TMPDIR"] = self.workdir
        sync: list[int] = []
        program_filter = policy_bpf()
        if program_filter is not None:
            config["seccomp"] = program_filter.hex()
        config["wall"] = timeout + WALL_GRACE
        if not iso.degraded:
            config["setup"] = empty_root_setup(iso.level, cfg.tmp_mb, cfg.tmp_inodes)
        if iso.level == "root":
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
            own += [ready_w, go_r]
            sync = [ready_r, go_w]
            config["setup"].update(uid=uid, ready_fd=ready_w, go_fd=go_r)
            env.update(LLM_GYM_READY=str(ready_w), LLM_GYM_GO=str(go_r))
        argv, code_fd = PythonScript(iso.python, bootstrap).command(json.dumps(config))
        own.append(code_fd)
        argv = iso.wrap(argv)
        creds = {"user": uid, "group": uid, "extra_groups": []} \
            if iso.degraded and iso.per_slot_uid else {}
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=own, env=env, cwd="/", process_group=0, **creds)
            for fd in own:
                os.close(fd)
            own = []
            if sync:
                map_ids(self.proc.pid, uid, sync[0], sync[1], timeout, self._enter_cgroup)
            if peer is not None:
                self.peer = _start_peer(peer, peer_fds, peer_input)
        except BaseException:
            if hasattr(self, "proc"):
                self.kill()
            raise
        finally:
            for fd in own + peer_fds + sync:
                os.close(fd)
        self.out = _Stream(self.proc.stdout, self.cfg.stdout_limit)
        self.err = _Stream(self.proc.stderr, self.cfg.stderr_limit)
        self.peer_out = self.peer_err = None
        if self.peer is not None:
            self.peer_out = _Stream(self.peer.stdout, 1 << 22)
            self.peer_err = _Stream(self.peer.stderr, 1 << 16)

    def _enter_cgroup(self) -> None:
        # unshare and its namespace shell exist and wait for the go byte: nothing untrusted
        # has run yet, and everything it starts will be born inside the group.
        if self.cgroup is not None:
            self.cgroup.add([self.proc.pid, *children(self.proc.pid)])

    def supervise(self, deadline: float) -> RunResult:
        sel = selectors.DefaultSelector()
        streams = [s for s in (self.out, self.err, self.peer_out, self.peer_err) if s]
        for stream in streams:
            sel.register(stream.fd, selectors.EVENT_READ, stream)
        watched = self.peer or self.proc
        pidfd = os.pidfd_open(watched.pid)
        sel.register(pidfd, selectors.EVENT_READ, None)
        # The run is over when the watched process exited and its own pipes are at EOF.
        pending = {s.fd for s in (self.peer_out, self.peer_err) if s} if self.peer else \
            {self.out.fd, self.err.fd}
        timed_out = over = False
        exited_at = None
        try:
            while not (exited_at is not None and not pending):
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                # An escaped grandchild could hold the pipes open: drain 0.2 s after the exit.
                if exited_at is not None and now > exited_at + 0.2:
                    break
                for key, _ in sel.select(min(deadline - now, 0.25)):
                    if key.data is None:
                        sel.unregister(pidfd)
                        exited_at = time.monotonic()
                    elif not key.data.pump():
                        sel.unregister(key.fd)
                        pending.discard(key.fd)
                if self.out.over or self.err.over:
                    over = True
                    break
            if self.peer is not None and not (timed_out or over):
                self._drain_sandbox(sel, min(deadline, time.monotonic() + 0.2))
        finally:
            sel.close()
            os.close(pidfd)
        sandbox_rc = self.proc.poll()
        if sandbox_rc is not None and sandbox_rc > 128 and not self.iso.degraded:
            sandbox_rc = 128 - sandbox_rc  # the namespace's shell reports a signal as 128 + n
        self.kill()
        for stream in streams:
            while stream.pump():
                pass
        return self._result(timed_out, over, sandbox_rc)

    def _drain_sandbox(self, sel: selectors.BaseSelector, until: float) -> None:
        # The peer is done and closed the request pipe, so the call server exits and flushes
        # its stdout; a short grace keeps what it printed (a forged verdict line is evidence).
        # Its pipes reach EOF before the process is reaped (namespace teardown comes after the
        # files close), so wait on a pidfd too: without it the loop slept out the whole grace.
        try:
            pidfd = os.pidfd_open(self.proc.pid)
        except ProcessLookupError:
            return
        sel.register(pidfd, selectors.EVENT_READ, "exit")
        try:
            while self.proc.poll() is None and time.monotonic() < until:
                for key, _ in sel.select(max(until - time.monotonic(), 0)):
                    if key.data == "exit":
                        sel.unregister(pidfd)
                    elif key.data is not None and not key.data.pump():
                        sel.unregister(key.fd)
                if self.out.over or self.err.over:
                    return
        finally:
            if pidfd in sel.get_map():
                sel.unregister(pidfd)
            os.close(pidfd)

    def _result(self, timed_out: bool, over: bool, rc: int | None) -> RunResult:
        over = over or self.out.over or self.err.over
        stderr = self.err.text()
        if timed_out:
            status = Status.TIMEOUT
        elif over:
            status = Status.OUTPUT_LIMIT
        elif "MemoryError" in stderr[-2000:] or (rc is not None and rc < 0 and
                                                 "Cannot allocate memory" in stderr) or \
                (self.cgroup is not None and self.cgroup.oom_kills() > self.oom_before):
            status = Status.MEMORY
        elif rc is not None and rc < 0:
            status = Status.KILLED
        elif self.peer is not None or rc == 0:
            status = Status.OK
        else:
            status = Status.ERROR
        result = RunResult(status, rc, self.out.text(), stderr, self.iso.degraded)
        if self.peer is not None:
            result.peer_stdout, result.peer_stderr = self.peer_out.text(), self.peer_err.text()
            result.peer_returncode = self.peer.returncode
        return result

    def kill(self) -> None:
        for proc in (self.proc, self.peer):
            if proc is None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        # Every process of a run is born in the slot's cgroup (unshare and its shell join it
        # before the go byte, and nothing inside can leave it): once the group is empty so is
        # the slot UID, and the /proc walk of reap_uid (~3 ms a run) is only needed without a
        # group, or when the group did not empty in time.
        emptied = self.cgroup is not None and self.cgroup.kill()
        if self.iso.per_slot_uid and not emptied:
            reap_uid(self.uid)
        if self.cgroup is not None:
            self.cgroup.release(self.cfg.run_memory_mb << 18)  # a quarter of the budget

    def cleanup(self) -> None:
        if self.proc.poll() is None or (self.peer is not None and self.peer.poll() is None):
            self.kill()
        for stream in (self.out, self.err, self.peer_out, self.peer_err):
            if stream is not None:
                stream.pipe.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _start_peer(script: PythonScript, fds: list[int], stdin: bytes) -> subprocess.Popen:
    in_fd = _memfd(stdin)
    argv, code_fd = script.command(json.dumps({"req": fds[0], "resp": fds[1]}))
    try:
        return subprocess.Popen(  # the grader runs as root: it must not outlive its scorer
            [*tie_to_parent(), *argv], stdin=in_fd, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=[*fds, code_fd], env={"LANG": "C.UTF-8"}, cwd="/",
            process_group=0)
    finally:
        os.close(in_fd)
        os.close(code_fd)


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("llm_gym_sandbox", 0)  # not CLOEXEC: the child inherits it
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


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
