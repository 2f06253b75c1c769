"""The processes and pipes of one sandboxed run, from start to the last process killed.

:class:`~llm_gym.sandbox.runner.Sandbox` (and the isolation probe) hand a :class:`_Run` one
program, the slot's UID and cgroup and the limits; it starts the bootstrap under the isolation
(and the trusted peer next to it), reads both outputs up to their caps until the deadline, and
kills and reaps everything the run started. The steps are listed in :mod:`llm_gym.sandbox.runner`.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time

# The module, not the name: tie_to_parent is looked up at each call, as Isolation.wrap does, so
# one switch (tests/sandbox/test_sandbox_round3.py turns pdeathsig off) governs the sandbox and
# the peer.
import llm_gym.sandbox.isolation as isolation
from llm_gym.sandbox.cgroup import SlotCgroup, children
from llm_gym.sandbox.isolation import Isolation, empty_root_setup, map_ids
from llm_gym.sandbox.run_types import RunResult, SandboxConfig, Status
from llm_gym.sandbox.scripts import PythonScript, memfd
from llm_gym.sandbox.seccomp_policy import policy_bpf
from llm_gym.sandbox.slots import reap_uid

_CHILD_ENV = {"MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
              "LANG": "C.UTF-8"}
_READ = 1 << 16
# The wall clock inside a run fires this long after the parent's deadline: only when the parent
# is gone (or starved) does it decide how a run ends.
WALL_GRACE = 1.0


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


class _Run:
    """The processes and pipes of one run."""

    def __init__(self, iso: Isolation, uid: int, cfg: SandboxConfig, program: str,
                 timeout: float, bootstrap: str, mode: str, peer: PythonScript | None,
                 peer_input: bytes, cgroup: SlotCgroup | None = None) -> None:
        self.iso, self.uid, self.cfg, self.workdir = iso, uid, cfg, None
        self.peer, self.cgroup = None, cgroup
        self.oom_before = cgroup.oom_kills() if cgroup else 0
        prog_fd = memfd(program.encode("utf-8", errors="surrogatepass"))
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
        self.kill(reap=timed_out or over)
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

    def kill(self, reap: bool = True) -> None:
        """End every process of the run; ``reap=False``: trust an emptied cgroup (see below)."""
        for proc in (self.proc, self.peer):
            if proc is None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        # Every process of a run is born in the slot's cgroup (unshare and its shell join it
        # before the go byte, and nothing inside can leave it): once the group is empty the run
        # is over, and the /proc walk of reap_uid (~3 ms a run) is skipped for a run that ended
        # on its own. A run stopped at its time or output limit (a fork bomb among them) is
        # walked anyway: an emptied group can still leave a task of the slot UID in the kernel's
        # exit path for a moment on a loaded machine (seen in CI), and the next run on the slot
        # must start clean.
        emptied = self.cgroup is not None and self.cgroup.kill()
        if self.iso.per_slot_uid and (reap or not emptied):
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
    in_fd = memfd(stdin)
    argv, code_fd = script.command(json.dumps({"req": fds[0], "resp": fds[1]}))
    try:
        return subprocess.Popen(  # the grader runs as root: it must not outlive its scorer
            [*isolation.tie_to_parent(), *argv], stdin=in_fd, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=[*fds, code_fd], env={"LANG": "C.UTF-8"}, cwd="/",
            process_group=0)
    finally:
        os.close(in_fd)
        os.close(code_fd)
