"""Simultaneous-move PettingZoo games played one token at a time (a Parallel env)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pettingzoo import ParallelEnv

from llm_gym.envs.multiagent.games import GameRules
from llm_gym.envs.multiagent.seat import TokenSeats, game_observation, plain_text
from llm_gym.envs.multiagent.token_aec import check_token
from llm_gym.tokenizers import Tokenizer


class TokenSimultaneousGame(TokenSeats, ParallelEnv):
    """A simultaneous-move PettingZoo game whose players write their moves token by token.

    Every step takes one token from every live player. A player whose reply names a move waits
    for the others: until the round is played its tokens are ignored and its ``action_mask``
    allows only the end-of-turn token. When every player has chosen, the moves step the real
    PettingZoo parallel env together and each player is shown the round's result. A reply
    that names no move costs ``invalid_penalty`` and that player is asked again. A
    conversation that fills ``max_length`` truncates the game for every player, and so does
    the ``max_cycles``-th step (PettingZoo's meaning: steps of each agent, here tokens; the
    rounds of a match are the game's own budget, e.g. ``num_rounds``). With
    ``constrained=True`` observations are PettingZoo's classic layout, ``{"observation": <token
    arrays>, "action_mask": <over the vocabulary>}``, and each player's ``info`` repeats its
    ``action_mask`` (where AgileRL's multi-agent algorithms look for it).

    With ``talk=True`` every round opens with a message turn: each player writes free text (up
    to ``max_new_tokens`` tokens, any tokens allowed), and once both have written, each is shown
    the other's message (special-token strings removed, :func:`plain_text`) and asked for its
    move. Messages change no payoff: cheap talk, whose effect is the game's point.

    Args:
        rules: the game's text (:mod:`llm_gym.envs.multiagent.games`).
        make_parallel: builds the real PettingZoo parallel env.
        tokenizer, constrained, invalid_penalty, max_length, max_new_tokens, render_mode:
            as for :class:`~llm_gym.envs.multiagent.token_aec.TokenTurnGame`.
        game_kwargs: keyword arguments of ``make_parallel``.
        talk: open every round with a free-text message turn.
        max_cycles: truncate every player after this many steps (tokens), ``None``: no limit
            but ``max_length`` and the game's own end.
    """

    TALK_ASK = " Write a short message to your opponent."
    MOVE_ASK = "Now answer with your move."

    metadata: dict[str, Any] = {"render_modes": ["ansi", "human"], "render_fps": 1,
                                "name": "token_simultaneous_game"}

    def __init__(self, rules: GameRules, make_parallel: Callable[..., ParallelEnv],
                 tokenizer: str | Tokenizer | Any | None = None, constrained: bool = False,
                 invalid_penalty: float = -0.1, max_length: int = 2048, max_new_tokens: int = 8,
                 render_mode: str | None = None, game_kwargs: dict[str, Any] | None = None,
                 talk: bool = False, max_cycles: int | None = None) -> None:
        if max_cycles is not None and (isinstance(max_cycles, bool) or not isinstance(
                max_cycles, int) or max_cycles < 1):
            raise ValueError(f"max_cycles must be None or an int >= 1 (steps of each agent), "
                             f"got {max_cycles!r}")
        self._seat_players(rules, lambda: make_parallel(**(game_kwargs or {})), tokenizer,
                           constrained, invalid_penalty, max_length, max_new_tokens, render_mode)
        self.talk, self.max_cycles, self._steps = bool(talk), max_cycles, 0
        self._talking = False  # in a round's message turn
        self._chosen: dict[str, int] = {}  # move (or message turn done: -1) per player
        self._messages: dict[str, str] = {}

    @property
    def _aec(self) -> Any:
        """What the board text reads (PettingZoo's AEC env under the parallel wrapper)."""
        return getattr(self.classic_env, "aec_env", self.classic_env)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        self.classic_env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        self._chosen, self._messages, self._talking = {}, {}, self.talk
        self._steps = 0
        legal = np.ones(len(self.rules.move_words), dtype=bool)
        ask = self.TALK_ASK if self.talk else ""
        for agent, seat in self.seats.items():
            seat.clear()
            seat.start(self.rules.opening(self._aec, agent, ask), legal)
        observations = self._observations()
        return observations, self._with_masks({a: {} for a in self.agents}, observations)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        tokens = self._check_actions(actions)
        live = list(self.agents)
        rewards = dict.fromkeys(live, 0.0)
        infos: dict[str, dict[str, Any]] = {a: {} for a in live}
        truncated = False
        for agent in live:
            if agent in self._chosen:
                continue  # chose already: waits for the others, its token is ignored
            ended = self.seats[agent].write(tokens[agent])
            if ended is None:
                continue
            if self._talking:
                self._messages[agent] = plain_text(self.seats[agent].response(), self.tokenizer)
                self._chosen[agent] = -1
                continue
            move = self.rules.parse(self.seats[agent].response()) if ended == "stop" else None
            if move is None:
                rewards[agent] += self.invalid_penalty
                infos[agent]["valid_move"] = False
                legal = np.ones(len(self.rules.move_words), dtype=bool)
                truncated |= not self.seats[agent].reply(self.rules.invalid_reply(legal), legal)
            else:
                self._chosen[agent] = move
                infos[agent].update(valid_move=True, move=move)
        terms = dict.fromkeys(live, False)
        truncs = dict.fromkeys(live, truncated)
        if not truncated and len(self._chosen) == len(live):
            if self._talking:
                truncated = self._pass_messages()
            else:
                truncated = self._play_round(rewards, terms, truncs)
        self._steps += 1
        if truncated:
            truncs = dict.fromkeys(live, True)
        elif self.max_cycles is not None and self._steps >= self.max_cycles:
            truncs = {a: truncs[a] or not terms[a] for a in live}
        observations = self._observations()
        self.agents = [a for a in live if not (terms[a] or truncs[a])]
        return observations, rewards, terms, truncs, self._with_masks(infos, observations)

    def _pass_messages(self) -> bool:
        """Show each player the other's message and ask for moves; True when one is full."""
        legal = np.ones(len(self.rules.move_words), dtype=bool)
        full = False
        for agent in self.agents:
            other = next(a for a in self.agents if a != agent)
            text = f"Your opponent says: {self._messages[other]}\n{self.MOVE_ASK}"
            full |= not self.seats[agent].reply(text, legal)
        self._chosen, self._messages, self._talking = {}, {}, False
        return full

    def _play_round(self, rewards: dict, terms: dict, truncs: dict) -> bool:
        """Step the real env with every chosen move; True when a conversation is full."""
        _, round_rewards, round_terms, round_truncs, _ = self.classic_env.step(self._chosen)
        self._chosen, self._talking = {}, self.talk
        full = False
        legal = np.ones(len(self.rules.move_words), dtype=bool)
        ask = self.TALK_ASK if self.talk else ""
        for agent in rewards:
            rewards[agent] += float(round_rewards[agent])
            terms[agent], truncs[agent] = bool(round_terms[agent]), bool(round_truncs[agent])
            if not (terms[agent] or truncs[agent]):
                text = self.rules.board(self._aec, agent) + ask
                full |= not self.seats[agent].reply(text, legal)
        return full

    def _check_actions(self, actions: Any) -> dict[str, int]:
        """Every live player's token, or a clear error before anything changes."""
        if not self.agents:
            raise RuntimeError("step() called after the game ended (or before reset()); "
                               "call reset()")
        if not isinstance(actions, dict):
            raise TypeError(f"actions must be a dict of one token id per live agent "
                            f"{self.agents}, got {type(actions).__name__}")
        missing = sorted(set(self.agents) - set(actions))
        extra = sorted(set(actions) - set(self.agents))
        if missing or extra:
            raise ValueError(f"actions must name exactly the live agents {self.agents}; "
                             f"missing {missing}, not playing {extra}")
        return {a: check_token(actions[a], self.tokenizer.vocab_size) for a in self.agents}

    def _observations(self) -> dict[str, dict[str, Any]]:
        observations = {a: self.seats[a].observation() for a in self.agents}
        if self.constrained:
            for agent in self.agents if self._talking else ():
                observations[agent]["action_mask"] = np.ones(self.tokenizer.vocab_size, np.int8)
            for agent in self._chosen:
                mask = np.zeros(self.tokenizer.vocab_size, dtype=np.int8)
                mask[self.tokenizer.eos_token_id] = 1
                observations[agent]["action_mask"] = mask
        return {a: game_observation(obs) for a, obs in observations.items()}

    def _with_masks(self, infos: dict[str, dict[str, Any]], observations: dict[str, Any]
                    ) -> dict[str, dict[str, Any]]:
        """``infos`` with each player's ``action_mask`` too, when constrained.

        AgileRL's multi-agent algorithms read a Parallel env's masks from ``infos[agent]``.
        """
        if self.constrained:
            for agent, info in infos.items():
                info["action_mask"] = observations[agent]["action_mask"]
        return infos

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        return self._show("\n\n".join(f"== {a} ==\n{self.seats[a].text()}"
                                       for a in self.possible_agents))

    def close(self) -> None:
        self.classic_env.close()
