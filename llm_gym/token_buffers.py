"""The token conversations of token envs: fixed-size arrays, appended to, never re-tokenized.

:class:`TokenBuffers` is the one place where agent tokens are written and the end of an agent
turn is decided, for a single env (one row), the batched vector env (one row per env) and the
seats of a game (DESIGN.md, Token env).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


class TokenBuffers:
    """The token conversations of ``num_rows`` envs, and the one rule for when a turn ends.

    A single env uses one row; :class:`llm_gym.vector.TokenVectorEnv` owns one batch and lends a
    row to each sub-env; a game seat keeps one row per player. All of them append the agent's
    tokens with :meth:`write` (one token) or :meth:`write_batch` (one token for each of many
    rows), and the env's turns (prompt, replies, tool results) with :meth:`append_env_turn`.

    A turn ends on a stop token (finished), or unfinished when it reaches ``max_new_tokens``
    tokens or the row is full. Nothing is ever re-tokenized: rows only grow until cleared.

    Example:
        >>> buf = TokenBuffers(2, max_length=8, pad_token_id=0, stop_token_ids={9},
        ...                    max_new_tokens=3)
        >>> buf.append_env_turn(0, [1, 2]), buf.append_env_turn(1, [1, 2])
        (True, True)
        >>> buf.write_batch(np.array([0, 1]), np.array([5, 9]))
        [(1, True)]
        >>> buf.turn_ids(0), buf.write(0, 6), buf.write(0, 7)
        ([5], None, 'budget')
    """

    def __init__(self, num_rows: int, max_length: int, pad_token_id: int,
                 stop_token_ids: Iterable[int] = (), max_new_tokens: int | None = None) -> None:
        self.input_ids = np.full((num_rows, max_length), pad_token_id, dtype=np.int64)
        self.attention_mask = np.zeros((num_rows, max_length), dtype=np.int8)
        self.agent_mask = np.zeros((num_rows, max_length), dtype=np.int8)
        self.length = np.zeros(num_rows, dtype=np.int64)       # tokens in the conversation
        self.turn_start = np.zeros(num_rows, dtype=np.int64)   # where the agent's turn began
        self.turn_tokens = np.zeros(num_rows, dtype=np.int64)  # agent tokens in the current turn
        self.pad_token_id = pad_token_id
        self.max_length = max_length
        self.max_new_tokens = max_length if max_new_tokens is None else int(max_new_tokens)
        self.stop_token_ids = frozenset(int(t) for t in stop_token_ids)
        self._stop_ids = np.array(sorted(self.stop_token_ids), dtype=np.int64)

    @property
    def num_rows(self) -> int:
        return int(self.length.shape[0])

    def clear(self, row: int) -> None:
        # Past ``length`` a row is always padding, so only the used prefix needs clearing.
        used = int(self.length[row])
        self.input_ids[row, :used] = self.pad_token_id
        self.attention_mask[row, :used] = 0
        self.agent_mask[row, :used] = 0
        self.length[row] = self.turn_start[row] = self.turn_tokens[row] = 0

    def append(self, row: int, tokens: Sequence[int], by_agent: bool) -> None:
        """Write ``tokens`` after row ``row``'s conversation (the caller checked they fit)."""
        start = int(self.length[row])
        end = start + len(tokens)
        self.input_ids[row, start:end] = tokens
        self.attention_mask[row, start:end] = 1
        if by_agent:  # past ``length`` agent_mask is 0 already (see clear)
            self.agent_mask[row, start:end] = 1
        self.length[row] = end

    def append_env_turn(self, row: int, tokens: Sequence[int]) -> bool:
        """Append the env's turn and open the agent's next one; False if it and a token won't fit.

        When False nothing is appended: the caller ends the episode as truncated.
        """
        if int(self.length[row]) + len(tokens) + 1 > self.max_length:
            return False
        self.append(row, tokens, by_agent=False)
        self.turn_start[row] = self.length[row]
        self.turn_tokens[row] = 0
        return True

    def write(self, row: int, token: int) -> str | None:
        """Append one agent token to ``row``: ``"stop"``/``"budget"`` if that ended the turn."""
        self.append(row, (token,), by_agent=True)
        self.turn_tokens[row] += 1
        if token in self.stop_token_ids:
            return "stop"
        return "budget" if self._over_budget(self.turn_tokens[row], self.length[row]) else None

    def write_batch(self, rows: np.ndarray, tokens: np.ndarray) -> list[tuple[int, bool]]:
        """Append one agent token to each of ``rows``; ``(row, finished)`` for each turn that ended.

        ``finished`` is True for a stop token and False for a turn cut off by its budget.
        """
        pos = self.length[rows]
        self.input_ids[rows, pos] = tokens
        self.attention_mask[rows, pos] = 1
        self.agent_mask[rows, pos] = 1
        self.length[rows] = pos + 1
        self.turn_tokens[rows] += 1
        stopped = self._is_stop(tokens)
        ended = stopped | self._over_budget(self.turn_tokens[rows], pos + 1)
        return [(int(rows[k]), bool(stopped[k])) for k in np.flatnonzero(ended)]

    def _is_stop(self, tokens: np.ndarray) -> np.ndarray:
        """Which ``tokens`` are stop tokens (``==`` per stop id: np.isin costs more for 1-2)."""
        if self._stop_ids.size > 4:
            return np.isin(tokens, self._stop_ids)
        stopped = np.zeros(tokens.shape, dtype=bool)
        for stop in self._stop_ids.tolist():
            stopped |= tokens == stop
        return stopped

    def _over_budget(self, turn_tokens: Any, length: Any) -> Any:
        """The turn is cut off: its token budget is spent or the row is full (scalars or arrays)."""
        return (turn_tokens >= self.max_new_tokens) | (length >= self.max_length)

    def turn_ids(self, row: int) -> list[int]:
        """The ids the agent wrote in ``row``'s current turn (its stop token included)."""
        return self.input_ids[row, self.turn_start[row]:self.length[row]].tolist()

    def conversation_ids(self, row: int) -> list[int]:
        """Every id of ``row``'s conversation so far."""
        return self.input_ids[row, :self.length[row]].tolist()

    def observation(self, row: int) -> dict[str, np.ndarray]:
        """Copies of ``row``'s three arrays, the observation every token env gives."""
        return {"input_ids": self.input_ids[row].copy(),
                "attention_mask": self.attention_mask[row].copy(),
                "agent_mask": self.agent_mask[row].copy()}

    def copy_row(self, row: int) -> TokenBuffers:
        """A one-row copy of ``row`` (a pickled sub-env takes its row along)."""
        own = TokenBuffers(1, self.max_length, self.pad_token_id, self.stop_token_ids,
                           self.max_new_tokens)
        for name in ("input_ids", "attention_mask", "agent_mask", "length", "turn_start",
                     "turn_tokens"):
            getattr(own, name)[0] = getattr(self, name)[row]
        return own
