"""The left/right walk as a multi-turn token env: the same MDP, stepped through text."""

from __future__ import annotations

from typing import Any

from llm_gym.envs.classic_text import ClassicTextEnv
from llm_gym.envs.left_right import MIN_POSITION, LeftRightEnv
from llm_gym.tokenizers import Tokenizer

MAX_EPISODE_STEPS = 20


class LeftRightTextEnv(ClassicTextEnv):
    """The left/right walk (``llm_gym/LeftRight-v0``) played one token at a time.

    ## Description
    Each user turn states the position; the agent answers `left`, `stay` or `right` and ends its
    turn. The env steps a real :class:`LeftRightEnv`, so for the same actions both faces give
    the same rewards, flags and return.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask` (each `(max_length,)`), plus
    `action_mask` `(vocab_size,)` when `constrained=True`.

    ## Rewards
    The walk's reward on the last token of each valid turn (+10 goal, -5 trap, -1 otherwise);
    `invalid_penalty` (default -1) for a reply that is not one of the three words; 0 elsewhere.

    ## Episode End
    Terminated on reaching the goal; truncated after 20 walk steps, when a turn runs past
    `max_new_tokens`, or when the conversation fills `max_length`.

    ## Arguments
    `tokenizer`, `constrained`, `invalid_penalty`, `max_length`, `max_new_tokens`, `render_mode`.

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/LeftRightText-v0")
        >>> obs, info = env.reset(seed=0)
        >>> tok = env.unwrapped.tokenizer
        >>> for t in tok.encode("right") + [tok.eos_token_id]:
        ...     obs, reward, terminated, truncated, info = env.step(t)
        >>> reward
        -5.0
    """

    action_words = LeftRightEnv.action_names

    def __init__(
        self,
        tokenizer: str | Tokenizer | Any | None = None,
        constrained: bool = False,
        invalid_penalty: float = -1.0,
        # 20 valid turns take at most 1,315 byte tokens (prompt 295, <= 51 per turn): 1024 cut
        # episodes off at turn 16, before the twin's time limit. Not more than needed: a vector
        # env copies max_length tokens per env and step.
        max_length: int = 1536,
        max_new_tokens: int = 8,
        render_mode: str | None = None,
    ) -> None:
        classic = LeftRightEnv(max_steps=MAX_EPISODE_STEPS)
        super().__init__(classic, tokenizer, constrained, invalid_penalty, max_length,
                         max_new_tokens, render_mode)

    def instructions(self) -> str:
        return (
            "You walk on a line of positions -2, -1, 0, 1, 2. Each turn answer with exactly one "
            "word: left, stay or right. Reaching position 2 pays +10 and ends the game; landing "
            "on position 1 costs -5; every other move costs -1. Maximize your total reward."
        )

    def describe(self, observation: Any) -> str:
        return f"You are at position {int(observation) + MIN_POSITION}."


def make_vec(num_envs: int, **kwargs: Any):
    """Vector entry point: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")``."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(LeftRightTextEnv, num_envs, **kwargs)
