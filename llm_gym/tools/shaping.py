"""Reward terms for tool use, for :class:`~llm_gym.wrappers.RewardTerms` (step terms).

Each is a step term ``(obs, action, reward, terminated, truncated, info) -> float`` that reads
the ``info`` a :class:`~llm_gym.tools.env.ToolEnv` step gives, so a stack names it as a string
and stays plain JSON::

    --wrappers '[{"name": "RewardTerms", "kwargs": {
        "terms": {"first_call": "llm_gym.tools.shaping:first_tool_call"},
        "weights": {"first_call": 0.2}}}]'

A bonus for calling is a reward-shaping experiment in its own right: report the unshaped
accuracy beside the shaped return (the trainers' evaluation does), so a policy that only learned
to call is visible.
"""

from __future__ import annotations

from typing import Any


def first_tool_call(obs: Any, action: Any, reward: float, terminated: bool, truncated: bool,
                    info: dict[str, Any]) -> float:
    """1.0 on the step that ran the episode's first well-formed call of a known tool, else 0.

    Only the first call counts, so the bonus cannot be farmed by calling again and again.

    Example:
        >>> first_tool_call(None, 0, 0.0, False, False,
        ...                 {"tool_call": {"ok": True}, "tools": {"calls": 1}})
        1.0
    """
    call = info.get("tool_call")
    if not isinstance(call, dict) or not call.get("ok"):
        return 0.0
    return float(info.get("tools", {}).get("calls") == 1)


def tool_call(obs: Any, action: Any, reward: float, terminated: bool, truncated: bool,
              info: dict[str, Any]) -> float:
    """1.0 on every step that ran a call (well-formed or not): with a negative weight, a cost.

    Example:
        >>> tool_call(None, 0, 0.0, False, False, {"tool_call": {"ok": False}})
        1.0
    """
    return float(isinstance(info.get("tool_call"), dict))
