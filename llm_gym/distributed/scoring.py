"""Scoring workers: the code sandbox and the math grader as Ray actors (``--scoring-workers N``).

Each :class:`ScoringWorker` actor owns a real :class:`~llm_gym.sandbox.SandboxPool` and a real
:class:`~llm_gym.rewards._grading_pool.GradingPool` in its own process, so the containment of a
hostile program (namespaces, rlimits, the per-slot UID, the separate grader) is exactly the
local code, only on another process or node. The driver-side :class:`ScoringWorkers` starts the
actors and hands out two drop-in pools:

* :attr:`ScoringWorkers.sandbox` (a :class:`RaySandboxPool`): ``run``/``submit`` like a
  ``SandboxPool``, each run sent to the least busy actor — what ``code_pass_rate(pool=...)``
  needs;
* :attr:`ScoringWorkers.grading` (a :class:`RayGradingPool`): ``verify_many``/``parse_golds``
  like a ``GradingPool``, a batch split into one chunk per actor and gathered in order — what
  ``grade_batch(pool=...)`` needs.

Both hold only actor handles, so they pickle: a rollout worker in another process can take them
and :func:`install` them there. :func:`install` makes them the process-wide defaults that
``code_pass_rate`` and ``grade_batch`` use when no pool is given (a ``CodeEnv`` copied to
another process drops its pool and uses that default).

Sandbox runs and gradings are pure, so an actor that dies (a node lost, a ``kill -9``) is
restarted by Ray and the calls it had in flight are retried there (``max_restarts`` /
``max_task_retries``), never scored 0 by accident.

Example:
    >>> workers = ScoringWorkers(2)  # doctest: +SKIP
    >>> code_pass_rate(reply, tests, pool=workers.sandbox).verdict  # doctest: +SKIP
    'passed'
    >>> with workers:  # installed as the defaults, closed at the end  # doctest: +SKIP
    ...     envs = gym.make_vec("llm_gym/Code-v0", 8, vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from llm_gym.distributed import require_ray
from llm_gym.rewards import _grading_pool, code
from llm_gym.rewards._grading_pool import DEFAULT_TIMEOUT, GradingPool
from llm_gym.sandbox import RunResult, SandboxPool

# A dead actor is started again this many times over the workers' life (each restart re-creates
# the sandbox slots and the grader); a call it had in flight is retried once on the new one.
MAX_RESTARTS = 4
MAX_TASK_RETRIES = 1
# The actor's methods run in their own thread groups, so runs waiting for a sandbox slot never
# hold up a grading chunk or an info() call behind them.
_GROUPS = {"run": "sandbox", "verify_many": "grading", "parse_golds": "grading",
           "info": "control"}


def _call(actor: Any, method: str, *args: Any) -> Any:
    """``actor.method.remote(*args)`` in the method's concurrency group; an ObjectRef."""
    return getattr(actor, method).options(concurrency_group=_GROUPS[method]).remote(*args)


def _infos(actors: Sequence[Any]) -> list[dict[str, Any]]:
    """:meth:`ScoringWorker.info` of each actor, in order."""
    return require_ray().get([_call(actor, "info") for actor in actors])


class ScoringWorker:
    """The actor: a sandbox pool and a one-process math grading pool in the actor's process.

    Args:
        slots: sandbox slots (concurrent runs) of this actor.
        allow_degraded: run without namespaces (see :mod:`llm_gym.sandbox.isolation`).
        grading_timeout: hard deadline in seconds of one math grading.

    Raises:
        SandboxUnavailable: no namespaces on the actor's node and ``allow_degraded`` is false.
    """

    def __init__(self, slots: int, allow_degraded: bool, grading_timeout: float) -> None:
        self.sandbox = SandboxPool(workers=slots, allow_degraded=allow_degraded)
        self.grading = GradingPool(num_workers=1, timeout=grading_timeout)
        self._lock = threading.Lock()  # the actor is threaded (see _GROUPS)
        self._counts = {"runs": 0, "gradings": 0}

    def run(self, program: str, kwargs: dict[str, Any]) -> RunResult:
        """``SandboxPool.run(program, **kwargs)`` on one of this actor's slots."""
        self._count("runs", 1)
        return self.sandbox.run(program, **kwargs)

    def verify_many(self, pairs: Sequence[tuple[str, str]],
                    timeout: float | None) -> list[tuple[str, str]]:
        """``GradingPool.verify_many`` of one chunk."""
        self._count("gradings", len(pairs))
        return self.grading.verify_many(pairs, timeout=timeout)

    def parse_golds(self, golds: Sequence[str]) -> list[tuple[str, str]]:
        """``GradingPool.parse_golds`` of one chunk."""
        return self.grading.parse_golds(golds)

    def info(self) -> dict[str, Any]:
        """This actor's pid, slot UIDs, isolation, counts of work done and grader kills."""
        with self._lock:
            counts = dict(self._counts)
        return {"pid": os.getpid(), "uids": self.sandbox.uids, "degraded": self.sandbox.degraded,
                "slots": self.sandbox.workers, "kills": self.grading.kills, **counts}

    def _count(self, name: str, amount: int) -> None:
        with self._lock:
            self._counts[name] += amount


class _Balancer:
    """Sends each call to the actor with the fewest calls in flight from this process.

    Picklable: a copy keeps the actor handles and starts with fresh counts (counts are a
    per-process hint; an actor queues what it cannot start yet).
    """

    def __init__(self, actors: Sequence[Any]) -> None:
        self.actors = list(actors)
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._busy = [0] * len(self.actors)
        self._next = 0  # ties go round-robin, so an idle set of actors is used evenly

    def submit(self, method: str, *args: Any) -> Future:
        """Call ``method`` on the least busy actor; a concurrent future of its result."""
        count = len(self.actors)
        with self._lock:
            index = min(range(count), key=lambda i: (self._busy[i], (i - self._next) % count))
            self._busy[index] += 1
            self._next = (index + 1) % count
        try:
            future = _call(self.actors[index], method, *args).future()
        except BaseException:
            self._done(index)
            raise
        future.add_done_callback(lambda _: self._done(index))
        return future

    def _done(self, index: int) -> None:
        with self._lock:
            self._busy[index] -= 1

    def __getstate__(self) -> dict[str, Any]:
        return {"actors": self.actors}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.actors = state["actors"]
        self._reset()


class RaySandboxPool:
    """A ``SandboxPool`` look-alike whose runs happen in the scoring actors.

    Args:
        actors: :class:`ScoringWorker` actor handles.
        slots: sandbox slots of each actor.
        degraded: whether the actors run without namespaces.
    """

    def __init__(self, actors: Sequence[Any], slots: int, degraded: bool) -> None:
        self._balancer = _Balancer(actors)
        self.workers = slots * len(actors)  # concurrent runs over all actors
        self.degraded = degraded

    @property
    def uids(self) -> list[int]:
        """The slot UIDs of every actor now (an actor restarted may hold others).

        Each is a UID on its actor's node: on a cluster, check it there.
        """
        return [uid for info in _infos(self._balancer.actors) for uid in info["uids"]]

    def run(self, program: str, **kwargs: Any) -> RunResult:
        """``SandboxPool.run`` on the least busy actor; blocks until the run is done."""
        return self.submit(program, **kwargs).result()

    def submit(self, program: str, **kwargs: Any) -> Future[RunResult]:
        """Start the run on the least busy actor; the future holds the :class:`RunResult`."""
        return self._balancer.submit("run", program, kwargs)

    def close(self) -> None:
        """Nothing to release here: the actors belong to :class:`ScoringWorkers` (close that)."""

    def __enter__(self) -> RaySandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayGradingPool:
    """A ``GradingPool`` look-alike whose gradings happen in the scoring actors.

    Args:
        actors: :class:`ScoringWorker` actor handles.
        timeout: the actors' default hard deadline in seconds for one grading.
    """

    def __init__(self, actors: Sequence[Any], timeout: float) -> None:
        self._balancer = _Balancer(actors)
        self.num_workers = len(actors)  # one grading process per actor
        self.timeout = float(timeout)

    @property
    def kills(self) -> int:
        """Grading processes killed (deadline missed) in the actors' current lives."""
        return sum(info["kills"] for info in _infos(self._balancer.actors))

    def verify_many(self, pairs: Sequence[tuple[str, str]],
                    timeout: float | None = None) -> list[tuple[str, str]]:
        """``(verdict, detail)`` for each ``(gold, answer)``, as ``GradingPool.verify_many``."""
        return self._spread("verify_many", [tuple(pair) for pair in pairs], timeout)

    def parse_golds(self, golds: Sequence[str]) -> list[tuple[str, str]]:
        """``(verdict, detail)`` per gold, as ``GradingPool.parse_golds``."""
        return self._spread("parse_golds", list(golds))

    def close(self) -> None:
        """Nothing to release here: the actors belong to :class:`ScoringWorkers` (close that)."""

    def _spread(self, method: str, items: list[Any], *args: Any) -> list[tuple[str, str]]:
        # One chunk per actor: each grades its chunk on its own process, in order.
        if not items:
            return []
        size = math.ceil(len(items) / self.num_workers)
        futures = [self._balancer.submit(method, items[i:i + size], *args)
                   for i in range(0, len(items), size)]
        return [tuple(outcome) for future in futures for outcome in future.result()]


class ScoringWorkers:
    """``count`` scoring actors and the two pools that spread work over them.

    Args:
        count: actors to start (``--scoring-workers N``); Ray spreads them over the nodes.
        num_cpus: CPUs each actor reserves from Ray.
        slots: sandbox slots per actor (default: one per reserved CPU).
        allow_degraded: run without namespaces; default ``LLM_GYM_SANDBOX_ALLOW_DEGRADED=1``,
            as the local default pool.
        grading_timeout: hard deadline in seconds of one math grading.

    Raises:
        ImportError: Ray is not installed.
        ValueError: ``count``, ``num_cpus`` or ``slots`` out of range.
        ray.exceptions.RayActorError: an actor could not start (e.g. no namespaces on its node
            and degraded runs not allowed); its error says why.
    """

    def __init__(self, count: int, *, num_cpus: float = 1, slots: int | None = None,
                 allow_degraded: bool | None = None,
                 grading_timeout: float = DEFAULT_TIMEOUT) -> None:
        ray = require_ray()
        slots = max(1, int(num_cpus)) if slots is None else slots
        for name, value in (("count", count), ("slots", slots)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not num_cpus > 0:
            raise ValueError(f"num_cpus must be positive, got {num_cpus!r}")
        if allow_degraded is None:
            allow_degraded = os.environ.get("LLM_GYM_SANDBOX_ALLOW_DEGRADED") == "1"
        # Concurrency groups can only be set here, not in .options().
        actor_class = ray.remote(
            num_cpus=num_cpus, max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES,
            # One run per slot at once; one grading chunk (the pool has one process).
            concurrency_groups={"sandbox": slots, "grading": 1, "control": 1},
            scheduling_strategy="SPREAD")(ScoringWorker)
        self.actors = [actor_class.remote(slots, allow_degraded, grading_timeout)
                       for _ in range(count)]
        try:
            infos = _infos(self.actors)
        except BaseException:
            self.close()
            raise
        self.sandbox = RaySandboxPool(self.actors, slots, any(i["degraded"] for i in infos))
        self.grading = RayGradingPool(self.actors, grading_timeout)

    def info(self) -> list[dict[str, Any]]:
        """Each actor's ``pid``, slot ``uids``, ``runs``, ``gradings`` and grader ``kills``."""
        return _infos(self.actors)

    def install(self) -> None:
        """Make :attr:`sandbox` and :attr:`grading` this process's default pools."""
        install(self.sandbox, self.grading)

    def close(self) -> None:
        """Uninstall the pools if they are the defaults, then kill the actors."""
        if code.installed_pool() is getattr(self, "sandbox", None):
            code.set_default_pool(None)
        if _grading_pool.installed_pool() is getattr(self, "grading", None):
            _grading_pool.set_pool(None)
        ray = require_ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []

    def __enter__(self) -> ScoringWorkers:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def install(sandbox: RaySandboxPool | None, grading: RayGradingPool | None) -> None:
    """Make these pools the process-wide defaults of ``code_pass_rate`` and ``grade_batch``.

    Call it in each process that scores (the pools pickle, so a rollout worker can receive
    them); ``None`` leaves that default as it is.
    """
    if sandbox is not None:
        code.set_default_pool(sandbox)
    if grading is not None:
        _grading_pool.set_pool(grading)


def uninstall() -> None:
    """Back to the local default pools of this process."""
    code.set_default_pool(None)
    _grading_pool.set_pool(None)


__all__ = ["RayGradingPool", "RaySandboxPool", "ScoringWorker", "ScoringWorkers", "install",
           "uninstall"]
