"""Persistent math-verify worker processes with a hard, killable deadline per grading.

Why processes and not threads: math-verify bounds its work with ``signal.alarm``, which works only
in a main thread (from any other thread it raises), and some inputs ignore the alarm entirely
(``10^{10^{10}}`` with gmpy2 ran for minutes). A worker is a plain ``python`` subprocess that
speaks JSON lines on its stdin/stdout, so it works from any thread, from daemonic
multiprocessing workers (which may not fork children of their own) and from scripts without an
``if __name__ == "__main__"`` guard. A worker that misses its deadline is SIGKILLed (its whole
process group) and replaced; the grading scores 0 with verdict ``"timeout"``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.5   # hard wall-clock deadline (s) for one grading, kill included
INNER_TIMEOUT = 1       # math-verify's own alarm (s) for each parse/verify inside a worker
STARTUP_TIMEOUT = 120.0  # importing sympy on a loaded 2-core machine can take a while
WORKER_MEMORY_BYTES = 2 << 30

_BOOT = "from llm_gym.rewards._grading_pool import serve; serve()"


class _Worker:
    """One grading subprocess and its line buffer."""

    def __init__(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        self.fd = self.proc.stdout.fileno()
        self.buffer = b""
        self.ready = False

    def send(self, request: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def pop_line(self) -> dict[str, Any] | None:
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def fill(self) -> None:
        """Read what the worker wrote; raises ``EOFError`` when it died."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            raise EOFError("math grading worker exited")
        self.buffer += chunk

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                self.kill()
                raise RuntimeError(f"math grading worker did not start in {STARTUP_TIMEOUT} s")
            try:
                self.fill()
            except EOFError:
                self.kill()
                raise RuntimeError(
                    "math grading worker failed to start; check that math-verify is installed "
                    f"(`{sys.executable} -c 'import math_verify'`)"
                ) from None
            message = self.pop_line()
            self.ready = bool(message and message.get("ready"))

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Ask the worker to exit (EOF on stdin); kill it if it does not."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class GradingPool:
    """A few persistent math-verify workers shared by every caller (thread-safe).

    Args:
        num_workers: worker processes (default: ``LLM_GYM_MATH_WORKERS`` or ``min(2, cpus)``).
        timeout: default hard deadline in seconds for one grading.

    Example:
        >>> pool = GradingPool(num_workers=1)
        >>> pool.verify_many([("72", "72.0"), ("72", "73")])
        [('correct', ''), ('wrong', '')]
        >>> pool.close()
    """

    def __init__(self, num_workers: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        if num_workers is None:
            num_workers = int(os.environ.get("LLM_GYM_MATH_WORKERS", min(2, os.cpu_count() or 1)))
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        self.num_workers = num_workers
        self.timeout = float(timeout)
        self.kills = 0  # workers killed (deadline missed or died mid-job)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._created = 0
        self._pid = os.getpid()

    # ------------------------------------------------------------------ public
    def verify_many(
        self, pairs: Sequence[tuple[str, str]], timeout: float | None = None
    ) -> list[tuple[str, str]]:
        """``(verdict, detail)`` for each ``(gold, answer)``: correct, wrong, timeout or error."""
        jobs = [{"op": "verify", "gold": g, "answer": a} for g, a in pairs]
        return self._run(jobs, timeout)

    def parse_golds(self, golds: Sequence[str]) -> list[tuple[str, str]]:
        """``(verdict, detail)`` per gold: ``parsed``, ``unparsed``, ``timeout`` or ``error``."""
        return self._run([{"op": "gold", "gold": g} for g in golds], STARTUP_TIMEOUT / 4)

    def close(self) -> None:
        """Stop the idle workers (busy ones stop when their caller releases them)."""
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._created -= 1
            worker.close()

    # ------------------------------------------------------------------ internals
    def _acquire(self, block: bool) -> _Worker | None:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self.num_workers:
                self._created += 1
                return _Worker()
        return self._idle.get() if block else None

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        return _Worker()

    def _run(self, jobs: list[dict[str, Any]], timeout: float | None) -> list[tuple[str, str]]:
        if os.getpid() != self._pid:
            raise RuntimeError("a GradingPool cannot be used across fork; use get_pool()")
        limit = self.timeout if timeout is None else float(timeout)
        workers = [self._acquire(block=True)]
        while len(workers) < min(len(jobs), self.num_workers):
            extra = self._acquire(block=False)
            if extra is None:
                break
            workers.append(extra)
        dispatch = _Dispatch(self, workers, limit)
        try:
            return dispatch.run(jobs)
        finally:
            # Interrupted mid-batch: a busy worker would answer the next caller with a stale
            # verdict, so it is replaced rather than returned.
            for slot in dispatch.busy:
                dispatch.workers[slot] = self._replace(dispatch.workers[slot])
            for worker in dispatch.workers:
                self._idle.put(worker)


class _Dispatch:
    """Feeds jobs to a fixed set of workers, one job per worker at a time."""

    def __init__(self, pool: GradingPool, workers: list[_Worker], limit: float) -> None:
        self.pool, self.workers, self.limit = pool, workers, limit
        self.busy: dict[int, tuple[int, float]] = {}  # worker slot -> (job index, deadline)

    def run(self, jobs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        results: list[tuple[str, str] | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        free = deque(range(len(self.workers)))
        while pending or self.busy:
            while free and pending:
                slot, index = free.popleft(), pending.popleft()
                self._start(slot, index, jobs[index])
            for slot, index, outcome in self._collect():
                results[index] = outcome
                free.append(slot)
        return results  # type: ignore[return-value]

    def _start(self, slot: int, index: int, job: dict[str, Any]) -> None:
        worker = self.workers[slot]
        if not worker.ready:
            worker.wait_ready()
        worker.send({**job, "id": index})
        self.busy[slot] = (index, time.monotonic() + self.limit)

    def _collect(self) -> list[tuple[int, int, tuple[str, str]]]:
        """Wait for the first answer or deadline; return the finished ``(slot, index, out)``."""
        first_deadline = min(deadline for _, deadline in self.busy.values())
        fds = {self.workers[slot].fd: slot for slot in self.busy}
        wait = max(first_deadline - time.monotonic(), 0.0)
        readable = select.select(list(fds), [], [], wait)[0]
        done = []
        for fd in readable:
            slot = fds[fd]
            outcome = self._read(slot)
            if outcome is not None:
                done.append((slot, self.busy.pop(slot)[0], outcome))
        now = time.monotonic()
        for slot, (_, deadline) in list(self.busy.items()):
            if deadline <= now and not select.select([self.workers[slot].fd], [], [], 0)[0]:
                self._kill(slot)
                done.append((slot, self.busy.pop(slot)[0], ("timeout", f"over {self.limit} s")))
        return done

    def _read(self, slot: int) -> tuple[str, str] | None:
        worker = self.workers[slot]
        try:
            worker.fill()
        except EOFError:
            self._kill(slot)  # it died mid-job (e.g. memory limit): a named verdict, no zero
            return ("error", "worker died")
        message = worker.pop_line()
        if message is None:
            return None
        if message.get("id") != self.busy[slot][0]:
            raise RuntimeError(f"math grading worker answered job {message.get('id')} out of turn")
        return message["verdict"], message.get("detail", "")

    def _kill(self, slot: int) -> None:
        self.pool.kills += 1
        logger.warning("math grading worker killed after %.1f s; replacing it", self.limit)
        self.workers[slot] = self.pool._replace(self.workers[slot])


_POOL: GradingPool | None = None
# A pool set by set_pool (the Ray scoring workers' one) wins over the local _POOL. It holds
# actor handles, not pipes, so get_pool's fork check does not apply to it.
_INSTALLED: Any = None
_POOL_LOCK = threading.Lock()


def set_pool(pool: Any) -> None:
    """Install ``pool`` as what :func:`get_pool` returns; ``None`` restores the local one.

    Args:
        pool: anything with ``GradingPool``'s ``verify_many`` and ``parse_golds`` (e.g.
            :class:`llm_gym.distributed.scoring.RayGradingPool`), or ``None``. It is not
            closed when replaced: its owner closes it.
    """
    global _INSTALLED
    with _POOL_LOCK:
        _INSTALLED = pool


def installed_pool() -> Any:
    """The pool set with :func:`set_pool`, or ``None``."""
    return _INSTALLED


def get_pool() -> GradingPool:
    """The installed pool (:func:`set_pool`), else the process-wide local one.

    The local pool is made again after ``fork``: its pipes must not be shared.
    """
    global _POOL
    with _POOL_LOCK:
        if _INSTALLED is not None:
            return _INSTALLED
        if _POOL is None or _POOL._pid != os.getpid():
            _POOL = GradingPool()
        return _POOL


@atexit.register
def _close_pool() -> None:
    if _POOL is not None and _POOL._pid == os.getpid():
        _POOL.close()


# ---------------------------------------------------------------------- worker side
def serve() -> None:
    """Worker main loop: one JSON request per stdin line, one JSON verdict per stdout line."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from sympy/math-verify must not corrupt the protocol
    sys.stdout = sys.stderr
    logging.disable(logging.CRITICAL)
    import math_verify  # noqa: F401  (import before announcing ready)

    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = _handle(request)
        except MemoryError:
            reply = {"verdict": "error", "detail": "memory limit"}
        except Exception as err:  # noqa: BLE001 - any failure is a named verdict, never a crash
            reply = {"verdict": "error", "detail": f"{type(err).__name__}"}
        out.write(json.dumps({**reply, "id": request.get("id")}) + "\n")
        out.flush()


@lru_cache(maxsize=8192)
def _parse_gold(gold: str) -> tuple[list[Any], bool]:
    return _timed_parse(gold)


def _timed_parse(text: str) -> tuple[list[Any], bool]:
    from math_verify import parse

    start = time.monotonic()
    parsed = parse(f"${text}$", parsing_timeout=INNER_TIMEOUT)
    return parsed, not parsed and time.monotonic() - start >= INNER_TIMEOUT


def _handle(request: dict[str, Any]) -> dict[str, str]:
    from math_verify import verify

    gold, gold_timed_out = _parse_gold(request["gold"])
    if request["op"] == "gold":
        verdict = "parsed" if gold else "timeout" if gold_timed_out else "unparsed"
        return {"verdict": verdict}
    if not gold:
        return {"verdict": "error", "detail": "gold does not parse"}
    answer, timed_out = _timed_parse(request["answer"])
    if not answer:
        return {"verdict": "timeout" if timed_out else "wrong",
                "detail": "" if timed_out else "answer does not parse"}
    start = time.monotonic()
    if verify(gold, answer, timeout_seconds=INNER_TIMEOUT):
        return {"verdict": "correct"}
    # verify() returns False on its own timeout; tell the two apart by the clock.
    if time.monotonic() - start >= INNER_TIMEOUT:
        return {"verdict": "timeout", "detail": "math-verify timeout"}
    return {"verdict": "wrong"}
