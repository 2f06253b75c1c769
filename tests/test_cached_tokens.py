"""llm_gym.cached_tokens: the cached prompt and reply tokens are the tokenizer's own."""

from __future__ import annotations

import numpy as np
import pytest

from llm_gym.cached_tokens import prompt_array, prompt_tokens, reply_tokens
from llm_gym.tokenizers import ByteTokenizer


class UnhashableTokenizer(ByteTokenizer):
    """A tokenizer that cannot key a cache, and counts its calls."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def prompt_tokens(self, messages):
        self.calls += 1
        return super().prompt_tokens(messages)


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hé <|im_end|>"}],
    [{"role": "user", "content": "tools", "tool_calls": "[]"}],  # not cached: a third key
])
def test_prompt_tokens_are_the_tokenizers(messages):
    tok = ByteTokenizer()
    first, second = prompt_tokens(tok, messages), prompt_tokens(tok, messages)
    assert first == second == tok.prompt_tokens(messages)
    first.append(0)  # the caller owns the list it got: the cache is not touched
    assert prompt_tokens(tok, messages) == tok.prompt_tokens(messages)
    ids = prompt_array(tok, messages)
    assert ids.dtype == np.int64 and ids.tolist() == tok.prompt_tokens(messages)
    with pytest.raises(ValueError):
        ids[0] = 1  # shared by every reset that hits the cache: read-only


@pytest.mark.parametrize(("content", "role"), [("You are at position 0.", "user"),
                                               ("42\n", "tool"), ("", "user")])
def test_reply_tokens_are_the_tokenizers_and_read_only(content, role):
    tok = ByteTokenizer()
    ids = reply_tokens(tok, content, role)
    assert ids.dtype == np.int64 and ids.tolist() == tok.reply_tokens(content, role=role)
    assert reply_tokens(tok, content, role) is ids  # cached
    with pytest.raises(ValueError):
        ids[0] = 1


def test_an_unhashable_tokenizer_is_asked_every_time():
    tok = UnhashableTokenizer()
    messages = [{"role": "user", "content": "hi"}]
    assert prompt_tokens(tok, messages) == prompt_tokens(tok, messages)
    assert tok.calls == 2
    assert reply_tokens(tok, "hi").tolist() == ByteTokenizer().reply_tokens("hi")
