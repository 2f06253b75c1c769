from __future__ import annotations

import importlib.util

import pytest
import torch

from llm_gym.models import SMOLLM2_PACKAGE, load_model, smollm2_gguf_path, tiny_model
from llm_gym.tokenizers import ByteTokenizer

# LoRA is the optional `lora` extra (peft); .ci/install installs it.
needs_peft = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="needs peft (pip install 'llm_gym[lora]')"
)


def test_tiny_model_is_deterministic_and_leaves_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, tok = tiny_model(seed=1)
    after = torch.rand(1)
    b, _ = tiny_model(seed=1)
    c, _ = tiny_model(seed=2)
    assert torch.equal(after, expected)
    assert isinstance(tok, ByteTokenizer)
    assert a.config.vocab_size == tok.vocab_size == 260
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@needs_peft
def test_load_tiny_with_lora_trains_only_adapter() -> None:
    model, _ = load_model("tiny", device="cpu", lora={"r": 4})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@needs_peft
def test_bad_lora_key_names_it() -> None:
    with pytest.raises(TypeError, match="not_a_key"):
        load_model("tiny", device="cpu", lora={"not_a_key": 1})


def test_missing_gguf_file_is_clear(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "nope.gguf"), device="cpu")


@pytest.mark.slow
def test_smollm2_gguf_loads_with_chat_template() -> None:
    pytest.importorskip("gguf")
    try:
        smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip(f"{SMOLLM2_PACKAGE} is not installed")
    model, tok = load_model("smollm2", device="cpu")
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], True)
    assert "<|im_start|>assistant\n" in prompt
    assert tok.decode([tok.eos_token_id]) == "<|im_end|>"
    ids = torch.tensor([tok.prompt_tokens([{"role": "user", "content": "What is 2+3?"}])])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape[-1] >= tok.vocab_size and torch.isfinite(logits).all()
