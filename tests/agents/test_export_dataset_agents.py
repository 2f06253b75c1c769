"""``llm-gym export`` on the dataset trainers: DPO and SFT runs leave as transformers models.

Every LLM agent a user can train exports (issue 21); GRPO, RLOO, REINFORCE++ and PPO are
covered in ``test_export.py``.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llm_gym.agents.dpo import DPOAgent, DPOConfig
from llm_gym.agents.export import LM_TRAINER_FORMATS, export_model
from llm_gym.agents.factory import AGENTS, LLM_AGENTS
from llm_gym.agents.sft import SFTAgent, SFTConfig
from llm_gym.cli import main
from llm_gym.models import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

ENV = "llm_gym/Arithmetic-v0"
MESSAGES = [{"role": "user", "content": "What is 12+7?"}]


def _pairs(count: int = 4) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"{i} + 1 = ?"}],
             "chosen": [{"role": "assistant", "content": str(i + 1)}],
             "rejected": [{"role": "assistant", "content": f"{i + 5}!"}]} for i in range(count)]


def _conversations(count: int = 4) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"{i} + 1 = ?"}],
             "completion": [{"role": "assistant", "content": str(i + 1)}]} for i in range(count)]


def _logits(model, tokenizer) -> torch.Tensor:
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("name", ["dpo", "sft"])
def test_a_dataset_trainer_run_exports_through_the_cli(name, tmp_path, capsys):
    if name == "dpo":
        agent = DPOAgent(ENV, "tiny", DPOConfig(batch_size=2, learning_rate=1e-2), data=_pairs())
    else:
        agent = SFTAgent(ENV, "tiny", SFTConfig(batch_size=2, learning_rate=1e-2),
                         data=_conversations())
    agent.learn(4)
    run, out = tmp_path / "run", tmp_path / "hf"
    agent.save(run / "agent")
    trained = agent.language_model()
    untrained, _ = tiny_model()
    assert not torch.equal(trained.lm_head.weight, untrained.lm_head.weight)

    assert main(["export", str(run), str(out)]) == 0
    assert f"to {out}" in capsys.readouterr().out
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    torch.testing.assert_close(_logits(model, tokenizer), _logits(trained, tokenizer),
                               rtol=0, atol=1e-6)


def test_every_llm_agent_name_has_a_save_format_export_reads():
    # grpo, rloo and reinforce-pp save as GRPO; ppo has its own reader (test_export.py).
    readers = {"grpo": "llm_gym.grpo/", "rloo": "llm_gym.grpo/", "reinforce-pp": "llm_gym.grpo/",
               "dpo": "llm_gym.dpo/", "sft": "llm_gym.sft/", "ppo": "llm_gym.PPOAgent/"}
    assert set(LLM_AGENTS) == set(readers)
    for name in LLM_AGENTS:
        fmt = AGENTS[name].agent_class().STATE_FORMAT
        assert fmt.startswith(readers[name]), (name, fmt)
        assert name == "ppo" or fmt.startswith(LM_TRAINER_FORMATS)


def test_export_model_writes_a_dpo_run_with_lora_as_an_adapter(tmp_path):
    pytest.importorskip("peft")
    from peft import PeftModel

    agent = DPOAgent(ENV, "tiny", DPOConfig(batch_size=2, learning_rate=1e-2, lora={"r": 2}),
                     data=_pairs())
    agent.learn(4)
    agent.save(tmp_path / "run" / "agent")
    out = export_model(tmp_path / "run", tmp_path / "adapter", adapter=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out / "base_model"),
                                        out)
    torch.testing.assert_close(_logits(adapted, tokenizer), _logits(agent.model, tokenizer),
                               rtol=0, atol=1e-5)
