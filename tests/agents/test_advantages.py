"""Advantage estimators on hand-computed cases (issue 8, point 5)."""

from __future__ import annotations

import pytest
import torch

from llm_gym.agents.advantages import (
    group_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)

ALL = torch.ones(6, dtype=torch.bool)


def test_rloo_is_the_leave_one_out_baseline():
    returns = torch.tensor([2.0, 0.0, 1.0, 5.0, 5.0, 5.0])
    # group 1: baselines (0+1)/2, (2+1)/2, (2+0)/2; group 2: all equal -> 0
    expected = torch.tensor([1.5, -1.5, 0.0, 0.0, 0.0, 0.0])
    assert torch.allclose(rloo_advantages(returns, ALL, 3), expected)
    # G/(G-1) times GRPO's unscaled advantage
    assert torch.allclose(rloo_advantages(returns, ALL, 3),
                          1.5 * group_advantages(returns, ALL, 3, scale=False), atol=1e-6)


def test_rloo_leaves_invalid_rows_out():
    returns = torch.tensor([1.0, 0.0, 100.0, 3.0, 7.0, 9.0])
    valid = torch.tensor([True, True, False, True, False, False])
    # group 1 without the invalid 100: 1 - 0, 0 - 1; group 2 has one valid sample: no baseline
    assert rloo_advantages(returns, valid, 3).tolist() == [1.0, -1.0, 0.0, 0.0, 0.0, 0.0]


def test_reinforce_pp_returns_to_go_with_kl_in_the_reward():
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[False, True, True, True], [False, False, True, True]])
    kl = torch.tensor([[9.0, 0.5, 0.0, 0.5], [9.0, 9.0, 1.0, 0.0]])  # 9s are masked out
    adv = reinforce_pp_advantages(rewards, mask, torch.tensor([True, True]), kl=kl, kl_coef=0.1)
    # per-token rewards: row 0 [-, -0.05, 0, 0.95], row 1 [-, -, -0.1, 0]
    returns = torch.tensor([0.9, 0.95, 0.95, -0.1, 0.0])  # returns-to-go on the agent tokens
    mean, std = returns.mean(), returns.std(unbiased=False)
    expected = torch.zeros(2, 4)
    expected[mask] = (returns - mean) / std
    assert torch.allclose(adv, expected, atol=1e-5)
    assert (adv[~mask] == 0).all()


def test_reinforce_pp_normalises_over_the_batch_and_skips_invalid_rows():
    rewards = torch.tensor([[0.0, 1.0], [0.0, 3.0], [0.0, 50.0]])
    mask = torch.tensor([[True, True]] * 3)
    adv = reinforce_pp_advantages(rewards, mask, torch.tensor([True, True, False]))
    assert adv[2].tolist() == [0.0, 0.0]
    assert adv[:2][mask[:2]].mean().abs() < 1e-6  # whitened over the valid tokens
    assert adv[0, 0] < 0 < adv[1, 0]


def test_reinforce_pp_with_no_agent_token_is_zero():
    adv = reinforce_pp_advantages(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool),
                                  torch.tensor([True, True]))
    assert (adv == 0).all()


def test_groups_must_divide_the_batch():
    with pytest.raises(ValueError, match="groups of 4"):
        rloo_advantages(torch.zeros(6), ALL, 4)
