"""Turn-based PettingZoo games played one token at a time (an AEC env).

The token face holds the real PettingZoo env and steps *it* when a player's reply names a move,
so the rules, the rewards and the end of the game are PettingZoo's own; the same moves give
the same outcome in both faces (``tests/envs/test_multiagent_envs.py`` checks it move by move).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pettingzoo import AECEnv

from llm_gym.envs.multiagent.games import GameRules, legal_moves
from llm_gym.envs.multiagent.seat import TokenSeats, game_observation
from llm_gym.tokenizers import Tokenizer


def check_token(action: Any, vocab_size: int) -> int:
    """``action`` as a token id, or a clear error (nothing has changed yet)."""
    if isinstance(action, np.ndarray):
        if action.shape != ():
            raise ValueError(f"action must be one token id (a scalar), got shape {action.shape}")
        action = action[()]
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise TypeError(f"action must be an integer token id in [0, {vocab_size}), got "
                        f"{type(action).__name__} {action!r}")
    if not 0 <= action < vocab_size:
        raise ValueError(f"action {action} is outside the vocabulary [0, {vocab_size})")
    return int(action)


class TokenTurnGame(TokenSeats, AECEnv):
    """A turn-based PettingZoo game whose players write their moves token by token.

    Each seat's observation is its own conversation (the rules and the board, then its replies
    and the board after every opponent move) as fixed-shape token arrays. With
    ``constrained=True`` it is PettingZoo's classic layout, ``{"observation": <those arrays>,
    "action_mask": <over the vocabulary>}`` (only tokens that spell a *legal* move word, then
    the end-of-turn token), which Tianshou's ``PettingZooEnv`` and AgileRL read. The action is
    one token id. When the current player ends its turn (end-of-turn token, or
    ``max_new_tokens`` tokens), its reply is parsed: a legal move steps the PettingZoo env;
    anything else costs ``invalid_penalty``, leaves the board untouched, and the player is
    asked again (PettingZoo's own ``env()`` would end the game on an illegal move; a token
    player gets a second chance, as a human at a board would).
    A conversation that fills ``max_length`` truncates the game for every player.

    Args:
        rules: the game's text (:mod:`llm_gym.envs.multiagent.games`).
        tokenizer: ``None``/``"byte"``, a hub id or path, or a tokenizer object.
        constrained: add an ``action_mask`` of legal move words (PettingZoo's classic layout).
        invalid_penalty: reward of a reply that names no legal move.
        max_length, max_new_tokens: as for every token env.
        render_mode: ``"ansi"`` (returns the current player's conversation), ``"human"``
            (prints it) or ``None``.
        game_kwargs: keyword arguments of the PettingZoo ``raw_env``.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "human"], "is_parallelizable": False,
                                "render_fps": 1, "name": "token_turn_game"}

    def __init__(self, rules: GameRules, tokenizer: str | Tokenizer | Any | None = None,
                 constrained: bool = False, invalid_penalty: float = -0.1,
                 max_length: int = 1024, max_new_tokens: int = 4,
                 render_mode: str | None = None, game_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._seat_players(rules, lambda: rules.make_classic(**(game_kwargs or {})), tokenizer,
                           constrained, invalid_penalty, max_length, max_new_tokens, render_mode)

    def observe(self, agent: str) -> dict[str, Any]:
        return game_observation(self.seats[agent].observation())

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self.classic_env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos: dict[str, dict[str, Any]] = {a: {} for a in self.agents}
        for seat in self.seats.values():
            seat.clear()
        self.agent_selection = self.classic_env.agent_selection
        self._skip_agent_selection = None
        self._show_board(self.agent_selection)

    def step(self, action: Any) -> None:
        if not self.agents:
            raise RuntimeError("step() called after the game ended (or before reset()); "
                               "call reset()")
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        token = check_token(action, self.tokenizer.vocab_size)
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        ended = self.seats[agent].write(token)
        if ended is not None:
            self._end_turn(agent, finished=ended == "stop")
        self._accumulate_rewards()

    def _end_turn(self, agent: str, finished: bool) -> None:
        legal = legal_moves(self.classic_env, agent)
        move = self.rules.parse(self.seats[agent].response()) if finished else None
        if move is None or not legal[move]:
            self.rewards[agent] = self.invalid_penalty
            self.infos[agent] = {"valid_move": False}
            if not self.seats[agent].reply(self.rules.invalid_reply(legal), legal):
                self._truncate_all()
            return
        self.infos[agent] = {"valid_move": True, "move": move}
        self.classic_env.step(move)
        for a in self.agents:
            self.rewards[a] += float(self.classic_env.rewards.get(a, 0.0))
        if any(self.classic_env.terminations.values()) or any(
                self.classic_env.truncations.values()):
            self.terminations = {a: bool(self.classic_env.terminations[a]) for a in self.agents}
            self.truncations = {a: bool(self.classic_env.truncations[a]) for a in self.agents}
            return
        self.agent_selection = self.classic_env.agent_selection
        self._show_board(self.agent_selection)

    def _show_board(self, agent: str) -> None:
        """Open or continue ``agent``'s conversation with the board it now has to play on."""
        seat, legal = self.seats[agent], legal_moves(self.classic_env, agent)
        if not seat.started:
            seat.start(self.rules.opening(self.classic_env, agent), legal)
        elif not seat.reply(self.rules.board(self.classic_env, agent), legal):
            self._truncate_all()

    def _truncate_all(self) -> None:
        for a in self.agents:
            self.truncations[a] = True
            self.infos[a] = {**self.infos[a], "truncated_reason": "max_length"}

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        return self._show(self.seats[self.agent_selection].text() if self.agents else "")

    def close(self) -> None:
        self.classic_env.close()
