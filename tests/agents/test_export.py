"""``llm-gym export``: trained runs leave llm_gym as ordinary transformers models."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llm_gym.agents.checkpoints import save_checkpoint
from llm_gym.agents.export import export_model, find_agent_state
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.cli import main
from llm_gym.export import byte_tokenizer_as_hf
from llm_gym.models import tiny_model
from llm_gym.tokenizers import ByteTokenizer

needs_peft = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="needs peft (pip install 'llm_gym[lora]')"
)
# The masked walk gives the untrained tiny model different returns within a group (a task it
# always fails would give zero advantages and leave the weights as they were); 360 tokens end
# an episode after a few turns.
ENV = "llm_gym/LeftRightText-v0"
ENV_KWARGS = {"constrained": True, "max_length": 360}
FAST = {"group_size": 2, "prompts_per_batch": 2, "learning_rate": 1e-2}
MESSAGES = [{"role": "user", "content": "What is 12+7?"}]


def _train_grpo(tmp_path, **config) -> GRPOAgent:
    """A tiny GRPO run saved where `llm-gym train` saves it (run/agent, run/checkpoints)."""
    agent = GRPOAgent(ENV, "tiny", GRPOConfig(**{**FAST, **config}), env_kwargs=ENV_KWARGS,
                      log_dir=tmp_path / "run")
    agent.learn(16)
    agent.save(tmp_path / "run" / "agent")
    return agent


def _prompt(tokenizer) -> torch.Tensor:
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    return torch.tensor([tokenizer.encode(text, add_special_tokens=False)])


def _greedy(model, ids: torch.Tensor) -> list[int]:
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=12, min_new_tokens=12, pad_token_id=256)
    return out[0, ids.shape[1]:].tolist()


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def test_export_after_a_grpo_run_reloads_with_transformers(tmp_path, capsys) -> None:
    config = tmp_path / "grpo.json"
    config.write_text(json.dumps(FAST))
    run, out = tmp_path / "run", tmp_path / "hf"
    assert main(["train", "--env", ENV, "--agent", "grpo", "--model", "tiny", "--config",
                 str(config), "--timesteps", "16", "--env-kwargs", json.dumps(ENV_KWARGS),
                 "--log-dir", str(run), "--eval-episodes", "1", "--no-progress"]) == 0
    assert main(["export", str(run), str(out)]) == 0
    assert f"to {out}" in capsys.readouterr().out
    trained = GRPOAgent.load(run / "agent").model
    untrained, _ = tiny_model()
    assert not torch.equal(trained.lm_head.weight, untrained.lm_head.weight)

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = _prompt(tokenizer)
    assert ids[0].tolist() == ByteTokenizer().prompt_tokens(MESSAGES)
    torch.testing.assert_close(_logits(model, ids), _logits(trained, ids), rtol=0, atol=1e-6)
    assert _greedy(model, ids) == _greedy(trained, ids)
    assert model.generation_config.eos_token_id == [258, 259]  # <|im_end|>, <|endoftext|>


@needs_peft
def test_lora_run_exports_merged_or_as_an_adapter(tmp_path) -> None:
    from peft import PeftModel

    agent = _train_grpo(tmp_path, lora={"r": 2})
    run = tmp_path / "run"
    tokenizer = byte_tokenizer_as_hf()
    ids = _prompt(tokenizer)
    expected = _logits(agent.model, ids)
    with agent.model.disable_adapter():
        assert not torch.allclose(_logits(agent.model, ids), expected)  # the adapter learned

    merged = AutoModelForCausalLM.from_pretrained(export_model(run, tmp_path / "merged"))
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged, ids), expected, rtol=0, atol=1e-5)

    out = export_model(run, tmp_path / "adapter", adapter=True)
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(out / "base_model")
    adapted = PeftModel.from_pretrained(base, out)
    torch.testing.assert_close(_logits(adapted, ids), expected, rtol=0, atol=1e-5)
    assert AutoTokenizer.from_pretrained(out).encode("7<|im_end|>") == [55, 258]


def test_ppo_token_run_exports_its_language_model(tmp_path) -> None:
    from llm_gym.agents.ppo import PPOAgent, PPOConfig

    agent = PPOAgent(ENV, "tiny", PPOConfig(num_envs=2, learning_rate=1e-2),
                     env_kwargs=ENV_KWARGS)
    agent.learn(8)
    agent.save(tmp_path / "run" / "agent")
    model = AutoModelForCausalLM.from_pretrained(export_model(tmp_path / "run", tmp_path / "hf"))
    ids = _prompt(AutoTokenizer.from_pretrained(tmp_path / "hf"))
    lm = agent.policy.net.model
    torch.testing.assert_close(_logits(model, ids), _logits(lm, ids), rtol=0, atol=1e-6)


def test_newest_complete_save_is_exported(tmp_path) -> None:
    agent = _train_grpo(tmp_path)
    run = tmp_path / "run"
    assert find_agent_state(run) == run / "agent"
    # e.g. a resumed run killed before its final save: more recorded updates, an older file.
    newer = save_checkpoint(run / "checkpoints", 99, agent.state_dict(), keep=9,
                            run_id=agent.run_id)
    os.utime(newer / "checkpoint.json", ns=(0, 0))
    # A touched save with fewer updates is not the newest: file times never decide.
    first = sorted(p for p in (run / "checkpoints").iterdir() if p != newer)[0]
    os.utime(first / "checkpoint.json", ns=(2**62, 2**62))
    (run / "checkpoints" / ".tmp-half-written").mkdir()  # never complete, never chosen
    assert find_agent_state(run) == newer
    assert find_agent_state(newer) == newer
    shutil.rmtree(run / "agent")
    assert find_agent_state(run) == newer
    assert agent.num_timesteps >= 16


def test_classic_run_is_refused_in_one_line(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "q-learning",
                 "--timesteps", "200", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "q-learning agent, which has no language model" in err and "\n" not in err
    assert not (tmp_path / "hf").exists()


def test_bad_folders_and_flags_fail_clearly(tmp_path, capsys) -> None:
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "hf")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path), str(tmp_path / "hf")]) == 2
    assert "no complete agent save" in capsys.readouterr().err
    _train_grpo(tmp_path)
    run = tmp_path / "run"
    assert main(["export", str(run), str(tmp_path / "hf"), "--adapter"]) == 2
    assert "no LoRA" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "adapter_config.json").write_text("{}")  # would turn a full model into an adapter
    assert main(["export", str(run), str(taken)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(run), str(taken), "--overwrite"]) == 0
    assert not (taken / "adapter_config.json").exists()
    assert AutoModelForCausalLM.from_pretrained(taken).config.vocab_size == 260


def test_push_to_hub_offline_is_one_clear_line_after_the_export(tmp_path, capsys,
                                                                 monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _train_grpo(tmp_path)
    out = tmp_path / "hf"
    assert main(["export", str(tmp_path / "run"), str(out), "--push-to-hub", "me/model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the save's progress bar
    assert err.startswith("llm-gym export: error: cannot push to me/model: HF_HUB_OFFLINE=1")
    assert (out / "model.safetensors").is_file()  # the export itself is kept


@pytest.mark.parametrize("text", ["hé<|im_end|>", " two  spaces\n\t", "<|pad|><|im_start|>x",
                                  "日本 🙂 <|endoftext|>", "\x00\x7f"])
def test_byte_tokenizer_twin_has_the_same_ids(text) -> None:
    twin, byte = byte_tokenizer_as_hf(), ByteTokenizer()
    assert twin.encode(text) == byte.encode(text)
    assert twin.decode(twin.encode(text)) == byte.decode(byte.encode(text)) == text
    assert twin.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) == \
        byte.apply_chat_template(MESSAGES, True)


@needs_peft
def test_gguf_lora_run_exports_adapter_with_its_base_and_tokenizer(tmp_path) -> None:
    from peft import PeftModel

    from tests.test_models import write_tiny_gguf

    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_path)
    agent = GRPOAgent(ENV, str(gguf_path), GRPOConfig(**FAST, lora={"r": 2}),
                      env_kwargs=ENV_KWARGS)
    agent.learn(16)
    agent.save(tmp_path / "run" / "agent")
    out = export_model(tmp_path / "run", tmp_path / "adapter", adapter=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = _prompt(tokenizer)
    assert ids[0].tolist() == agent.tokenizer.prompt_tokens(MESSAGES)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((out / "base_model").resolve())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out / "base_model"),
                                        out)
    torch.testing.assert_close(_logits(adapted, ids), _logits(agent.model, ids), rtol=0,
                               atol=1e-5)


def test_doc_examples_run() -> None:
    import doctest

    import llm_gym.agents.export
    import llm_gym.export

    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS)
               for module in (llm_gym.export, llm_gym.agents.export)]
    assert all(r.attempted >= 3 and r.failed == 0 for r in results)


@needs_peft
def test_agent_save_pretrained_merges_into_a_copy_and_leaves_the_agent_training(tmp_path) -> None:
    agent = _train_grpo(tmp_path, lora={"r": 2})
    ids = _prompt(byte_tokenizer_as_hf())
    expected = _logits(agent.model, ids)
    out = agent.save_pretrained(tmp_path / "live")
    model = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(_logits(model, ids), expected, rtol=0, atol=1e-5)
    assert hasattr(agent.model, "peft_config")  # the live agent still has its adapter
    assert any("lora_" in name for name, _ in agent.model.named_parameters())
    with pytest.raises(FileExistsError, match="overwrite"):
        agent.save_pretrained(out)


def test_ppo_save_pretrained_writes_the_language_model(tmp_path) -> None:
    from llm_gym.agents.ppo import PPOAgent, PPOConfig

    agent = PPOAgent(ENV, "tiny", PPOConfig(num_envs=2), env_kwargs=ENV_KWARGS)
    out = agent.save_pretrained(tmp_path / "ppo")
    ids = _prompt(byte_tokenizer_as_hf())
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(out), ids),
                               _logits(agent.policy.net.model, ids), rtol=0, atol=1e-6)
    classic = PPOAgent("llm_gym/LeftRight-v0")
    with pytest.raises(ValueError, match="classic env"):
        classic.save_pretrained(tmp_path / "mlp")
