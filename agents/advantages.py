"""Advantage estimators for the LLM policy-gradient agents: each one function over named inputs.

* :func:`group_advantages` — GRPO (Shao et al. 2024): ``r - mean(group)``, divided by the
  group's std unless Dr. GRPO (Liu et al. 2025) turns that off. One value per sequence.
* :func:`rloo_advantages` — RLOO (Ahmadian et al. 2024, after Kool et al. 2019): each sample's
  baseline is the mean return of the *other* samples of its group. One value per sequence.
* :func:`reinforce_pp_advantages` — REINFORCE++ (Hu 2025): the per-token KL to the reference is
  a penalty inside the reward, returns-to-go run over the agent's tokens, and the advantages are
  normalised over the whole batch instead of per group. One value per token.

Rows that are not ``valid`` (a dropped reward) get 0 and never count toward a baseline.
"""

from __future__ import annotations

import torch


def group_advantages(returns: torch.Tensor, valid: torch.Tensor, group_size: int,
                     scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages ``r - mean(group)`` (``/ std`` when ``scale``).

    Rows are consecutive groups of ``group_size``. Invalid rows (dropped rewards) are left out of
    the group statistics and get 0. A group whose valid rewards are all equal — or that has
    fewer than two valid rows — gets exactly 0: it carries no signal, and no division by zero
    happens.

    Example:
        >>> group_advantages(torch.tensor([1., 0., 1., 1.]), torch.ones(4, dtype=torch.bool), 2)
        tensor([ 0.7070, -0.7070,  0.0000,  0.0000])
    """
    r = returns.double().view(-1, group_size)
    v = valid.view(-1, group_size)
    count = v.sum(dim=1, keepdim=True)
    mean = torch.where(v, r, 0).sum(dim=1, keepdim=True) / count.clamp(min=1)
    centred = torch.where(v, r - mean, 0)
    std = (centred.pow(2).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
    high = torch.where(v, r, -torch.inf).amax(dim=1, keepdim=True)
    low = torch.where(v, r, torch.inf).amin(dim=1, keepdim=True)
    informative = (count >= 2) & (high > low)
    adv = centred / (std + eps) if scale else centred
    return torch.where(informative & v, adv, 0).float().view(-1)


def rloo_advantages(returns: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out advantages ``r_i - mean_{j != i}(r_j)`` within each group.

    Equal to ``G / (G - 1) * (r_i - mean(group))`` for ``G`` valid samples; a group with fewer
    than two valid samples has no baseline and gets 0.

    Example:
        >>> rloo_advantages(torch.tensor([1., 0., 0., 3.]), torch.ones(4, dtype=torch.bool), 4)
        tensor([ 0.0000, -1.3333, -1.3333,  2.6667])
    """
    r, v = _groups(returns, valid, group_size)
    count = v.sum(dim=1, keepdim=True)
    others = ((r * v).sum(dim=1, keepdim=True) - r) / (count - 1).clamp(min=1)
    adv = torch.where((count > 1) & v, r - others, torch.zeros_like(r))
    return adv.reshape(-1)


def reinforce_pp_advantages(
    token_rewards: torch.Tensor, agent_mask: torch.Tensor, valid: torch.Tensor, *,
    kl: torch.Tensor | None = None, kl_coef: float = 0.0, gamma: float = 1.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """``(B, T)`` REINFORCE++ advantages: KL-penalised returns-to-go, normalised over the batch.

    Args:
        token_rewards: ``(B, T)`` the env's reward at each token (the task reward sits on the
            token that ended the turn).
        agent_mask: ``(B, T)`` the agent's tokens (only they are rewarded, penalised, trained).
        valid: ``(B,)`` rows whose rewards are usable.
        kl: ``(B, T)`` per-token KL estimate to the reference (``logp - logp_ref``), or None.
        kl_coef: weight of the KL penalty in the reward.
        gamma: discount along the agent's tokens (1 in the paper).
        eps: added to the std.

    Example:
        >>> rewards = torch.tensor([[0., 0., 1.], [0., 0., 0.]])
        >>> mask = torch.tensor([[False, True, True], [False, True, True]])
        >>> reinforce_pp_advantages(rewards, mask, torch.tensor([True, True]))
        tensor([[ 0.,  1.,  1.],
                [ 0., -1., -1.]])
    """
    mask = agent_mask.bool() & valid.bool()[:, None]
    rewards = token_rewards.float() * mask
    if kl is not None and kl_coef:
        rewards = rewards - kl_coef * kl.float() * mask
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):  # returns-to-go over the agent's tokens
        running = torch.where(mask[:, t], rewards[:, t] + gamma * running, running)
        returns[:, t] = running
    values = returns[mask]
    if values.numel() == 0:
        return torch.zeros_like(returns)
    std = values.std(unbiased=False) if values.numel() > 1 else values.new_tensor(0.0)
    return torch.where(mask, (returns - values.mean()) / (std + eps), torch.zeros_like(returns))


def _groups(returns: torch.Tensor, valid: torch.Tensor,
            group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if returns.shape[0] % group_size:
        raise ValueError(f"{returns.shape[0]} rows do not split into groups of {group_size}")
    return (returns.float().reshape(-1, group_size),
            valid.bool().reshape(-1, group_size))
