"""Reward shaping as plain Gymnasium wrappers, for LunarLander and LLM envs alike.

Every wrapper here adds named terms to the reward and records them in
``info["reward_components"]`` (the env's own reward is ``"env"``; the values always sum to the
reward the wrapper returns), and subclasses :class:`gymnasium.utils.RecordConstructorArgs`, so
the stack shows in ``env.spec``.

Gymnasium already has the rest; use its wrappers instead of rewriting them:
``TransformReward`` (any function of the reward), ``ClipReward``, ``NormalizeReward``,
``RecordEpisodeStatistics`` (put it *below* the shaping wrappers to log the unshaped return) and
``TimeLimit``. Those do not update ``reward_components``.

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
import numpy as np

from llm_gym.rewards import math as math_rewards
from llm_gym.wrappers.response import (
    Response,
    add_reward_components,
    last_response,
    require_token_env,
    turn_ended,
)

logger = logging.getLogger(__name__)

StepTerm = Callable[[Any, Any, SupportsFloat, bool, bool, dict], SupportsFloat]
ResponseTerm = Callable[[str], SupportsFloat]


def _answer_of(match: re.Match[str]) -> str:
    """The answer a format match holds: its group ``answer``, else the whole match."""
    if "answer" in match.re.groupindex:
        return match.group("answer") or ""
    return match.group()


def _finite(name: str, value: SupportsFloat) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"reward term {name!r} returned {value}; reward terms must be finite")
    return value


class _Shaping(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Shared step: compute the terms, add them to the reward, record the components.

    A term is computed by :meth:`row_terms` (step terms) or :meth:`response_terms` (once per
    finished agent turn); the vector twins in :mod:`llm_gym.wrappers.vector` call the same
    methods per row, so each reward term has one implementation. Single envs use row 0 of
    per-row state. A term that raises ends the episode (``terminated``) with the env's reward
    alone and ``info["reward_error"] = "wrapper:<Name>:<error>"``: rollouts drop and count it.
    """

    scale = 1.0
    uses_responses = False  # response_terms is called when an agent turn ends

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._failed = False
        self.reset_row(0, obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if getattr(self, "_failed", False):
            raise RuntimeError(f"{type(self).__name__} ended the episode after a failed reward "
                               "term; call reset()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        try:
            terms = self.terms(obs, action, reward, terminated, truncated, info)
        except Exception as err:  # noqa: BLE001 - a broken term is a counted failure
            self._failed = True
            return obs, float(reward), True, truncated, term_failure(self, err, info)
        total, info = add_reward_components(info, float(reward), terms, self.scale)
        return obs, total, terminated, truncated, info

    def terms(self, obs: Any, action: Any, reward: SupportsFloat, terminated: bool,
              truncated: bool, info: dict[str, Any]) -> dict[str, float]:
        """Every term of one step: the step terms, and the response terms when a turn ended."""
        terms = self.row_terms(0, obs, action, reward, terminated, truncated, info)
        if self.uses_responses:
            ended = turn_ended(obs, terminated, truncated)
            response = last_response(obs, self._tokenizer) if ended else None
            terms.update(self.response_terms(response))
        return terms

    def reset_row(self, row: int, obs: Any) -> None:
        """Start row ``row``'s episode at ``obs`` (per-row state; most terms have none)."""

    def row_terms(self, row: int, obs: Any, action: Any, reward: SupportsFloat,
                  terminated: bool, truncated: bool, info: dict[str, Any]) -> dict[str, float]:
        """The step terms of row ``row`` (every step)."""
        return {}

    def response_terms(self, response: Response | None) -> dict[str, float]:
        """The response terms of a finished turn (``None``: no turn ended this step)."""
        return {}


def term_failure(wrapper: Any, err: Exception, info: dict[str, Any]) -> dict[str, Any]:
    """``info`` of a step whose reward term raised: logged, and named in ``reward_error``."""
    name = type(wrapper).__name__
    logger.warning("%s raised %s: %s; episode ended, sample dropped", name,
                   type(err).__name__, err)
    return {**info, "reward_error": f"wrapper:{name}:{type(err).__name__}"}


def check_fits(wrapper: str, env: Any, potential: Callable[[Any], SupportsFloat],
               space: gym.Space) -> None:
    """Raise a TypeError naming ``wrapper`` and ``env`` if ``potential`` fails on ``space``."""
    try:
        _finite("potential", potential(space.sample()))
    except Exception as err:  # noqa: BLE001 - any failure means the function does not fit
        raise TypeError(
            f"{wrapper}: the potential {getattr(potential, '__name__', potential)!r} fails on an "
            f"observation of {env} ({space}): {type(err).__name__}: {err}. Give a potential "
            "of this env's observations (a token env observes a dict of token-id arrays)"
        ) from err


class _ResponseShaping(_Shaping):
    """A term computed once per finished agent turn of a token env, 0 on other steps."""

    name = "response"
    uses_responses = True

    def __init__(self, env: gym.Env) -> None:
        gym.Wrapper.__init__(self, env)
        self._tokenizer = require_token_env(env, type(self).__name__)

    def response_terms(self, response: Response | None) -> dict[str, float]:  # noqa: D102
        return {self.name: 0.0 if response is None else self.score(response)}

    def score(self, response: Response) -> float:
        """The term of one finished reply."""
        raise NotImplementedError


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
        gym.Wrapper.__init__(self, env)
        self.configure(terms, response_terms, weights, name_prefix)
        self.uses_responses = bool(self._response_terms)
        self._tokenizer = (require_token_env(env, "RewardTerms(response_terms=...)")
                           if self._response_terms else None)

    def configure(self, terms: Mapping[str, StepTerm] | None,
                  response_terms: Mapping[str, ResponseTerm] | None,
                  weights: Mapping[str, float] | None, name_prefix: str) -> None:
        """Check and set the terms and weights (shared with the vector twin)."""
        self._step_terms = dict(terms or {})
        self._response_terms = dict(response_terms or {})
        names = [*self._step_terms, *self._response_terms]
        if len(set(names)) != len(names) or "env" in names:
            raise ValueError(f"term names must be unique and not 'env', got {names}")
        weights = dict(weights or {})
        unknown = set(weights) - {"env", *names}
        if unknown:
            raise ValueError(f"weights name unknown terms {sorted(unknown)}; terms are {names}")
        self.scale = float(weights.pop("env", 1.0))
        self.weights = {name: float(weights.get(name, 1.0)) for name in names}
        self.name_prefix = name_prefix

    def row_terms(self, row, obs, action, reward, terminated, truncated, info):  # noqa: D102
        out = {}
        for name, fn in self._step_terms.items():
            value = _finite(name, fn(obs, action, reward, terminated, truncated, info))
            out[self.name_prefix + name] = self.weights[name] * value
        return out

    def response_terms(self, response):  # noqa: D102
        out = {}
        for name, fn in self._response_terms.items():
            value = 0.0 if response is None else _finite(name, fn(response.text))
            out[self.name_prefix + name] = self.weights[name] * value
        return out


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
        gym.Wrapper.__init__(self, env)
        self.configure(potential, gamma, name, 1, env, env.observation_space)

    def configure(self, potential: Callable[[Any], SupportsFloat], gamma: float, name: str,
                  num_rows: int, env: Any, space: gym.Space) -> None:
        """Check the arguments against the env and set up ``num_rows`` rows of state."""
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        if not callable(potential):
            raise TypeError(f"potential must be a function of an observation, got "
                            f"{type(potential).__name__} {potential!r}")
        check_fits(type(self).__name__, env, potential, space)
        self.potential, self.gamma, self.name = potential, float(gamma), name
        self._phi = np.full(num_rows, np.nan)  # NaN: the row's episode has not started

    def reset_row(self, row: int, obs: Any) -> None:  # noqa: D102
        self._phi[row] = _finite(self.name, self.potential(obs))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if np.isnan(self._phi[0]) and not getattr(self, "_failed", False):
            raise RuntimeError(
                "PotentialShaping.step() before reset() or after the episode ended; call reset()"
            )
        return super().step(action)

    def row_terms(self, row, obs, action, reward, terminated, truncated, info):  # noqa: D102
        phi = self._phi[row]
        if np.isnan(phi):
            raise RuntimeError(
                "PotentialShaping.step() before reset() or after the episode ended; call reset()"
            )
        phi_next = 0.0 if terminated else _finite(self.name, self.potential(obs))
        self._phi[row] = np.nan if (terminated or truncated) else phi_next
        return {self.name: self.gamma * phi_next - phi}


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
        gym.Wrapper.__init__(self, env)
        self.configure(coef, name)

    def configure(self, coef: float, name: str) -> None:
        """Check and set the arguments (shared with the vector twin)."""
        if coef < 0:
            raise ValueError(f"coef is the penalty per token and must be >= 0, got {coef}")
        self.coef, self.name = float(coef), name

    def row_terms(self, row, obs, action, reward, terminated, truncated, info):  # noqa: D102
        return {self.name: -self.coef}


class OverlongPenalty(_ResponseShaping):
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
        super().__init__(env)
        self.configure(max_tokens, cache_tokens, weight, name, env.unwrapped.max_new_tokens)

    def configure(self, max_tokens: int | None, cache_tokens: int | None, weight: float,
                  name: str, budget: int) -> None:
        """Check and set the arguments (``budget``: the env's ``max_new_tokens``)."""
        limit = max_tokens if max_tokens is not None else budget
        cache = cache_tokens if cache_tokens is not None else max(1, limit // 4)
        if not 1 <= cache <= limit:
            raise ValueError(f"need 1 <= cache_tokens <= max_tokens, got cache_tokens={cache}, "
                             f"max_tokens={limit}")
        self.max_tokens, self.cache_tokens = int(limit), int(cache)
        self.weight, self.name = float(weight), name

    def penalty(self, num_tokens: int) -> float:
        """The unweighted penalty of a reply of ``num_tokens`` tokens, in ``[-1, 0]``."""
        free = self.max_tokens - self.cache_tokens
        if num_tokens <= free:
            return 0.0
        return max(-1.0, (free - num_tokens) / self.cache_tokens)

    def score(self, response: Response) -> float:  # noqa: D102
        return self.weight * self.penalty(response.num_generated)


class FormatBonus(_ResponseShaping):
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
        super().__init__(env)
        self.configure(pattern, bonus, whole, name, marker, think)

    def configure(self, pattern: str | re.Pattern[str] | None, bonus: float, whole: bool,
                  name: str, marker: str | None = None, think: bool = False) -> None:
        """Check, compile and set the arguments (shared with the vector twin)."""
        if (pattern is None) == (marker is None):
            raise ValueError("FormatBonus needs a pattern or a marker ('####', 'boxed' or "
                             f"'any'), exactly one of them; got pattern={pattern!r}, "
                             f"marker={marker!r}")
        if marker is not None and marker not in math_rewards.MARKERS:
            raise ValueError(f"marker must be one of {math_rewards.MARKERS}, got {marker!r}")
        if think and marker is None:
            raise ValueError("think=True needs a marker (the math format rule); a pattern "
                             "can require the think block itself")
        self.pattern = None if pattern is None else re.compile(pattern)
        self.marker, self.think = marker, bool(think)
        self.bonus, self.whole, self.name = float(bonus), bool(whole), name

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

    def score(self, response: Response) -> float:  # noqa: D102
        return self.bonus if self.matches(response.text) else 0.0
