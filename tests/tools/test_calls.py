"""The tool-call format: round trips, every failure reason, and hostile replies read cheaply."""

from __future__ import annotations

import json

import pytest

from llm_gym.tools.calls import (
    MAX_CALL_CHARS,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    ParseFailure,
    ToolCall,
    find_tool_call,
    format_tool_call,
    tool_prompt,
)

BIG = 10 * 2**20  # characters of each hostile reply


def wrap(body: str) -> str:
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


@pytest.mark.parametrize("arguments", [
    {},
    {"expression": "48213 * 5521"},
    {"n": 3, "x": 1.5, "flag": True, "none": None, "items": [1, [2, {"a": "b"}]]},
    {"text": "héllo wörld — 日本語 🙂", "ключ": "значение"},
    {"text": "ends the call early? </tool_call> no", "quote": '"\\'},
])
def test_format_then_find_round_trips(arguments):
    text = format_tool_call("my_tool.v2-beta", arguments)
    assert text.startswith(TOOL_CALL_OPEN + "\n") and text.endswith("\n" + TOOL_CALL_CLOSE)
    assert find_tool_call(text) == ToolCall("my_tool.v2-beta", arguments)


def test_format_writes_unicode_as_is():
    text = format_tool_call("echo", {"text": "日本語"})
    assert text == '<tool_call>\n{"name": "echo", "arguments": {"text": "日本語"}}\n</tool_call>'


def test_format_refuses_what_would_not_parse_back():
    with pytest.raises(ValueError, match="tool name"):
        format_tool_call("bad name", {})
    with pytest.raises(ValueError):
        format_tool_call("f", {"x": float("nan")})


def test_text_before_and_after_the_call_is_ignored():
    reply = ("I will use the calculator.\n" + format_tool_call("calculator", {"expression": "1+1"})
             + "\nthen more text <tool_call>{\"name\": \"other\"}</tool_call>")
    assert find_tool_call(reply) == ToolCall("calculator", {"expression": "1+1"})


def test_whitespace_around_the_json_is_allowed():
    assert find_tool_call(wrap('\n\t  {"name": "f"}  \n')) == ToolCall("f", {})


def test_missing_arguments_mean_none():
    assert find_tool_call(wrap('{"name": "f"}')) == ToolCall("f", {})


@pytest.mark.parametrize("text", ["", "The answer is 42.", "<tool_cal>", "</tool_call> only",
                                  "<TOOL_CALL>{\"name\": \"f\"}</TOOL_CALL>"])
def test_no_opening_tag_is_a_final_answer(text):
    assert find_tool_call(text) is None


@pytest.mark.parametrize(("text", "reason"), [
    ('<tool_call>{"name": "f"}', "no_closing_tag"),
    ('</tool_call><tool_call>{"name": "f"}', "no_closing_tag"),
    (wrap('{"name": "f", "arguments": {"s": "' + "x" * MAX_CALL_CHARS + '"}}'), "too_long"),
    (wrap(""), "bad_json"),
    (wrap("   \n "), "bad_json"),
    (wrap('{"name": "f",}'), "bad_json"),
    (wrap("{'name': 'f'}"), "bad_json"),
    (wrap('{"name": "f"} trailing'), "bad_json"),
    (wrap('{"name": "f", "name": "g"}'), "bad_json"),
    (wrap('{"name": "f", "arguments": {"x": NaN}}'), "bad_json"),
    (wrap('{"name": "f", "arguments": {"x": -Infinity}}'), "bad_json"),
    (wrap(TOOL_CALL_OPEN + '{"name": "f"}'), "bad_json"),
    (wrap('["f", {}]'), "not_an_object"),
    (wrap('"f"'), "not_an_object"),
    (wrap("null"), "not_an_object"),
    (wrap('{"name": "f", "arguments": {}, "id": 1}'), "extra_keys"),
    (wrap('{"tool": "f"}'), "extra_keys"),
    (wrap("{}"), "bad_name"),
    (wrap('{"arguments": {}}'), "bad_name"),
    (wrap('{"name": ""}'), "bad_name"),
    (wrap('{"name": 3}'), "bad_name"),
    (wrap('{"name": "1abc"}'), "bad_name"),
    (wrap('{"name": "a b"}'), "bad_name"),
    (wrap('{"name": "f\\n"}'), "bad_name"),
    (wrap('{"name": "caf\u00e9"}'), "bad_name"),
    (wrap(json.dumps({"name": "a" * 65})), "bad_name"),
    (wrap('{"name": "f", "arguments": "{\\"x\\": 1}"}'), "bad_arguments"),
    (wrap('{"name": "f", "arguments": [1]}'), "bad_arguments"),
    (wrap('{"name": "f", "arguments": null}'), "bad_arguments"),
])
def test_malformed_calls_say_why(text, reason):
    assert find_tool_call(text) == ParseFailure(reason)


def test_the_cap_counts_the_call_not_its_padding():
    call = '{"name": "f", "arguments": {"s": "' + "x" * 10 + '"}}'
    assert find_tool_call(wrap(call), max_chars=len(call)) == ToolCall("f", {"s": "x" * 10})
    assert find_tool_call(wrap(call), max_chars=len(call) - 1) == ParseFailure("too_long")
    padded = wrap(" " * BIG + call + "\n" * BIG)
    assert find_tool_call(padded, max_chars=len(call)) == ToolCall("f", {"s": "x" * 10})


def test_a_64_character_name_is_allowed():
    assert find_tool_call(wrap(json.dumps({"name": "a" * 64}))) == ToolCall("a" * 64, {})


def test_huge_unclosed_call_is_cheap():
    assert find_tool_call(TOOL_CALL_OPEN + '{"name": "f", "arguments": {"s": "' + "x" * BIG) \
        == ParseFailure("no_closing_tag")


@pytest.mark.parametrize("close", [True, False])
def test_huge_nested_arrays_are_cheap(close):
    text = TOOL_CALL_OPEN + "[" * BIG + (TOOL_CALL_CLOSE if close else "")
    assert find_tool_call(text) == ParseFailure("too_long" if close else "no_closing_tag")


@pytest.mark.parametrize("unit", ["[", '{"a":'])
def test_nesting_past_the_decoder_limit_within_the_cap_is_bad_json(unit):
    # The C decoder raises RecursionError here, not ValueError; both must become a failure.
    depth = 10_000
    body = unit * depth
    assert find_tool_call(wrap(body), max_chars=len(body)) == ParseFailure("bad_json")


def test_huge_reply_without_a_call_is_a_final_answer():
    assert find_tool_call("<tool_cal" * (BIG // 9)) is None


def test_tool_prompt_lists_each_schema_on_its_own_line():
    schemas = [{"type": "function", "function": {"name": "calculator", "description": "Ünïcode"}},
               {"type": "function", "function": {"name": "search"}}]
    prompt = tool_prompt(schemas)
    lines = prompt.splitlines()
    assert [json.loads(line) for line in lines[1:3]] == schemas
    assert "Ünïcode" in prompt
    assert f'{TOOL_CALL_OPEN}{{"name": ..., "arguments": {{...}}}}{TOOL_CALL_CLOSE}' in prompt
    assert "tool turn" in prompt and "without a tool call" in prompt
    assert len(prompt) < 400 + sum(len(json.dumps(schema)) for schema in schemas)


def test_tool_prompt_needs_a_tool():
    with pytest.raises(ValueError, match="at least one"):
        tool_prompt([])
