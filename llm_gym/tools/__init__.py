"""Tools an agent may call inside a token-level episode (issue 22).

* :func:`with_tools` — any token env id plus tools (:class:`~llm_gym.tools.env.ToolEnv`).
* :func:`as_tool` — a documented, type-hinted function as a tool (transformers' JSON schema).
* :func:`mcp_tools` — the tools of an MCP server (the official ``mcp`` SDK, over stdio).
* :func:`~llm_gym.tools.calls.find_tool_call` / :func:`~llm_gym.tools.calls.format_tool_call`
  — the default ``<tool_call>{...}</tool_call>`` format.
"""

from llm_gym.tools.base import Tool, ToolOutcome, Toolset, as_tool, collect_tools, run_tool
from llm_gym.tools.calculator import calculator
from llm_gym.tools.calls import ParseFailure, ToolCall, find_tool_call, format_tool_call
from llm_gym.tools.env import ToolEnv, with_tools
from llm_gym.tools.mcp import MCPTools, mcp_tools

__all__ = ["MCPTools", "ParseFailure", "Tool", "ToolCall", "ToolEnv", "ToolOutcome", "Toolset",
           "as_tool", "calculator", "collect_tools", "find_tool_call", "format_tool_call",
           "mcp_tools", "run_tool", "with_tools"]
