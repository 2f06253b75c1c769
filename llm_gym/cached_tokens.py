"""Token ids of prompts and replies, cached per tokenizer: many tasks and turns repeat them.

Rendering a chat template and tokenizing the text was the largest cost of a reset, and of a
step that ends many turns, in the batched token env (issue 24): multi-turn envs answer with
few distinct replies ("Invalid reply ...", a position, a tool result seen before) and small
task pools repeat their prompts. A tokenizer that cannot be hashed is asked every time.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from llm_gym.tokenizers import Message, Tokenizer


def prompt_tokens(tokenizer: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """``tokenizer.prompt_tokens(messages)``, cached when messages hold only role and content.

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> tok, messages = ByteTokenizer(), [{"role": "user", "content": "hi"}]
        >>> prompt_tokens(tok, messages) == tok.prompt_tokens(messages)
        True
    """
    return prompt_array(tokenizer, messages).tolist()


def prompt_array(tokenizer: Tokenizer, messages: Sequence[Message]) -> np.ndarray:
    """:func:`prompt_tokens` as a read-only int64 array (what a token buffer copies in).

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> tok, messages = ByteTokenizer(), [{"role": "user", "content": "hi"}]
        >>> prompt_array(tok, messages).tolist() == tok.prompt_tokens(messages)
        True
    """
    key = _messages_key(messages)
    if key is not None:
        try:
            return _cached_prompt_array(tokenizer, key)
        except TypeError:  # an unhashable tokenizer
            pass
    return _as_readonly(tokenizer.prompt_tokens(messages))


def reply_tokens(tokenizer: Tokenizer, content: str, role: str = "user") -> np.ndarray:
    """``tokenizer.reply_tokens(content, role=role)`` as a read-only int64 array, cached.

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> tok = ByteTokenizer()
        >>> reply_tokens(tok, "hi").tolist() == tok.reply_tokens("hi")
        True
    """
    try:
        return _cached_reply_tokens(tokenizer, content, role)
    except TypeError:  # an unhashable tokenizer
        return _as_readonly(tokenizer.reply_tokens(content, role=role))


@functools.lru_cache(maxsize=1024)
def _cached_prompt_array(tokenizer: Tokenizer, key: tuple[tuple[str, str], ...]) -> np.ndarray:
    return _as_readonly(tokenizer.prompt_tokens([{"role": role, "content": content}
                                                 for role, content in key]))


@functools.lru_cache(maxsize=4096)
def _cached_reply_tokens(tokenizer: Tokenizer, content: str, role: str) -> np.ndarray:
    return _as_readonly(tokenizer.reply_tokens(content, role=role))


def _messages_key(messages: Sequence[Message]) -> tuple[tuple[str, str], ...] | None:
    """``messages`` as a hashable key, or None when they hold more than role and content."""
    key = []
    for message in messages:
        if len(message) != 2:
            return None
        role, content = message.get("role"), message.get("content")
        if type(role) is not str or type(content) is not str:
            return None
        key.append((role, content))
    return tuple(key)


def _as_readonly(ids: Sequence[int]) -> np.ndarray:
    array = np.asarray(ids, dtype=np.int64)
    array.flags.writeable = False
    return array
