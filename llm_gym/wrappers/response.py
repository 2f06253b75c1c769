"""Read the agent's finished turn back from a token observation.

Wrappers that score a response (format, length) need its text and tokens. The token
observation already holds them: the agent's tokens are the ones with ``agent_mask == 1``, and
the last run of them is the turn that just ended. Reading them there (instead of adding an info
entry to every env) keeps the core small and works for every token env, single- or multi-turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.tokenizers import Tokenizer

TOKEN_KEYS = ("input_ids", "attention_mask", "agent_mask")


@dataclass(frozen=True)
class Response:
    """One finished agent turn.

    Attributes:
        text: the reply, decoded without special tokens (what the env's scorer saw).
        token_ids: the reply's tokens, without the end-of-turn token.
        num_generated: tokens the agent emitted in the turn, the end-of-turn token included.
        finished: whether the turn ended with an end-of-turn token (False: cut at the budget).
    """

    text: str
    token_ids: tuple[int, ...]
    num_generated: int
    finished: bool


def has_token_observations(env: gym.Env) -> bool:
    """Whether ``env`` observes token ids with an ``agent_mask`` (any llm_gym token env)."""
    space = env.observation_space
    return isinstance(space, gym.spaces.Dict) and all(k in space.spaces for k in TOKEN_KEYS)


def require_token_env(env: gym.Env, wrapper: str) -> Tokenizer:
    """The tokenizer of ``env``; raise a TypeError naming ``wrapper`` if it is no token env."""
    tokenizer = getattr(env.unwrapped, "tokenizer", None)
    if not has_token_observations(env) or tokenizer is None:
        raise TypeError(
            f"{wrapper} reads the agent's reply from a token observation (input_ids, "
            f"attention_mask, agent_mask), but {env.unwrapped!r} has observation space "
            f"{env.observation_space}. Use it on an llm_gym token env, below any TextInterface"
        )
    return tokenizer


def turn_ended(obs: dict[str, np.ndarray], terminated: bool, truncated: bool) -> bool:
    """Whether the step that produced ``obs`` ended an agent turn.

    During a turn the last token is always the agent's; when a turn ends the env either ends the
    episode or appends its reply (whose tokens are not the agent's).
    """
    if terminated or truncated:
        return True
    length = int(np.count_nonzero(obs["attention_mask"]))
    return length > 0 and not obs["agent_mask"][length - 1]


def last_response(obs: dict[str, np.ndarray], tokenizer: Tokenizer) -> Response | None:
    """The last agent turn in ``obs`` (the one a step just ended), or None if there is none.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/Arithmetic-v0")
        >>> _ = env.reset(seed=0)
        >>> tok = env.unwrapped.tokenizer
        >>> for t in tok.encode("12") + [tok.eos_token_id]:
        ...     obs, *_ = env.step(t)
        >>> last_response(obs, tok).text
        '12'
    """
    length = int(np.count_nonzero(obs["attention_mask"]))
    agent = np.asarray(obs["agent_mask"][:length], dtype=bool)
    written = np.flatnonzero(agent)
    if written.size == 0:
        return None
    end = int(written[-1]) + 1
    others = np.flatnonzero(~agent[:end])
    start = int(others[-1]) + 1 if others.size else 0
    ids = [int(t) for t in obs["input_ids"][start:end]]
    finished = ids[-1] in tokenizer.stop_token_ids
    reply = ids[:-1] if finished else ids
    return Response(
        text=tokenizer.decode(reply, skip_special_tokens=True),
        token_ids=tuple(reply), num_generated=len(ids), finished=finished,
    )


def add_reward_components(
    info: dict[str, Any], reward: float, terms: dict[str, float], scale: float = 1.0
) -> tuple[float, dict[str, Any]]:
    """Add named reward terms to a step's reward and record them in ``info``.

    ``info["reward_components"]`` maps names to what each contributed to the returned reward, so
    its values always sum to that reward. The first shaping wrapper records the env's own reward
    as ``"env"``; ``scale`` multiplies everything below (RewardTerms' ``"env"`` weight). A name
    that is already there (two wrappers of one kind) accumulates.

    Returns:
        The new reward and a copy of ``info`` with the components.
    """
    below = info.get("reward_components") or {"env": float(reward)}
    components = {name: scale * value for name, value in below.items()}
    total = scale * float(reward)
    for name, value in terms.items():
        components[name] = components.get(name, 0.0) + value
        total += value
    return total, {**info, "reward_components": components}
