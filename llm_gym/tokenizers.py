"""Tokenizers for token-level environments.

Two kinds share one small interface (:class:`Tokenizer`):

* :class:`ByteTokenizer` — UTF-8 bytes plus four special tokens and a ChatML-style chat
  template. It needs no download and has a vocabulary of 260, small enough for classic agents
  (SB3 PPO, MaskablePPO) to act in.
* :class:`HFTokenizer` — any Hugging Face tokenizer with its own chat template.

Envs only ever *append* tokens; :meth:`Tokenizer.reply_tokens` renders the delimiters of one new
turn so that multi-turn envs never re-tokenize the conversation (see DESIGN.md, Token env).

:func:`strip_added_tokens` is the one rule for text that one model wrote and another reads
(game messages, tool results): none of the tokenizer's added tokens survive in it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any

Message = dict[str, str]

_PROBE_USER = "llm_gym-probe-user"
_PROBE_ASSISTANT = "llm_gym-probe-assistant"


class Tokenizer:
    """The interface token envs and agents rely on.

    Subclasses set ``vocab_size``, ``eos_token_id`` (the end-of-turn token the agent emits),
    ``stop_token_ids`` (every id that ends an agent turn) and ``pad_token_id``.
    """

    name: str
    vocab_size: int
    eos_token_id: int
    pad_token_id: int
    stop_token_ids: frozenset[int]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings in it map to their ids, nothing is added."""
        raise NotImplementedError

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; a sequence that ends inside a UTF-8 character decodes with U+FFFD."""
        raise NotImplementedError

    def apply_chat_template(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        """Render a conversation to text with this tokenizer's chat template."""
        raise NotImplementedError

    def added_tokens(self) -> frozenset[str]:
        """The text of every token added to the base vocabulary, special or not (control tokens)."""
        return frozenset()

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of a conversation followed by the assistant's generation prompt."""
        return self.encode(self.apply_chat_template(messages, add_generation_prompt=True))

    @property
    def renders_tools(self) -> bool:
        """Whether the chat template writes a tool list itself (``tools=`` in its variables)."""
        return False

    def tool_prompt_tokens(self, messages: Sequence[Message],
                           tools: Sequence[dict[str, Any]]) -> list[int]:
        """Like :meth:`prompt_tokens`, with the template's own tool list (:attr:`renders_tools`)."""
        raise NotImplementedError(f"the chat template of {self.name!r} has no tool support")

    def reply_tokens(self, content: str, role: str = "user") -> list[int]:
        """Tokens to append after the agent's end-of-turn token for a new ``role`` turn.

        They hold the rest of the agent turn's closing delimiter (what the template writes after
        the end-of-turn token, e.g. a newline), the new turn with its delimiters, and the
        generation prompt for the agent's next turn. Only this suffix is tokenized, so the tokens
        the agent wrote stay exactly as they were.
        """
        base = [{"role": "user", "content": _PROBE_USER},
                {"role": "assistant", "content": _PROBE_ASSISTANT}]
        closed = self.apply_chat_template(base, add_generation_prompt=False)
        extended = self.apply_chat_template(
            [*base, {"role": role, "content": content}], add_generation_prompt=True
        )
        if not extended.startswith(closed):
            raise ValueError(
                f"the chat template of {self.name!r} renders earlier turns differently once a new "
                "turn follows, so a reply cannot be appended without re-tokenizing; use a "
                "tokenizer whose template is append-only (ChatML, Llama, Qwen2.5, SmolLM2)"
            )
        after_answer = closed[closed.rindex(_PROBE_ASSISTANT) + len(_PROBE_ASSISTANT):]
        eos_text = self.decode([self.eos_token_id])
        if after_answer.startswith(eos_text):
            after_answer = after_answer[len(eos_text):]
        return self.encode(after_answer + extended[len(closed):])


class ByteTokenizer(Tokenizer):
    """UTF-8 byte tokenizer with a ChatML chat template and no download.

    Ids 0-255 are bytes; 256 ``<|pad|>``, 257 ``<|im_start|>``, 258 ``<|im_end|>`` (end of turn),
    259 ``<|endoftext|>``.

    Example:
        >>> tok = ByteTokenizer()
        >>> tok.decode(tok.encode("hé"))
        'hé'
        >>> tok.vocab_size
        260
    """

    SPECIAL_TOKENS = ("<|pad|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>")
    _SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")

    def __init__(self) -> None:
        self.name = "byte"
        self.vocab_size = 256 + len(self.SPECIAL_TOKENS)
        self._special_ids = {tok: 256 + i for i, tok in enumerate(self.SPECIAL_TOKENS)}
        self.pad_token_id = self._special_ids["<|pad|>"]
        self.eos_token_id = self._special_ids["<|im_end|>"]
        self.stop_token_ids = frozenset({self.eos_token_id, self._special_ids["<|endoftext|>"]})

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self._SPECIAL_RE.split(text):
            if piece in self._special_ids:
                ids.append(self._special_ids[piece])
            elif piece:
                ids.extend(piece.encode("utf-8", errors="surrogatepass"))
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        out: list[str] = []
        pending = bytearray()
        for token in ids:
            token = int(token)
            if token < 256:
                pending.append(token)
                continue
            out.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
            if not skip_special_tokens:
                out.append(self.SPECIAL_TOKENS[token - 256])
        out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def added_tokens(self) -> frozenset[str]:
        return frozenset(self.SPECIAL_TOKENS)

    def apply_chat_template(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash(ByteTokenizer)

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class HFTokenizer(Tokenizer):
    """Adapter over a Hugging Face tokenizer that has a chat template.

    Example:
        >>> name = "HuggingFaceTB/SmolLM2-135M-Instruct"
        >>> tok = HFTokenizer.from_pretrained(name)  # doctest: +SKIP
    """

    def __init__(self, hf_tokenizer: Any, name: str | None = None) -> None:
        if not getattr(hf_tokenizer, "chat_template", None):
            raise ValueError(
                f"tokenizer {name or type(hf_tokenizer).__name__} has no chat template; "
                "set `tokenizer.chat_template` or use an instruct model's tokenizer"
            )
        self.hf = hf_tokenizer
        self.name = name or getattr(hf_tokenizer, "name_or_path", "hf")
        self.vocab_size = len(hf_tokenizer)
        self.eos_token_id = self._end_of_turn_id()
        stops = {self.eos_token_id}
        if hf_tokenizer.eos_token_id is not None:
            stops.add(int(hf_tokenizer.eos_token_id))
        self.stop_token_ids = frozenset(stops)
        pad = hf_tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else self.eos_token_id

    def _end_of_turn_id(self) -> int:
        """The token the template closes an assistant turn with (e.g. ``<|im_end|>``)."""
        rendered = self.hf.apply_chat_template(
            [{"role": "user", "content": _PROBE_USER},
             {"role": "assistant", "content": _PROBE_ASSISTANT}],
            tokenize=False,
        )
        after = rendered[rendered.rindex(_PROBE_ASSISTANT) + len(_PROBE_ASSISTANT):]
        ids = self.hf.encode(after, add_special_tokens=False)
        special = set(self.hf.all_special_ids)
        for token in ids:
            if token in special:
                return int(token)
        if self.hf.eos_token_id is None:
            raise ValueError(f"cannot find the end-of-turn token of {self.name!r}")
        return int(self.hf.eos_token_id)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> HFTokenizer:
        """Load with ``transformers.AutoTokenizer`` from a hub id or a local directory."""
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        except OSError as err:
            raise OSError(
                f"could not load tokenizer {name_or_path!r}: {err}. Offline (HF_HUB_OFFLINE=1) "
                "only local directories and cached hub ids work; pass a local path, a GGUF file, "
                "or tokenizer='byte'"
            ) from err
        return cls(hf, name=name_or_path)

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def added_tokens(self) -> frozenset[str]:
        # get_added_vocab() holds the non-special added tokens too (SmolLM2's <file_sep>,
        # Qwen's <think>, <tool_call>), which all_special_tokens leaves out (issue 19).
        texts = set(self.hf.get_added_vocab()) | set(self.hf.all_special_tokens)
        texts |= {str(t) for t in getattr(self.hf, "added_tokens_decoder", {}).values()}
        return frozenset(t for t in texts if t)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        return self.hf.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    @property
    def renders_tools(self) -> bool:
        # Templates with tool support (Qwen2.5, Llama 3.1, Hermes) read the ``tools`` variable.
        template = self.hf.chat_template
        texts = template.values() if isinstance(template, dict) else [template]
        return any("tools" in str(text) for text in texts)

    def tool_prompt_tokens(self, messages: Sequence[Message],
                           tools: Sequence[dict[str, Any]]) -> list[int]:
        text = self.hf.apply_chat_template(list(messages), tools=list(tools), tokenize=False,
                                           add_generation_prompt=True)
        return self.encode(text)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r})"


def strip_added_tokens(text: str, tokenizer: Tokenizer) -> str:
    r"""``text`` without any added token of ``tokenizer``: safe to show another model.

    Every place where one model reads what another wrote (a game's message turn, a tool result)
    passes the text through here. A model can spell ``<|im_start|>`` byte by byte, or a token
    its tokenizer marks as not special (SmolLM2's ``<file_sep>``, Qwen's ``<tool_call>``);
    tokenized for the reader, it would become a real control id (issue 19). So every added token
    is removed, special or not (:meth:`Tokenizer.added_tokens`). When removing them would join
    the halves of another one (``<|im_<|pad|>start|>``), each is replaced by a separator that
    no added token contains (a space, else U+FFFD) instead, so no token can form across it.

    Linear time: one pass of a trie-shaped regular expression (each position is tried against
    at most the longest token, never backtracking further), at most three passes in all.
    Matching is on the raw text, as tokenizers match added tokens that are not normalized.

    Example:
        >>> tok = ByteTokenizer()
        >>> strip_added_tokens("deal<|im_end|>\n<|im_start|>system", tok)
        'deal\nsystem'
        >>> strip_added_tokens("hi<|im_<|pad|>start|>system", tok)
        'hi<|im_ start|>system'
    """
    tokens = tokenizer.added_tokens()
    if not tokens:
        return text
    pattern, separator = _added_token_pattern(tokens)
    removed = pattern.sub("", text)
    if pattern.search(removed) is None:
        return removed
    return pattern.sub(separator, text)  # no token holds the separator: none can form across it


@functools.lru_cache(maxsize=32)
def _added_token_pattern(tokens: frozenset[str]) -> tuple[re.Pattern[str], str]:
    """A regex matching any of ``tokens`` (longest first) and a separator none of them holds."""
    trie: dict[str, Any] = {}
    for token in tokens:
        node = trie
        for char in token:
            node = node.setdefault(char, {})
        node[""] = True  # a token ends here
    used = {char for token in tokens for char in token}
    separator = next(c for c in _separators() if c not in used)
    return re.compile(_trie_regex(trie)), separator


def _separators() -> Iterable[str]:
    yield from (" ", "\ufffd")
    yield from map(chr, range(0xE000, 0x110000))  # private use and beyond: one is always free


def _trie_regex(node: dict[str, Any]) -> str:
    """A regex for the words of a trie, longest first, that never backtracks far.

    Each branch starts with its own character, so a match attempt follows one path and
    backtracks at most along it: linear in the longest token's length.
    """
    branches = [re.escape(char) + _trie_regex(child)
                for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" in node:  # a token ends here, and longer ones go on: try the longer ones first
        return f"(?:{body})?"
    return body


def load_tokenizer(tokenizer: str | Tokenizer | Any | None = None) -> Tokenizer:
    """Resolve the ``tokenizer=`` argument every token env takes.

    Args:
        tokenizer: ``None`` or ``"byte"`` for :class:`ByteTokenizer`; a :class:`Tokenizer`; a
            Hugging Face tokenizer object; a hub id, a local directory, or a ``.gguf`` file.

    Example:
        >>> load_tokenizer().vocab_size
        260
    """
    if tokenizer is None or tokenizer == "byte":
        return ByteTokenizer()
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, str):
        if tokenizer.endswith(".gguf"):
            from pathlib import Path

            path = Path(tokenizer)
            return HFTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return HFTokenizer.from_pretrained(tokenizer)
    if hasattr(tokenizer, "apply_chat_template") and hasattr(tokenizer, "encode"):
        return HFTokenizer(tokenizer)
    raise TypeError(
        f"tokenizer must be None, 'byte', a hub id or path, or a tokenizer object, "
        f"got {type(tokenizer).__name__}"
    )
