"""Rollout workers: Ray actors that each play a slice of a trainer's batch with a policy copy.

The learner (the trainer, in the driver process) owns the optimizer. Before each rollout it
makes sure every worker holds its current weights (:meth:`RolloutWorkers.sync`: one
``ray.put`` of the trainable state, the adapter only with LoRA, read by every worker from Ray's
object store), then splits the batch's rows into contiguous slices, one per worker
(:meth:`RolloutWorkers.collect`). A worker plays its slice with the one rollout
(:func:`llm_gym.agents.rollout.collect_rollouts`) given ``first_row``, so its rows get the env
seeds and the sampling streams those rows get in one process: the concatenated slices are the
single-process batch. A worker that dies (``kill -9``, a lost node) is replaced by a fresh actor
that gets the current weights and redoes only its own slice, which replays identically.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from llm_gym.distributed import require_ray
from llm_gym.wrappers.stack import WrapperStack

logger = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    """What a rollout worker builds its policy copy and its env slice from.

    Attributes:
        env_id: the registered env id (the worker builds its own batched env).
        env_kwargs: the env's kwargs, without the tokenizer.
        wrappers: the trainer's checked wrapper stack.
        tokenizer: the trainer's tokenizer.
        model: a :func:`llm_gym.models.load_model` name, or a CPU copy of the module.
        dtype: the trainer's model precision (``None``: the device's default).
        lora: the trainer's LoRA config (the worker wraps its base model the same way).
        seed: the trainer's seed (python/numpy/torch seeding of the worker process).
        deterministic: ``torch.use_deterministic_algorithms`` in the worker.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    wrappers: WrapperStack
    tokenizer: Any
    model: Any
    dtype: Any = None
    lora: dict[str, Any] | None = None
    seed: int = 0
    deterministic: bool = False


class RolloutWorker:
    """One worker: a slice of the batched token env and a copy of the policy on its device.

    :class:`RolloutWorkers` runs it as a Ray actor (``ray.remote(RolloutWorker)``).
    """

    def __init__(self, spec: WorkerSpec, rows: int, threads: int, scoring: Any = None) -> None:
        from gymnasium.vector import AutoresetMode

        from llm_gym.agents.training import seed_everything
        from llm_gym.models import load_model
        from llm_gym.wrappers.stack import make_env

        torch.set_num_threads(max(1, threads))
        seed_everything(spec.seed, spec.deterministic)
        if scoring is not None:  # sandbox runs and math gradings go to the scoring actors
            scoring.install()
        device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES
        if isinstance(spec.model, str):
            # Built as the learner built it; its weights arrive with the first sync.
            self.model, _ = load_model(spec.model, device=device, dtype=spec.dtype,
                                       lora=spec.lora)
        else:
            self.model = spec.model.to(device)
        self.model.eval()
        self.envs = make_env(spec.env_id, rows,
                             env_kwargs={"tokenizer": spec.tokenizer, **spec.env_kwargs},
                             wrappers=spec.wrappers, autoreset_mode=AutoresetMode.DISABLED)
        self.version = -1

    def set_weights(self, state: dict[str, torch.Tensor], version: int) -> int:
        """Load the learner's trainable state (``version``: its update count)."""
        from llm_gym.agents.lm_trainer import load_trainable_state

        load_trainable_state(self.model, state)
        self.version = int(version)
        return self.version

    def rollout(self, indices: list[int], seed: int, first_row: int,
                generator_state: torch.Tensor, temperature: float, top_p: float,
                submitted_at: float) -> tuple[Any, dict[str, float]]:
        """Play this worker's rows (rows ``first_row..`` of the batch); the batch and timings."""
        from llm_gym.agents.rollout import collect_rollouts

        started = time.time()
        generator = torch.Generator()
        generator.set_state(generator_state)
        batch = collect_rollouts(self.model, self.envs, indices=indices, seed=seed,
                                 temperature=temperature, top_p=top_p, generator=generator,
                                 first_row=first_row)
        batch.weight_version = self.version
        return batch, {"queue_wait_s": max(started - submitted_at, 0.0),
                       "rollout_s": time.time() - started}

    def pid(self) -> int:
        """The worker's process id (the tests ``kill -9`` it)."""
        return os.getpid()

    def describe(self) -> dict[str, Any]:
        """Where this worker runs and what it holds.

        Returns:
            pid, node, device, rows, weight version and the pools its envs score with.
        """
        from llm_gym.rewards import _grading_pool, code

        return {"pid": os.getpid(), "node": os.uname().nodename,
                "device": str(next(self.model.parameters()).device),
                "rows": self.envs.num_envs, "weight_version": self.version,
                "sandbox_pool": type(code.installed_pool()).__name__,
                "grading_pool": type(_grading_pool.installed_pool()).__name__}

    def close(self) -> None:
        self.envs.close()


def _worker_failures() -> tuple[type[BaseException], ...]:
    """The Ray errors that mean a worker is gone (its process died or its node left)."""
    from ray import exceptions

    return exceptions.RayActorError, exceptions.ActorUnavailableError


class RolloutWorkers:
    """``num_workers`` :class:`RolloutWorker` actors that play a batch of ``rows`` between them.

    Args:
        num_workers: actors; the batch's rows are split into this many contiguous slices.
        spec: what each worker builds (:class:`WorkerSpec`).
        rows: rows of the whole batch.
        scoring: :class:`~llm_gym.distributed.scoring.ScoringWorkers` the workers' envs score
            with (``None``: each worker scores in its own process).
        gpus_per_worker: GPUs each actor asks Ray for (default: 1 when the cluster has a GPU
            for every worker, else 0: CPU threads).

    Attributes:
        restarts: workers replaced after dying.
    """

    def __init__(self, num_workers: int, spec: WorkerSpec, rows: int, *, scoring: Any = None,
                 gpus_per_worker: float | None = None) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"rollout workers must be a positive int, got {num_workers!r}")
        if num_workers > rows:
            raise ValueError(f"{num_workers} rollout workers for a batch of {rows} rows: use at "
                             f"most {rows} (each worker plays at least one row)")
        if not isinstance(spec.env_id, str):
            raise ValueError("rollout workers build their env slice from an env id; build the "
                             "agent from an id (e.g. 'llm_gym/Arithmetic-v0'), not an env object")
        ray = require_ray()
        if not ray.is_initialized():
            raise RuntimeError("Ray is not running; call llm_gym.distributed.connect() first")
        self._ray = ray
        self.spec, self.scoring = spec, scoring
        self.slices = [(int(part[0]), int(part[-1]) + 1)
                       for part in np.array_split(np.arange(rows), num_workers)]
        gpus = ray.cluster_resources().get("GPU", 0)
        self.gpus = (1.0 if gpus >= num_workers else 0.0) if gpus_per_worker is None \
            else float(gpus_per_worker)
        cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
        self.threads = max(1, min(os.cpu_count() or 1, cpus) // num_workers)
        self._actor_class = ray.remote(RolloutWorker)
        self.actors = [self._start(k) for k in range(num_workers)]
        # Wait for every worker to be built (model loaded, env made), so a worker that cannot
        # start fails here with its error, and start-up is not counted as weight-sync time.
        self.pids()
        self.version: int | None = None  # the weights every worker holds (None: unknown)
        self._weights: Any = None        # their object ref, for a restarted worker
        self.restarts = 0

    def _start(self, k: int) -> Any:
        start, stop = self.slices[k]
        return self._actor_class.options(num_cpus=1, num_gpus=self.gpus).remote(
            self.spec, stop - start, self.threads, self.scoring)

    # ------------------------------------------------------------------ weights
    def sync(self, model: torch.nn.Module, version: int) -> float:
        """Send ``model``'s trainable weights to every worker unless they hold ``version``.

        Returns:
            seconds spent (0 when nothing was sent): one ``ray.put`` plus every worker's load.
        """
        if self.version == version:
            return 0.0
        from llm_gym.agents.lm_trainer import trainable_state

        start = time.perf_counter()
        self._weights = self._ray.put(trainable_state(model))
        for k in range(len(self.actors)):
            self._call(k, "set_weights", self._weights, version)
        self.version = version
        return time.perf_counter() - start

    def invalidate(self) -> None:
        """The learner's weights changed outside an update (a load): send them next time."""
        self.version = None

    # ------------------------------------------------------------------ rollout
    def collect(self, indices: list[int], seed: int, generator: torch.Generator,
                temperature: float, top_p: float, pad_token_id: int
                ) -> tuple[Any, dict[str, float]]:
        """One batch, played by the workers: ``(RolloutBatch, time/ metrics)``.

        ``generator`` advances exactly as :func:`~llm_gym.agents.rollout.collect_rollouts`
        advances it, so the learner's random state matches a single-process run's.
        """
        from llm_gym.agents.rollout import RolloutBatch, stream_seed

        if self.version is None:
            raise RuntimeError("sync() the weights before the first collect")
        state = generator.get_state()
        stream_seed(generator)  # the one draw each worker makes from its copy of the state
        start, submitted = time.perf_counter(), time.time()
        args = [(indices[a:b], seed, a, state, temperature, top_p, submitted)
                for a, b in self.slices]
        pending = [self.actors[k].rollout.remote(*args[k]) for k in range(len(self.actors))]
        parts, metrics = [], {}
        for k, ref in enumerate(pending):
            try:
                batch, timing = self._ray.get(ref)
            except _worker_failures() as err:
                self._replace(k, err)
                batch, timing = self._call(k, "rollout", *args[k])
            parts.append(batch)
            metrics[f"time/rollout_worker{k}_s"] = timing["rollout_s"]
            metrics[f"time/queue_wait_worker{k}_s"] = timing["queue_wait_s"]
        batch = RolloutBatch.concat(parts, pad_token_id)
        # The workers ran side by side: the batch took the slowest one's time, not the sum.
        slowest = max(parts, key=lambda b: b.rollout_s)
        batch.rollout_s = time.perf_counter() - start
        batch.model_s, batch.env_s = slowest.model_s, slowest.env_s
        metrics["time/queue_wait_s"] = float(np.mean(
            [metrics[f"time/queue_wait_worker{k}_s"] for k in range(len(parts))]))
        metrics["rollout/worker_restarts"] = float(self.restarts)
        return batch, metrics

    def _call(self, k: int, method: str, *args: Any) -> Any:
        """``actors[k].method(*args)``; a dead worker is replaced once and asked again."""
        try:
            return self._ray.get(getattr(self.actors[k], method).remote(*args))
        except _worker_failures() as err:
            self._replace(k, err)
            return self._ray.get(getattr(self.actors[k], method).remote(*args))

    def _replace(self, k: int, err: BaseException) -> None:
        """Start a fresh worker ``k`` holding the current weights (its slice is redone)."""
        logger.warning("rollout worker %d died (%s); starting a new one and redoing its slice",
                       k, type(err).__name__)
        self._ray.kill(self.actors[k], no_restart=True)
        self.actors[k] = self._start(k)
        self._ray.get(self.actors[k].pid.remote())  # built, before the weights are timed
        self.restarts += 1
        if self._weights is not None:
            self._ray.get(self.actors[k].set_weights.remote(self._weights, self.version))

    def pids(self) -> list[int]:
        """Each worker's process id."""
        return self._ray.get([a.pid.remote() for a in self.actors])

    def describe(self) -> list[dict[str, Any]]:
        """Each worker's :meth:`RolloutWorker.describe` (placement, rows, pools)."""
        return self._ray.get([a.describe.remote() for a in self.actors])

    def close(self) -> None:
        """Stop the workers (the Ray instance stays up for its other users)."""
        for actor in self.actors:
            self._ray.kill(actor, no_restart=True)
        self.actors = []


__all__ = ["RolloutWorker", "RolloutWorkers", "WorkerSpec"]
