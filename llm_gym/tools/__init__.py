"""Tools an agent may call inside a token-level episode (issue 22)."""

from llm_gym.tools.base import Tool, ToolOutcome, Toolset, as_tool, collect_tools, run_tool

__all__ = ["Tool", "ToolOutcome", "Toolset", "as_tool", "collect_tools", "run_tool"]
