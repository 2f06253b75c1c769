"""The base of the LLM agents (GRPO and its family, PPO): SB3's ``learn()`` loop, collect → train.

:class:`LLMTrainer` owns what every trainer shares (the seams of SB3's
``common/on_policy_algorithm.py`` and CleanRL's ``ppo.py``): the ``learn`` loop with its step
target, callback, progress bar and graceful stop on signals; checkpoints and exact resume;
``save``/``load``/``save_pretrained``; metrics (``rollout/ train/ time/ reward/``); stopping on
repeated reward failures; ``evaluate``/``predict``; ``close``. A subclass says only how it
collects (:meth:`LLMTrainer.collect`, which returns a :class:`Collected` and changes no counter
of the agent) and how it trains on what was collected (:meth:`LLMTrainer.train_on`, advantages
and update); the base applies the collected steps and episodes to the counters and the log.
"""

from __future__ import annotations

import abc
import logging
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_gym.agents.base import EpisodeRecord
from llm_gym.agents.checkpoints import (
    CheckpointSchedule,
    claim_run_folder,
    load_checkpoint,
    save_checkpoint,
    write_state_dir,
)
from llm_gym.agents.config import TrainerConfig
from llm_gym.agents.evaluation import EvalResult, success_threshold
from llm_gym.agents.metrics import (
    MetricsLogger,
    RewardFailures,
    drop_metrics_after,
    plot_reward_curve,
)
from llm_gym.agents.metrics import progress_bar as make_progress_bar
from llm_gym.agents.run_folder import locked
from llm_gym.agents.trainer_types import Collected as Collected
from llm_gym.agents.trainer_types import FinishedEpisode as FinishedEpisode
from llm_gym.agents.trainer_types import TrainerHook
from llm_gym.agents.training import (
    TrainingInterrupted,
    learn_target,
    rng_state,
    set_rng_state,
    stop_requested,
)
from llm_gym.models import torch_threads

logger = logging.getLogger(__name__)


class LLMTrainer(abc.ABC):
    """What GRPO and PPO share; subclasses implement the abstract hooks at the end of the class.

    A subclass's ``__init__`` calls :meth:`_init_run_state` (counters, episode log, log dir)
    and sets ``config`` (a :class:`~llm_gym.agents.config.TrainerConfig`), ``seed``, ``env_id``,
    ``env_kwargs``, ``wrappers`` (a :class:`~llm_gym.wrappers.stack.WrapperStack`), ``envs``,
    ``tokenizer`` (None on classic envs),
    ``model_spec``, ``optimizer`` and ``generator``.

    Example:
        >>> from llm_gym.agents.ppo import PPOAgent, PPOConfig
        >>> agent = PPOAgent("llm_gym/LeftRight-v0", config=PPOConfig(num_envs=2, num_steps=8))
        >>> isinstance(agent, LLMTrainer), agent.learn(16).num_timesteps
        (True, 16)
    """

    STATE_FORMAT = "llm_gym.trainer/1"
    EVAL_SEED = 0  # first evaluation seed, per agent (kept from before the base, issue 8)
    config: TrainerConfig

    def _init_run_state(self, log_dir: str | Path | None) -> None:
        self.num_timesteps = self.num_updates = self.num_tokens = 0
        self.episode_log: list[EpisodeRecord] = []
        self.stop_reason: str | None = None  # why the last learn stopped early, if it did
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.run_id = uuid.uuid4().hex  # saves record it; retention and resume go by it
        self._learn_start = time.perf_counter()
        self._threads: int | None = None  # torch threads while learning (None: unchanged)
        self._hooks: dict[str, TrainerHook] = {}
        self._hook_states: dict[str, Any] = {}  # loaded before their hook was added
        # Where metrics go besides metrics.csv (MetricsLogger's report_to: tensorboard, wandb,
        # none) and the run config W&B records (default: the env, seed, model and config).
        self.report_to: str | tuple[str, ...] = ("tensorboard",)
        self.run_config: dict[str, Any] | None = None
        self.metrics_dir: Path | None = None  # metrics without a log_dir (compare runs)

    def add_hook(self, name: str, hook: TrainerHook) -> None:
        """Call ``hook.on_update(self)`` after every update; checkpoint its state as ``name``.

        A state saved under ``name`` by a checkpoint this agent was loaded from is restored into
        the hook now, so ``load()`` then ``add_hook()`` resumes the hook where it was.
        """
        if name in self._hooks:
            raise ValueError(f"a hook named {name!r} is already added; use another name")
        self._hooks[name] = hook
        if name in self._hook_states:
            hook.load_state_dict(self._hook_states.pop(name))

    # -------------------------------------------------------------------------- learn
    def learn(
        self, total_timesteps: int, callback: Any = None, progress_bar: bool = False,
        reset_num_timesteps: bool = True, resume_from: str | Path | None = None,
    ) -> LLMTrainer:
        """Train for ``total_timesteps`` env steps (agent tokens on token envs); return self.

        With a ``log_dir``, metrics go to TensorBoard and ``metrics.csv``, checkpoints to
        ``<log_dir>/checkpoints`` (every ``checkpoint_every`` updates or ``checkpoint_minutes``
        minutes, at the end and on Ctrl-C/SIGTERM) and the curve to ``reward_curve.png``.

        Args:
            total_timesteps: env steps to train for. With ``reset_num_timesteps=False`` they
                come on top of ``num_timesteps``; with ``resume_from`` they are the total of the
                whole run, counted from its start (pass the interrupted call's value).
            callback: ``callback(metrics) -> bool | None`` after each update; False stops.
            progress_bar: show a tqdm bar.
            reset_num_timesteps: restart the step counter at 0 (SB3 semantics).
            resume_from: a save, a checkpoint or a folder of them (a run folder) to restore.

        Raises:
            TrainingInterrupted: a signal asked to stop (:func:`~.training.stop_on_signals`);
                the checkpoint was saved after the current update.
        """
        with locked(self.log_dir) as lock:  # one writer per folder (issue 19)
            target = learn_target(self, total_timesteps, reset_num_timesteps, resume_from)
            if lock is not None:  # after resume_from's load, which makes this the saved run
                claim_run_folder(lock, self.run_id)
            saved = self._learn_to(target, callback, progress_bar)
        logger.info("learn took the run to %d env steps (target %d)", self.num_timesteps, target)
        if stop_requested():
            raise TrainingInterrupted(saved, self.num_timesteps)
        return self

    def _learn_to(self, target: int, callback: Any, progress_bar: bool) -> Path | None:
        """:meth:`learn`'s loop up to ``target`` steps, then the final save (returned)."""
        self.stop_reason = None
        self._learn_start, self._learn_steps = time.perf_counter(), self.num_timesteps
        failures = RewardFailures(self.config.max_reward_failures)
        schedule = CheckpointSchedule(self.config.checkpoint_every, self.config.checkpoint_minutes)
        run_config = self.run_config if self.run_config is not None else {
            "env_id": self.env_id, "seed": self.seed, "model": self.model_spec,
            "config": asdict(self.config)}
        metrics_log = MetricsLogger(self.log_dir or self.metrics_dir, report_to=self.report_to,
                                    config=run_config)
        bar = make_progress_bar(target, progress_bar, initial=self.num_timesteps)
        try:
            with torch_threads(self._threads):
                self._learn_loop(target, callback, bar, metrics_log, failures, schedule)
        finally:
            metrics_log.close()
            if bar is not None:
                bar.close()
        return self._finish_learn()

    def _learn_loop(self, target: int, callback: Any, bar: Any, metrics_log: MetricsLogger,
                    failures: RewardFailures, schedule: CheckpointSchedule) -> None:
        first = True
        while self.num_timesteps < target and (first or self._next_batch_fits(target)):
            first = False
            metrics = self._iteration()
            metrics_log.log(metrics, step=self.num_timesteps)
            if bar is not None:
                bar.update(min(self.num_timesteps, target) - bar.n)
                bar.set_postfix(reward=f"{metrics.get('rollout/ep_rew_mean', 0):.3f}")
            broken = self._rewards_broken(metrics, failures)
            if not broken and self.log_dir is not None and schedule.due(self.num_updates):
                self.checkpoint()
            if (callback is not None and callback(metrics) is False) or broken:
                break
            if stop_requested():
                break

    def _next_batch_fits(self, target: int) -> bool:
        """Whether to start another batch below ``target`` (always, unless overridden)."""
        return True

    def _iteration(self) -> dict[str, float]:
        """One collect and one update; the metrics of both with ``time/`` ones."""
        start = time.perf_counter()
        collected = self.collect()
        self._apply(collected)
        rollout_s = time.perf_counter() - start
        metrics = {**collected.metrics, **self.train_on(collected)}
        self.num_updates += 1
        update_s = time.perf_counter() - start - rollout_s
        elapsed = time.perf_counter() - self._learn_start
        metrics.update({
            "time/rollout_s": metrics.get("time/rollout_s", rollout_s), "time/update_s": update_s,
            "time/iteration_s": rollout_s + update_s,
            "time/env_steps": float(self.num_timesteps), "train/updates": float(self.num_updates),
            "time/fps": (self.num_timesteps - self._learn_steps) / max(elapsed, 1e-9),
        })
        if collected.tokens:
            metrics.setdefault("time/tokens_per_s", collected.tokens / max(rollout_s, 1e-9))
        metrics["rollout/episodes_sampled"] = float(collected.samples)
        for hook in self._hooks.values():  # before this update's checkpoint, which saves them
            metrics.update(hook.on_update(self))
        return metrics

    def _apply(self, collected: Collected) -> None:
        """Count the collect's steps and log its finished episodes (collect itself does not)."""
        for episode in collected.episodes:
            self.episode_log.append(EpisodeRecord(
                env_steps=self.num_timesteps + episode.steps,
                tokens=self.num_tokens + episode.tokens, episode_return=episode.episode_return,
                length=episode.length, success=episode.success,
                wall_time=episode.finished_at - self._learn_start, env_return=episode.env_return))
        self.num_timesteps += collected.steps
        self.num_tokens += collected.tokens

    def _rewards_broken(self, metrics: dict[str, float], failures: RewardFailures) -> bool:
        if "reward/dropped" not in metrics:  # classic envs: no reward integrity counters
            return False
        samples = int(metrics.get("rollout/episodes_sampled", 0))
        if not failures.update(int(metrics["reward/dropped"]), samples):
            return False
        self.stop_reason = (f"rewards failed in {failures.consecutive} consecutive batches "
                            "(NaN, None or an exception); stopped")
        logger.error("%s; the last checkpoint is intact: %s", self.stop_reason,
                     {k: v for k, v in metrics.items() if k.startswith("reward/")})
        return True

    def _finish_learn(self) -> Path | None:
        """Checkpoint (unless rewards broke: the last good one stays) and plot; the save."""
        if self.log_dir is None:
            return None
        saved = self.checkpoint() if self.stop_reason is None else None
        plot_reward_curve(self.episode_log, self.log_dir / "reward_curve.png",
                          title=f"{self.curve_title()} on {self.env_id or 'env'}")
        return saved

    # -------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild and resume exactly (what :meth:`save` writes)."""
        return {
            "format": self.STATE_FORMAT, "run_id": self.run_id, "config": asdict(self.config),
            "model_spec": self.model_spec, "env_id": self.env_id, "env_kwargs": self.env_kwargs,
            "wrappers": self.wrappers.portable(), "wrapped": bool(self.wrappers),
            "seed": self.seed, **self._model_state(),
            "optimizer": self.optimizer.state_dict(), "rng": rng_state(self._generators()),
            "counters": self._counters(),
            "episode_log": [r.to_dict() for r in self.episode_log],
            "hooks": {**self._hook_states,
                      **{name: hook.state_dict() for name, hook in self._hooks.items()}},
        }

    def _counters(self) -> dict[str, int]:
        return {"num_timesteps": self.num_timesteps, "num_updates": self.num_updates,
                "num_tokens": self.num_tokens}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` into this agent (same env and architecture)."""
        self._load_model_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], self._generators())
        self.run_id = state.get("run_id") or self.run_id  # a loaded run goes on as itself
        for key, value in state["counters"].items():
            setattr(self, key, value)
        self.episode_log = [EpisodeRecord(**r) for r in state["episode_log"]]
        for name, hook_state in state.get("hooks", {}).items():
            if name in self._hooks:
                self._hooks[name].load_state_dict(hook_state)
            else:  # restored by add_hook(name, ...) later
                self._hook_states[name] = hook_state
        drop_metrics_after(self.log_dir, self.num_timesteps)  # those steps will be logged again

    def checkpoint(self) -> Path:
        """Save a numbered checkpoint in ``log_dir/checkpoints`` (keeps the newest K).

        Raises:
            ValueError: the agent has no ``log_dir``.
        """
        if self.log_dir is None:
            raise ValueError("checkpoint() needs log_dir; pass log_dir= or use save(path)")
        return save_checkpoint(self.log_dir / "checkpoints", self.num_updates, self.state_dict(),
                               keep=self.config.keep_checkpoints, run_id=self.run_id)

    def save(self, path: str | Path) -> None:
        """Write the agent's full state to the folder ``path``, atomically (crash-safe)."""
        write_state_dir(Path(path), self.state_dict(), run_id=self.run_id, updates=self.num_updates)

    @classmethod
    def load(cls, path: str | Path, env: Any = None, **kwargs: Any) -> LLMTrainer:
        """Rebuild a saved agent; ``learn`` on it resumes the run.

        Args:
            path: a folder written by :meth:`save`, a checkpoint, or a ``log_dir`` / folder of
                checkpoints (the newest complete one is used).
            env: the env to attach (default: the saved env id with the saved ``env_kwargs``).
            **kwargs: constructor keyword arguments to override (``log_dir``, ``device``,
                ``model=`` for an agent built from an ``nn.Module``, ...).
        """
        state = load_checkpoint(path)
        if state.get("format") != cls.STATE_FORMAT:
            raise ValueError(f"{path} holds no {cls.__name__} checkpoint (format "
                             f"{state.get('format')}); load it with the agent that wrote it")
        env = env if env is not None else state["env_id"]
        if env is None:
            raise ValueError(f"{path} was saved from an env object; pass env= to load it")
        agent = cls._from_state(state, path, env, kwargs)
        agent.load_state(state)
        return agent

    def save_pretrained(self, out_dir: str | Path, *, adapter: bool = False,
                        overwrite: bool = False) -> Path:
        """The LLM policy as a transformers model folder with its tokenizer and chat template.

        LoRA is merged (into a copy) unless ``adapter``; see :func:`llm_gym.export.save_pretrained`.
        """
        from llm_gym.export import save_pretrained

        return save_pretrained(self.language_model(), self.tokenizer, out_dir, adapter=adapter,
                               base=self.model_spec, overwrite=overwrite)

    def close(self) -> None:
        """Close the envs."""
        self.envs.close()

    # -------------------------------------------------------------------------- acting
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """The action for one observation or a batch of them; ``state`` is passed through.

        Token envs take the Dict observation (single: ``input_ids`` of shape
        ``(max_length,)``); classic envs a raw observation.
        """
        batch, single = self._as_batch(observation)
        actions = np.asarray(self._act(batch, deterministic)).astype(np.int64)
        return (actions[0] if single else actions), state

    def _as_batch(self, observation: Any) -> tuple[Any, bool]:
        if not isinstance(observation, dict) or "input_ids" not in observation:
            raise TypeError("a token-env policy needs the env's Dict observation (input_ids, "
                            f"attention_mask), got {type(observation).__name__}")
        single = np.asarray(observation["input_ids"]).ndim == 1
        return {k: np.atleast_2d(np.asarray(v)) for k, v in observation.items()}, single

    def evaluate(self, num_episodes: int = 10, deterministic: bool = True,
                 seed: int | None = None, env_kwargs: dict[str, Any] | None = None,
                 batch_size: int = 16) -> dict[str, Any]:
        """Play ``num_episodes`` evaluation episodes; the same keys for every agent.

        Args:
            num_episodes: episodes to play; token envs with a task pool play items 0..N-1.
            deterministic: greedy actions instead of samples.
            seed: first episode's seed (default: the agent's ``EVAL_SEED``).
            env_kwargs: env kwargs on top of the training env's (``{"split": "test"}``).
            batch_size: episodes played at once on token envs (GRPO's fresh eval batch).

        Returns:
            :meth:`EvalResult.to_dict` (also what :func:`~.evaluation.evaluate_agent` gives for
            SB3 and tabular agents): ``mean_return``, ``std_return``, ``success_rate``,
            ``mean_length``, ``episodes``, ``returns``, ``env_return``, ``env_returns``.
        """
        if int(num_episodes) < 1:
            raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
        if self.env_id is None and env_kwargs:
            raise ValueError("evaluate(env_kwargs=...) needs an agent built from an env id")
        seed = self.EVAL_SEED if seed is None else seed
        with torch_threads(self._threads):
            result = self._evaluate(int(num_episodes), deterministic, seed, env_kwargs or {},
                                    batch_size)
        return result.to_dict()

    def _evaluate_tokens(self, model: torch.nn.Module, num_episodes: int, deterministic: bool,
                         seed: int, env_kwargs: dict[str, Any], batch_size: int,
                         envs: Any = None) -> EvalResult:
        """Batched greedy (or sampled) episodes of a token env: ``envs``, else a fresh batch."""
        from llm_gym.agents.token_envs import evaluate_policy
        from llm_gym.wrappers.stack import make_env

        temperature = 0.0 if deterministic else self.config.temperature
        threshold = success_threshold(self.env_id) if self.env_id is not None else None
        if envs is not None and not env_kwargs:
            return evaluate_policy(model, envs, num_episodes, temperature=temperature, seed=seed,
                                   threshold=threshold)
        if self.env_id is None:
            raise ValueError("evaluate() needs an agent built from an env id")
        envs = make_env(self.env_id, min(batch_size, num_episodes),
                        env_kwargs={"tokenizer": self.tokenizer, **self.env_kwargs, **env_kwargs},
                        wrappers=self.wrappers, autoreset_mode="Disabled")
        try:
            return evaluate_policy(model, envs, num_episodes, temperature=temperature, seed=seed,
                                   threshold=threshold)
        finally:
            envs.close()

    # -------------------------------------------------------------------------- hooks
    @abc.abstractmethod
    def collect(self) -> Collected:
        """Gather one training batch; must not change the agent's counters or episode log."""
        raise NotImplementedError

    @abc.abstractmethod
    def train_on(self, collected: Collected) -> dict[str, float]:
        """Advantages and update on a collect; returns ``train/`` metrics."""
        raise NotImplementedError

    @abc.abstractmethod
    def _act(self, batch: Any, deterministic: bool) -> np.ndarray:
        """Actions for a batch from :meth:`_as_batch`."""
        raise NotImplementedError

    @abc.abstractmethod
    def _evaluate(self, num_episodes: int, deterministic: bool, seed: int,
                  env_kwargs: dict[str, Any], batch_size: int) -> EvalResult:
        """The evaluation :meth:`evaluate` validated and returns as a dict."""
        raise NotImplementedError

    @abc.abstractmethod
    def _model_state(self) -> dict[str, Any]:
        """The agent's own entries of :meth:`state_dict` (weights, data position)."""
        raise NotImplementedError

    @abc.abstractmethod
    def _load_model_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_model_state` saved."""
        raise NotImplementedError

    def _generators(self) -> dict[str, torch.Generator]:
        return {"sample": self.generator}

    @abc.abstractmethod
    def language_model(self) -> torch.nn.Module:
        """The causal LM being trained."""
        raise NotImplementedError

    def curve_title(self) -> str:
        """The algorithm's name on the reward-curve plot."""
        return type(self).__name__

    @classmethod
    @abc.abstractmethod
    def _from_state(cls, state: dict[str, Any], path: Any, env: Any,
                    kwargs: dict[str, Any]) -> LLMTrainer:
        """A fresh agent built as the saved one was (:meth:`load` then restores its state)."""
        raise NotImplementedError

