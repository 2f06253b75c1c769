"""Gymnasium's FrozenLake as a multi-turn token env, stepping a real ``FrozenLake-v1``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from llm_gym.envs.classic_text import ClassicTextEnv
from llm_gym.tokenizers import Tokenizer


class FrozenLakeTextEnv(ClassicTextEnv):
    """Gymnasium's ``FrozenLake-v1`` played one token at a time.

    ## Description
    The env holds a real ``FrozenLake-v1`` (made with ``gym.make``, so its dynamics, slipperiness
    and 100-step limit are Gymnasium's own) and shows its map as text each turn: `S` start,
    `F` frozen, `H` hole, `G` goal, `A` the agent. The agent answers `left`, `down`, `right` or
    `up`. The same seed and actions give the same return as ``FrozenLake-v1``.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    As every token env: `input_ids`, `attention_mask`, `agent_mask`, plus `action_mask` when
    `constrained=True`.

    ## Rewards
    FrozenLake's: 1 on reaching the goal, else 0; `invalid_penalty` (default -0.1) for a reply
    that is not an action word.

    ## Episode End
    Terminated in a hole or at the goal; truncated after FrozenLake's 100 steps, when a turn runs
    past `max_new_tokens`, or when the conversation fills `max_length`.

    ## Arguments
    `map_name` ("4x4" or "8x8"), `is_slippery`, `desc`, plus the token-env arguments.

    ## Version History
    * v0: initial version.
    """

    action_words = ("left", "down", "right", "up")  # FrozenLake's action order

    def __init__(
        self,
        tokenizer: str | Tokenizer | Any | None = None,
        map_name: str = "4x4",
        is_slippery: bool = True,
        desc: list[str] | None = None,
        constrained: bool = False,
        invalid_penalty: float = -0.1,
        max_length: int = 8192,
        max_new_tokens: int = 8,
        render_mode: str | None = None,
    ) -> None:
        classic = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=is_slippery,
                           desc=desc, disable_env_checker=True)
        self._map = ["".join(c.decode() for c in row) for row in classic.unwrapped.desc.tolist()]
        self.is_slippery = bool(is_slippery)
        super().__init__(classic, tokenizer, constrained, invalid_penalty, max_length,
                         max_new_tokens, render_mode)

    def instructions(self) -> str:
        slip = (" The ice is slippery: you may move in a direction other than the one you chose."
                if self.is_slippery else "")
        return (
            "You cross a frozen lake on a grid. S is the start, F frozen ice, H a hole, G the "
            "goal, A is you. Each turn answer with exactly one word: left, down, right or up. "
            "Reaching G pays 1; falling into a hole ends the game with 0." + slip
        )

    def describe(self, observation: Any) -> str:
        ncol = len(self._map[0])
        row, col = divmod(int(observation), ncol)
        lines = [line[:col] + "A" + line[col + 1:] if r == row else line
                 for r, line in enumerate(self._map)]
        return "\n".join(lines)


def make_vec(num_envs: int, **kwargs: Any):
    """Vector entry point: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")``."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(FrozenLakeTextEnv, num_envs, **kwargs)
