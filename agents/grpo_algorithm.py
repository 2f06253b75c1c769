"""GRPO's config and loss: the algorithm, apart from the agent that runs it (:mod:`.grpo`).

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
"""

from __future__ import annotations

import warnings
from dataclasses import InitVar, dataclass
from typing import Any

import torch

from llm_gym.agents.checkpoints import DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_MINUTES
from llm_gym.agents.config import FileConfig, require_at_least_one

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
# Advantage estimators (llm_gym.agents.advantages); agents ``rloo`` and ``reinforce-pp`` are this
# trainer with the estimator set.
ADVANTAGES = ("group", "rloo", "reinforce_pp")


# ============================================================================== config
@dataclass
class GRPOConfig(FileConfig):
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
        kl_coef: weight of the KL to a frozen reference model (0: no reference loaded). Where it
            goes follows the estimator: ``group`` and ``rloo`` add the k3 estimator to the loss
            (Shao et al. 2024); ``reinforce_pp`` puts the k1 estimate into each token's reward,
            as PPO does (Hu 2025). Formerly ``beta`` (still accepted, with a DeprecationWarning).
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
    kl_coef: float = 0.0
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
    dtype: str | None = None
    beta: InitVar[float | None] = None  # deprecated name of kl_coef

    def __post_init__(self, beta: float | None) -> None:
        if beta is not None:
            warnings.warn("GRPOConfig: 'beta' is deprecated, use 'kl_coef' (same meaning)",
                          DeprecationWarning, stacklevel=3)
            if self.kl_coef not in (0, beta) and beta != 0:
                raise ValueError(f"GRPOConfig: beta={beta} and kl_coef={self.kl_coef} both "
                                 "given; give only kl_coef (beta is its deprecated name)")
            self.kl_coef = self.kl_coef or beta
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {ADVANTAGES}, got {self.advantage!r}")
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
        if self.kl_coef < 0 or self.clip_eps_low <= 0:
            raise ValueError(f"need kl_coef >= 0 (0: no KL) and clip_eps_low > 0, got "
                             f"{self.kl_coef}, {self.clip_eps_low}")

    @property
    def kl_loss_coef(self) -> float:
        """Weight of the k3 KL term in the loss (0 for REINFORCE++, whose KL is in the reward)."""
        return 0.0 if self.advantage == "reinforce_pp" else self.kl_coef

    @property
    def kl_reward_coef(self) -> float:
        """Weight of the k1 KL penalty in each token's reward (REINFORCE++ only)."""
        return self.kl_coef if self.advantage == "reinforce_pp" else 0.0

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


# ============================================================================== loss
def grpo_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
    mask: torch.Tensor, config: GRPOConfig, norm: dict[str, float],
    ref_logprobs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate (+ ``kl_loss_coef`` x k3 KL) aggregated as the loss type says.

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
    if ref_logprobs is not None and config.kl_loss_coef > 0:
        delta = ref_logprobs - logprobs  # k3 estimator (Schulman 2020): unbiased, always >= 0
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + config.kl_loss_coef * kl
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
