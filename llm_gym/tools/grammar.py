r"""Grammar-constrained replies: a final answer or exactly one well-formed tool call (issue 22).

SmolLM2-135M made no tool call in 24 tries unconstrained, so GRPO had no signal to learn from.
With the masks of :class:`CallGrammar` the agent can only write a reply of the language

- **answer**: 1 to ``max_answer_chars`` characters of ``answer_chars`` (a ``+``/``-`` among
  them may only lead), then the end-of-turn token; or
- **call**: exactly ``format_tool_call(name, {param: VALUE})`` for one of the tools, VALUE being
  one or more characters of ``value_chars`` (no ``"`` or ``\``, so nothing needs escaping, and
  never ``</``, which ``format_tool_call`` would write as ``<\/``), then the end-of-turn token.

The model still chooses *whether* to call and *what* to pass; every reply the masks admit parses
with :func:`~llm_gym.tools.calls.find_tool_call` to the call it spells. The text around VALUE is
cut out of ``format_tool_call``'s own output, so the grammar cannot drift from the parser.

Speed: the masks are needed at every token step, over 49k tokens for SmolLM2. Each token's text
is decoded once per tokenizer; the states of the automaton are the positions in the fixed text
(the call's prefix and suffix), whose token sets are built on first use and cached, and the two
free parts (inside VALUE, inside the answer), whose token sets are precomputed with numpy, by
the characters each token is made of, and only cut by length near the length limit.

The token texts are read one token at a time (``decode([t])``); the reply's text must be their
concatenation, as it is for byte-level tokenizers (the byte tokenizer, GPT-2/SmolLM2/Qwen BPE).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from llm_gym.tokenizers import Tokenizer
from llm_gym.tools.base import Tool, as_tool
from llm_gym.tools.calls import MAX_CALL_CHARS, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, format_tool_call

#: Printable ASCII but ``"`` and ``\``: the default characters of a call's argument.
DEFAULT_VALUE_CHARS = "".join(chr(c) for c in range(32, 127) if chr(c) not in '"\\')
_SIGNS = "+-"
_SENTINELS = ("VALUE", "Qz7xVALUEx7zQ")


@dataclass(frozen=True)
class _Vocab:
    """The text of every token of a tokenizer, and which tokens a grammar may ever allow."""

    texts: list[str]
    usable: np.ndarray  # bool: not special, not added, not empty
    lengths: np.ndarray  # int64: characters of each text
    by_text: dict[str, list[int]]  # usable tokens by text
    sorted_texts: list[str]  # usable texts, sorted, for "tokens that start with ..."
    sorted_ids: list[int]


@lru_cache(maxsize=8)
def _vocab(tokenizer: Tokenizer) -> _Vocab:
    texts = [tokenizer.decode([t]) for t in range(tokenizer.vocab_size)]
    added = tokenizer.added_tokens()
    special = set(tokenizer.stop_token_ids) | {tokenizer.pad_token_id, tokenizer.eos_token_id}
    usable = np.array([bool(text) and text not in added and t not in special
                       for t, text in enumerate(texts)], dtype=bool)
    by_text: dict[str, list[int]] = {}
    for t in np.flatnonzero(usable).tolist():
        by_text.setdefault(texts[t], []).append(t)
    order = sorted(by_text)
    pairs = [(text, t) for text in order for t in by_text[text]]
    return _Vocab(texts, usable, np.array([len(x) for x in texts], dtype=np.int64), by_text,
                  [p[0] for p in pairs], [p[1] for p in pairs])


@dataclass(frozen=True)
class _Call:
    """One tool's call: the fixed text before VALUE, after it, and VALUE's longest length."""

    name: str
    param: str
    prefix: str
    suffix: str
    max_value: int


class _Free:
    """Tokens allowed in a free state, sorted by id, each with the characters it adds."""

    def __init__(self, ids: np.ndarray, cost: np.ndarray) -> None:
        self.ids, self.cost = _frozen(ids), _frozen(cost)
        self.max_cost = int(cost.max()) if len(cost) else 0

    def upto(self, room: int) -> np.ndarray:
        """The tokens that add at most ``room`` characters."""
        if room >= self.max_cost:
            return self.ids
        return _frozen(self.ids[self.cost <= room])


class CallGrammar:
    r"""Token masks that keep a reply a final answer or exactly one well-formed tool call.

    Args:
        tokenizer: the env's tokenizer.
        tools: ``(name, parameter)`` pairs, or tools (:class:`~llm_gym.tools.base.Tool` or
            functions); a tool is called with its first required string parameter, which must be
            its only required one. No tools: only answers.
        answer_chars: the characters of a final answer; ``+`` and ``-`` among them only lead.
        max_answer_chars: the longest answer.
        value_chars: the characters of a call's argument (default :data:`DEFAULT_VALUE_CHARS`);
            ``"``, ``\`` and control characters are refused (JSON would escape them).
        max_value_chars: the longest argument; default (and most) the longest the parser reads.

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> tok = ByteTokenizer()
        >>> grammar = CallGrammar(tok, [("calculator", "expression")])
        >>> "".join(tok.decode([t]) for t in grammar.allowed(""))
        '-0123456789<'
        >>> [tok.decode([t]) for t in grammar.allowed('<tool_call>\n{"name": "')]
        ['c']
        >>> call = format_tool_call("calculator", {"expression": "6 * 7"})
        >>> grammar.allowed(call).tolist() == [tok.eos_token_id]
        True
        >>> grammar.allowed("42").tolist()[-1] == tok.eos_token_id  # "42" may end the turn
        True
    """

    def __init__(self, tokenizer: Tokenizer, tools: Sequence[Any],
                 answer_chars: str = "0123456789-", max_answer_chars: int = 24,
                 value_chars: str | None = None, max_value_chars: int | None = None) -> None:
        value_chars = DEFAULT_VALUE_CHARS if value_chars is None else value_chars
        _check_chars("value_chars", value_chars)
        _check_chars("answer_chars", answer_chars)
        body = "".join(c for c in dict.fromkeys(answer_chars) if c not in _SIGNS)
        if not body or max_answer_chars < 1:
            raise ValueError(f"answer_chars={answer_chars!r} with max_answer_chars="
                             f"{max_answer_chars} admits no answer; give a character besides "
                             "'+'/'-' and max_answer_chars >= 1")
        signs = "".join(c for c in _SIGNS if c in answer_chars)
        self.tokenizer, self.eos_token_id = tokenizer, int(tokenizer.eos_token_id)
        self.vocab_size = int(tokenizer.vocab_size)
        self.calls = tuple(_call(name, param, max_value_chars) for name, param in _pairs(tools))
        self.max_answer_chars = int(max_answer_chars)
        self._value_re = re.compile(_char_class(value_chars) + "*")
        self._answer_re = re.compile(f"{_char_class(signs)}?{_char_class(body)}*"
                                     if signs else f"{_char_class(body)}*")
        self._vocab = _vocab(tokenizer)
        self._eos = _frozen(np.array([self.eos_token_id], dtype=np.int64))
        self._answer_body = self._free_tokens(_char_class(body) + "+")
        start = f"{_char_class(signs)}?{_char_class(body)}*" if signs else f"{_char_class(body)}+"
        self._answer_start = self._free_tokens(start).upto(self.max_answer_chars)
        self._value = {s: self._value_tokens(s) for s in {c.suffix for c in self.calls}}
        self._fixed: dict[str, np.ndarray] = {}  # written text in a call's prefix -> tokens
        self._suffix: dict[tuple[str, int], np.ndarray] = {}
        self._answers: dict[tuple[int, bool], np.ndarray] = {}
        self.allowed("")  # the first step of every reply: build it now, not in an episode

    # ------------------------------------------------------------------ public
    def allowed(self, written: str) -> np.ndarray:
        """Sorted token ids that keep ``written`` + their text in the language (read-only).

        The end-of-turn id is among them when ``written`` is a whole reply of the language, and
        is all of them when ``written`` is already off the grammar.
        """
        hit = self._fixed.get(written)
        if hit is not None:
            return hit
        if any(len(written) < len(c.prefix) and c.prefix.startswith(written) for c in self.calls):
            self._fixed[written] = self._union([self._answer_part(written), *(
                self._crossing(c, written) for c in self.calls)])
            return self._fixed[written]
        parts = [self._answer_part(written)]
        parts += [self._call_part(c, written[len(c.prefix):])
                  for c in self.calls if written.startswith(c.prefix)]
        return self._union(parts)

    def mask(self, written: str) -> np.ndarray:
        """``int8`` mask over the vocabulary: 1 for the tokens :meth:`allowed` gives."""
        out = np.zeros(self.vocab_size, dtype=np.int8)
        out[self.allowed(written)] = 1
        return out

    # ------------------------------------------------------------------ states
    def _answer_part(self, written: str) -> np.ndarray | None:
        if not written:
            return self._answer_start
        if len(written) > self.max_answer_chars or not self._answer_re.fullmatch(written):
            return None
        done = written[-1] not in _SIGNS
        key = (len(written), done)
        if key not in self._answers:
            tokens = self._answer_body.upto(self.max_answer_chars - len(written))
            self._answers[key] = self._union([tokens, self._eos if done else None])
        return self._answers[key]

    def _call_part(self, call: _Call, rest: str) -> np.ndarray | None:
        """Tokens after ``call.prefix + rest``: inside VALUE or inside the suffix."""
        run = self._value_re.match(rest).end()
        value, tail = rest[:run], rest[run:]
        if "</" in value or run > call.max_value:
            return None
        if not tail:
            free = self._value[call.suffix][0 if not value else 2 if value[-1] == "<" else 1]
            return free.upto(call.max_value - run)
        if not value or not call.suffix.startswith(tail):
            return None
        key = (call.suffix, len(tail))
        if key not in self._suffix:
            left = call.suffix[len(tail):]
            self._suffix[key] = self._union([self._prefixes_of(left),
                                             None if left else self._eos])
        return self._suffix[key]

    def _crossing(self, call: _Call, written: str) -> np.ndarray | None:
        """Tokens after ``written``, a proper prefix of ``call.prefix``: in it or beyond it."""
        if not (len(written) < len(call.prefix) and call.prefix.startswith(written)):
            return None
        need = call.prefix[len(written):]
        ids = self._prefixes_of(need[:-1]).tolist()
        vocab = self._vocab
        j = bisect.bisect_left(vocab.sorted_texts, need)
        while j < len(vocab.sorted_texts) and vocab.sorted_texts[j].startswith(need):
            beyond = vocab.sorted_texts[j][len(need):]
            if self._call_part(call, beyond) is not None or not beyond:
                ids.append(vocab.sorted_ids[j])
            j += 1
        return _frozen(np.array(sorted(ids), dtype=np.int64))

    def _prefixes_of(self, text: str) -> np.ndarray:
        """Tokens whose text is a non-empty prefix of ``text``."""
        by_text = self._vocab.by_text
        ids = [t for k in range(1, len(text) + 1) for t in by_text.get(text[:k], ())]
        return _frozen(np.array(sorted(ids), dtype=np.int64))

    # ------------------------------------------------------------------ precomputed
    def _free_tokens(self, pattern: str) -> _Free:
        """Usable tokens whose whole text matches ``pattern``, costing their length."""
        full = re.compile(pattern).fullmatch
        vocab = self._vocab
        ids = np.array([t for t in np.flatnonzero(vocab.usable).tolist() if full(vocab.texts[t])],
                       dtype=np.int64)
        return _Free(ids, vocab.lengths[ids])

    def _value_tokens(self, suffix: str) -> tuple[_Free, _Free, _Free]:
        """Tokens inside VALUE: after nothing, after a character, after ``<``.

        A token is value characters (``run`` of them, its cost), then nothing or a non-empty
        prefix of the suffix. It may not hold ``</``, nor start with ``/`` after ``<``, nor
        start the suffix before VALUE has a character.
        """
        vocab, match = self._vocab, self._value_re.match
        ids, cost, slash, suffix_only = [], [], [], []
        for t in np.flatnonzero(vocab.usable).tolist():
            text = vocab.texts[t]
            run = match(text).end()
            if "</" in text[:run] or not (run == len(text) or suffix.startswith(text[run:])):
                continue
            ids.append(t)
            cost.append(run)
            slash.append(text.startswith("/"))
            suffix_only.append(run == 0)
        ids_a, cost_a = np.array(ids, dtype=np.int64), np.array(cost, dtype=np.int64)
        slash_a, first_a = np.array(slash, dtype=bool), np.array(suffix_only, dtype=bool)

        def pick(keep: np.ndarray) -> _Free:
            return _Free(ids_a[keep], cost_a[keep])

        return pick(~first_a), pick(np.ones_like(slash_a)), pick(~slash_a)

    def _union(self, parts: Sequence[np.ndarray | None]) -> np.ndarray:
        found = [p for p in parts if p is not None and len(p)]
        if not found:
            return self._eos
        if len(found) == 1:
            return found[0]
        return _frozen(np.unique(np.concatenate(found)))


@lru_cache(maxsize=16)
def _cached(tokenizer: Tokenizer, pairs: tuple[tuple[str, str], ...], answer_chars: str,
            max_answer_chars: int, value_chars: str | None,
            max_value_chars: int | None) -> CallGrammar:
    return CallGrammar(tokenizer, pairs, answer_chars, max_answer_chars, value_chars,
                       max_value_chars)


def call_grammar(tokenizer: Tokenizer, tools: Sequence[Any], answer_chars: str = "0123456789-",
                 max_answer_chars: int = 24, value_chars: str | None = None,
                 max_value_chars: int | None = None) -> CallGrammar:
    """The :class:`CallGrammar` of these arguments, built once and shared (envs of a batch).

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> tok = ByteTokenizer()
        >>> call_grammar(tok, [("f", "x")]) is call_grammar(tok, [("f", "x")])
        True
    """
    return _cached(tokenizer, _pairs(tools), answer_chars, max_answer_chars, value_chars,
                   max_value_chars)


def _pairs(tools: Sequence[Any]) -> tuple[tuple[str, str], ...]:
    """``(name, parameter)`` of each tool, its one required string parameter."""
    pairs = tuple(_pair(tool) for tool in tools)
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"two tools share a name in {names}; rename one")
    return pairs


def _pair(tool: tuple[str, str] | Tool | Callable[..., Any]) -> tuple[str, str]:
    if isinstance(tool, tuple | list):
        if len(tool) != 2 or not all(isinstance(x, str) for x in tool):
            raise TypeError(f"a tool pair is (name, parameter name), got {tool!r}")
        return tool[0], tool[1]
    tool = as_tool(tool)
    props = dict(tool.parameters.get("properties", {}))
    required = list(tool.parameters.get("required", []))
    strings = [p for p in [*required, *props] if props.get(p, {}).get("type") == "string"]
    if not strings:
        raise ValueError(f"tool {tool.name!r} has no string parameter, so CallGrammar cannot "
                         "write a call to it; give it a `str` argument or leave it out")
    others = [p for p in required if p != strings[0]]
    if others:
        raise ValueError(f"tool {tool.name!r} also requires {others}; CallGrammar writes calls "
                         f"with one argument ({strings[0]!r}), so give the others defaults")
    return tool.name, strings[0]


def _call(name: str, param: str, max_value_chars: int | None) -> _Call:
    """The fixed text of a call to ``name``, cut out of :func:`format_tool_call` itself."""
    for sentinel in _SENTINELS:
        text = format_tool_call(name, {param: sentinel})
        if text.count(sentinel) == 1:
            break
    else:
        raise ValueError(f"cannot find the argument in a call to {name!r}({param!r}); rename it")
    prefix, suffix = text.split(sentinel)
    body = text[len(TOOL_CALL_OPEN):text.rindex(TOOL_CALL_CLOSE)].strip()
    longest = MAX_CALL_CHARS - (len(body) - len(sentinel))
    if max_value_chars is not None and not 1 <= max_value_chars <= longest:
        raise ValueError(f"max_value_chars={max_value_chars} for tool {name!r}: the parser reads "
                         f"calls with arguments of 1 to {longest} characters")
    return _Call(name, param, prefix, suffix,
                 longest if max_value_chars is None else int(max_value_chars))


def _check_chars(what: str, chars: str) -> None:
    bad = sorted({c for c in chars if json.dumps(c, ensure_ascii=False)[1:-1] != c
                  or c == "\ufffd" or not c.isprintable()})
    if not chars or bad:
        raise ValueError(f"{what}={chars!r}: {bad or 'no characters'} cannot be written as is in "
                         "a reply (JSON escapes, control or replacement characters); leave them "
                         "out")


def _char_class(chars: str) -> str:
    return "[" + "".join(re.escape(c) for c in dict.fromkeys(chars)) + "]" if chars else "(?!)"


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array`` read-only: cached token sets are shared by every caller."""
    array.flags.writeable = False
    return array
