"""The PPO algorithm shared by both faces of :class:`~llm_gym.agents.ppo.PPOAgent`.

Both faces (:mod:`llm_gym.agents.ppo_policies`) hand a :class:`PPOBatch` to the same code
below, which reads top to bottom: config, advantages (GAE), KL penalty, losses, update.

The RLHF form follows Ziegler et al. 2019 and Ouyang et al. 2022, with the details of "The N
implementation details of RLHF with PPO" (Huang et al. 2023):

* The time axis is the sequence of tokens the agent wrote. Tokens injected by a multi-turn env
  (its replies) are skipped: the step after an agent's end-of-turn token is its first token of the
  next turn, discounted once. Env rewards arrive token-aligned and dense, so each turn's reward
  sits on the token whose step returned it.
* A per-token KL penalty to a frozen reference model is added to the reward:
  ``r_t - kl_coef * (log pi_old(a_t) - log pi_ref(a_t))`` (the k1 estimator).
* A token episode always ends for good (answered, or cut off at the token budget: the task is
  scored on what was written), so the last agent token bootstraps with 0. On classic envs a
  time-limit truncation bootstraps with the value of the final observation (SB3).
* Clipped policy loss, clipped value loss, advantages whitened over the whole rollout, several
  epochs of minibatches, gradient-norm clipping, AdamW.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from llm_gym.agents.config import TrainerConfig, require_at_least_one
from llm_gym.agents.curriculum import CurriculumConfig

# ----------------------------------------------------------------------------- config


@dataclass(kw_only=True)
class PPOConfig(TrainerConfig):
    """Hyperparameters of :class:`PPOAgent` (CleanRL names where they exist).

    The settings every trainer shares (``kl_coef``, ``temperature``, checkpoints, ``lora``,
    ``dtype``, ...) are :class:`~llm_gym.agents.config.TrainerConfig`'s; PPO's own defaults
    for three of them follow CleanRL and the RLHF report: ``learning_rate`` ``None`` (3e-4
    for the MLP policy, 1e-5 for an LLM policy), ``max_grad_norm`` 0.5, and ``kl_coef`` 0.05
    (the weight of the per-token KL penalty to the reference model on token envs; 0 builds no
    reference model). ``temperature`` divides the logits in the update too, so the ratio
    compares the distributions that were sampled from. With ``lora`` the adapter and the value
    head train, the rest of the LM stays frozen.

    Attributes:
        num_envs: parallel envs. For token envs, the episodes (conversations) per update.
        num_steps: steps per env per rollout, classic envs only (token envs play one whole
            episode per env per rollout).
        gamma: discount per env step (per agent token on token envs).
        gae_lambda: GAE's lambda (Schulman et al. 2016).
        update_epochs: passes over each rollout.
        num_minibatches: minibatches per pass (token envs split by conversation).
        clip_coef: PPO's ratio clip epsilon.
        vf_clip_coef: clip of the value update around the rollout's values; ``None`` disables.
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        norm_adv: whiten advantages (mean 0, std 1) over the rollout's valid steps.
        target_kl: stop the epochs of an update early once the approximate KL of the policy
            change passes this; ``None`` never stops.
        adam_eps: AdamW's epsilon (1e-5 as in CleanRL and the RLHF report).
        hidden_size: width of the MLP policy's hidden layers (classic envs).
        curriculum: token envs: draw task items with a
            :class:`~llm_gym.agents.curriculum.Curriculum` (its config or a dict of its
            fields) instead of walking the data in shuffled epochs.
    """

    learning_rate: float | None = None
    max_grad_norm: float = 0.5
    kl_coef: float = 0.05
    num_envs: int = 8
    num_steps: int = 128
    gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 4
    num_minibatches: int = 4
    clip_coef: float = 0.2
    vf_clip_coef: float | None = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    norm_adv: bool = True
    target_kl: float | None = None
    adam_eps: float = 1e-5
    hidden_size: int = 64
    curriculum: CurriculumConfig | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.curriculum = CurriculumConfig.parse(self.curriculum)
        require_at_least_one(self, (
            "num_envs", "num_steps", "update_epochs", "num_minibatches", "hidden_size"))
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(
                f"gamma and gae_lambda must lie in [0, 1], got {self.gamma}, {self.gae_lambda}"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


# ----------------------------------------------------------------------------- advantages


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, dones: torch.Tensor,
    gamma: float, gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation along the last axis (time).

    ``delta_t = r_t + gamma * next_values_t - values_t`` and
    ``A_t = delta_t + gamma * lambda * (1 - dones_t) * A_{t+1}``. The caller puts into
    ``next_values`` what the episode's next state is worth: ``values_{t+1}`` inside an episode,
    0 after a termination, the value of the final observation after a time-limit truncation.
    ``dones_t`` cuts the trace where an episode ends after step ``t``.

    Args:
        rewards: ``(B, N)`` rewards.
        values: ``(B, N)`` value of the state of each step.
        next_values: ``(B, N)`` value of the state after each step (see above).
        dones: ``(B, N)`` 0/1 or bool, the episode ended after the step.
        gamma: discount per step.
        gae_lambda: GAE's lambda.

    Returns:
        ``(advantages, returns)``, both ``(B, N)``; ``returns = advantages + values`` is the
        value target.

    Example:
        >>> one = torch.ones(1, 2)
        >>> compute_gae(one, 0 * one, 0 * one, torch.tensor([[0, 1]]), 0.5, 1.0)[0]
        tensor([[1.5000, 1.0000]])
    """
    deltas = rewards + gamma * next_values - values
    carry = (1.0 - dones.to(rewards.dtype)) * gamma * gae_lambda
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        running = deltas[..., t] + carry[..., t] * running
        advantages[..., t] = running
    return advantages, advantages + values


def agent_token_index(agent_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the agent's tokens, packed to the left of each row.

    Returns:
        ``(index, valid)``, both ``(B, N)`` with ``N`` the most agent tokens in a row:
        ``index[b, k]`` is the position of row ``b``'s ``k``-th agent token (0 where
        ``valid`` is False).
    """
    mask = agent_mask.bool()
    width = max(int(mask.sum(1).max()), 1)
    # A stable sort on "not agent" lists the agent positions first, in their original order.
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.gather(mask, 1, order)
    return torch.where(valid, order, torch.zeros_like(order)), valid


def token_gae(
    rewards: torch.Tensor, values: torch.Tensor, agent_mask: torch.Tensor,
    gamma: float, gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the agent's tokens of each conversation, skipping env-injected tokens.

    Each row is one finished episode; its last agent token bootstraps with 0. Rewards and values
    outside the agent's tokens are ignored.

    Args:
        rewards: ``(B, T)`` token-aligned rewards (KL penalty included).
        values: ``(B, T)`` value of the state each token was sampled in.
        agent_mask: ``(B, T)`` 1 on tokens the agent wrote.
        gamma: discount per agent token.
        gae_lambda: GAE's lambda.

    Returns:
        ``(advantages, returns)`` as ``(B, T)`` tensors, 0 off the agent's tokens.
    """
    index, valid = agent_token_index(agent_mask)
    packed_rewards = torch.gather(rewards, 1, index) * valid
    packed_values = torch.gather(values, 1, index) * valid
    valid_next = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)
    next_values = torch.cat([packed_values[:, 1:], torch.zeros_like(packed_values[:, :1])], 1)
    advantages, _ = compute_gae(packed_rewards, packed_values, next_values * valid_next,
                                ~valid_next, gamma, gae_lambda)
    full = torch.zeros_like(rewards).scatter(1, index, advantages * valid)
    return full, (full + values) * agent_mask


def kl_penalized_rewards(
    rewards: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
    agent_mask: torch.Tensor, kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Env rewards minus ``kl_coef`` times the per-token k1 KL estimate, on agent tokens only.

    Returns:
        ``(rewards, kl)``: the penalized rewards and the per-token ``log pi - log pi_ref``
        (0 off the agent's tokens).
    """
    kl = (logprobs - ref_logprobs) * agent_mask
    return rewards - kl_coef * kl, kl


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` shifted and scaled to mean 0, std 1 over ``mask`` (0 elsewhere)."""
    mask = mask.to(x.dtype)
    count = mask.sum().clamp(min=1.0)
    mean = (x * mask).sum() / count
    var = (((x - mean) * mask) ** 2).sum() / count
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


# ----------------------------------------------------------------------------- losses


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (0 when there are none)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def ppo_losses(
    new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
    new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
    mask: torch.Tensor, clip_coef: float, vf_clip_coef: float | None,
) -> dict[str, torch.Tensor]:
    """PPO's clipped surrogate and clipped value loss, averaged over ``mask``.

    Policy: ``max(-A * r, -A * clip(r, 1 - eps, 1 + eps))`` with ``r = pi / pi_old``
    (Schulman et al. 2017). Value: ``0.5 * max((v - R)^2, (v_clip - R)^2)`` with
    ``v_clip = v_old + clip(v - v_old, -c, +c)`` (the OpenAI baselines / RLHF form).

    Returns:
        ``policy_loss``, ``value_loss`` (with gradients), and the detached diagnostics
        ``approx_kl`` (the k3 estimator of KL(old || new)) and ``clip_fraction``.
    """
    log_ratio = new_logprobs - old_logprobs
    ratio = log_ratio.exp()
    surrogate = torch.maximum(-advantages * ratio,
                              -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef))
    value_error = (new_values - returns) ** 2
    if vf_clip_coef is not None:
        clipped = old_values + (new_values - old_values).clamp(-vf_clip_coef, vf_clip_coef)
        value_error = torch.maximum(value_error, (clipped - returns) ** 2)
    with torch.no_grad():
        approx_kl = masked_mean(ratio - 1 - log_ratio, mask)
        clip_fraction = masked_mean(((ratio - 1).abs() > clip_coef).float(), mask)
    return {
        "policy_loss": masked_mean(surrogate, mask),
        "value_loss": 0.5 * masked_mean(value_error, mask),
        "approx_kl": approx_kl,
        "clip_fraction": clip_fraction,
    }


# ----------------------------------------------------------------------------- update


@dataclass
class PPOBatch:
    """A rollout ready for the update: ``U`` units (transitions, or conversations) of ``L`` steps.

    Attributes:
        inputs: what the policy needs to score the units again, each tensor ``(U, ...)``.
        old_logprobs, old_values, advantages, returns, mask: ``(U, L)``; ``mask`` is 1 on the
            steps that are trained on (the agent's tokens).
    """

    inputs: dict[str, torch.Tensor]
    old_logprobs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.mask)

    def select(self, index: torch.Tensor) -> PPOBatch:
        """The units at ``index``."""
        return PPOBatch({k: v[index] for k, v in self.inputs.items()},
                        self.old_logprobs[index], self.old_values[index],
                        self.advantages[index], self.returns[index], self.mask[index])


def ppo_update(
    policy: Any, optimizer: torch.optim.Optimizer, batch: PPOBatch, config: PPOConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """Several epochs of clipped-PPO minibatch steps on one rollout.

    ``policy.evaluate(inputs) -> (logprobs, entropy, values)`` scores a minibatch, each
    ``(u, L)``. Returns the ``train/`` metrics averaged over the minibatch steps.
    """
    if config.norm_adv:
        batch.advantages = whiten(batch.advantages, batch.mask)
    size = -(-len(batch) // config.num_minibatches)  # ceil: every unit in every epoch
    params = [p for p in policy.parameters() if p.requires_grad]
    sums: dict[str, float] = {}
    steps = 0
    for _ in range(config.update_epochs):
        order = torch.randperm(len(batch), generator=generator)
        epoch_kl = []
        for start in range(0, len(batch), size):
            mb = batch.select(order[start : start + size])
            logprobs, entropy, values = policy.evaluate(mb.inputs)
            out = ppo_losses(logprobs, mb.old_logprobs, mb.advantages, values, mb.old_values,
                             mb.returns, mb.mask, config.clip_coef, config.vf_clip_coef)
            out["entropy"] = masked_mean(entropy, mb.mask)
            out["loss"] = (out["policy_loss"] + config.vf_coef * out["value_loss"]
                           - config.ent_coef * out["entropy"])
            out["loss"].backward()
            out["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            # Freed here rather than before the next backward, so the next forward's
            # activations never sit beside a model's worth of stale gradients.
            optimizer.zero_grad(set_to_none=True)
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            steps += 1
            epoch_kl.append(float(out["approx_kl"]))
        if config.target_kl is not None and sum(epoch_kl) / len(epoch_kl) > config.target_kl:
            break
    metrics = {f"train/{key}": value / steps for key, value in sums.items()}
    metrics["train/explained_variance"] = explained_variance(batch.old_values, batch.returns,
                                                              batch.mask)
    metrics["train/lr"] = float(optimizer.param_groups[0]["lr"])
    return metrics


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over ``mask``: 1 is a perfect critic, <= 0 a useless one."""
    mask = mask.bool()
    target = returns[mask]
    if target.numel() < 2 or float(target.var()) == 0.0:
        return float("nan")
    return float(1.0 - (target - values[mask]).var() / target.var())
