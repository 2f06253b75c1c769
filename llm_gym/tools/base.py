"""A tool an agent may call: a name, a JSON schema of its arguments, and a function.

Plain Python callables become tools through :func:`as_tool`, which reads the name, docstring
and type hints with transformers' own ``get_json_schema`` (the schema chat templates expect).
MCP servers give tools of the same shape (:func:`llm_gym.tools.mcp_tools`).

A tool's function is called with keyword arguments and must return text. Whatever it does —
raise, hang past ``timeout_s``, return megabytes or something that is not text — the env turns
into a short error result for the model (:func:`run_tool`); nothing a tool does crashes an env.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: Longest text a tool may return before it is cut (characters; tokens are capped later).
MAX_RESULT_CHARS = 16_384


@dataclass(frozen=True)
class Tool:
    """One callable tool.

    Attributes:
        name: the name the model calls it by.
        description: what it does (shown to the model).
        parameters: JSON schema (``{"type": "object", "properties": ...}``) of the arguments.
        function: called as ``function(**arguments)``; returns text.
        timeout_s: seconds a call may take before the model gets an error result instead.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    function: Callable[..., Any] = field(compare=False, repr=False)
    timeout_s: float = 10.0

    def schema(self) -> dict[str, Any]:
        """The tool in the OpenAI/transformers function format chat templates take."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": dict(self.parameters)}}


@runtime_checkable
class Toolset(Protocol):
    """Tools that come with a resource to start and stop (an MCP server process)."""

    def tools(self) -> list[Tool]:
        """Start the resource if needed and list its tools."""

    def close(self) -> None:
        """Stop the resource; a later :meth:`tools` starts it again."""


def as_tool(obj: Tool | Callable[..., Any], timeout_s: float = 10.0) -> Tool:
    """A :class:`Tool` from a tool or a documented, type-hinted Python function.

    Example:
        >>> def add(a: int, b: int) -> str:
        ...     '''Add two integers.
        ...
        ...     Args:
        ...         a: the first.
        ...         b: the second.
        ...     '''
        ...     return str(a + b)
        >>> tool = as_tool(add)
        >>> tool.name, sorted(tool.parameters["properties"])
        ('add', ['a', 'b'])
    """
    if isinstance(obj, Tool):
        return obj
    if not callable(obj):
        raise TypeError(f"a tool must be a Tool or a function, got {type(obj).__name__} {obj!r}")
    from transformers.utils import get_json_schema
    from transformers.utils.chat_template_utils import (
        DocstringParsingException,
        TypeHintParsingException,
    )

    try:
        spec = get_json_schema(obj)["function"]
    except (DocstringParsingException, TypeHintParsingException) as err:
        raise ValueError(
            f"cannot describe tool {getattr(obj, '__name__', obj)!r} to a model: {err}. Give it "
            "a docstring with an 'Args:' section and type hints on every argument"
        ) from err
    return Tool(name=spec["name"], description=spec.get("description", ""),
                parameters=spec.get("parameters", {"type": "object", "properties": {}}),
                function=obj, timeout_s=timeout_s)


def collect_tools(tools: Iterable[Tool | Callable[..., Any] | Toolset]) -> tuple[list[Tool],
                                                                                  list[Toolset]]:
    """Flatten tools, functions and toolsets into tools, and the toolsets to close later.

    Raises ``ValueError`` on two tools with one name: the model could not tell them apart.
    """
    flat: list[Tool] = []
    sets: list[Toolset] = []
    for item in tools:
        if isinstance(item, Toolset) and not isinstance(item, Tool):
            sets.append(item)
            flat.extend(item.tools())
        else:
            flat.append(as_tool(item))
    names = [tool.name for tool in flat]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"two tools are named {duplicates}; rename one")
    return flat, sets


@dataclass(frozen=True)
class ToolOutcome:
    """What one call gave: the text for the model, whether it worked, and how long it took."""

    text: str
    ok: bool
    error: str | None
    latency_s: float


def run_tool(tool: Tool, arguments: Mapping[str, Any]) -> ToolOutcome:
    """Call ``tool`` with ``arguments`` under its deadline; every failure becomes an error result.

    The call runs in a daemon thread: a function that hangs is abandoned after ``timeout_s``
    (Python cannot kill a thread), and the model is told the call timed out. Code from the model
    must therefore run in :mod:`llm_gym.sandbox` (the ``python`` tool does), never in a tool
    thread.

    Example:
        >>> slow = Tool("slow", "", {}, lambda: __import__("time").sleep(5), timeout_s=0.05)
        >>> run_tool(slow, {}).error
        'timeout'
    """
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = tool.function(**arguments)
        except BaseException as err:  # noqa: BLE001 - a tool's failure is the model's result
            box["error"] = err

    start = time.perf_counter()
    worker = threading.Thread(target=call, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(tool.timeout_s)
    latency = time.perf_counter() - start
    if worker.is_alive():
        return ToolOutcome(f"error: {tool.name} timed out after {tool.timeout_s:g} s", False,
                           "timeout", latency)
    if "error" in box:
        err = box["error"]
        message = str(err)[:200]
        return ToolOutcome(f"error: {type(err).__name__}: {message}", False,
                           f"exception:{type(err).__name__}", latency)
    value = box.get("value")
    if not isinstance(value, str):
        return ToolOutcome(f"error: {tool.name} returned {type(value).__name__}, not text",
                           False, "not_text", latency)
    if len(value) > MAX_RESULT_CHARS:
        value = value[:MAX_RESULT_CHARS]  # tokens are capped again when appended
    return ToolOutcome(value, True, None, latency)
