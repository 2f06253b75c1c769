"""The data the trainer base and its algorithms pass each other (split from ``trainer.py``).

:class:`Collected` is what one ``collect()`` gathered, :class:`FinishedEpisode` one episode of
it, and :class:`TrainerHook` something that acts after each update
(:meth:`~llm_gym.agents.trainer.LLMTrainer.add_hook`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class FinishedEpisode:
    """An episode that ended during a collect, placed relative to the collect's start.

    Attributes:
        steps: env steps taken in this collect when it ended (itself included).
        tokens: conversation tokens read in this collect when it ended (0 on classic envs).
        episode_return: undiscounted return.
        length: env steps of the episode.
        success: the env's verdict (None when it gives none).
        finished_at: ``time.perf_counter()`` when it ended.
        env_return: the unshaped env return (the ``env`` term of the episode's
            ``reward_components``) when the env is shaped; ``None`` otherwise.
    """

    steps: int
    tokens: int
    episode_return: float
    length: int
    success: bool | None
    finished_at: float
    env_return: float | None = None


@dataclass
class Collected:
    """What one :meth:`LLMTrainer.collect` gathered; the base applies it to the agent.

    Attributes:
        batch: the training batch (a ``RolloutBatch`` for GRPO, a ``PPOBatch`` for PPO).
        metrics: ``rollout/`` and ``reward/`` metrics of the collect.
        steps: env steps taken (agent tokens on token envs).
        tokens: conversation tokens of the finished episodes (0 on classic envs).
        episodes: the episodes that ended, in order.
        samples: episodes sampled, broken rewards included (reward-failure fractions); 0 when
            the env has no reward integrity counters (classic envs).
        rollouts: rollout rounds run (GRPO's dynamic sampling may run several).
        advantages: per-row or per-token advantages when the collect computed them.
    """

    batch: Any
    metrics: dict[str, float]
    steps: int
    tokens: int = 0
    episodes: list[FinishedEpisode] = field(default_factory=list)
    samples: int = 0
    rollouts: int = 1
    advantages: torch.Tensor | None = None


class TrainerHook(Protocol):
    """Something that acts after each update and whose state rides in the trainer's checkpoints.

    E.g. :class:`~llm_gym.agents.league.SelfPlayLeague`, which snapshots the learner and
    picks the next opponent. A hook keeps its logic out of the trainers: the base only calls
    :meth:`on_update` after every update (before the checkpoint of that update) and saves and
    restores :meth:`state_dict` with the rest of the training state.
    """

    def on_update(self, trainer: Any) -> dict[str, float]:
        """Called after each update; returns metrics to log with the update's."""

    def state_dict(self) -> dict[str, Any]:
        """The hook's state, saved in every checkpoint."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
