"""Training machinery shared by the LLM agents (GRPO, PPO, through :mod:`.trainer`).

* Determinism: :func:`seed_everything`, :func:`rng_state` / :func:`set_rng_state`.
* Data position: :class:`TaskSampler` hands out task indices in seeded shuffled epochs and can
  say exactly where it is, so a resumed run neither replays nor skips a prompt.
* Interruption: :func:`stop_on_signals` turns Ctrl-C/SIGTERM into a request that ``learn``
  honours after the current update, checkpointing and raising :class:`TrainingInterrupted`.
* Checkpoints (:mod:`.checkpoints`) and metrics (:mod:`.metrics`) live in their own modules.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_gym.agents.checkpoints import load_checkpoint

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- determinism
def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; optionally make torch deterministic (CPU exact resume).

    Example:
        >>> seed_everything(0)
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Snapshot of python, numpy and torch RNG states plus named torch generators."""
    state = {"python": random.getstate(), "numpy": _numpy_state(),
             "torch": torch.get_rng_state(),
             "generators": {k: g.get_state() for k, g in (generators or {}).items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict[str, Any]:
    """The global numpy RNG state as a tensor and plain values.

    A checkpoint loads these without unpickling; a numpy array would need it.
    """
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {"name": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None
                  ) -> None:
    """Restore a snapshot from :func:`rng_state`."""
    random.setstate(state["python"])
    numpy = state["numpy"]
    if isinstance(numpy, dict):  # a checkpoint's: the key as a tensor (see _numpy_state)
        numpy = (numpy["name"], numpy["key"].numpy().astype(np.uint32), numpy["pos"],
                 numpy["has_gauss"], numpy["gauss"])
    np.random.set_state(numpy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in (generators or {}).items():
        generator.set_state(state["generators"][name])


# ---------------------------------------------------------------------------- data position
class TaskSampler:
    """Task indices in seeded shuffled epochs (or 0, 1, 2, ... when the env is unbounded).

    Args:
        num_tasks: items the env has (``env.num_tasks``), or ``None`` for procedural envs whose
            item ``i`` is a pure function of ``i``.
        seed: seed of the per-epoch shuffles.

    Example:
        >>> sampler = TaskSampler(4, seed=0)
        >>> sorted(sampler.take(4))
        [0, 1, 2, 3]
    """

    def __init__(self, num_tasks: int | None, seed: int = 0) -> None:
        if num_tasks is not None and num_tasks < 1:
            raise ValueError(f"num_tasks must be positive or None, got {num_tasks}")
        self.num_tasks = num_tasks
        self.seed = int(seed)
        self.epoch = 0
        self.cursor = 0  # next position in the current epoch (or next index if unbounded)
        self.used = 0  # indices handed out so far

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_tasks)

    def take(self, count: int) -> list[int]:
        """The next ``count`` task indices."""
        out: list[int] = []
        while len(out) < count:
            if self.num_tasks is None:
                out.append(self.cursor)
                self.cursor += 1
                continue
            if self.cursor >= self.num_tasks:
                self.epoch, self.cursor = self.epoch + 1, 0
            order = self._order()
            take = min(count - len(out), self.num_tasks - self.cursor)
            out.extend(int(i) for i in order[self.cursor : self.cursor + take])
            self.cursor += take
        self.used += count
        return out

    def observe_rollout(self, batch: Any) -> None:
        """Outcomes of the items drawn; this sampler ignores them (a curriculum does not)."""

    def metrics(self) -> dict[str, float]:
        """No metrics of its own (a curriculum reports ``curriculum/*``)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Where the sampler is (for checkpoints)."""
        return {"num_tasks": self.num_tasks, "seed": self.seed, "epoch": self.epoch,
                "cursor": self.cursor, "used": self.used}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`."""
        if "kind" in state:  # a curriculum's (llm_gym.agents.curriculum)
            raise ValueError("this checkpoint's sampler is a curriculum; resume the run with "
                             "the same curriculum setting")
        self.num_tasks, self.seed = state["num_tasks"], state["seed"]
        self.epoch, self.cursor, self.used = state["epoch"], state["cursor"], state["used"]


# ---------------------------------------------------------------------------- interruption
class TrainingInterrupted(KeyboardInterrupt):
    """``learn`` stopped on Ctrl-C/SIGTERM after saving ``checkpoint`` (None without log_dir)."""

    def __init__(self, checkpoint: Path | None, num_timesteps: int) -> None:
        super().__init__(f"interrupted at {num_timesteps} env steps")
        self.checkpoint = checkpoint
        self.num_timesteps = num_timesteps


_stop = threading.Event()


def stop_requested() -> bool:
    """Whether a signal asked training to stop (see :func:`stop_on_signals`)."""
    return _stop.is_set()


@contextlib.contextmanager
def stop_on_signals(graceful: bool = True) -> Iterator[None]:
    """Handle SIGINT and SIGTERM while training (main thread only; elsewhere a no-op).

    With ``graceful`` the first signal only sets :func:`stop_requested`, which the LLM agents'
    ``learn`` honours after the current update (then checkpoints and raises
    :class:`TrainingInterrupted`); a second signal raises ``KeyboardInterrupt`` at once.
    Without it, both signals raise ``KeyboardInterrupt`` at once (agents that cannot stop
    between updates).
    """
    _stop.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if graceful and not _stop.is_set():
            _stop.set()
            logger.warning("%s: stopping after the current update (again to stop now)",
                           signal.Signals(signum).name)
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop.clear()


# ---------------------------------------------------------------------------- run length
def learn_target(
    agent: Any, total_timesteps: int, reset_num_timesteps: bool, resume_from: str | Path | None
) -> int:
    """The step count at which ``learn`` stops, with SB3's counting semantics.

    With ``resume_from`` the agent's state is restored first and ``total_timesteps`` is the
    total of the whole run, so a resumed run stops where the uninterrupted one would. Otherwise
    ``reset_num_timesteps`` restarts the count at 0, or ``total_timesteps`` come on top of it.
    """
    if int(total_timesteps) < 1:
        raise ValueError(f"total_timesteps must be at least 1, got {total_timesteps}")
    if resume_from is not None:
        agent.load_state(load_checkpoint(resume_from))
        return int(total_timesteps)
    if reset_num_timesteps:
        agent.num_timesteps = 0
        return int(total_timesteps)
    return agent.num_timesteps + int(total_timesteps)
