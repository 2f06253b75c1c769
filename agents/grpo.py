"""GRPO for token-level LLM envs, in one readable file: config, rollout, advantages, loss, update.

Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath) samples G episodes on the same
task item and uses the group-normalised episode return as the advantage of every token the agent
wrote: no value network. Three loss variants:

* ``grpo``: advantages ``(r - mean) / std``; per-sequence mean of token losses, then the batch mean.
* ``dr_grpo`` (Liu et al. 2025, "Understanding R1-Zero-Like Training"): no std normalisation and
  a constant length normaliser (``max_completion_length``), which removes GRPO's length and
  difficulty biases.
* ``dapo`` (Yu et al. 2025): clip-higher (``clip_eps_high`` > ``clip_eps_low``), token-level
  aggregation over the whole batch, and dynamic sampling (groups whose rewards are all equal carry
  no signal: drop them and sample more, up to ``max_sampling_rounds``).

Rollouts go through :func:`llm_gym.agents.rollout.collect_rollouts` (KV cache, O(1) work per
token); for multi-turn envs the episode return is the sequence reward and only agent tokens are
trained on. Training state checkpoints atomically and resumes exactly (:mod:`.training`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_gym.agents.advantages import (
    group_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from llm_gym.agents.base import EpisodeRecord, episode_success
from llm_gym.agents.config import config_from_dict, read_config_file, require_at_least_one
from llm_gym.agents.evaluation import success_threshold
from llm_gym.agents.rollout import RolloutBatch, collect_rollouts, sequence_logprobs
from llm_gym.agents.sampling import device_generator, sample_tokens
from llm_gym.agents.token_envs import (
    build_token_envs,
    evaluate_policy,
    first_env,
    portable,
    saved_stack,
)
from llm_gym.agents.training import (
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_CHECKPOINT_MINUTES,
    CheckpointSchedule,
    MetricsLogger,
    RewardFailures,
    TaskSampler,
    TrainingInterrupted,
    drop_metrics_after,
    latest_checkpoint,
    learn_target,
    load_checkpoint,
    plot_reward_curve,
    progress_bar,
    reward_counters,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    stop_requested,
    write_state_dir,
)
from llm_gym.models import load_model
from llm_gym.wrappers.stack import make_env

logger = logging.getLogger(__name__)

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
# Advantage estimators (llm_gym.agents.advantages); agents ``rloo`` and ``reinforce-pp`` are this
# trainer with the estimator set.
ADVANTAGES = ("group", "rloo", "reinforce_pp")


# ============================================================================== config
@dataclass
class GRPOConfig:
    """GRPO hyper-parameters (every field can come from a TOML/JSON file, see :meth:`from_file`).

    Attributes:
        group_size: G, episodes sampled per task item.
        prompts_per_batch: task items per rollout batch (the vector env has G x this rows).
        loss_type: ``"grpo"``, ``"dr_grpo"`` or ``"dapo"`` (see the module docstring).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        num_epochs: PPO-style passes over each rollout batch (1 = on-policy GRPO).
        num_minibatches: optimizer steps per epoch (the batch is split into this many parts).
        micro_batch_size: sequences per forward/backward; gradients accumulate over a minibatch.
        clip_eps_low: lower clip range of the ratio, ``1 - eps_low``.
        clip_eps_high: upper clip range ``1 + eps_high``; ``None`` = ``clip_eps_low`` (0.28 for
            dapo, the paper's clip-higher).
        beta: weight of the k3 KL estimator to a frozen reference model (0: no reference loaded).
        temperature: sampling temperature (the update uses the same, as TRL does).
        top_p: nucleus sampling threshold.
        max_grad_norm: gradient clipping norm.
        scale_rewards: divide group advantages by their std; ``None`` = by loss type (off for
            dr_grpo).
        dynamic_sampling: drop all-equal groups and resample; ``None`` = on for dapo only.
        max_sampling_rounds: cap on rollout rounds per batch with dynamic sampling.
        max_completion_length: Dr. GRPO's constant normaliser; ``None`` = the env's
            ``max_new_tokens``.
        checkpoint_every: with a ``log_dir``, save a checkpoint every N updates (0: none by
            count); ``learn`` also saves one at its end and on Ctrl-C/SIGTERM.
        checkpoint_minutes: also save one every M minutes of wall-clock (0: none by time).
        keep_checkpoints: checkpoints kept (the newest is never deleted).
        max_reward_failures: stop after this many consecutive batches with most rewards broken.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (exact resume on CPU).
        lora: ``peft.LoraConfig`` kwargs to train a LoRA adapter instead of all weights.
        advantage: ``"group"`` (GRPO), ``"rloo"`` (leave-one-out baseline) or
            ``"reinforce_pp"`` (REINFORCE++: KL-penalised returns-to-go, batch-normalised, one
            advantage per token); see :mod:`llm_gym.agents.advantages`.
        kl_coef: REINFORCE++'s per-token KL penalty inside the reward (needs a reference model,
            like ``beta``).
        dtype: model precision, ``"float32"``, ``"bfloat16"`` or ``"float16"``; ``None`` =
            bfloat16 on a GPU, float32 on a CPU (``"bfloat16"`` on a CPU runs the GPU's path).
    """

    group_size: int = 4
    prompts_per_batch: int = 4
    loss_type: str = "grpo"
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    num_epochs: int = 1
    num_minibatches: int = 1
    micro_batch_size: int = 16
    clip_eps_low: float = 0.2
    clip_eps_high: float | None = None
    beta: float = 0.0
    temperature: float = 1.0
    top_p: float = 1.0
    max_grad_norm: float = 1.0
    scale_rewards: bool | None = None
    dynamic_sampling: bool | None = None
    max_sampling_rounds: int = 4
    max_completion_length: int | None = None
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES
    keep_checkpoints: int = 3
    max_reward_failures: int = 3
    deterministic: bool = False
    lora: dict[str, Any] | None = None
    advantage: str = "group"
    kl_coef: float = 0.0
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {ADVANTAGES}, got {self.advantage!r}")
        if self.kl_coef < 0 or (self.kl_coef and self.advantage != "reinforce_pp"):
            raise ValueError(f"kl_coef (a KL penalty in the reward, {self.kl_coef}) must be >= 0 "
                             "and applies to advantage='reinforce_pp' only; use beta for a KL "
                             "loss term")
        if self.advantage == "reinforce_pp" and self.uses_dynamic_sampling:
            raise ValueError("advantage='reinforce_pp' normalises over the whole batch: set "
                             "dynamic_sampling=False (it drops all-equal groups)")
        require_at_least_one(self, (
            "group_size", "prompts_per_batch", "num_epochs", "num_minibatches",
            "micro_batch_size", "max_sampling_rounds", "keep_checkpoints", "max_reward_failures"))
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (GRPO compares within a group), "
                             f"got {self.group_size}")
        if self.checkpoint_every < 0 or self.checkpoint_minutes < 0:
            raise ValueError(f"checkpoint_every and checkpoint_minutes must be >= 0 (0 turns "
                             f"one off), got {self.checkpoint_every}, {self.checkpoint_minutes}")
        if self.beta < 0 or self.clip_eps_low <= 0:
            raise ValueError(f"need beta >= 0 and clip_eps_low > 0, got {self.beta}, "
                             f"{self.clip_eps_low}")

    @property
    def eps_high(self) -> float:
        """The upper clip range actually used."""
        if self.clip_eps_high is not None:
            return self.clip_eps_high
        return 0.28 if self.loss_type == "dapo" else self.clip_eps_low

    @property
    def scales_rewards(self) -> bool:
        """Whether advantages are divided by the group std."""
        return self.loss_type != "dr_grpo" if self.scale_rewards is None else self.scale_rewards

    @property
    def uses_dynamic_sampling(self) -> bool:
        """Whether all-equal groups are dropped and resampled."""
        if self.dynamic_sampling is None:
            return self.loss_type == "dapo"
        return self.dynamic_sampling

    @classmethod
    def from_file(cls, path: str | Path) -> GRPOConfig:
        """Read a TOML or JSON file whose keys are field names.

        Example:
            >>> import tempfile, pathlib
            >>> p = pathlib.Path(tempfile.mkdtemp()) / "grpo.toml"
            >>> _ = p.write_text('loss_type = "dapo"')
            >>> GRPOConfig.from_file(p).loss_type
            'dapo'
        """
        return config_from_dict(cls, read_config_file(path))


# ============================================================================== loss
def grpo_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
    mask: torch.Tensor, config: GRPOConfig, norm: dict[str, float],
    ref_logprobs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate (+ beta k3 KL) aggregated as the loss type says.

    ``norm`` holds the normalisers of the whole minibatch (``sequences``, ``tokens``), so
    micro-batches summed by gradient accumulation give exactly the minibatch loss.
    """
    mask = mask.float()
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages if advantages.ndim == 2 else advantages[:, None]  # per token or sequence
    clipped = torch.clamp(ratio, 1 - config.clip_eps_low, 1 + config.eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    policy_token = per_token
    kl = torch.zeros_like(per_token)
    if ref_logprobs is not None and config.beta > 0:
        delta = ref_logprobs - logprobs  # k3 estimator (Schulman 2020): unbiased, always >= 0
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + config.beta * kl
    loss = _aggregate(per_token, mask, config, norm)
    stats = {
        "policy_loss": _aggregate(policy_token, mask, config, norm).detach(),
        "kl": ((kl * mask).sum() / norm["tokens"]).detach(),
        "clip_fraction": ((((ratio - 1).abs() > config.clip_eps_low) & (mask > 0)).float().sum()
                          / norm["tokens"]).detach(),
    }
    return loss, stats


def _aggregate(per_token: torch.Tensor, mask: torch.Tensor, config: GRPOConfig,
               norm: dict[str, float]) -> torch.Tensor:
    if config.loss_type == "grpo":  # mean over each sequence's tokens, then over sequences
        per_sequence = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return per_sequence.sum() / norm["sequences"]
    if config.loss_type == "dr_grpo":  # constant normaliser: no length bias (Liu et al. 2025)
        return (per_token * mask).sum() / (norm["sequences"] * norm["max_completion_length"])
    return (per_token * mask).sum() / norm["tokens"]  # dapo: token-level (Yu et al. 2025)


# ============================================================================== agent
class GRPOAgent:
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

    Resume: ``GRPOAgent.load(checkpoint).learn(total, reset_num_timesteps=False)`` continues a
    run, or ``agent.learn(total, resume_from=path)`` restores the newest checkpoint at ``path``
    and trains until the run's ``total`` (the same ``total_timesteps`` as the interrupted call).

    Example:
        >>> agent = GRPOAgent("llm_gym/Arithmetic-v0", "tiny",
        ...                   GRPOConfig(group_size=2, prompts_per_batch=2))
        >>> agent = agent.learn(total_timesteps=16)
    """

    def __init__(
        self, env: str | Any, model: str | torch.nn.Module = "tiny",
        config: GRPOConfig | None = None, *, env_kwargs: dict[str, Any] | None = None,
        tokenizer: Any = None, seed: int = 0, log_dir: str | Path | None = None,
        device: str | None = None, wrappers: Any = None,
    ) -> None:
        self.config = config or GRPOConfig()
        self.seed = int(seed)
        seed_everything(self.seed, self.config.deterministic)
        self.model_spec = model if isinstance(model, str) else None
        if isinstance(model, str):
            self.model, tokenizer = load_model(model, device=device, dtype=self.config.dtype,
                                               lora=self.config.lora)
        else:
            self.model = model
        self.device = next(self.model.parameters()).device
        kwargs = dict(env_kwargs or {})
        if tokenizer is not None:
            kwargs.setdefault("tokenizer", tokenizer)
        rows = self.config.group_size * self.config.prompts_per_batch
        self.envs, self.env_id, kwargs, self.wrappers = build_token_envs(env, rows, kwargs,
                                                                         wrappers)
        self.env_kwargs = {k: v for k, v in kwargs.items() if k != "tokenizer"}
        self.tokenizer = first_env(self.envs).tokenizer
        self._check_sizes()
        self.vocab_size = int(self.envs.single_action_space.n)
        self.sampler = TaskSampler(first_env(self.envs).num_tasks, seed=self.seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.config.learning_rate,
                                           weight_decay=self.config.weight_decay)
        self.ref_model = self._reference_model()
        self.num_timesteps = self.num_updates = self.num_rollouts = self.num_tokens = 0
        self.failures = RewardFailures(self.config.max_reward_failures)
        self.episode_log: list[EpisodeRecord] = []
        self.stop_reason: str | None = None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.metrics = MetricsLogger(self.log_dir)

    def _check_sizes(self) -> None:
        vocab = int(self.envs.single_action_space.n)
        embeddings = self.model.get_input_embeddings().num_embeddings
        if embeddings < vocab:
            raise ValueError(f"the env's vocabulary ({vocab}) is larger than the model's "
                             f"({embeddings}); build the env with the model's tokenizer")

    def _reference_model(self) -> torch.nn.Module | None:
        if self.config.beta == 0 and self.config.kl_coef == 0:
            return None  # no KL term: do not hold a second copy of the weights
        if hasattr(self.model, "disable_adapter"):
            return None  # LoRA: the base model with the adapter disabled is the reference
        ref = copy.deepcopy(self.model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    # -------------------------------------------------------------------------- rollout
    def _rollout(self) -> RolloutBatch:
        cfg = self.config
        prompts = self.sampler.take(cfg.prompts_per_batch)
        indices = np.repeat(prompts, cfg.group_size).tolist()
        # Env seeds come from the counters, so a resumed run replays none and skips none.
        seed = (self.seed * 1_000_003 + self.num_rollouts * self.envs.num_envs) % 2**31
        self.num_rollouts += 1
        self.model.eval()
        batch = collect_rollouts(self.model, self.envs, indices=indices, seed=seed,
                                 temperature=cfg.temperature, top_p=cfg.top_p,
                                 generator=self.generator)
        self._record_episodes(batch)
        return batch

    def _record_episodes(self, batch: RolloutBatch) -> None:
        start = getattr(self, "_learn_start", time.perf_counter())
        for i in range(batch.num_rows):
            self.num_timesteps += int(batch.lengths[i])
            self.num_tokens += int(batch.attention_mask[i].sum())
            if not bool(batch.valid[i]):
                continue
            ret = float(batch.returns[i])
            self.episode_log.append(EpisodeRecord(
                env_steps=self.num_timesteps, tokens=self.num_tokens, episode_return=ret,
                length=int(batch.lengths[i]),
                success=episode_success(batch.infos[i], ret, bool(batch.terminated[i])),
                wall_time=time.perf_counter() - start,
            ))

    def collect_batch(self) -> tuple[RolloutBatch, torch.Tensor, dict[str, float]]:
        """Sample a rollout batch with advantages; dynamic sampling when configured.

        Returns the valid rows of the kept groups, their advantages, and rollout metrics.
        """
        cfg = self.config
        kept: list[RolloutBatch] = []
        advantages: list[torch.Tensor] = []
        stats = {"rollout/sampling_rounds": 0.0, "rollout/groups_dropped_equal": 0.0}
        sampled: list[RolloutBatch] = []
        groups = 0
        for _ in range(cfg.max_sampling_rounds if cfg.uses_dynamic_sampling else 1):
            batch = self._rollout()
            sampled.append(batch)
            stats["rollout/sampling_rounds"] += 1
            adv = self._advantages(batch)
            rows = self._rows_to_train(batch, adv, stats)
            if cfg.uses_dynamic_sampling:  # keep whole groups, no more than the batch needs
                wanted = np.unique(rows // cfg.group_size)[: cfg.prompts_per_batch - groups]
                rows = rows[np.isin(rows // cfg.group_size, wanted)]
            groups += len(np.unique(rows // cfg.group_size))
            kept.append(batch.select(rows))
            advantages.append(adv[rows])
            if groups >= cfg.prompts_per_batch:
                break
        stats.update(self._rollout_metrics(sampled))
        batch = RolloutBatch.concat(kept, self.tokenizer.pad_token_id)
        return batch, torch.cat(advantages), stats

    def _advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """``(B,)`` per-sequence advantages, or ``(B, T)`` per-token ones for REINFORCE++."""
        cfg = self.config
        if cfg.advantage == "rloo":
            return rloo_advantages(batch.returns, batch.valid, cfg.group_size)
        if cfg.advantage == "reinforce_pp":
            kl = None
            if cfg.kl_coef:  # k1 estimate per token: log pi_old - log pi_ref
                ref = self._reference_logprobs(batch.to(self.device))
                kl = (batch.old_logprobs - ref.cpu()) * batch.agent_mask
            return reinforce_pp_advantages(batch.rewards, batch.agent_mask, batch.valid, kl=kl,
                                           kl_coef=cfg.kl_coef)
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

    def _rollout_metrics(self, batches: list[RolloutBatch]) -> dict[str, float]:
        returns = torch.cat([b.returns for b in batches])
        valid = torch.cat([b.valid for b in batches])
        lengths = torch.cat([b.lengths for b in batches]).float()
        infos = [info for b in batches for info in b.infos]
        rollout_s = sum(b.rollout_s for b in batches)
        tokens = sum(b.num_agent_tokens for b in batches)
        out = {
            "rollout/ep_rew_mean": float(returns[valid].mean()) if valid.any() else float("nan"),
            "rollout/ep_len_mean": float(lengths.mean()),
            "rollout/tokens": float(self.num_tokens),
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
        for _ in range(cfg.num_epochs):
            order = torch.randperm(batch.num_rows, generator=self.generator)
            for part in torch.tensor_split(order, min(cfg.num_minibatches, batch.num_rows)):
                stats = self._minibatch_step(batch, advantages, ref, part.to(self.device))
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
        self.model.eval()
        out = {f"train/{k}": v / steps for k, v in sums.items()}
        out["train/lr"] = self.optimizer.param_groups[0]["lr"]
        out["train/advantage_abs_mean"] = float(advantages.abs().mean())
        return out

    def _ref_logprobs(self, batch: RolloutBatch) -> torch.Tensor | None:
        if self.config.beta == 0:
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
        if cfg.beta == 0:
            # Without a KL term a zero-advantage row has zero loss and zero gradient: skip its
            # forward/backward (the normalisers above still count it, so the gradient is exact).
            rows = rows[(advantages[rows] != 0).reshape(len(rows), -1).any(dim=1)]
            if len(rows) == 0:
                return {**sums, "skipped_steps": 1.0, "grad_norm": 0.0}
        computed_tokens = float(batch.agent_mask[rows].sum().clamp(min=1))
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

    # -------------------------------------------------------------------------- learn
    def learn(
        self, total_timesteps: int, callback: Any = None, progress_bar: bool = False,
        reset_num_timesteps: bool = True, resume_from: str | Path | None = None,
    ) -> GRPOAgent:
        """Train for ``total_timesteps`` env steps (agent tokens); returns self.

        A rollout batch is indivisible, so the run ends within half a batch of its budget: the
        next batch starts only when at least half of it (estimated from the run's batches so
        far) fits; the first batch of a call always runs. ``num_timesteps`` is what was taken.

        Args:
            total_timesteps: env steps to train for. With ``reset_num_timesteps=False`` they
                come on top of ``num_timesteps``; with ``resume_from`` they are the total of the
                whole run, counted from its start.
            callback: ``callback(metrics) -> bool | None`` after each update; False stops.
            progress_bar: show a tqdm bar.
            reset_num_timesteps: restart the step counter at 0 (SB3 semantics).
            resume_from: a checkpoint (or a folder of them, or a run folder) to restore first.

        Raises:
            TrainingInterrupted: a signal asked to stop (:func:`~.training.stop_on_signals`);
                the checkpoint was saved after the current update.
        """
        target = learn_target(self, total_timesteps, reset_num_timesteps, resume_from)
        self._learn_start = time.perf_counter()
        self._schedule = CheckpointSchedule(self.config.checkpoint_every,
                                            self.config.checkpoint_minutes)
        bar = progress_bar and _progress(target, self.num_timesteps)
        first = True
        while self.num_timesteps < target and (first or self._next_batch_fits(target)):
            first = False
            metrics = self._train_once()
            if bar:
                bar.update(min(self.num_timesteps, target) - bar.n)
                bar.set_postfix(reward=f"{metrics.get('rollout/ep_rew_mean', 0):.3f}")
            stop = self._should_stop(metrics)
            if (callback is not None and callback(metrics) is False) or stop:
                break
            if stop_requested():
                break
        if bar:
            bar.close()
        saved = self._finish_learn()
        logger.info("learn took the run to %d env steps (target %d)", self.num_timesteps, target)
        if stop_requested():
            raise TrainingInterrupted(saved, self.num_timesteps)
        return self

    def _next_batch_fits(self, target: int) -> bool:
        # Whole-run counters (restored on resume), so a resumed run stops where the
        # uninterrupted one does.
        per_batch = self.num_timesteps / max(self.num_updates, 1)
        return target - self.num_timesteps >= per_batch / 2

    def _train_once(self) -> dict[str, float]:
        t0 = time.perf_counter()
        batch, advantages, metrics = self.collect_batch()
        t1 = time.perf_counter()
        metrics.update(self.update(batch, advantages))
        self.num_updates += 1
        elapsed = time.perf_counter() - self._learn_start
        metrics.update({"time/update_s": time.perf_counter() - t1, "time/iteration_s":
                        time.perf_counter() - t0, "time/env_steps": float(self.num_timesteps),
                        "time/fps": self.num_timesteps / max(elapsed, 1e-9),
                        "train/updates": float(self.num_updates)})
        self.metrics.log(metrics, self.num_timesteps)
        if self.log_dir is not None and self._schedule.due(self.num_updates):
            self.checkpoint()
        return metrics

    def _should_stop(self, metrics: dict[str, float]) -> bool:
        dropped = int(metrics.get("reward/dropped", 0))
        total = self.config.group_size * self.config.prompts_per_batch * int(
            metrics.get("rollout/sampling_rounds", 1))
        if self.failures.update(dropped, total):
            self.stop_reason = (f"rewards failed in {self.failures.consecutive} consecutive "
                                "batches (NaN, None or an exception); stopped")
            logger.error("%s; the last checkpoint is intact", self.stop_reason)
            return True
        return False

    def _finish_learn(self) -> Path | None:
        """Checkpoint (unless rewards broke: the last good one stays) and plot; the save."""
        if self.log_dir is None:
            return None
        saved = self.checkpoint() if self.stop_reason is None else None
        plot_reward_curve(self.episode_log, self.log_dir / "reward_curve.png",
                          title=f"GRPO ({self.config.loss_type}) on {self.env_id or 'env'}")
        return saved

    # -------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (weights or adapter, optimizer, RNG, data)."""
        return {
            "format": "llm_gym.grpo/1", "config": asdict(self.config),
            "model_spec": self.model_spec, "env_id": self.env_id, "env_kwargs": self.env_kwargs,
            "wrappers": portable(self.wrappers), "wrapped": bool(self.wrappers),
            "seed": self.seed, "model": _trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state({"sample": self.generator}), "sampler": self.sampler.state_dict(),
            "counters": {"num_timesteps": self.num_timesteps, "num_updates": self.num_updates,
                         "num_rollouts": self.num_rollouts, "num_tokens": self.num_tokens},
            "episode_log": [r.to_dict() for r in self.episode_log],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` into this agent."""
        _load_trainable_state(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], {"sample": self.generator})
        self.sampler.load_state_dict(state["sampler"])
        for key, value in state["counters"].items():
            setattr(self, key, value)
        self.episode_log = [EpisodeRecord(**r) for r in state["episode_log"]]
        drop_metrics_after(self.log_dir, self.num_timesteps)  # those steps will be logged again

    def checkpoint(self) -> Path:
        """Save a numbered checkpoint in ``log_dir/checkpoints`` (keeps the newest K)."""
        if self.log_dir is None:
            raise ValueError("checkpoint() needs log_dir; pass log_dir= or use save(path)")
        return save_checkpoint(self.log_dir / "checkpoints", self.num_updates, self.state_dict(),
                               keep=self.config.keep_checkpoints)

    def save(self, path: str | Path) -> None:
        """Write the agent's full state to the folder ``path`` (atomically)."""
        write_state_dir(Path(path), self.state_dict())

    @classmethod
    def load(cls, path: str | Path, env: str | Any = None, **kwargs: Any) -> GRPOAgent:
        """Rebuild an agent from :meth:`save` output or a checkpoint (folder).

        ``kwargs`` go to the constructor (``model=`` is needed when the agent was built from an
        ``nn.Module``; ``device``, ``log_dir``).
        """
        state = load_checkpoint(path)
        model = kwargs.pop("model", state["model_spec"])
        if model is None:
            raise ValueError(f"{path} was saved from an nn.Module; pass model=<the same "
                             "architecture> to load it")
        env = env if env is not None else state["env_id"]
        if env is None:
            raise ValueError(f"{path} was saved with a vector env object; pass env=")
        config = GRPOConfig(**state["config"])
        kwargs.setdefault("env_kwargs", state["env_kwargs"])
        kwargs["wrappers"] = saved_stack(state, kwargs.get("wrappers"), path)
        agent = cls(env, model, config, seed=state["seed"], **kwargs)
        agent.load_state(state)
        return agent

    def save_pretrained(self, out_dir: str | Path, *, adapter: bool = False,
                        overwrite: bool = False) -> Path:
        """The policy as a transformers model folder with its tokenizer and chat template.

        LoRA is merged (into a copy) unless ``adapter``; see :func:`llm_gym.export.save_pretrained`.
        """
        from llm_gym.export import save_pretrained

        return save_pretrained(self.model, self.tokenizer, out_dir, adapter=adapter,
                               base=self.model_spec, overwrite=overwrite)

    def close(self) -> None:
        """Close the envs and the metric writers."""
        self.metrics.close()
        self.envs.close()

    # -------------------------------------------------------------------------- acting
    @torch.no_grad()
    def predict(self, observation: dict[str, np.ndarray], state: Any = None,
                episode_start: Any = None, deterministic: bool = False) -> tuple[Any, Any]:
        """Next token for one Dict observation (np.int64) or a batch of them (array)."""
        ids = np.asarray(observation["input_ids"])
        single = ids.ndim == 1
        ids = torch.as_tensor(np.atleast_2d(ids), device=self.device)
        mask = torch.as_tensor(np.atleast_2d(observation["attention_mask"]), device=self.device)
        position_ids = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        logits = logits[torch.arange(len(ids)), last, : self.vocab_size]
        allowed = None
        if "action_mask" in observation:
            allowed = torch.as_tensor(np.atleast_2d(observation["action_mask"])).bool()
        actions, _ = sample_tokens(
            logits, temperature=0.0 if deterministic else self.config.temperature,
            top_p=self.config.top_p, allowed=allowed,
            generator=device_generator(self.generator, logits.device))
        actions = actions.cpu().numpy().astype(np.int64)
        return (actions[0] if single else actions), state

    def evaluate(self, num_episodes: int = 32, deterministic: bool = True,
                 env_kwargs: dict[str, Any] | None = None, seed: int = 12345,
                 batch_size: int = 16) -> dict[str, Any]:
        """Play ``num_episodes`` episodes on items 0..N-1 (e.g. ``env_kwargs={"split": "test"}``).

        The env is the training env's, wrappers included. Returns mean_return (shaped),
        env_return (unshaped), success_rate (None when the env does not say), mean_length
        (see :func:`~llm_gym.agents.token_envs.evaluate_policy`).
        """
        if self.env_id is None:
            raise ValueError("evaluate() needs an agent built from an env id")
        envs = make_env(self.env_id, min(batch_size, num_episodes),
                        env_kwargs={"tokenizer": self.tokenizer, **self.env_kwargs,
                                    **(env_kwargs or {})},
                        wrappers=self.wrappers, autoreset_mode="Disabled")
        try:
            return evaluate_policy(self.model, envs, num_episodes, seed=seed,
                                   temperature=0 if deterministic else self.config.temperature,
                                   threshold=success_threshold(self.env_id))
        finally:
            envs.close()


# ============================================================================== helpers
def _progress(total: int, initial: int) -> Any:
    return progress_bar(total, True, initial=initial)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
    else:
        model.load_state_dict(state)


def parameter_hash(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in name order (for exact-resume checks).

    Example:
        >>> from llm_gym.models import tiny_model
        >>> len(parameter_hash(tiny_model()[0]))
        64
    """
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["GRPOAgent", "GRPOConfig", "group_advantages", "grpo_loss", "latest_checkpoint",
           "parameter_hash"]
