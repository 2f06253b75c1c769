"""Reward shaping as plain Gymnasium wrappers, for LunarLander and LLM envs alike.

Every wrapper here adds named terms to the reward and records them in
``info["reward_components"]`` (the env's own reward is ``"env"``; the values always sum to the
reward the wrapper returns), and subclasses :class:`gymnasium.utils.RecordConstructorArgs`, so
the stack shows in ``env.spec``.

Gymnasium already has the rest; use its wrappers instead of rewriting them:
``TransformReward`` (any function of the reward), ``ClipReward``, ``NormalizeReward``,
``RecordEpisodeStatistics`` (put it *below* the shaping wrappers to log the unshaped return) and
``TimeLimit``. Those do not update ``reward_components``.

Each rule is one term object (``LengthPenaltyTerm``, ``PotentialTerm``, ``WeightedTerms`` here,
the reply rules in :mod:`llm_gym.wrappers.response`; see its ``Term``): its checked config and a
per-row function. A wrapper here holds its term and applies it to its env; the vector twin of
the same name in :mod:`llm_gym.wrappers.vector` holds the same term and applies it to each row,
so the twins give the same rewards step by step.

Wrappers that read the agent's reply (``FormatBonus``, ``OverlongPenalty``, response terms of
``RewardTerms``) need a token env: stack them on the token env, then ``TextInterface`` on top if
you want a text face (it sums the rewards and components of the tokens it feeds).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, SupportsFloat

import gymnasium as gym

from llm_gym.wrappers.response import (
    FormatBonusTerm,
    OverlongPenaltyTerm,
    Scored,
    Step,
    Term,
    add_reward_components,
    last_response,
    require_token_env,
    turn_ended,
)

logger = logging.getLogger(__name__)

StepTerm = Callable[[Any, Any, SupportsFloat, bool, bool, dict], SupportsFloat]
ResponseTerm = Callable[[str], SupportsFloat]


def _finite(name: str, value: SupportsFloat) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"reward term {name!r} returned {value}; reward terms must be finite")
    return value


# ---------------------------------------------------------------- the rules, one term each
class LengthPenaltyTerm(Term):
    """``-coef`` per agent step (see :class:`LengthPenalty`)."""

    constant = True  # the vector twin's hot path stays numpy-only

    def __init__(self, coef: float = 0.001, name: str = "length_penalty") -> None:
        if coef < 0:
            raise ValueError(f"coef is the penalty per token and must be >= 0, got {coef}")
        self.coef, self.name, self.names = float(coef), name, (name,)

    def __call__(self, state: Any, step: Step | None) -> Scored:  # noqa: D102
        return Scored({self.name: -self.coef})


class PotentialTerm(Term):
    """``gamma * Phi(s') - Phi(s)``; the state is ``Phi(s)`` (see :class:`PotentialShaping`)."""

    keeps_state = True

    def __init__(self, potential: Callable[[Any], SupportsFloat], gamma: float = 0.99,
                 name: str = "potential") -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        if not callable(potential):
            raise TypeError(f"potential must be a function of an observation, got "
                            f"{type(potential).__name__} {potential!r}")
        self.potential, self.gamma, self.name, self.names = potential, float(gamma), name, (name,)

    def fits(self, wrapper: str, env: Any, space: gym.Space) -> None:  # noqa: D102
        try:
            _finite("potential", self.potential(space.sample()))
        except Exception as err:  # noqa: BLE001 - any failure means the function does not fit
            raise TypeError(
                f"{wrapper}: the potential {getattr(self.potential, '__name__', self.potential)!r}"
                f" fails on an observation of {env} ({space}): {type(err).__name__}: {err}. Give "
                "a potential of this env's observations (a token env observes a dict of "
                "token-id arrays)") from err

    def start(self, obs: Any) -> float:  # noqa: D102
        return _finite(self.name, self.potential(obs))

    def check(self, state: float | None) -> None:  # noqa: D102
        if state is None:  # the episode has not started, or it ended
            raise RuntimeError(
                "PotentialShaping.step() before reset() or after the episode ended; call reset()")

    def __call__(self, state: float | None, step: Step) -> Scored:  # noqa: D102
        self.check(state)
        # Phi of a terminal state is 0; a truncated one is not terminal, so it keeps its Phi.
        phi = 0.0 if step.terminated else _finite(self.name, self.potential(step.obs))
        ended = step.terminated or step.truncated
        return Scored({self.name: self.gamma * phi - state}, None if ended else phi)


class WeightedTerms(Term):
    """Weighted named step and response terms (see :class:`RewardTerms`)."""

    def __init__(self, terms: Mapping[str, StepTerm] | None = None,
                 response_terms: Mapping[str, ResponseTerm] | None = None,
                 weights: Mapping[str, float] | None = None, name_prefix: str = "") -> None:
        self.step_terms, self.response_terms = dict(terms or {}), dict(response_terms or {})
        names = [*self.step_terms, *self.response_terms]
        if len(set(names)) != len(names) or "env" in names:
            raise ValueError(f"term names must be unique and not 'env', got {names}")
        weights = dict(weights or {})
        unknown = set(weights) - {"env", *names}
        if unknown:
            raise ValueError(f"weights name unknown terms {sorted(unknown)}; terms are {names}")
        self.scale = float(weights.pop("env", 1.0))
        self.weights = {name: float(weights.get(name, 1.0)) for name in names}
        self.name_prefix = name_prefix
        self.names = tuple(name_prefix + name for name in names)
        self.reads_reply = bool(self.response_terms)
        self.replies_only = self.reads_reply and not self.step_terms

    def __call__(self, state: Any, step: Step) -> Scored:  # noqa: D102
        values = {name: fn(step.obs, step.action, step.reward, step.terminated, step.truncated,
                           step.info) for name, fn in self.step_terms.items()}
        for name, fn in self.response_terms.items():
            values[name] = 0.0 if step.reply is None else fn(step.reply.text)
        return Scored({self.name_prefix + name: self.weights[name] * _finite(name, value)
                       for name, value in values.items()})


# ---------------------------------------------------------------- the single-env wrappers
class _Shaping(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Holds one term and applies it to each step: adds its components to the reward.

    A term that raises ends the episode (``terminated``) with the env's reward alone and
    ``info["reward_error"] = "wrapper:<Name>:<error>"``: rollouts drop and count it.
    """

    def __init__(self, env: gym.Env, term: Term, label: str | None = None) -> None:
        gym.Wrapper.__init__(self, env)
        self.term = term
        term.fits(type(self).__name__, env, env.observation_space)
        self._tokenizer = (require_token_env(env, label or type(self).__name__)
                           if term.reads_reply else None)
        self._state: Any = None  # the term's per-episode state (term.keeps_state)
        self._failed = False

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._failed = False
        self._state = self._start(obs)
        return obs, info

    def _start(self, obs: Any) -> Any:
        return self.term.start(obs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._failed:
            raise RuntimeError(f"{type(self).__name__} ended the episode after a failed reward "
                               "term; call reset()")
        self.term.check(self._state)  # before the env moves: e.g. a step after the episode
        obs, reward, terminated, truncated, info = self.env.step(action)
        try:
            scored = self._score(obs, action, reward, terminated, truncated, info)
        except Exception as err:  # noqa: BLE001 - a broken term is a counted failure
            self._failed = True
            return obs, float(reward), True, truncated, term_failure(self, err, info)
        total, info = add_reward_components(info, float(reward), scored.terms, self.term.scale)
        return obs, total, terminated, truncated, {**info, **(scored.info or {})}

    def terms(self, obs: Any, action: Any, reward: SupportsFloat, terminated: bool,
              truncated: bool, info: dict[str, Any]) -> dict[str, float]:
        """The term's components of one step (its state moves on, as in :meth:`step`)."""
        return self._score(obs, action, reward, terminated, truncated, info).terms

    def _score(self, obs: Any, action: Any, reward: SupportsFloat, terminated: bool,
               truncated: bool, info: dict[str, Any]) -> Scored:
        term = self.term
        ended = term.reads_reply and turn_ended(obs, terminated, truncated)
        if term.replies_only and not ended:
            return Scored(dict.fromkeys(term.names, 0.0))
        reply = last_response(obs, self._tokenizer) if ended else None
        scored = term(self._state, Step(obs, action, reward, terminated, truncated, info, reply))
        self._state = scored.state
        return scored


def term_failure(wrapper: Any, err: Exception, info: dict[str, Any]) -> dict[str, Any]:
    """``info`` of a step whose reward term raised: logged, and named in ``reward_error``."""
    name = type(wrapper).__name__
    logger.warning("%s raised %s: %s; episode ended, sample dropped", name,
                   type(err).__name__, err)
    return {**info, "reward_error": f"wrapper:{name}:{type(err).__name__}"}


class RewardTerms(_Shaping):
    """A weighted sum of named reward terms; each term's share is in ``info``.

    The reward becomes ``weights["env"] * reward + sum(weights[name] * term(...))``. Step terms
    are called every step with ``(obs, action, reward, terminated, truncated, info)`` and work
    on any env; response terms are called with the reply text when an agent turn ends (token
    envs only) and count 0 on other steps.

    Args:
        env: the env to wrap.
        terms: named step terms.
        response_terms: named functions of the reply text.
        weights: per-name weights (default 1.0); ``"env"`` weighs the env's reward.
        name_prefix: prepended to every term name in ``info["reward_components"]``.

    Example:
        >>> import gymnasium as gym
        >>> env = RewardTerms(gym.make("CartPole-v1"), {"centered": lambda o, *_: -abs(o[0])},
        ...                   weights={"centered": 0.5})
        >>> _ = env.reset(seed=0)
        >>> sorted(env.step(0)[4]["reward_components"])
        ['centered', 'env']
    """

    def __init__(
        self,
        env: gym.Env,
        terms: Mapping[str, StepTerm] | None = None,
        response_terms: Mapping[str, ResponseTerm] | None = None,
        weights: Mapping[str, float] | None = None,
        name_prefix: str = "",
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, terms=terms, response_terms=response_terms, weights=weights,
            name_prefix=name_prefix, _disable_deepcopy=True)
        super().__init__(env, WeightedTerms(terms, response_terms, weights, name_prefix),
                         "RewardTerms(response_terms=...)")


class PotentialShaping(_Shaping):
    """Potential-based shaping ``F = gamma * Phi(s') - Phi(s)`` (Ng, Harada & Russell, 1999).

    Adding ``F`` leaves the optimal policy unchanged. ``Phi`` of a terminal state is 0 (on
    ``terminated``), so with ``gamma = 1`` a terminated episode's shaped return is the original
    return minus ``Phi(s0)``. On ``truncated`` the state is not terminal (the episode was cut,
    the agent bootstraps from it), so ``Phi(s')`` is kept: the offset is ``Phi(s_T) - Phi(s0)``.
    Use the agent's discount as ``gamma``.

    Args:
        env: the env to wrap.
        potential: ``Phi``, a function of an observation returning a finite float.
        gamma: discount in ``F``.
        name: the component's name in ``info["reward_components"]``.

    Example:
        >>> import gymnasium as gym
        >>> env = PotentialShaping(gym.make("CartPole-v1"), lambda o: -abs(o[2]), gamma=0.99)
        >>> _ = env.reset(seed=0)
        >>> "potential" in env.step(0)[4]["reward_components"]
        True
    """

    def __init__(self, env: gym.Env, potential: Callable[[Any], SupportsFloat],
                 gamma: float = 0.99, name: str = "potential") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, potential=potential, gamma=gamma,
                                                 name=name, _disable_deepcopy=True)
        super().__init__(env, PotentialTerm(potential, gamma, name))


class LengthPenalty(_Shaping):
    """``-coef`` for every agent step: per token in a token env, per action in a classic env.

    In a token env each step is one generated token (the end-of-turn token included), so a
    reply of ``n`` tokens costs ``coef * n``, paid as it is written.

    Example:
        >>> import gymnasium as gym
        >>> env = LengthPenalty(gym.make("CartPole-v1"), coef=0.01)
        >>> _ = env.reset(seed=0)
        >>> env.step(0)[1]
        0.99
    """

    def __init__(self, env: gym.Env, coef: float = 0.001, name: str = "length_penalty") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, coef=coef, name=name)
        super().__init__(env, LengthPenaltyTerm(coef, name))


class OverlongPenalty(_Shaping):
    """DAPO's soft overlong punishment (Yu et al., 2025), on each finished turn.

    With ``n`` generated tokens (end-of-turn included), ``L = max_tokens`` and
    ``C = cache_tokens``: 0 while ``n <= L - C``, then linear down to ``-1`` at ``n = L``, and
    ``-1`` beyond; times ``weight``.

    Args:
        env: a token env.
        max_tokens: ``L``; default the env's ``max_new_tokens``.
        cache_tokens: ``C``, the width of the soft zone; default ``max(1, L // 4)``.
        weight: scale of the penalty.
        name: the component's name.
    """

    def __init__(self, env: gym.Env, max_tokens: int | None = None,
                 cache_tokens: int | None = None, weight: float = 1.0,
                 name: str = "overlong_penalty") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, max_tokens=max_tokens,
                                                 cache_tokens=cache_tokens, weight=weight,
                                                 name=name)
        require_token_env(env, "OverlongPenalty")  # before reading its token budget
        super().__init__(env, OverlongPenaltyTerm(max_tokens, cache_tokens, weight, name,
                                                  env.unwrapped.max_new_tokens))

    def penalty(self, num_tokens: int) -> float:
        """The unweighted penalty of a reply of ``num_tokens`` tokens, in ``[-1, 0]``."""
        return self.term.penalty(num_tokens)


class FormatBonus(_Shaping):
    r"""``bonus`` when a finished reply is well formatted: one marker with an answer in it.

    With ``marker`` (``"####"``, ``"boxed"`` or ``"any"``) the reply is judged by the project's
    format rule, :func:`llm_gym.rewards.math.format_reward`: exactly one final-answer marker,
    holding a non-empty answer (``"#### "`` or ``\boxed{}`` earn nothing), and with
    ``think=True`` one non-empty ``<think>...</think>`` block before it.

    With ``pattern`` the pattern is searched and must occur exactly once, so repeating a tag
    (``<answer>1</answer><answer>2</answer>``) earns nothing; with ``whole=True`` the stripped
    reply must match the pattern as a whole. Either way the match must hold an answer: its
    group named ``answer`` when the pattern has one (``<answer>(?P<answer>.*?)</answer>``),
    else the whole match, must not be blank.

    The pattern runs on model output in the trainer's process, with Python's backtracking
    ``re``: keep it linear. Avoid nested quantifiers (``(\d+)*``), and when searching, start
    with a literal (``<answer>\d+``, not ``\s*<answer>`` or ``.*answer``): the search retries
    the pattern at every position, and a leading repeat makes each try run to the end, which is
    quadratic (minutes on a 1 MB reply). ``tests/rewards/test_text_linear_time.py`` checks the
    patterns the docs and examples use.

    Args:
        env: a token env.
        pattern: a regular expression (string or compiled, with its flags); or ``None`` with
            ``marker``.
        bonus: reward of a well-formatted reply.
        whole: match the whole reply instead of searching for one occurrence.
        name: the component's name.
        marker: use the math format rule for this marker instead of a pattern.
        think: with ``marker``, also require the think block.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = FormatBonus(gym.make("llm_gym/Arithmetic-v0"), r"-?\d+", whole=True)
        >>> _ = env.reset(seed=0)
        >>> hashes = FormatBonus(gym.make("llm_gym/Arithmetic-v0"), marker="####")
        >>> hashes.matches("2 + 2 = 4\n#### 4"), hashes.matches("#### ")
        (True, False)
    """

    def __init__(self, env: gym.Env, pattern: str | re.Pattern[str] | None = None,
                 bonus: float = 0.1, whole: bool = False, name: str = "format_bonus", *,
                 marker: str | None = None, think: bool = False) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, pattern=pattern, bonus=bonus, whole=whole,
                                                 name=name, marker=marker, think=think)
        super().__init__(env, FormatBonusTerm(pattern, bonus, whole, name, marker, think))

    def matches(self, text: str) -> bool:
        """Whether ``text`` earns the bonus."""
        return self.term.matches(text)
