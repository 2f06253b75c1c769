"""The default tool-call text format (Hermes/Qwen style) and its strict parser.

A model calls a tool by writing one JSON object between tags and ending its turn::

    <tool_call>
    {"name": "calculator", "arguments": {"expression": "48213 * 5521"}}
    </tool_call>

This is the format of the Hermes and Qwen chat templates; :func:`tool_prompt` explains it to a
model whose chat template has no tool support.

Model output is hostile input, read in the trainer's process, so :func:`find_tool_call` is
linear in the length of the reply and does little work on anything large: it finds the first
opening tag and the first closing tag after it with ``str.find`` (no regular expression that
could backtrack), and refuses a call longer than :data:`MAX_CALL_CHARS` characters before it
copies or parses it. The call must be exactly ``{"name": ..., "arguments": {...}}``:

- ``name``: a non-empty string of at most :data:`MAX_NAME_CHARS` characters that starts with a
  letter or ``_`` and goes on with letters, digits, ``_``, ``.`` or ``-``;
- ``arguments``: a JSON object; left out, it means ``{}``.

Anything else is a :class:`ParseFailure` whose ``reason`` says what went wrong, in a short
vocabulary an env can count as a metric: ``no_closing_tag``, ``too_long``, ``bad_json``
(invalid JSON, nesting too deep for the decoder, duplicate keys, ``NaN``/``Infinity``),
``not_an_object``, ``extra_keys``, ``bad_name``, ``bad_arguments``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
#: Longest call (characters between the tags, surrounding whitespace aside) that is parsed.
MAX_CALL_CHARS = 4096
#: Longest tool name accepted in a call.
MAX_NAME_CHARS = 64

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# One character class, no quantifier: a search with it cannot backtrack.
_NOT_SPACE = re.compile(r"\S")


@dataclass(frozen=True)
class ToolCall:
    """A well-formed call: the tool's name and the keyword arguments to call it with."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ParseFailure:
    """A reply that opened a tool call but did not write a valid one.

    Attributes:
        reason: what was wrong, one of ``no_closing_tag``, ``too_long``, ``bad_json``,
            ``not_an_object``, ``extra_keys``, ``bad_name``, ``bad_arguments``.
    """

    reason: str


def find_tool_call(text: str, max_chars: int = MAX_CALL_CHARS) -> ToolCall | ParseFailure | None:
    """The first tool call in a reply, a failure if it is malformed, or None for a final answer.

    Only the first ``<tool_call>`` counts, closed by the first ``</tool_call>`` after it; text
    before and after is ignored. Linear in ``len(text)``; at most ``max_chars`` characters are
    copied and parsed.

    Args:
        text: the model's reply.
        max_chars: longest call accepted, surrounding whitespace between the tags aside.

    Example:
        >>> find_tool_call('Let me compute. <tool_call>{"name": "calculator", '
        ...                '"arguments": {"expression": "2 + 3"}}</tool_call>')
        ToolCall(name='calculator', arguments={'expression': '2 + 3'})
        >>> find_tool_call("The answer is 5.") is None
        True
        >>> find_tool_call('<tool_call>{"name": "calculator"')
        ParseFailure(reason='no_closing_tag')
    """
    content = _call_text(text, max_chars)
    if not isinstance(content, str):
        return content
    try:
        value = json.loads(content, object_pairs_hook=_unique_keys,
                           parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # RecursionError: arrays nested past the decoder's limit
        return ParseFailure("bad_json")
    return _as_call(value)


def _call_text(text: str, max_chars: int) -> str | ParseFailure | None:
    """The stripped text between the first pair of tags, without copying more than it keeps."""
    start = text.find(TOOL_CALL_OPEN)
    if start < 0:
        return None
    begin = start + len(TOOL_CALL_OPEN)
    end = text.find(TOOL_CALL_CLOSE, begin)
    if end < 0:
        return ParseFailure("no_closing_tag")
    first = _NOT_SPACE.search(text, begin, end)
    if first is None:
        return ""  # json.loads says bad_json
    # Past max_chars characters from the first non-space one, only whitespace may follow.
    cut = first.start() + max_chars
    if cut < end and _NOT_SPACE.search(text, cut, end) is not None:
        return ParseFailure("too_long")
    return text[first.start():min(cut, end)].rstrip()


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict; a repeated key is ambiguous (json.loads would keep the last)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _reject_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259), only Python's extension."""
    raise ValueError(f"{name} is not JSON")


def _as_call(value: Any) -> ToolCall | ParseFailure:
    """The call a parsed JSON value describes, or why it describes none."""
    if not isinstance(value, dict):
        return ParseFailure("not_an_object")
    if not set(value) <= {"name", "arguments"}:
        return ParseFailure("extra_keys")
    name = value.get("name")
    if not (isinstance(name, str) and len(name) <= MAX_NAME_CHARS and _NAME.fullmatch(name)):
        return ParseFailure("bad_name")
    arguments = value.get("arguments", {})
    if not isinstance(arguments, dict):
        return ParseFailure("bad_arguments")
    return ToolCall(name, arguments)


def format_tool_call(name: str, arguments: Mapping[str, Any]) -> str:
    r"""A tool call as the model writes it; :func:`find_tool_call` reads it back.

    ``</`` inside a string is written ``<\/`` (the same JSON string), so an argument that
    contains ``</tool_call>`` does not end the call early. A call longer than ``MAX_CALL_CHARS``
    is written but does not parse back.

    Args:
        name: the tool's name (letters, digits, ``_``, ``.``, ``-``; at most 64 characters).
        arguments: JSON-serializable keyword arguments.

    Example:
        >>> text = format_tool_call("calculator", {"expression": "6 * 7"})
        >>> print(text)
        <tool_call>
        {"name": "calculator", "arguments": {"expression": "6 * 7"}}
        </tool_call>
        >>> find_tool_call(text)
        ToolCall(name='calculator', arguments={'expression': '6 * 7'})
    """
    if not (isinstance(name, str) and len(name) <= MAX_NAME_CHARS and _NAME.fullmatch(name)):
        raise ValueError(f"tool name {name!r} cannot be called; use at most {MAX_NAME_CHARS} "
                         "letters, digits, '_', '.' or '-', starting with a letter or '_'")
    body = json.dumps({"name": name, "arguments": dict(arguments)}, ensure_ascii=False,
                      allow_nan=False)
    # "</" occurs only inside strings (JSON syntax has no '<'), where "\/" means "/".
    body = body.replace("</", "<\\/")
    return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"


def tool_prompt(schemas: list[dict]) -> str:
    """The default system-prompt text that explains the tools and the call format.

    For tokenizers whose chat template has no tool support; a template that takes ``tools=``
    explains them in its own words instead.

    Args:
        schemas: one JSON schema per tool, e.g. :meth:`llm_gym.tools.Tool.schema`.

    Example:
        >>> schema = {"type": "function", "function": {"name": "calculator"}}
        >>> print(tool_prompt([schema]))
        You can call these tools (one JSON schema per line):
        {"type": "function", "function": {"name": "calculator"}}
        To call a tool, write <tool_call>{"name": ..., "arguments": {...}}</tool_call>
        and end your turn; the result comes back in a tool turn.
        To answer, write the answer without a tool call.
    """
    if not schemas:
        raise ValueError("tool_prompt needs at least one tool schema; with no tools, leave the "
                         "tool prompt out")
    lines = "\n".join(json.dumps(schema, ensure_ascii=False) for schema in schemas)
    return (
        "You can call these tools (one JSON schema per line):\n"
        f"{lines}\n"
        f'To call a tool, write {TOOL_CALL_OPEN}{{"name": ..., "arguments": {{...}}}}'
        f"{TOOL_CALL_CLOSE}\nand end your turn; the result comes back in a tool turn.\n"
        "To answer, write the answer without a tool call."
    )
