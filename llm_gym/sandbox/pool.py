"""A pool of sandbox slots for concurrent runs (one slot UID per worker).

Example:
    >>> with SandboxPool(workers=2) as pool:  # doctest: +SKIP
    ...     futures = [pool.submit(f"print({i})") for i in range(4)]
    ...     [f.result().stdout.strip() for f in futures]
    ['0', '1', '2', '3']
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from llm_gym.sandbox.runner import RunResult, Sandbox, SandboxConfig

T = TypeVar("T")


class SandboxPool:
    """``workers`` sandbox slots; :meth:`run` blocks until a slot is free.

    Args:
        workers: number of slots (concurrent runs); default ``os.cpu_count()``.
        config: limits shared by every slot.
        allow_degraded: run without namespaces (see :mod:`llm_gym.sandbox.isolation`).

    Raises:
        SandboxUnavailable: no namespaces and ``allow_degraded`` is false.
    """

    def __init__(self, workers: int | None = None, config: SandboxConfig | None = None, *,
                 allow_degraded: bool | None = None) -> None:
        workers = (os.cpu_count() or 1) if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.workers = workers
        self.config = config or SandboxConfig()
        self._slots: list[Sandbox] = []
        try:
            for _ in range(workers):
                self._slots.append(Sandbox(0, self.config, allow_degraded=allow_degraded))
        except BaseException:
            self.close()
            raise
        self._free: queue.Queue[Sandbox] = queue.Queue()
        for box in self._slots:
            self._free.put(box)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="llm_gym-sandbox")

    @property
    def degraded(self) -> bool:
        return self._slots[0].degraded

    @property
    def uids(self) -> list[int]:
        """The slot UIDs this pool owns (each runs as its own user)."""
        return [box.uid for box in self._slots]

    def with_slot(self, fn: Callable[[Sandbox], T]) -> T:
        """Call ``fn(sandbox)`` with a free slot held for the duration of the call."""
        box = self._free.get()
        try:
            return fn(box)
        finally:
            self._free.put(box)

    def run(self, program: str, **kwargs: Any) -> RunResult:
        """:meth:`Sandbox.run` on the next free slot."""
        return self.with_slot(lambda box: box.run(program, **kwargs))

    def submit(self, program: str, **kwargs: Any) -> Future[RunResult]:
        """Run ``program`` on the pool's threads; the future holds the :class:`RunResult`."""
        return self._executor.submit(self.run, program, **kwargs)

    def close(self) -> None:
        """Wait for running programs, then release every slot."""
        if hasattr(self, "_executor"):
            self._executor.shutdown(wait=True)
        for box in self._slots:
            box.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
