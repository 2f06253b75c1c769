"""Byte and Hugging Face tokenizers: round trips, chat templates, append-only replies."""

from __future__ import annotations

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gym.testing import check_token_env
from llm_gym.tokenizers import ByteTokenizer, HFTokenizer, load_tokenizer

CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Renders the last message differently: appending a turn changes earlier text.
NOT_APPEND_ONLY = (
    "{% for message in messages %}{% if loop.last %}[last]{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ByteTokenizer.SPECIAL_TOKENS
# Plain text: no lone surrogates (not UTF-8) and no special-token strings.
plain_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(
    lambda s: not any(tok in s for tok in SPECIALS)
)


def tiny_hf_tokenizer(chat_template: str | None = CHATML):
    """A byte-level BPE ``PreTrainedTokenizerFast`` built in memory (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                 pad_token="<|endoftext|>")
    hf.chat_template = chat_template
    return hf


@pytest.fixture(scope="module")
def hf_tokenizer() -> HFTokenizer:
    return HFTokenizer(tiny_hf_tokenizer(), name="tiny-chatml")


@given(plain_text)
@settings(max_examples=200, deadline=None)
def test_byte_round_trip(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text


@given(st.binary(max_size=40))
@settings(max_examples=200, deadline=None)
def test_byte_decode_of_invalid_utf8_replaces_like_python(data):
    assert ByteTokenizer().decode(list(data)) == data.decode("utf-8", errors="replace")


def test_byte_tokenizer_emoji_specials_and_partial_characters():
    tok = ByteTokenizer()
    assert tok.encode("😀") == list("😀".encode())
    assert tok.decode(tok.encode("a😀<|im_end|>b")) == "a😀<|im_end|>b"
    assert tok.encode("<|im_end|>") == [tok.eos_token_id]
    assert tok.decode(tok.encode("x<|im_end|>"), skip_special_tokens=True) == "x"
    assert tok.decode(tok.encode("😀")[:3]) == "\ufffd"
    assert tok.decode([0xFF, 0xFE, ord("a")]) == "\ufffd\ufffda"
    assert tok.vocab_size == 260 and tok.stop_token_ids == {258, 259}


def test_byte_chat_template_is_the_chatml_jinja_template(hf_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}, {"role": "user", "content": "héllo"}]
    for add in (False, True):
        assert ByteTokenizer().apply_chat_template(messages, add) == (
            hf_tokenizer.apply_chat_template(messages, add))


def _assert_reply_appends_exactly(tok, system, question, answer, reply):
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    appended = (tok.prompt_tokens(messages) + tok.encode(answer) + [tok.eos_token_id]
                + tok.reply_tokens(reply))
    full = [*messages, {"role": "assistant", "content": answer},
            {"role": "user", "content": reply}]
    assert appended == tok.prompt_tokens(full)


@given(plain_text, plain_text, plain_text, plain_text)
@settings(max_examples=100, deadline=None)
def test_byte_reply_tokens_append_exactly(system, question, answer, reply):
    _assert_reply_appends_exactly(ByteTokenizer(), system, question, answer, reply)


@given(plain_text, plain_text)
@settings(max_examples=30, deadline=None)
def test_hf_reply_tokens_append_exactly(hf_tokenizer, answer, reply):
    _assert_reply_appends_exactly(hf_tokenizer, "Be brief.", "Hi", answer, reply)


def test_hf_tokenizer_reads_its_special_tokens(hf_tokenizer):
    hf = hf_tokenizer.hf
    assert hf_tokenizer.eos_token_id == hf.convert_tokens_to_ids("<|im_end|>")
    assert hf_tokenizer.pad_token_id == hf.convert_tokens_to_ids("<|endoftext|>")
    assert hf_tokenizer.vocab_size == len(hf)
    assert hf_tokenizer.decode(hf_tokenizer.encode("héllo 😀")) == "héllo 😀"
    assert "\ufffd" in hf_tokenizer.decode(hf_tokenizer.encode("€")[:-1])


def test_a_template_that_is_not_append_only_is_refused():
    tok = HFTokenizer(tiny_hf_tokenizer(NOT_APPEND_ONLY), name="rewrites-history")
    with pytest.raises(ValueError, match="append"):
        tok.reply_tokens("hello")


def test_hf_tokenizer_without_a_chat_template_is_refused():
    with pytest.raises(ValueError, match="chat template"):
        HFTokenizer(tiny_hf_tokenizer(None))


@pytest.mark.parametrize("env_id", ["llm_gym/LeftRightText-v0", "llm_gym/Arithmetic-v0"])
def test_token_env_with_an_hf_tokenizer(hf_tokenizer, env_id):
    env = gym.make(env_id, tokenizer=hf_tokenizer)
    assert env.action_space.n == hf_tokenizer.vocab_size
    check_token_env(env)


def test_load_tokenizer_resolves_every_kind(tmp_path, hf_tokenizer):
    assert isinstance(load_tokenizer(None), ByteTokenizer)
    assert isinstance(load_tokenizer("byte"), ByteTokenizer)
    assert load_tokenizer(hf_tokenizer) is hf_tokenizer
    assert isinstance(load_tokenizer(hf_tokenizer.hf), HFTokenizer)
    hf_tokenizer.hf.save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.encode("héllo") == hf_tokenizer.encode("héllo")
    assert loaded.eos_token_id == hf_tokenizer.eos_token_id


@pytest.mark.parametrize("junk", [123, 1.5, object(), ["byte"], b"byte"])
def test_load_tokenizer_refuses_junk_objects(junk):
    with pytest.raises(TypeError, match="tokenizer must be"):
        load_tokenizer(junk)


@pytest.mark.parametrize("name", ["/no/such/tokenizer/dir", "no-such-org/no-such-model-xyz"])
def test_load_tokenizer_names_a_missing_path_or_id(name):
    with pytest.raises(OSError, match="could not load tokenizer"):
        load_tokenizer(name)
