"""One placement helper for device and precision; PPO with LoRA (issue 8, points 6 and 7)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.agents.ppo import PPOAgent, PPOConfig
from llm_gym.models import load_model, placement

needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None,
                                reason="needs peft (pip install 'llm_gym[lora]')")

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def test_placement_defaults_and_names():
    assert placement("cpu") == ("cpu", torch.float32)
    assert placement("cuda:0") == ("cuda:0", torch.bfloat16)
    assert placement("cpu", "bfloat16") == ("cpu", torch.bfloat16)
    assert placement("cpu", torch.float16) == ("cpu", torch.float16)
    with pytest.raises(ValueError, match="dtype must be one of"):
        placement("cpu", "bf16x")


def test_grpo_runs_the_gpu_precision_path_on_a_cpu():
    agent = GRPOAgent("llm_gym/Arithmetic-v0", "tiny",
                      GRPOConfig(group_size=2, prompts_per_batch=2, dtype="bfloat16",
                                 learning_rate=1e-3), device="cpu")
    assert next(agent.model.parameters()).dtype == torch.bfloat16
    metrics: list[dict] = []
    agent.learn(32, callback=lambda m: metrics.append(m) or True)
    assert metrics and all(math.isfinite(m["train/loss"]) for m in metrics if "train/loss" in m)
    assert all(torch.isfinite(p).all() for p in agent.model.parameters())


def test_ppo_runs_in_bfloat16_on_a_cpu():
    agent = PPOAgent("llm_gym/Arithmetic-v0", "tiny",
                     PPOConfig(num_envs=2, dtype="bfloat16", update_epochs=1,
                               num_minibatches=1), env_kwargs={"max_new_tokens": 4})
    assert next(agent.policy.net.model.parameters()).dtype == torch.bfloat16
    agent.learn(16)
    assert all(torch.isfinite(p.float()).all() for p in agent.policy.net.model.parameters())


@needs_peft
def test_ppo_trains_a_lora_adapter_against_the_disabled_adapter():
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    # The short text walk: rewards every turn (Arithmetic pays a tiny model nothing to learn).
    agent = PPOAgent("llm_gym/LeftRightText-v0", "tiny",
                     PPOConfig(num_envs=2, kl_coef=0.05, lora=lora, learning_rate=1e-2,
                               update_epochs=2, num_minibatches=1),
                     env_kwargs={"constrained": True, "max_length": 400})
    model = agent.policy.net.model
    assert hasattr(model, "disable_adapter") and agent.policy.ref is None  # no weight copy
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.tensor([[1, 2, 3, 4]])
    mask = torch.ones_like(ids)
    logp = agent.policy.net(ids, mask, with_value=False)[0]
    # At the start the adapter is a no-op: the reference equals the policy, KL exactly 0.
    assert torch.equal(agent.policy._reference(logp, ids, mask, None), logp)
    agent.learn(32)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)  # the adapter trained, the base not


def test_load_model_tiny_takes_the_env_tokenizer():
    from llm_gym.tokenizers import ByteTokenizer

    model, tokenizer = load_model("tiny", device="cpu", tokenizer=ByteTokenizer())
    assert model.config.vocab_size == tokenizer.vocab_size == 260
