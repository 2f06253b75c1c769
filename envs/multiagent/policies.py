"""Players for the other seats of a game: random, minimax, SB3 models, llm_gym agents, callables.

A policy is any callable ``policy(turn) -> move`` where ``turn`` is a :class:`Turn` (the real
PettingZoo env, the seat, a random generator) and ``move`` a PettingZoo action. Classic
players read the PettingZoo observation (the classic face); :class:`AgentPolicy` plays an LLM
agent on the token face, keeping that seat's conversation exactly as the token env would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from pettingzoo import AECEnv

from llm_gym.envs.multiagent.games import GameRules, legal_moves
from llm_gym.envs.multiagent.seat import SeatConversation


class Forfeit(Exception):  # noqa: N818 - a game event, not a bug
    """A player could not name a legal move: it loses the game."""


@dataclass
class Turn:
    """One decision: the seat ``agent`` must move in the real PettingZoo ``env``.

    Attributes:
        env: the PettingZoo AEC env (the classic face); policies must not step it.
        agent: the seat to move.
        rules: the game's text and move words.
        first: whether this is the seat's first move of the game.
        rng: the game's generator (all randomness of a policy comes from it).
    """

    env: AECEnv
    agent: str
    rules: GameRules
    first: bool
    rng: np.random.Generator

    @property
    def observation(self) -> Any:
        """The PettingZoo observation of the seat (a dict with ``action_mask``, or an array)."""
        return self.env.observe(self.agent)

    @property
    def legal(self) -> np.ndarray:
        """Boolean mask of the legal moves."""
        return legal_moves(self.env, self.agent)


Policy = Callable[[Turn], int]


def random_policy(turn: Turn) -> int:
    """A uniformly random legal move."""
    return int(turn.rng.choice(np.flatnonzero(turn.legal)))


# ---------------------------------------------------------------------------- minimax
_TTT_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8),
              (2, 4, 6))


@cache
def _ttt_value(board: tuple[int, ...]) -> int:
    """Game value for the player to move (+1 win, 0 draw, -1 loss); 1 = to move, 2 = other."""
    if any(all(board[i] == 2 for i in line) for line in _TTT_LINES):
        return -1  # the player who just moved completed a line
    if 0 not in board:
        return 0
    return max(-_ttt_value(_ttt_after(board, i)) for i in range(9) if board[i] == 0)


def _ttt_after(board: tuple[int, ...], cell: int) -> tuple[int, ...]:
    """The board seen by the opponent after the player to move takes ``cell``."""
    swapped = [0 if v == 0 else 3 - v for v in board]
    swapped[cell] = 2
    return tuple(swapped)


def _board_from_planes(planes: np.ndarray) -> tuple[int, ...]:
    return tuple((planes[..., 0] + 2 * planes[..., 1]).reshape(-1).tolist())


def _c4_wins(board: list[int], cell: int, piece: int) -> bool:
    """Whether the piece just put at ``cell`` of the 6x7 board completes four in a row."""
    row, col = divmod(cell, 7)
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            r, c = row + sign * dr, col + sign * dc
            while 0 <= r < 6 and 0 <= c < 7 and board[r * 7 + c] == piece:
                count, r, c = count + 1, r + sign * dr, c + sign * dc
        if count >= 4:
            return True
    return False


def _c4_drop(board: list[int], col: int) -> int:
    return max(r * 7 + col for r in range(6) if board[r * 7 + col] == 0)


def _c4_value(board: list[int], me: int, depth: int) -> int:
    """Depth-limited negamax for the player ``me`` to move: +1 forced win, -1 forced loss."""
    if depth == 0:
        return 0
    best = -2 if any(board[c] == 0 for c in range(7)) else 0
    for col in (c for c in range(7) if board[c] == 0):
        cell = _c4_drop(board, col)
        board[cell] = me
        value = 1 if _c4_wins(board, cell, me) else -_c4_value(board, 3 - me, depth - 1)
        board[cell] = 0
        best = max(best, value)
        if best == 1:
            break
    return best


class MinimaxPolicy:
    """A minimax player: perfect for tic-tac-toe, ``depth``-ply negamax for Connect Four.

    Ties between equally good moves are broken with the game's generator, so a tournament sees
    varied games. Tic-tac-toe minimax never loses.

    Example:
        >>> from llm_gym.envs.multiagent.games import TICTACTOE
        >>> env = TICTACTOE.make_classic()
        >>> env.reset()
        >>> for cell in (0, 4, 1):  # X takes cells 1 and 2, O took 5: O must block at 3
        ...     env.step(cell)
        >>> MinimaxPolicy()(Turn(env, "player_2", TICTACTOE, False, np.random.default_rng(0)))
        2
    """

    def __init__(self, depth: int = 4) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth

    def __call__(self, turn: Turn) -> int:
        legal = np.flatnonzero(turn.legal)
        if turn.rules.name == "tictactoe":
            board = _board_from_planes(turn.observation["observation"])
            values = [-_ttt_value(_ttt_after(board, int(m))) for m in legal]
        elif turn.rules.name == "connect_four":
            board = list(_board_from_planes(turn.observation["observation"]))
            values = [self._c4_move_value(board, int(m)) for m in legal]
        else:
            raise ValueError(f"minimax plays tictactoe and connect_four, not {turn.rules.name!r}; "
                             "use 'random' or a callable(turn) -> move")
        best = np.flatnonzero(np.asarray(values) == max(values))
        return int(legal[turn.rng.choice(best)])

    def _c4_move_value(self, board: list[int], col: int) -> int:
        cell = _c4_drop(board, col)
        board[cell] = 1
        value = 1 if _c4_wins(board, cell, 1) else -_c4_value(board, 2, self.depth - 1)
        board[cell] = 0
        return value


# ---------------------------------------------------------------------------- learned players
def classic_observation(observation: Any) -> np.ndarray:
    """The classic single-agent view's observation of a PettingZoo observation (flattened)."""
    if isinstance(observation, dict):
        observation = observation["observation"]
    return np.asarray(observation).reshape(-1)


class SB3Policy:
    """A Stable-Baselines3 model trained on the classic single-agent view of the game.

    MaskablePPO (sb3-contrib) gets the legal-move mask; other models may pick an illegal move,
    which the game then rejects.
    """

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model, self.deterministic = model, deterministic

    def __call__(self, turn: Turn) -> int:
        obs = classic_observation(turn.observation)
        if type(self.model).__name__.startswith("Maskable"):
            action, _ = self.model.predict(obs, deterministic=self.deterministic,
                                           action_masks=turn.legal)
        else:
            action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return int(np.asarray(action).reshape(-1)[0])


class AgentPolicy:
    """An llm_gym token agent (anything with ``predict(obs) -> token``) playing on the token face.

    It keeps its seat's conversation as the token env does (rules and board, its tokens, then
    the board after each opponent move, all appended) and asks ``agent.predict`` for one token
    at a time until the end-of-turn token or ``max_new_tokens``. A reply that names no legal
    move is answered as the token env answers it; after ``max_tries`` such replies (or when
    the conversation is full) the player forfeits (:class:`Forfeit`). One instance can serve
    several games at once (a vector env's rows): it keeps one conversation per PettingZoo env.

    Args:
        agent: e.g. a :class:`~llm_gym.agents.grpo.GRPOAgent` (trained or loaded).
        tokenizer: the token env's tokenizer (``agent.tokenizer`` when omitted).
        constrained: give the agent the legal-move ``action_mask`` (as ``constrained=True``).
        deterministic: greedy tokens (True) or sampled ones.
    """

    def __init__(self, agent: Any, tokenizer: Any = None, constrained: bool = True,
                 deterministic: bool = True, max_length: int = 3072, max_new_tokens: int = 10,
                 max_tries: int = 3) -> None:
        self.agent, self.deterministic = agent, deterministic
        self.tokenizer = tokenizer if tokenizer is not None else agent.tokenizer
        self.constrained, self.max_tries = constrained, max_tries
        self.max_length, self.max_new_tokens = max_length, max_new_tokens
        self._seats: dict[int, SeatConversation] = {}

    def __call__(self, turn: Turn) -> int:
        seat = self._seat(turn)
        legal = turn.legal
        if turn.first:
            seat.clear()
            seat.start(turn.rules.opening(turn.env, turn.agent), legal)
        elif not seat.reply(turn.rules.board(turn.env, turn.agent), legal):
            raise Forfeit("conversation full")
        for _ in range(self.max_tries):
            reply, finished = self._generate(seat)
            move = turn.rules.parse(reply) if finished else None
            if move is not None and legal[move]:
                return move
            if not seat.reply(turn.rules.invalid_reply(legal), legal):
                break
        raise Forfeit(f"no legal move in {self.max_tries} tries")

    def _seat(self, turn: Turn) -> SeatConversation:
        key = id(turn.env)
        if key not in self._seats:
            self._seats[key] = SeatConversation(self.tokenizer, self.max_length,
                                                self.max_new_tokens, turn.rules.move_words,
                                                self.constrained)
        return self._seats[key]

    def _generate(self, seat: SeatConversation) -> tuple[str, bool]:
        """One reply, token by token; whether it ended with the end-of-turn token."""
        while True:
            obs = seat.observation()
            # Only the written prefix: a causal LM's next-token logits do not depend on the
            # padding after it, and the forward pass then costs the conversation, not
            # max_length (4 tiny-LM games at max_length 512 on a loaded 2-core machine: 2.3 s
            # before, 1.4 s after).
            used = seat.length
            obs = {k: v if k == "action_mask" else v[:used] for k, v in obs.items()}
            token, _ = self.agent.predict(obs, deterministic=self.deterministic)
            ended = seat.write(int(token))
            if ended is not None:
                return seat.response(), ended == "stop"


POLICY_NAMES = ("random", "minimax")


def make_policy(spec: Any) -> Policy:
    """A policy from ``"random"``, ``"minimax"``, an SB3 model, an llm_gym agent or a callable.

    Example:
        >>> make_policy("random") is random_policy
        True
    """
    if isinstance(spec, str):
        if spec == "random":
            return random_policy
        if spec == "minimax":
            return MinimaxPolicy()
        raise ValueError(f"unknown opponent {spec!r}; use one of {list(POLICY_NAMES)}, an SB3 "
                         "model, an llm_gym agent, or a callable(turn) -> move")
    if hasattr(spec, "predict"):
        from stable_baselines3.common.base_class import BaseAlgorithm

        return SB3Policy(spec) if isinstance(spec, BaseAlgorithm) else AgentPolicy(spec)
    if callable(spec):
        return spec
    raise TypeError(f"an opponent must be 'random', 'minimax', an SB3 model, an llm_gym agent "
                    f"or a callable(turn) -> move, got {type(spec).__name__}")
