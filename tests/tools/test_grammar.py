"""CallGrammar: every reply its masks admit is an integer answer or one call the parser reads."""

from __future__ import annotations

import re

import numpy as np
import pytest

from llm_gym.tokenizers import ByteTokenizer, Tokenizer
from llm_gym.tools.base import as_tool
from llm_gym.tools.calculator import calculator
from llm_gym.tools.calls import ToolCall, find_tool_call, format_tool_call
from llm_gym.tools.grammar import DEFAULT_VALUE_CHARS, CallGrammar, call_grammar

TOOLS = [("calculator", "expression"), ("calc", "x")]  # one name is a prefix of the other
CALL_START = '<tool_call>\n{"name": "'


def walk(grammar: CallGrammar, texts: list[str], rng: np.random.Generator,
         first: str = "") -> tuple[str, list[int]]:
    """A reply written by choosing uniformly among the allowed tokens until end of turn."""
    written, ids = first, []
    while True:
        allowed = grammar.allowed(written)
        assert len(allowed) and np.all(np.diff(allowed) > 0)
        token = int(rng.choice(allowed))
        if token == grammar.eos_token_id:
            return written, ids
        written += texts[token]
        ids.append(token)


def check_reply(text: str, pairs: list[tuple[str, str]], max_answer: int = 24) -> ToolCall | str:
    """The call or answer of a reply the grammar admitted; fails the test if it is neither."""
    call = find_tool_call(text)
    if call is None:
        assert re.fullmatch(r"-?[0-9]+", text) and len(text) <= max_answer, text
        int(text)
        return text
    assert isinstance(call, ToolCall), (text, call)
    assert (call.name, *call.arguments) in [(n, p) for n, p in pairs], call
    # Exactly the text format_tool_call writes, not merely something that parses.
    assert text == format_tool_call(call.name, call.arguments)
    return call


def byte_texts() -> list[str]:
    tok = ByteTokenizer()
    return [tok.decode([t]) for t in range(tok.vocab_size)]


def test_random_walks_give_an_answer_or_a_call() -> None:
    grammar = CallGrammar(ByteTokenizer(), TOOLS)
    texts, rng = byte_texts(), np.random.default_rng(0)
    kinds = {"answer": 0, "calculator": 0, "calc": 0}
    for k in range(300):
        # A uniform first token calls a tool 1 time in 12; start a third of the walks in a call.
        text, _ = walk(grammar, texts, rng, first="<" if k % 3 == 0 else "")
        reply = check_reply(text, TOOLS)
        kinds["answer" if isinstance(reply, str) else reply.name] += 1
    assert min(kinds.values()) > 10, kinds


def prefix_oracle(pairs: list[tuple[str, str]], value_class: str, max_value: int):
    """An independent reading of the language: regular expressions and trial completions."""
    answer = re.compile(r"-?[0-9]{1,24}")
    calls = []
    for name, param in pairs:
        prefix, suffix = format_tool_call(name, {param: "@@"}).split("@@")
        calls.append((prefix, suffix, re.compile(
            re.escape(prefix) + f"((?:(?!</){value_class})+)" + re.escape(suffix))))

    def complete(text: str) -> bool:
        if answer.fullmatch(text) and len(text) <= 24:
            return True
        for _, _, pattern in calls:
            match = pattern.fullmatch(text)
            if match and len(match.group(1)) <= max_value:
                return True
        return False

    def is_prefix(text: str) -> bool:
        endings = ["", "0", *(p[len(text):] + "1" + s for p, s, _ in calls if p.startswith(text))]
        endings += [e for _, s, _ in calls for e in ("1" + s, *(s[k:] for k in range(len(s))))]
        return any(complete(text + ending) for ending in endings)

    return complete, is_prefix


class PieceTokenizer(Tokenizer):
    """Single ASCII characters plus multi-character pieces that cross the grammar's borders."""

    PIECES = ("</", "a</b", "<a", "/a", "1<", '1"', '1"}}', '"}}\n</tool_call>',
              '"}}\n</tool_call>x', "<tool_call>", "<tool_call>\n{", 'calc"', 'calculator", "',
              '", "arguments": {"', '": "1', '": "', '""}}', "-1", "--", "1-", "<|im_end|>",
              "<|pad|>", "1ab", "")

    def __init__(self) -> None:
        self.name = "pieces"
        self.texts = [chr(c) for c in range(128)] + list(self.PIECES)
        self.vocab_size = len(self.texts)
        self.eos_token_id = self.texts.index("<|im_end|>")
        self.pad_token_id = self.texts.index("<|pad|>")
        self.stop_token_ids = frozenset({self.eos_token_id})

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(self.texts[int(t)] for t in ids)

    def added_tokens(self) -> frozenset[str]:
        return frozenset({"<|im_end|>", "<|pad|>", "1ab"})  # "1ab" would fit a value


@pytest.mark.parametrize("tok", [ByteTokenizer(), PieceTokenizer()], ids=["byte", "pieces"])
def test_allowed_is_exactly_the_tokens_that_stay_in_the_language(tok: Tokenizer) -> None:
    texts = [tok.decode([t]) for t in range(tok.vocab_size)]
    chars = "0123456789 +*</ab"  # '<' and '/' make the "</" rule matter
    grammar = CallGrammar(tok, TOOLS, value_chars=chars, max_value_chars=6)
    complete, is_prefix = prefix_oracle(TOOLS, "[0-9 +*</ab]", 6)
    rng = np.random.default_rng(1)
    seen = set()
    for k in range(20):
        text, _ = walk(grammar, texts, rng, first="<" if k % 2 else "")
        seen.update(text[:n] for n in range(len(text) + 1))
        seen.add(text + "0")
    states = {"", "<", "-", "12", "<tool_call>\n{", CALL_START + "calc", "x", "--", "1-"}
    states.update(rng.choice(sorted(seen), 150, replace=False).tolist())  # the oracle is slow
    # Special, added and empty tokens never; ids 128-255 of the byte tokenizer decode to U+FFFD.
    never = set(tok.stop_token_ids) | {tok.pad_token_id}
    never |= {t for t, text in enumerate(texts) if not text or text in tok.added_tokens()}
    for written in sorted(states):
        want = {t for t, text in enumerate(texts)
                if t not in never and is_prefix(written + text)}
        if complete(written) or not want:
            want.add(tok.eos_token_id)
        assert set(grammar.allowed(written).tolist()) == want, written


def test_first_step_admits_answers_and_calls() -> None:
    tok = ByteTokenizer()
    first = {tok.decode([t]) for t in CallGrammar(tok, TOOLS).allowed("")}
    assert first == set("0123456789-<")


def test_after_the_name_key_only_tool_names() -> None:
    tok = ByteTokenizer()
    grammar = CallGrammar(tok, [("calculator", "expression"), ("search", "query")])
    assert {tok.decode([t]) for t in grammar.allowed(CALL_START)} == {"c", "s"}
    assert [tok.decode([t]) for t in grammar.allowed(CALL_START + "se")] == ["a"]
    # The name's closing quote comes right after the whole name, not before.
    assert [tok.decode([t]) for t in grammar.allowed(CALL_START + "search")] == ['"']


def test_a_complete_call_admits_only_the_end_of_turn() -> None:
    tok = ByteTokenizer()
    grammar = CallGrammar(tok, TOOLS)
    for name, param in TOOLS:
        call = format_tool_call(name, {param: "48213 * 5521"})
        assert grammar.allowed(call).tolist() == [tok.eos_token_id]
        assert grammar.allowed(call[:-1]).tolist() == [ord(">")]
    assert grammar.allowed(CALL_START + 'calc", "arguments": {"x": "').tolist().count(
        ord('"')) == 0  # an empty argument cannot be closed


def test_off_grammar_gets_only_the_end_of_turn() -> None:
    tok = ByteTokenizer()
    grammar = CallGrammar(tok, TOOLS)
    for written in ["hello", "12a", "--1", "1-", "<tool_call> ", CALL_START + "calk",
                    CALL_START + 'calc", "arguments": {"x": "a</',
                    CALL_START + 'calc", "arguments": {"x": ""',
                    format_tool_call("calc", {"x": "1"}) + " ", "1" * 25]:
        assert grammar.allowed(written).tolist() == [tok.eos_token_id], written


def test_value_length_stops_where_the_parser_would() -> None:
    tok = ByteTokenizer()
    grammar = CallGrammar(tok, [("f", "x")], max_value_chars=3)
    open_ = CALL_START + 'f", "arguments": {"x": "'
    assert ord("a") in grammar.allowed(open_ + "ab")
    assert grammar.allowed(open_ + "abc").tolist() == [ord('"')]
    longest = CallGrammar(tok, [("f", "x")]).calls[0].max_value
    value = "7" * longest
    assert find_tool_call(format_tool_call("f", {"x": value})) == ToolCall("f", {"x": value})
    assert find_tool_call(format_tool_call("f", {"x": value + "7"})).reason == "too_long"
    with pytest.raises(ValueError, match="max_value_chars"):
        CallGrammar(tok, [("f", "x")], max_value_chars=longest + 1)


def test_mask_matches_allowed_and_arrays_are_read_only() -> None:
    tok = ByteTokenizer()
    grammar = call_grammar(tok, TOOLS)
    assert grammar is call_grammar(tok, TOOLS)
    mask = grammar.mask("")
    assert mask.dtype == np.int8 and mask.shape == (tok.vocab_size,)
    assert np.flatnonzero(mask).tolist() == grammar.allowed("").tolist()
    with pytest.raises(ValueError):
        grammar.allowed("")[0] = 0


def test_tools_give_their_string_parameter() -> None:
    tok = ByteTokenizer()
    grammar = CallGrammar(tok, [as_tool(calculator)])
    assert [(c.name, c.param) for c in grammar.calls] == [("calculator", "expression")]

    def count(n: int) -> str:
        """Count.

        Args:
            n: how far.
        """
        return str(n)

    def two(a: str, b: int) -> str:
        """Two.

        Args:
            a: one.
            b: two.
        """
        return a

    with pytest.raises(ValueError, match="'count' has no string parameter"):
        CallGrammar(tok, [count])
    with pytest.raises(ValueError, match=r"'two' also requires \['b'\]"):
        CallGrammar(tok, [two])
    with pytest.raises(ValueError, match="share a name"):
        CallGrammar(tok, [("f", "x"), ("f", "y")])
    with pytest.raises(ValueError, match="value_chars"):
        CallGrammar(tok, TOOLS, value_chars='ab"')


def test_default_value_chars_need_no_escaping() -> None:
    assert len(DEFAULT_VALUE_CHARS) == 93 and '"' not in DEFAULT_VALUE_CHARS
    value = DEFAULT_VALUE_CHARS.replace("</", "")
    text = format_tool_call("f", {"x": value})
    assert value in text and find_tool_call(text) == ToolCall("f", {"x": value})


@pytest.mark.slow
def test_smollm2_walks_decode_to_calls_and_answers(smollm2_tokenizer) -> None:
    tok = smollm2_tokenizer
    grammar = CallGrammar(tok, [as_tool(calculator)])
    texts = [tok.decode([t]) for t in range(tok.vocab_size)]
    first = {texts[t] for t in grammar.allowed("")}
    assert set("0123456789-<") <= first and all(
        t.isdigit() or t == "-" or "<tool_call>".startswith(t) for t in first)
    after = {texts[t] for t in grammar.allowed(CALL_START)}
    assert after and all(('calculator"').startswith(t) for t in after)
    rng = np.random.default_rng(0)
    kinds = {"answer": 0, "call": 0}
    for k in range(40):
        text, ids = walk(grammar, texts, rng, first="<" if k % 2 else "")
        ids = (tok.encode("<") if k % 2 else []) + ids
        assert tok.decode(ids, skip_special_tokens=True) == text  # what the env will read
        reply = check_reply(text, [("calculator", "expression")])
        kinds["answer" if isinstance(reply, str) else "call"] += 1
    assert min(kinds.values()) >= 10, kinds
