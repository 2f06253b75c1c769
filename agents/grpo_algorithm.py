"""GRPO's config and loss: the algorithm, apart from the agent that runs it (:mod:`.grpo`).

Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath) samples G episodes on the same
task item and uses the group-normalised episode return as the advantage of every token the agent
wrote: no value network. Three loss variants:

* ``grpo``: advantages ``(r - mean) / std``; per-sequence mean of token losses, then the batch mean.
* ``dr_grpo`` (Liu et al. 2025, "Understanding R1-Zero-Like Training"): no std normalisation and
  a constant length normaliser (``max_completion_length``), which removes GRPO's length and
  difficulty biases.
* ``dapo`` (Yu et al. 2025): clip-higher (``clip_coef_high`` > ``clip_coef``), token-level
  aggregation over the whole batch, and dynamic sampling (groups whose rewards are all equal carry
  no signal: drop them and sample more, up to ``max_sampling_rounds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from llm_gym.agents.config import TrainerConfig, require_at_least_one
from llm_gym.agents.curriculum import CurriculumConfig

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
# Advantage estimators (llm_gym.agents.advantages); agents ``rloo`` and ``reinforce-pp`` are this
# trainer with the estimator set.
ADVANTAGES = ("group", "rloo", "reinforce_pp")


# ============================================================================== config
@dataclass(kw_only=True)
class GRPOConfig(TrainerConfig):
    """GRPO hyper-parameters (every field can come from a TOML/JSON file, see :meth:`from_file`).

    The settings every trainer shares (``learning_rate``, ``kl_coef``, ``max_grad_norm``,
    checkpoints, ``lora``, ``dtype``, ...) are :class:`~llm_gym.agents.config.TrainerConfig`'s.
    ``kl_coef`` (default 0: no reference model) goes where the estimator says: ``group`` and
    ``rloo`` add the k3 estimator to the loss (Shao et al. 2024); ``reinforce_pp`` puts the k1
    estimate into each token's reward, as PPO does (Hu 2025). ``temperature`` is used by the
    update too, as in TRL.

    Attributes:
        group_size: G, episodes sampled per task item.
        prompts_per_batch: task items per rollout batch (the vector env has G x this rows).
        loss_type: ``"grpo"``, ``"dr_grpo"`` or ``"dapo"`` (see the module docstring).
        update_epochs: PPO-style passes over each rollout batch (1 = on-policy GRPO; TRL's
            ``num_iterations``).
        num_minibatches: optimizer steps per epoch (the batch is split into this many parts).
        micro_batch_size: sequences per forward/backward; gradients accumulate over a minibatch.
        clip_coef: the ratio's clip ε, the lower clip range ``1 - clip_coef`` (TRL's
            ``epsilon``).
        clip_coef_high: the upper clip range ``1 + clip_coef_high``; ``None`` = ``clip_coef``
            (0.28 for dapo, the paper's clip-higher; TRL's ``epsilon_high``).
        top_p: nucleus sampling threshold.
        scale_rewards: divide group advantages by their std; ``None`` = by loss type (off for
            dr_grpo).
        dynamic_sampling: drop all-equal groups and resample; ``None`` = on for dapo only.
        max_sampling_rounds: cap on rollout rounds per batch with dynamic sampling.
        max_completion_length: Dr. GRPO's constant normaliser; ``None`` = the env's
            ``max_new_tokens``.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (exact resume on CPU).
        advantage: ``"group"`` (GRPO), ``"rloo"`` (leave-one-out baseline) or
            ``"reinforce_pp"`` (REINFORCE++: KL-penalised returns-to-go, batch-normalised, one
            advantage per token); see :mod:`llm_gym.agents.advantages`.
        curriculum: draw task items with a :class:`~llm_gym.agents.curriculum.Curriculum`
            (a :class:`~llm_gym.agents.curriculum.CurriculumConfig` or a dict of its fields,
            ``{}`` for its defaults) instead of walking the data in shuffled epochs; ``None``
            walks it.
    """

    group_size: int = 4
    prompts_per_batch: int = 4
    loss_type: str = "grpo"
    update_epochs: int = 1
    num_minibatches: int = 1
    micro_batch_size: int = 16
    clip_coef: float = 0.2
    clip_coef_high: float | None = None
    top_p: float = 1.0
    scale_rewards: bool | None = None
    dynamic_sampling: bool | None = None
    max_sampling_rounds: int = 4
    max_completion_length: int | None = None
    deterministic: bool = False
    advantage: str = "group"
    curriculum: CurriculumConfig | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.curriculum = CurriculumConfig.parse(self.curriculum)
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {ADVANTAGES}, got {self.advantage!r}")
        if self.advantage == "reinforce_pp" and self.uses_dynamic_sampling:
            raise ValueError("advantage='reinforce_pp' normalises over the whole batch: set "
                             "dynamic_sampling=False (it drops all-equal groups)")
        require_at_least_one(self, (
            "group_size", "prompts_per_batch", "update_epochs", "num_minibatches",
            "micro_batch_size", "max_sampling_rounds"))
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (GRPO compares within a group), "
                             f"got {self.group_size}")
        if self.clip_coef <= 0:
            raise ValueError(f"clip_coef must be above 0, got {self.clip_coef}")

    @property
    def kl_loss_coef(self) -> float:
        """Weight of the k3 KL term in the loss (0 for REINFORCE++, whose KL is in the reward)."""
        return 0.0 if self.advantage == "reinforce_pp" else self.kl_coef

    @property
    def kl_reward_coef(self) -> float:
        """Weight of the k1 KL penalty in each token's reward (REINFORCE++ only)."""
        return self.kl_coef if self.advantage == "reinforce_pp" else 0.0

    @property
    def effective_clip_coef_high(self) -> float:
        """The upper clip range actually used: ``clip_coef_high`` or its loss type's default."""
        if self.clip_coef_high is not None:
            return self.clip_coef_high
        return 0.28 if self.loss_type == "dapo" else self.clip_coef

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
    clipped = torch.clamp(ratio, 1 - config.clip_coef, 1 + config.effective_clip_coef_high)
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
        "clip_fraction": ((((ratio - 1).abs() > config.clip_coef) & (mask > 0)).float().sum()
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
