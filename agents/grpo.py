"""GRPO (and RLOO, REINFORCE++) on token-level LLM envs: rollout, advantages, update.

Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath) samples G episodes on the same
task item and uses the group-normalised episode return as the advantage of every token the agent
wrote: no value network. The config and the loss variants (``grpo``, ``dr_grpo``, ``dapo``) are in
:mod:`.grpo_algorithm`; the advantage estimators (group, RLOO, REINFORCE++) in
:mod:`.advantages`; learn, checkpoints, save/load and evaluation in the shared base
:class:`~llm_gym.agents.trainer.LLMTrainer`. This module is what makes GRPO GRPO: how a batch is
collected (groups per task item, DAPO's dynamic sampling) and how it is trained on.

Rollouts go through :func:`llm_gym.agents.rollout.collect_rollouts` (KV cache, O(1) work per
token); for multi-turn envs the episode return is the sequence reward and only agent tokens are
trained on. Training state checkpoints atomically and resumes exactly (:mod:`.checkpoints`).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_gym.agents.advantages import (
    group_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from llm_gym.agents.base import episode_success
from llm_gym.agents.curriculum import task_sampler
from llm_gym.agents.grpo_algorithm import GRPOConfig, grpo_loss
from llm_gym.agents.lm_trainer import CausalLMTrainer
from llm_gym.agents.metrics import reward_counters
from llm_gym.agents.rollout import RolloutBatch, collect_rollouts, sequence_logprobs
from llm_gym.agents.token_envs import first_env
from llm_gym.agents.trainer import Collected, FinishedEpisode
from llm_gym.wrappers.stack import WrappersLike

logger = logging.getLogger(__name__)


class GRPOAgent(CausalLMTrainer):
    """A causal LM trained with GRPO on a token env, behind SB3's interface.

    Args:
        env: an env id (built as a DISABLED-autoreset vector env of ``group_size x
            prompts_per_batch`` rows, with the model's tokenizer), such a vector env (wrapped
            or not), or a wrapped single env (its wrappers are rebuilt on the batch).
        model: anything :func:`llm_gym.models.load_model` takes, or an ``nn.Module`` (then pass
            ``tokenizer`` when the env is an id).
        config: :class:`GRPOConfig`.
        env_kwargs: extra kwargs for the env.
        tokenizer: tokenizer of a module ``model``.
        seed: seeds torch, numpy, python, the sampler and the env resets.
        log_dir: TensorBoard, ``metrics.csv``, ``reward_curve.png`` and ``checkpoints/`` go here.
        device: torch device (default: GPU when present).
        wrappers: a wrapper stack (``[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]``,
            see :mod:`llm_gym.wrappers.stack`) applied to the batch: GRPO learns from the shaped
            reward, and each term's episode mean is logged as ``reward/<term>``.
        rollout_workers: play each batch on this many Ray actors, each with a slice of the rows
            and a copy of the policy (:mod:`llm_gym.agents.rollout_workers`); 0 plays it here.
            The results are those of the single-process run.
        scoring_workers: grade code and math on this many Ray actors
            (:mod:`llm_gym.distributed.scoring`), here and in the rollout workers.
        ray_address: the Ray cluster to join (default: a local instance started here).

    A rollout batch is indivisible, so ``learn`` ends within half a batch of its budget: the
    next batch starts only when at least half of it (estimated from the run's batches so far)
    fits; the first batch of a call always runs. ``num_timesteps`` is what was taken.

    Resume: ``GRPOAgent.load(checkpoint).learn(total, reset_num_timesteps=False)`` continues a
    run, or ``agent.learn(total, resume_from=path)`` restores the newest checkpoint at ``path``
    and trains until the run's ``total`` (the same ``total_timesteps`` as the interrupted call).

    Example:
        >>> agent = GRPOAgent("llm_gym/Arithmetic-v0", "tiny",
        ...                   GRPOConfig(group_size=2, prompts_per_batch=2))
        >>> agent = agent.learn(total_timesteps=16)
    """

    STATE_FORMAT = "llm_gym.grpo/1"
    CONFIG_CLASS = GRPOConfig
    EVAL_SEED = 12345

    def __init__(
        self, env: str | Any, model: str | torch.nn.Module = "tiny",
        config: GRPOConfig | None = None, *, env_kwargs: dict[str, Any] | None = None,
        tokenizer: Any = None, seed: int = 0, log_dir: str | Path | None = None,
        device: str | None = None, wrappers: WrappersLike = None, rollout_workers: int = 0,
        scoring_workers: int = 0, ray_address: str | None = None,
    ) -> None:
        if config is not None and not isinstance(config, GRPOConfig):
            raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
        self.config = config or GRPOConfig()
        rows = self.config.group_size * self.config.prompts_per_batch
        self._setup_policy(env, model, rows, env_kwargs=env_kwargs, tokenizer=tokenizer,
                           seed=seed, device=device, wrappers=wrappers)
        # The one place items are chosen: in shuffled epochs, or by a curriculum (issue 23).
        self.sampler = task_sampler(first_env(self.envs).num_tasks, self.seed,
                                    self.config.curriculum)
        self.ref_model = self._reference_model()
        self.rollout_writer: Any = None  # stores every episode (rollout_records.py) when set
        self._init_run_state(log_dir)
        self.num_rollouts = 0
        self.workers: Any = None   # RolloutWorkers on Ray, when asked for
        self.scoring: Any = None   # ScoringWorkers on Ray, when asked for
        self._worker_metrics: dict[str, float] = {}
        if rollout_workers or scoring_workers or ray_address:
            self._start_ray(rollout_workers, scoring_workers, ray_address, rows)

    def _start_ray(self, rollout_workers: int, scoring_workers: int, address: str | None,
                   rows: int) -> None:
        from llm_gym.agents.rollout_workers import RolloutWorkers, WorkerSpec
        from llm_gym.distributed import connect

        for name, value in (("rollout_workers", rollout_workers),
                            ("scoring_workers", scoring_workers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        connect(address)
        if scoring_workers:
            from llm_gym.distributed.scoring import ScoringWorkers

            self.scoring = ScoringWorkers(scoring_workers)
            self.scoring.install()
        if rollout_workers:
            cfg = self.config
            model = self.model_spec if self.model_spec is not None else \
                copy.deepcopy(self.model).cpu()
            spec = WorkerSpec(self.env_id, self.env_kwargs, self.wrappers, self.tokenizer, model,
                              dtype=cfg.dtype, lora=cfg.lora, seed=self.seed,
                              deterministic=cfg.deterministic)
            self.workers = RolloutWorkers(rollout_workers, spec, rows, scoring=self.scoring)

    def _reference_model(self) -> torch.nn.Module | None:
        if self.config.kl_coef == 0:
            return None  # no KL term: do not hold a second copy of the weights
        return self._frozen_reference()

    # -------------------------------------------------------------------------- collect
    def _rollout(self, rollout_index: int) -> RolloutBatch:
        cfg = self.config
        prompts = self.sampler.take(cfg.prompts_per_batch)
        indices = np.repeat(prompts, cfg.group_size).tolist()
        # Env seeds come from the counters, so a resumed run replays none and skips none.
        seed = (self.seed * 1_000_003 + rollout_index * self.envs.num_envs) % 2**31
        self.model.eval()
        if self.workers is None:
            batch = collect_rollouts(self.model, self.envs, indices=indices, seed=seed,
                                     temperature=cfg.temperature, top_p=cfg.top_p,
                                     generator=self.generator)
            batch.weight_version = self.num_updates
            return batch
        timings = {"time/weight_sync_s": self.workers.sync(self.model, self.num_updates)}
        batch, worker_timings = self.workers.collect(
            indices, seed, self.generator, cfg.temperature, cfg.top_p,
            self.tokenizer.pad_token_id)
        for key, value in {**timings, **worker_timings}.items():
            if key.startswith("rollout/"):  # a running count (restarts): the latest is right
                self._worker_metrics[key] = value
            else:  # seconds: summed over DAPO's sampling rounds
                self._worker_metrics[key] = self._worker_metrics.get(key, 0.0) + value
        return batch

    def collect(self) -> Collected:
        """Sample a rollout batch with advantages; dynamic sampling when configured.

        The batch holds the valid rows of the kept groups, ``advantages`` theirs; every sampled
        row counts as env steps, every valid one is a finished episode. Counters and the
        episode log are left to the base (:meth:`~.trainer.LLMTrainer._apply`).
        """
        cfg = self.config
        self._worker_metrics = {}
        kept: list[RolloutBatch] = []
        advantages: list[torch.Tensor] = []
        stats = {"rollout/sampling_rounds": 0.0, "rollout/groups_dropped_equal": 0.0,
                 "rollout/equal_groups": 0.0, "rollout/sampled_groups": 0.0}
        sampled: list[RolloutBatch] = []
        groups = 0
        for _ in range(cfg.max_sampling_rounds if cfg.uses_dynamic_sampling else 1):
            batch = self._rollout(self.num_rollouts + len(sampled))
            self.sampler.observe_rollout(batch)
            if self.rollout_writer is not None:
                self.rollout_writer.write(batch, update=self.num_updates)
            sampled.append(batch)
            stats["rollout/sampling_rounds"] += 1
            adv = self._advantages(batch)
            if adv.dim() == 1:  # group advantages: an all-zero group carries no signal
                equal = (adv.reshape(-1, cfg.group_size) == 0).all(dim=1)
                stats["rollout/equal_groups"] += float(equal.sum())
                stats["rollout/sampled_groups"] += float(equal.numel())
            rows = self._rows_to_train(batch, adv, stats)
            if cfg.uses_dynamic_sampling:  # keep whole groups, no more than the batch needs
                wanted = np.unique(rows // cfg.group_size)[: cfg.prompts_per_batch - groups]
                rows = rows[np.isin(rows // cfg.group_size, wanted)]
            groups += len(np.unique(rows // cfg.group_size))
            kept.append(batch.select(rows))
            advantages.append(adv[rows])
            if groups >= cfg.prompts_per_batch:
                break
        episodes, steps, tokens = _finished_episodes(sampled)
        stats.update(self._rollout_metrics(sampled, self.num_tokens + tokens))
        stats.update(self._worker_metrics)
        stats.update(self.sampler.metrics())
        stats["rollout/weight_version"] = float(min(b.weight_version for b in sampled))
        return Collected(
            batch=RolloutBatch.concat(kept, self.tokenizer.pad_token_id), metrics=stats,
            steps=steps, tokens=tokens, episodes=episodes,
            samples=sum(b.num_rows for b in sampled), rollouts=len(sampled),
            advantages=torch.cat(advantages))

    def _apply(self, collected: Collected) -> None:
        super()._apply(collected)
        self.num_rollouts += collected.rollouts

    def _load_model_state(self, state: dict[str, Any]) -> None:
        super()._load_model_state(state)
        if self.workers is not None:  # the workers hold other weights now
            self.workers.invalidate()

    def close(self) -> None:
        """Close the envs and stop the Ray workers, if any."""
        super().close()
        if self.workers is not None:
            self.workers.close()
            self.workers = None
        if self.scoring is not None:  # uninstalls its pools, then stops the actors
            self.scoring.close()
            self.scoring = None

    def collect_batch(self) -> tuple[RolloutBatch, torch.Tensor, dict[str, float]]:
        """:meth:`collect`, applied to the counters: ``(batch, advantages, metrics)``."""
        collected = self.collect()
        self._apply(collected)
        return collected.batch, collected.advantages, collected.metrics

    def _advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """``(B,)`` per-sequence advantages, or ``(B, T)`` per-token ones for REINFORCE++."""
        cfg = self.config
        if cfg.advantage == "rloo":
            return rloo_advantages(batch.returns, batch.valid, cfg.group_size)
        if cfg.advantage == "reinforce_pp":
            kl = None
            if cfg.kl_reward_coef:  # k1 estimate per token: log pi_old - log pi_ref
                ref = self._reference_logprobs(batch.to(self.device))
                kl = (batch.old_logprobs - ref.cpu()) * batch.agent_mask
            return reinforce_pp_advantages(batch.rewards, batch.agent_mask, batch.valid, kl=kl,
                                           kl_coef=cfg.kl_reward_coef)
        return group_advantages(batch.returns, batch.valid, cfg.group_size, cfg.scales_rewards)

    def _rows_to_train(self, batch: RolloutBatch, adv: torch.Tensor, stats: dict[str, float]
                       ) -> np.ndarray:
        valid = batch.valid.numpy()
        if not self.config.uses_dynamic_sampling:
            return np.flatnonzero(valid)
        g = self.config.group_size
        # A group carries signal when its valid rewards differ (DAPO's dynamic sampling).
        informative = (adv.reshape(-1, g) != 0).any(dim=1).numpy()
        stats["rollout/groups_dropped_equal"] += float((~informative).sum())
        return np.flatnonzero(np.repeat(informative, g) & valid)

    def _rollout_metrics(self, batches: list[RolloutBatch], tokens_after: int
                         ) -> dict[str, float]:
        returns = torch.cat([b.returns for b in batches])
        valid = torch.cat([b.valid for b in batches])
        lengths = torch.cat([b.lengths for b in batches]).float()
        infos = [info for b in batches for info in b.infos]
        rollout_s = sum(b.rollout_s for b in batches)
        tokens = sum(b.num_agent_tokens for b in batches)
        out = {
            "rollout/ep_rew_mean": float(returns[valid].mean()) if valid.any() else float("nan"),
            "rollout/ep_len_mean": float(lengths.mean()),
            "rollout/tokens": float(tokens_after),
            "time/rollout_s": rollout_s,
            "time/model_s": sum(b.model_s for b in batches),
            "time/env_s": sum(b.env_s for b in batches),
            "time/tokens_per_s": tokens / max(rollout_s, 1e-9),
            **reward_counters(infos, valid.tolist()),
        }
        successes = [episode_success(info, 0.0, True) for info in infos]
        known = [s for s in successes if s is not None]
        if known:
            out["rollout/success_rate"] = float(np.mean(known))
        return out

    # -------------------------------------------------------------------------- update
    def train_on(self, collected: Collected) -> dict[str, float]:
        """:meth:`update` on the collected batch and its advantages."""
        return self.update(collected.batch, collected.advantages)

    def update(self, batch: RolloutBatch, advantages: torch.Tensor) -> dict[str, float]:
        """PPO-style epochs of clipped GRPO updates over one batch; returns ``train/`` metrics."""
        cfg = self.config
        if batch.num_rows == 0:
            return {"train/skipped": 1.0}
        batch = batch.to(self.device)
        advantages = advantages.to(self.device)
        ref = self._ref_logprobs(batch)
        self.model.train()
        sums: dict[str, float] = {}
        steps = 0
        for _ in range(cfg.update_epochs):
            order = torch.randperm(batch.num_rows, generator=self.generator)
            for part in torch.tensor_split(order, min(cfg.num_minibatches, batch.num_rows)):
                stats = self._minibatch_step(batch, advantages, ref, part.to(self.device))
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
        # Free the gradients before the next rollout, as TRL does after each optimizer step:
        # SmolLM2's are ~540 MB the sampler never reads (issue 24).
        self.optimizer.zero_grad(set_to_none=True)
        self.model.eval()
        out = {f"train/{k}": v / steps for k, v in sums.items()}
        out["train/lr"] = self.optimizer.param_groups[0]["lr"]
        out["train/advantage_abs_mean"] = float(advantages.abs().mean())
        return out

    def _ref_logprobs(self, batch: RolloutBatch) -> torch.Tensor | None:
        if self.config.kl_loss_coef == 0:
            return None
        return self._reference_logprobs(batch)

    def _reference_logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        with torch.no_grad():
            if self.ref_model is not None:
                return self._logprobs(self.ref_model, batch)
            with self.model.disable_adapter():
                return self._logprobs(self.model, batch)

    def _logprobs(self, model: torch.nn.Module, batch: RolloutBatch,
                  rows: torch.Tensor | None = None, entropy: bool = False) -> Any:
        """Log-probs of ``batch``'s rows (all by default) under its action masks, micro-batched."""
        if rows is None:
            rows = torch.arange(batch.num_rows, device=batch.input_ids.device)
        parts = [sequence_logprobs(
                    model, batch.input_ids[s], batch.attention_mask[s],
                    vocab_size=self.vocab_size, temperature=self.config.temperature,
                    return_entropy=entropy, positions=batch.agent_mask[s].bool(),
                    action_masks=None if batch.action_masks is None else batch.action_masks[s])
                 for s in torch.split(rows, self.config.micro_batch_size)]
        if entropy:
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return torch.cat(parts)

    def _minibatch_step(self, batch: RolloutBatch, advantages: torch.Tensor,
                        ref: torch.Tensor | None, rows: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        mask = batch.agent_mask[rows]
        norm = {"sequences": float(len(rows)), "tokens": float(mask.sum().clamp(min=1)),
                "max_completion_length": float(self._max_completion_length())}
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "entropy": 0.0}
        if cfg.kl_loss_coef == 0:
            # Without a KL term a zero-advantage row has zero loss and zero gradient: skip its
            # forward/backward (the normalisers above still count it, so the gradient is exact).
            rows = rows[(advantages[rows] != 0).reshape(len(rows), -1).any(dim=1)]
            if len(rows) == 0:
                return {**sums, "skipped_steps": 1.0, "grad_norm": 0.0}
        computed_tokens = float(batch.agent_mask[rows].sum().clamp(min=1))
        # In row order a micro-batch holds whole groups, whose rows share their prompt: the
        # log-probs run it once (agents/logprobs.py). The gradient is a sum, so order is free.
        rows = rows.sort().values
        for micro in torch.split(rows, cfg.micro_batch_size):
            m = batch.agent_mask[micro]
            logp, ent = self._logprobs(self.model, batch, micro, entropy=True)
            loss, stats = grpo_loss(logp, batch.old_logprobs[micro], advantages[micro], m, cfg,
                                    norm, None if ref is None else ref[micro])
            loss.backward()
            sums["loss"] += float(loss.detach())
            sums["entropy"] += float((ent * m).sum()) / computed_tokens
            for key, value in stats.items():
                sums[key] += float(value)
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:  # never let a non-finite gradient into the weights
            logger.warning("non-finite gradient norm %s: optimizer step skipped", grad_norm)
            sums["skipped_steps"] = 1.0
        sums["grad_norm"] = float(grad_norm)
        return sums

    def _max_completion_length(self) -> int:
        if self.config.max_completion_length is not None:
            return self.config.max_completion_length
        return int(first_env(self.envs).max_new_tokens)

    def _next_batch_fits(self, target: int) -> bool:
        # Whole-run counters (restored on resume), so a resumed run stops where the
        # uninterrupted one does.
        per_batch = self.num_timesteps / max(self.num_updates, 1)
        return target - self.num_timesteps >= per_batch / 2

    # -------------------------------------------------------------------------- state
    def _counters(self) -> dict[str, int]:
        return {**super()._counters(), "num_rollouts": self.num_rollouts}

    def curve_title(self) -> str:
        """``GRPO (<loss type>)`` on the reward-curve plot."""
        return f"GRPO ({self.config.loss_type})"


def _finished_episodes(batches: list[RolloutBatch]) -> tuple[list[FinishedEpisode], int, int]:
    """Every valid row of ``batches`` as an episode, with the collect's step and token totals."""
    episodes: list[FinishedEpisode] = []
    steps = tokens = 0
    for batch in batches:
        for i in range(batch.num_rows):
            steps += int(batch.lengths[i])
            tokens += int(batch.attention_mask[i].sum())
            if not bool(batch.valid[i]):
                continue
            ret = float(batch.returns[i])
            env_return = batch.infos[i].get("episode_reward_components", {}).get("env")
            episodes.append(FinishedEpisode(
                steps=steps, tokens=tokens, episode_return=ret, length=int(batch.lengths[i]),
                success=episode_success(batch.infos[i], ret, bool(batch.terminated[i])),
                finished_at=time.perf_counter(),
                env_return=None if env_return is None else float(env_return)))
    return episodes, steps, tokens


__all__ = ["GRPOAgent", "GRPOConfig"]
