"""Gymnasium wrappers: reward shaping (LunarLander and LLM envs alike) and the text face.

Reuse Gymnasium's own ``TransformReward``, ``ClipReward``, ``RecordEpisodeStatistics`` and
``TimeLimit`` alongside these.
"""

from __future__ import annotations

from llm_gym.wrappers.response import Response, last_response
from llm_gym.wrappers.shaping import (
    FormatBonus,
    LengthPenalty,
    OverlongPenalty,
    PotentialShaping,
    RewardTerms,
)
from llm_gym.wrappers.text import AnyText, TextInterface

__all__ = [
    "AnyText",
    "FormatBonus",
    "LengthPenalty",
    "OverlongPenalty",
    "PotentialShaping",
    "Response",
    "RewardTerms",
    "TextInterface",
    "last_response",
]
