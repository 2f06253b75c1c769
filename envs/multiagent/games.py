"""The text of each game: move words, rules, and how a seat sees the board.

A :class:`GameRules` is everything the token faces, the single-agent views and the LLM players
need to turn one of PettingZoo's games into a conversation. The dynamics stay PettingZoo's: the
rules here only *read* the real env (``observe``) and name its actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pettingzoo import AECEnv

from llm_gym.token_env import chat_messages
from llm_gym.tokenizers import Message


@dataclass(frozen=True)
class GameRules:
    """How one PettingZoo game reads as text.

    Attributes:
        name: short game name (``"tictactoe"``), used by the CLI and the tournament.
        make_classic: builds the real PettingZoo AEC env (its ``raw_env``: illegal moves are
            handled by the token faces, see :mod:`llm_gym.envs.multiagent.token_aec`).
        move_words: the word of each PettingZoo action, in action order.
        rules: the system prompt's rules, ``{mark}`` is filled with the seat's mark.
        marks: each seat's mark in the board text, in ``possible_agents`` order.
        board: ``board(env, agent) -> str``, the state as that seat sees it.
    """

    name: str
    make_classic: Callable[..., AECEnv]
    move_words: tuple[str, ...]
    rules: str
    marks: tuple[str, ...]
    board: Callable[[AECEnv, str], str]

    def opening(self, env: AECEnv, agent: str, ask: str = "") -> list[Message]:
        """The conversation a seat starts with on its first turn: rules, board, then ``ask``."""
        mark = self.marks[env.possible_agents.index(agent)]
        return chat_messages(self.board(env, agent) + ask, self.rules.format(mark=mark))

    def invalid_reply(self, legal: np.ndarray) -> str:
        """The env's answer to a reply that names no legal move."""
        words = ", ".join(w for w, ok in zip(self.move_words, legal, strict=True) if ok)
        return f"Invalid move. Answer with exactly one of: {words}."

    def parse(self, reply: str) -> int | None:
        """The action a reply names (case and surrounding punctuation ignored), else ``None``.

        Linear in the reply: one strip and one dict lookup, never a regex on model text.

        Example:
            >>> TICTACTOE.parse(" 5. "), TICTACTOE.parse("five")
            (4, None)
        """
        word = reply.strip().strip(".!").strip().lower()
        return self.move_words.index(word) if word in self.move_words else None


def legal_moves(env: AECEnv, agent: str) -> np.ndarray:
    """Boolean mask of the moves ``agent`` may play now (all moves in games without a mask)."""
    obs = env.observe(agent)
    if isinstance(obs, dict) and "action_mask" in obs:
        return np.asarray(obs["action_mask"], dtype=bool)
    return np.ones(env.action_space(agent).n, dtype=bool)


# ---------------------------------------------------------------------------- tic-tac-toe
def _grid_board(env: AECEnv, agent: str, marks: tuple[str, ...], rows: int, cols: int,
                cell_numbers: bool) -> list[str]:
    """The board as lines, from the seat's own/opponent planes of PettingZoo's observation."""
    planes = env.observe(agent)["observation"]
    seat = env.possible_agents.index(agent)
    own, other = marks[seat], marks[1 - seat]
    lines = []
    for r in range(rows):
        cells = []
        for c in range(cols):
            if planes[r, c, 0]:
                cells.append(own)
            elif planes[r, c, 1]:
                cells.append(other)
            else:
                cells.append(str(r * cols + c + 1) if cell_numbers else ".")
        lines.append(" ".join(cells))
    return lines


def _tictactoe_board(env: AECEnv, agent: str) -> str:
    return "\n".join(_grid_board(env, agent, ("X", "O"), 3, 3, cell_numbers=True))


def _make_tictactoe(**kwargs: Any) -> AECEnv:
    # The game's own module: the versioned alias (tictactoe_v3) warns that PettingZoo's
    # pre-registry API is deprecated, and pettingzoo.make adds the illegal-move wrapper.
    from pettingzoo.classic.tictactoe.tictactoe import raw_env

    return raw_env(**kwargs)


TICTACTOE = GameRules(
    name="tictactoe",
    make_classic=_make_tictactoe,
    move_words=tuple(str(i) for i in range(1, 10)),
    rules=("We play tic-tac-toe. You are {mark}. Free cells show their number 1-9. Each turn "
           "answer with exactly one number: the free cell you take. Three in a row wins (+1), "
           "a loss is -1, a draw 0."),
    marks=("X", "O"),
    board=_tictactoe_board,
)


# ---------------------------------------------------------------------------- Connect Four
def _connect_four_board(env: AECEnv, agent: str) -> str:
    lines = _grid_board(env, agent, ("X", "O"), 6, 7, cell_numbers=False)
    return "\n".join([*lines, "1 2 3 4 5 6 7"])


def _make_connect_four(**kwargs: Any) -> AECEnv:
    from pettingzoo.classic.connect_four.connect_four import raw_env

    return raw_env(**kwargs)


CONNECT_FOUR = GameRules(
    name="connect_four",
    make_classic=_make_connect_four,
    move_words=tuple(str(i) for i in range(1, 8)),
    rules=("We play Connect Four. You are {mark}; '.' is empty and pieces fall to the lowest "
           "free row. Each turn answer with exactly one column number 1-7. Four in a row "
           "(across, down or diagonal) wins (+1), a loss is -1, a draw 0."),
    marks=("X", "O"),
    board=_connect_four_board,
)


# ---------------------------------------------------------------------------- rock-paper-scissors
RPS_WORDS = ("rock", "paper", "scissors")


def _rps_board(env: AECEnv, agent: str) -> str:
    raw = env.unwrapped
    last = int(env.observe(agent))
    played = (f"Your opponent played {RPS_WORDS[last]} last round. " if last < len(RPS_WORDS)
              else "")
    return f"{played}Round {raw.num_moves + 1} of {raw.max_cycles}: your move."


def _make_rps(**kwargs: Any) -> AECEnv:
    from pettingzoo.classic.rps.rps import raw_env

    return raw_env(**kwargs)


RPS = GameRules(
    name="rps",
    make_classic=_make_rps,
    move_words=RPS_WORDS,
    rules=("We play rock-paper-scissors over several rounds; both choose at once. Each round "
           "answer with exactly one word: rock, paper or scissors. Rock beats scissors, "
           "scissors beat paper, paper beats rock: a win is +1, a loss -1, a tie 0."),
    marks=("A", "B"),
    board=_rps_board,
)

# ---------------------------------------------------------------------------- prisoner's dilemma
PD_WORDS = ("cooperate", "defect")


def _pd_board(env: Any, agent: str) -> str:
    raw = env.unwrapped
    last = int(env.observe(agent))
    played = (f"Your opponent played {PD_WORDS[last]} last round. " if last < len(PD_WORDS)
              else "")
    return f"{played}Round {raw.round + 1} of {raw.num_rounds}."


def _make_pd(**kwargs: Any) -> AECEnv:
    from llm_gym.envs.multiagent.prisoners_dilemma import raw_env

    return raw_env(**kwargs)


PRISONERS_DILEMMA = GameRules(
    name="prisoners_dilemma",
    make_classic=_make_pd,
    move_words=PD_WORDS,
    rules=("We play the iterated prisoner's dilemma over several rounds; both choose at once. "
           "To choose, answer with exactly one word: cooperate or defect. Both cooperate: 3 "
           "points each. Both defect: 1 each. If one defects and the other cooperates, the "
           "defector gets 5 and the cooperator 0. Maximize your own points."),
    marks=("A", "B"),
    board=_pd_board,
)

GAMES: dict[str, GameRules] = {g.name: g for g in (TICTACTOE, CONNECT_FOUR, RPS,
                                                    PRISONERS_DILEMMA)}


def game_rules(name: str | GameRules) -> GameRules:
    """The rules of game ``name`` (one of :data:`GAMES`), or ``name`` itself if already rules.

    Example:
        >>> game_rules("tictactoe").move_words[:3]
        ('1', '2', '3')
    """
    if isinstance(name, GameRules):
        return name
    if name not in GAMES:
        raise ValueError(f"unknown game {name!r}; choose one of {sorted(GAMES)}")
    return GAMES[name]
