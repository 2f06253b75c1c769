from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from llm_gym.models import (
    SMOLLM2_PACKAGE,
    load_model,
    plain_model,
    smollm2_gguf_path,
    tiny_model,
)
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


def _byte_alphabet() -> list[str]:
    """GPT-2's byte-to-character table: the spelling of a byte-level BPE vocabulary."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            chars[byte] = chr(byte)
        else:
            chars[byte], extra = chr(256 + extra), extra + 1
    return [chars[b] for b in range(256)]


def write_tiny_gguf(path, *, hidden: int = 32, ff: int = 64, seed: int = 0) -> None:
    """A one-layer Llama GGUF with Q8_0 weights and a ChatML byte-level BPE tokenizer (~60 kB).

    Stands in for the real SmolLM2 GGUF (17 s to load on two cores) in fast tests.
    """
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(seed)
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *_byte_alphabet(), "th"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(hidden // 2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))  # 3: control (special)
    writer.add_token_merges(["t h"])  # the gpt2 converter needs at least one merge
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

    def add(name: str, *shape: int) -> None:
        data = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        packed = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, packed, raw_shape=packed.shape,
                          raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    add("token_embd.weight", len(tokens), hidden)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(hidden, np.float32))
    for name in ("q", "k", "v", "output"):
        add(f"blk.0.attn_{name}.weight", hidden, hidden)
    add("blk.0.ffn_gate.weight", ff, hidden)
    add("blk.0.ffn_up.weight", ff, hidden)
    add("blk.0.ffn_down.weight", hidden, ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_model_loads_plain_and_saves_like_any_model(tmp_path) -> None:
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_path)
    model, tok = load_model(str(gguf_path), device="cpu")
    # transformers marks a GGUF load as quantized although the weights are dense fp32.
    assert not getattr(model, "is_quantized", False)
    assert getattr(model, "hf_quantizer", None) is None
    assert getattr(model, "quantization_method", None) is None
    assert not hasattr(model.config, "quantization_config")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert tok.decode([tok.eos_token_id]) == "<|im_end|>"
    model.save_pretrained(tmp_path / "saved")
    assert "quantization_config" not in (tmp_path / "saved" / "config.json").read_text()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    ids = torch.tensor([tok.prompt_tokens([{"role": "user", "content": "the cat"}])])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    # transformers' Trainer, which TRL's trainers extend, refuses models marked as quantized.
    from transformers import Trainer, TrainingArguments

    Trainer(model=model, args=TrainingArguments(str(tmp_path / "trainer"), report_to=[],
                                                use_cpu=True))


def test_plain_model_refuses_packed_weights() -> None:
    model, _ = tiny_model()
    model.register_parameter("packed", torch.nn.Parameter(torch.zeros(4, dtype=torch.uint8),
                                                          requires_grad=False))
    with pytest.raises(ValueError, match="still quantized"):
        plain_model(model)


def test_doc_examples_run() -> None:
    import doctest

    import llm_gym.models

    result = doctest.testmod(llm_gym.models, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
