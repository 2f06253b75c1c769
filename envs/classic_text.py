"""A classic discrete-action env played through text, one token per step.

The text twin holds a real instance of the classic env and steps *it*, so dynamics, rewards,
time limits and seeding are the classic env's own: the same seed and the same actions give the
same return in both faces.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.token_env import Task, TokenEnv, TurnResult, chat_messages
from llm_gym.tokenizers import Tokenizer


class ClassicTextEnv(TokenEnv):
    """Multi-turn token env over a classic env with a ``Discrete`` action space.

    Each turn the env describes the state in text; the agent answers one action word. A reply
    that is not exactly one of the words (case and surrounding whitespace/punctuation ignored)
    gets ``invalid_penalty``, leaves the classic env untouched, and the env asks again.

    Subclasses set ``action_words`` and implement :meth:`describe` and :meth:`instructions`.

    Args:
        classic_env: the classic env to wrap (its ``action_space`` must be ``Discrete``).
        constrained: put an ``action_mask`` in the observation that allows only tokens spelling
            an action word, then the end-of-turn token.
        invalid_penalty: reward of an unparseable reply.
    """

    action_words: tuple[str, ...] = ()

    def __init__(
        self,
        classic_env: gym.Env,
        tokenizer: str | Tokenizer | Any | None = None,
        constrained: bool = False,
        invalid_penalty: float = -1.0,
        max_length: int = 1024,
        max_new_tokens: int = 8,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(classic_env.action_space, gym.spaces.Discrete):
            raise TypeError("ClassicTextEnv needs a classic env with a Discrete action space")
        if len(self.action_words) != classic_env.action_space.n:
            raise ValueError("action_words must name every action of the classic env")
        self.constrains_vocabulary = bool(constrained)
        super().__init__(tokenizer, max_length, max_new_tokens, render_mode)
        self.classic_env = classic_env
        self.invalid_penalty = float(invalid_penalty)
        self._seed: int | None = None
        self._classic_obs: Any = None
        if self.constrains_vocabulary:
            # Decoding the whole vocabulary once per tokenizer and word list, not per row: a
            # vector env's rows share the tokenizer object, so they share the cached table.
            self._allowed_after = allowed_after_prefixes(self.tokenizer, tuple(self.action_words))
            self._only_eos = np.array([self.tokenizer.eos_token_id], dtype=np.int64)

    # ------------------------------------------------------------------ subclass hooks
    def describe(self, observation: Any) -> str:
        """Text of a classic observation."""
        raise NotImplementedError

    def instructions(self) -> str:
        """The system prompt: the rules and the action words."""
        raise NotImplementedError

    # ------------------------------------------------------------------ TokenEnv hooks
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # sample_task seeds the classic env with the same seed (same dynamics). Only for the
        # length of this call: a reset that raises must leave no trace.
        self._seed = seed
        try:
            return super().reset(seed=seed, options=options)
        finally:
            self._seed = None

    def sample_task(self, index: int | None) -> Task:
        self._classic_obs, _ = self.classic_env.reset(seed=self._seed)
        return Task(
            messages=chat_messages(self.describe(self._classic_obs), self.instructions()),
        )

    def parse_action(self, reply: str) -> int | None:
        """The action a reply names, or ``None`` when it names none."""
        word = reply.strip().strip(".!").strip().lower()
        return self.action_words.index(word) if word in self.action_words else None

    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        action = self.parse_action(response) if finished else None
        if action is None:
            words = ", ".join(self.action_words)
            return TurnResult(
                reward=self.invalid_penalty, terminated=False,
                reply=f"Invalid reply. Answer with exactly one word: {words}.",
                info={"valid_action": False},
            )
        obs, reward, terminated, truncated, info = self.classic_env.step(action)
        self._classic_obs = obs
        info = {"valid_action": True, "classic_action": action, **info}
        # The classic env's flags are the episode's flags in both faces: its time limit is a
        # truncation, and reaching the goal on the last allowed step is both.
        return TurnResult(
            reward=float(reward), terminated=bool(terminated), truncated=bool(truncated),
            reply=self.describe(obs), info=info,
        )

    # ------------------------------------------------------------------ constrained decoding
    def allowed_tokens(self) -> np.ndarray:
        """Ids of the tokens that keep the reply on an action word (then end-of-turn)."""
        allowed = self._allowed_after.get(self.turn_text())
        if allowed is None:  # off every word already: only ending the turn is left
            return self._only_eos
        return allowed


@functools.lru_cache(maxsize=16)
def allowed_after_prefixes(tokenizer: Tokenizer, words: tuple[str, ...]) -> dict[str, np.ndarray]:
    """For each prefix of an action word, the tokens that keep the reply on a word (cached)."""
    texts = [tokenizer.decode([t]) for t in range(tokenizer.vocab_size)]
    special = set(tokenizer.stop_token_ids) | {tokenizer.pad_token_id}
    prefixes = {w[:i] for w in words for i in range(len(w) + 1)}
    allowed: dict[str, np.ndarray] = {}
    for prefix in prefixes:
        ok = [t for t, text in enumerate(texts) if text and t not in special
              and any(w.startswith(prefix + text) for w in words)]
        if prefix in words:
            ok.append(tokenizer.eos_token_id)
        allowed[prefix] = np.array(sorted(ok), dtype=np.int64)
        allowed[prefix].flags.writeable = False  # handed out by allowed_tokens, not copied
    return allowed
