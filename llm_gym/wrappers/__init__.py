"""Gymnasium wrappers: reward shaping (LunarLander and LLM envs alike) and the text face.

Like Gymnasium (``gymnasium.wrappers`` and ``gymnasium.wrappers.vector``), every shaping wrapper
exists at both levels: here for a single env, in :mod:`llm_gym.wrappers.vector` for a vector env
(the batched token env the trainers use, or a Sync/AsyncVectorEnv), with the same rewards step by
step. :func:`~llm_gym.wrappers.stack.make_env` builds an env id wrapped in a stack given by name
(checked once into a :class:`~llm_gym.wrappers.stack.WrapperStack`).
Reuse Gymnasium's own ``TransformReward``, ``ClipReward``, ``RecordEpisodeStatistics`` and
``TimeLimit`` alongside these.
"""

from __future__ import annotations

from llm_gym.wrappers.learned import LearnedReward
from llm_gym.wrappers.response import Response, last_response
from llm_gym.wrappers.shaping import (
    FormatBonus,
    LengthPenalty,
    OverlongPenalty,
    PotentialShaping,
    RewardTerms,
)
from llm_gym.wrappers.stack import WRAPPER_NAMES, apply_wrappers, make_env, parse_wrappers
from llm_gym.wrappers.text import AnyText, TextInterface

__all__ = [
    "AnyText",
    "FormatBonus",
    "LearnedReward",
    "LengthPenalty",
    "OverlongPenalty",
    "PotentialShaping",
    "Response",
    "RewardTerms",
    "TextInterface",
    "WRAPPER_NAMES",
    "apply_wrappers",
    "last_response",
    "make_env",
    "parse_wrappers",
]
