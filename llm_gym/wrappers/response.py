"""What a reward term sees and gives back, and the agent's finished turn read from a token obs.

A shaping rule is one :class:`Term` object: its checked config and a per-row function of a
:class:`Step` (with any per-episode state passed in and handed back explicitly) to named reward
components. The single-env wrapper and its vector twin both hold the term and apply it, the one
to its env and the other to each row, as Gymnasium's ``wrappers/vector/vectorize_reward.py``
holds the single wrapper's function: a rule is written once, and neither twin borrows the
other's methods.

Terms that score a response (format, length) need its text and tokens. The token observation
already holds them: the agent's tokens are the ones with ``agent_mask == 1``, and the last run of
them is the turn that just ended. Reading them there (instead of adding an info entry to every
env) keeps the core small and works for every token env, single- or multi-turn. The rules that
score a reply (``OverlongPenaltyTerm``, ``FormatBonusTerm``) live here; the step rules in
:mod:`llm_gym.wrappers.shaping`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from llm_gym.rewards import math as math_rewards
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


@dataclass(frozen=True, slots=True)
class Step:
    """One row's step, as a term sees it (the single env's one row, or a vector env's row).

    Attributes:
        obs: the observation the step led to (on a vector env with
            ``autoreset_mode="SameStep"``, a finished row's last one).
        action: the action taken.
        reward: the reward of the env below.
        terminated: whether the episode ended.
        truncated: whether the episode was cut.
        info: the step's info (``SameStep``: a finished row's last one).
        reply: on a step that ended an agent turn, that turn (for terms that read replies).
    """

    obs: Any
    action: Any
    reward: Any
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    reply: Response | None = None


class Scored(NamedTuple):
    """What a term gives for one row's step."""

    terms: dict[str, float]  # named components, added to the reward
    state: Any = None  # the row's state for its next step (stateless terms: None)
    info: dict[str, Any] | None = None  # extra info entries for the row (e.g. raw scores)


class Term:
    """One shaping rule: its checked config and a function of ``(state, step)``.

    Subclasses set ``names`` and implement ``__call__``; the flags below tell the wrappers how
    little they may do per step, which is where the vector twin gets its speed.
    """

    names: tuple[str, ...] = ()  # the components it adds, for the rows where it gives 0
    scale = 1.0  # weight of the reward below it (RewardTerms' "env" weight)
    constant = False  # its value ignores state and step: computed once for all rows (numpy)
    reads_reply = False  # needs a token env: Step.reply is filled when a turn ends
    replies_only = False  # 0 unless a turn ended: called only for the rows whose turn ended
    keeps_state = False  # has per-episode state: start() sees every episode's first obs

    def start(self, obs: Any) -> Any:
        """The state of an episode that starts at ``obs``."""
        return None

    def check(self, state: Any) -> None:
        """Raise if a step cannot be scored in ``state`` (the single wrapper asks first)."""

    def fits(self, wrapper: str, env: Any, space: gym.Space) -> None:
        """Raise a TypeError naming ``wrapper`` and ``env`` if the term cannot read ``space``."""

    def __call__(self, state: Any, step: Step) -> Scored:
        """The components of one row's step."""
        raise NotImplementedError

    def rows(self, states: list[Any], steps: list[Step]) -> list[Scored | Exception]:
        """Several rows' steps (the vector twin's call); a row whose term raised gets the error.

        A term that can batch (one reward-model call for every row) overrides this.
        """
        out: list[Scored | Exception] = []
        for state, step in zip(states, steps, strict=True):
            try:
                out.append(self(state, step))
            except Exception as err:  # noqa: BLE001 - a broken term fails only its row
                out.append(err)
        return out


class ReplyTerm(Term):
    """A term of each finished agent turn: ``score(reply)`` then, 0 on other steps."""

    reads_reply = replies_only = True

    def __init__(self, name: str) -> None:
        self.name, self.names = name, (name,)

    def __call__(self, state: Any, step: Step) -> Scored:  # noqa: D102
        return Scored({self.name: 0.0 if step.reply is None else self.score(step.reply)}, state)

    def score(self, reply: Response) -> float:
        """The term of one finished reply."""
        raise NotImplementedError


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


# ---------------------------------------------------------------- the reply rules
def _answer_of(match: re.Match[str]) -> str:
    """The answer a format match holds: its group ``answer``, else the whole match."""
    if "answer" in match.re.groupindex:
        return match.group("answer") or ""
    return match.group()


class OverlongPenaltyTerm(ReplyTerm):
    """DAPO's soft overlong punishment of a reply (the ``OverlongPenalty`` wrappers' rule).

    ``budget`` is the env's ``max_new_tokens``, the default ``max_tokens``.
    """

    def __init__(self, max_tokens: int | None, cache_tokens: int | None, weight: float,
                 name: str, budget: int) -> None:
        limit = max_tokens if max_tokens is not None else budget
        cache = cache_tokens if cache_tokens is not None else max(1, limit // 4)
        if not 1 <= cache <= limit:
            raise ValueError(f"need 1 <= cache_tokens <= max_tokens, got cache_tokens={cache}, "
                             f"max_tokens={limit}")
        super().__init__(name)
        self.max_tokens, self.cache_tokens, self.weight = int(limit), int(cache), float(weight)

    def penalty(self, num_tokens: int) -> float:
        """The unweighted penalty of a reply of ``num_tokens`` tokens, in ``[-1, 0]``."""
        free = self.max_tokens - self.cache_tokens
        if num_tokens <= free:
            return 0.0
        return max(-1.0, (free - num_tokens) / self.cache_tokens)

    def score(self, reply: Response) -> float:  # noqa: D102
        return self.weight * self.penalty(reply.num_generated)


class FormatBonusTerm(ReplyTerm):
    """``bonus`` for a well-formatted reply (the ``FormatBonus`` wrappers' rule)."""

    def __init__(self, pattern: str | re.Pattern[str] | None = None, bonus: float = 0.1,
                 whole: bool = False, name: str = "format_bonus", marker: str | None = None,
                 think: bool = False) -> None:
        if (pattern is None) == (marker is None):
            raise ValueError("FormatBonus needs a pattern or a marker ('####', 'boxed' or "
                             f"'any'), exactly one of them; got pattern={pattern!r}, "
                             f"marker={marker!r}")
        if marker is not None and marker not in math_rewards.MARKERS:
            raise ValueError(f"marker must be one of {math_rewards.MARKERS}, got {marker!r}")
        if think and marker is None:
            raise ValueError("think=True needs a marker (the math format rule); a pattern "
                             "can require the think block itself")
        super().__init__(name)
        self.pattern = None if pattern is None else re.compile(pattern)
        self.marker, self.think = marker, bool(think)
        self.bonus, self.whole = float(bonus), bool(whole)

    def matches(self, text: str) -> bool:
        """Whether ``text`` earns the bonus."""
        if self.pattern is None:
            return math_rewards.format_reward(text, marker=self.marker,
                                              think=self.think).reward == 1.0
        if self.whole:
            found = self.pattern.fullmatch(text.strip())
        else:
            matches = self.pattern.finditer(text)
            found = next(matches, None)
            if next(matches, None) is not None:
                return False  # duplicated tags earn nothing
        return found is not None and bool(_answer_of(found).strip())

    def score(self, reply: Response) -> float:  # noqa: D102
        return self.bonus if self.matches(reply.text) else 0.0
