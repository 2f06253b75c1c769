"""RLOO and REINFORCE++: GRPO's trainer with another advantage estimator (issue 8, point 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llm_gym.agents.base import AgentEnvMismatch
from llm_gym.agents.factory import make_agent
from llm_gym.agents.grpo import GRPOConfig
from tests.agents.test_grpo import letter_agent

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.mark.parametrize(("advantage", "kl_coef"), [("rloo", 0.0), ("reinforce_pp", 0.0),
                                                     ("reinforce_pp", 0.05)])
def test_estimators_learn_a_trivial_token_task(advantage, kl_coef) -> None:
    config = GRPOConfig(group_size=8, prompts_per_batch=4, learning_rate=2e-2,
                        advantage=advantage, kl_coef=kl_coef)
    agent = letter_agent(config)
    assert (agent.ref_model is not None) == (kl_coef > 0)
    rewards: list[float] = []

    def record(metrics: dict) -> bool:
        rewards.append(metrics["rollout/ep_rew_mean"])
        assert np.isfinite(metrics["train/loss"])
        return len(rewards) < 10

    agent.learn(10**6, callback=record)
    before, after = np.mean(rewards[:2]), np.mean(rewards[-2:])
    assert before < 0.3 and after > before + 0.4, rewards  # random policy: ~26/260


def test_reinforce_pp_advantages_are_per_token() -> None:
    agent = letter_agent(GRPOConfig(group_size=2, prompts_per_batch=2, advantage="reinforce_pp"))
    batch, advantages, _ = agent.collect_batch()
    assert advantages.shape == batch.agent_mask.shape
    assert (advantages[batch.agent_mask == 0] == 0).all()


def test_agent_names_fix_the_estimator() -> None:
    rloo = make_agent("rloo", "llm_gym/Arithmetic-v0", model="tiny",
                      config={"group_size": 2, "prompts_per_batch": 1})
    assert rloo.config.advantage == "rloo"
    reinforce = make_agent("reinforce-pp", "llm_gym/Arithmetic-v0", model="tiny",
                           config=GRPOConfig(group_size=2, prompts_per_batch=1))
    assert reinforce.config.advantage == "reinforce_pp"
    with pytest.raises(AgentEnvMismatch, match="rloo trains a language model"):
        make_agent("rloo", "llm_gym/LeftRight-v0")


@pytest.mark.parametrize("kwargs", [{"advantage": "vtrace"}, {"kl_coef": -0.1},
                                    {"advantage": "reinforce_pp", "loss_type": "dapo"}])
def test_bad_estimator_configs_say_what_to_do(kwargs) -> None:
    with pytest.raises(ValueError, match="advantage|kl_coef|dynamic_sampling"):
        GRPOConfig(**kwargs)


def test_grpo_loss_takes_token_advantages() -> None:
    from llm_gym.agents.grpo_algorithm import grpo_loss

    logp = torch.zeros(2, 3)
    mask = torch.ones(2, 3)
    norm = {"sequences": 2.0, "tokens": 6.0, "max_completion_length": 3.0}
    per_sequence = grpo_loss(logp, logp, torch.tensor([1.0, -1.0]), mask, GRPOConfig(), norm)[0]
    per_token = grpo_loss(logp, logp, torch.tensor([[1.0] * 3, [-1.0] * 3]), mask, GRPOConfig(),
                          norm)[0]
    assert torch.allclose(per_sequence, per_token)
