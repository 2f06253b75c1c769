"""The shaping wrappers for vector envs, like ``gymnasium.wrappers.vector``.

Each class here is the batched twin of the wrapper of the same name in
:mod:`llm_gym.wrappers.shaping` and gives the same rewards step by step: both hold the same term
object (the rule: its config and a per-row function, see
:class:`~llm_gym.wrappers.response.Term`), which this one applies to each row, as Gymnasium's
vector ``TransformReward`` holds the single wrapper's function. They work on the batched token
env of ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")`` and on Gymnasium's
``SyncVectorEnv`` / ``AsyncVectorEnv``, in every autoreset mode: a row that did not step (frozen
after its episode with ``autoreset_mode="Disabled"``, or being reset under ``NextStep``) gets no
term. ``info["reward_components"]`` holds one array per term with Gymnasium's ``_name`` masks,
the same layout a ``SyncVectorEnv`` of single wrapped envs reports.

A term that raises for a row records ``info["reward_error"] = "wrapper:<Name>:<error>"`` there
(rollouts drop and count the row) and gives it no term; with ``autoreset_mode="Disabled"`` (the
trainers' mode) it also ends the row's episode (``terminated``) and keeps the row silent until
it is reset.

A constant term (``LengthPenalty``) stays numpy-only (the trainers' hot path); a reply term calls
Python only for the rows whose turn ended.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from llm_gym.vector import row_info
from llm_gym.wrappers.response import (
    TOKEN_KEYS,
    FormatBonusTerm,
    OverlongPenaltyTerm,
    Step,
    Term,
    last_response,
)
from llm_gym.wrappers.shaping import LengthPenaltyTerm, PotentialTerm, WeightedTerms, term_failure


def vector_tokenizer(envs: VectorEnv, wrapper: str) -> Any:
    """The tokenizer of a vector token env; a TypeError naming ``wrapper`` if it has none."""
    space = envs.single_observation_space
    base = envs.unwrapped
    tokenizer = getattr(base, "tokenizer", None)
    if tokenizer is None:
        try:
            tokenizer = base.get_attr("tokenizer")[0]
        except (AttributeError, NotImplementedError):
            tokenizer = None
    token_obs = isinstance(space, gym.spaces.Dict) and all(k in space.spaces for k in TOKEN_KEYS)
    if tokenizer is None or not token_obs:
        raise TypeError(
            f"{wrapper} reads the agent's reply from a token observation (input_ids, "
            f"attention_mask, agent_mask), but {base} has observation space {space}. Use it "
            "on a vector env of llm_gym token envs")
    return tokenizer


def _row(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {key: value[i] for key, value in obs.items()}
    if isinstance(obs, tuple):
        return tuple(value[i] for value in obs)
    return obs[i]


class _VectorShaping(VectorWrapper, gym.utils.RecordConstructorArgs):
    """Holds one term: tracks which rows stepped, applies it to them, records the components."""

    def __init__(self, env: VectorEnv, term: Term, label: str | None = None) -> None:
        VectorWrapper.__init__(self, env)
        self.term = term
        term.fits(type(self).__name__, env.unwrapped, env.single_observation_space)
        self._tokenizer = (vector_tokenizer(env, label or type(self).__name__)
                           if term.reads_reply else None)
        self._mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        self._states: list[Any] = [None] * self.num_envs  # the term's state, per row
        self._done = np.zeros(self.num_envs, dtype=bool)  # ended last step (or frozen)
        self._silent = np.zeros(self.num_envs, dtype=bool)  # ended by a failed term (Disabled)

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        mask = (options or {}).get("reset_mask")
        rows = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, bool)
        self._done[rows] = False
        self._silent[rows] = False
        self._start_rows(rows, obs)
        return obs, info

    def _start_rows(self, rows: np.ndarray, obs: Any) -> None:
        """Start the term's episode state of ``rows``, whose episodes begin at ``obs``."""
        if self.term.keeps_state:
            for i in map(int, np.flatnonzero(rows)):
                self._states[i] = self._start(i, _row(obs, i))

    def _start(self, row: int, obs: Any) -> Any:
        return self.term.start(obs)

    # ------------------------------------------------------------------ step
    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        ended = terminated | truncated
        if self._mode == AutoresetMode.NEXT_STEP:
            restarted, stepped = self._done.copy(), ~self._done
            self._done = ended.copy()
            self._start_rows(restarted, obs)
        elif self._mode == AutoresetMode.DISABLED:
            stepped = ~self._done
            self._done = self._done | ended
        else:  # SAME_STEP: every row steps; a finished row's last observation is in final_obs
            stepped = np.ones(self.num_envs, dtype=bool)
        if self._silent.any():
            rewards, terminated, truncated, infos = self._quiet(rewards, terminated, truncated,
                                                               infos)
            stepped = stepped & ~self._silent
        values, failed, extras = self._apply(obs, actions, rewards, terminated, truncated, infos,
                                             stepped)
        if self._mode == AutoresetMode.SAME_STEP:
            self._start_rows(ended, obs)  # obs already starts a finished row's next episode
        if failed:
            terminated, infos = self._fail(failed, terminated, infos)
            stepped = stepped.copy()
            stepped[[i for i, _ in failed]] = False
        rewards, infos = self._add_components(infos, rewards, values, stepped,
                                              terminated | truncated)
        for i, extra in extras.items():  # after the components, which may move into final_info
            if self._mode == AutoresetMode.SAME_STEP and ended[i] and "final_info" in infos:
                infos = {**infos, "final_info": self._add_info(infos["final_info"], extra, i)}
            else:
                infos = self._add_info(infos, extra, i)
        return obs, rewards, terminated, truncated, infos

    def _apply(self, obs: Any, actions: Any, rewards: np.ndarray, terminated: np.ndarray,
               truncated: np.ndarray, infos: dict[str, Any], stepped: np.ndarray
               ) -> tuple[dict[str, np.ndarray], list[tuple[int, Exception]], dict[int, dict]]:
        """The term as one array per name (0 where a row did not step), failures, extra infos."""
        term = self.term
        if term.constant:  # the same value for every row: numpy only (the trainers' hot path)
            return {name: np.where(stepped, value, 0.0)
                    for name, value in term(None, None).terms.items()}, [], {}
        values = {name: np.zeros(self.num_envs) for name in term.names}
        turn_ended = self._turn_ended(obs, terminated, truncated) if term.reads_reply else None
        rows = [int(i) for i in np.flatnonzero(stepped & turn_ended if term.replies_only
                                               else stepped)]
        steps = [self._step_of(i, obs, actions, rewards, terminated, truncated, infos,
                               turn_ended is not None and turn_ended[i]) for i in rows]
        failed, extras = [], {}
        for i, scored in zip(rows, term.rows([self._states[i] for i in rows], steps),
                             strict=True):
            if isinstance(scored, Exception):
                failed.append((i, scored))
                continue
            self._states[i] = scored.state
            for name, value in scored.terms.items():
                values[name][i] = value
            if scored.info:
                extras[i] = scored.info
        return values, failed, extras

    def _step_of(self, i: int, obs: Any, actions: Any, rewards: np.ndarray,
                 terminated: np.ndarray, truncated: np.ndarray, infos: dict[str, Any],
                 turn_ended: bool) -> Step:
        """Row ``i``'s step as the single wrapper would see it."""
        final = (self._mode == AutoresetMode.SAME_STEP and (terminated[i] or truncated[i])
                 and "final_obs" in infos)
        row_obs = infos["final_obs"][i] if final else _row(obs, i)
        info = row_info(infos.get("final_info", {}) if final else infos, i)
        reply = last_response(row_obs, self._tokenizer) if turn_ended else None
        return Step(row_obs, actions[i], rewards[i], bool(terminated[i]), bool(truncated[i]),
                    info, reply)

    def _turn_ended(self, obs: dict[str, np.ndarray], terminated: np.ndarray,
                    truncated: np.ndarray) -> np.ndarray:
        # Vectorised turn_ended: a turn ended when the episode did or the last token is not the
        # agent's (the env appended its reply), so Python runs only for those rows.
        lengths = np.count_nonzero(obs["attention_mask"], axis=1)
        last = obs["agent_mask"][np.arange(self.num_envs), np.maximum(lengths - 1, 0)]
        return terminated | truncated | ((lengths > 0) & (last == 0))

    # ------------------------------------------------------------------ bookkeeping
    def _add_components(self, infos: dict[str, Any], rewards: np.ndarray,
                        values: dict[str, np.ndarray], stepped: np.ndarray,
                        ended: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        total = self.term.scale * np.asarray(rewards, dtype=np.float64)
        for value in values.values():
            total = total + value
        final = self._mode == AutoresetMode.SAME_STEP and ended.any() and "final_info" in infos
        if not final:
            return total, self._components(infos, rewards, values, stepped)
        # SAME_STEP puts a finished row's step info in final_info (its info is the reset's):
        # so do its components, as a SyncVectorEnv of single wrapped envs does.
        top = self._components(infos, rewards, values, stepped & ~ended)
        last = self._components(infos["final_info"], rewards, values, stepped & ended)
        return total, {**top, "final_info": last}

    def _components(self, infos: dict[str, Any], rewards: np.ndarray,
                    values: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, Any]:
        """``infos`` with this wrapper's terms added to ``reward_components`` in ``rows``."""
        if not rows.any():
            return infos
        below, scale = infos.get("reward_components"), self.term.scale
        if below is None:
            components = {"env": scale * np.where(rows, rewards, 0.0).astype(np.float64),
                          "_env": rows.copy()}
        else:
            components = {k: (v if k.startswith("_") else scale * np.asarray(v))
                          for k, v in below.items()}
        for name, value in values.items():
            components[name] = components.get(name, 0.0) + np.where(rows, value, 0.0)
            components[f"_{name}"] = components.get(f"_{name}", False) | rows
        present = infos.get("_reward_components", np.zeros(self.num_envs, dtype=bool)) | rows
        return {**infos, "reward_components": components, "_reward_components": present}

    def _fail(self, failed: list[tuple[int, Exception]], terminated: np.ndarray,
              infos: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        infos = dict(infos)
        for i, err in failed:
            error = term_failure(self, err, {})["reward_error"]
            infos = self._add_info(infos, {"reward_error": error}, i)
        if self._mode == AutoresetMode.DISABLED:
            rows = [i for i, _ in failed]
            terminated = terminated.copy()
            terminated[rows] = True
            self._done[rows] = self._silent[rows] = True
        return terminated, infos

    def _quiet(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
               infos: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Rows this wrapper ended still step below it: hide what they report until reset."""
        keep = ~self._silent
        return (np.where(keep, rewards, 0.0), terminated & keep, truncated & keep,
                _mask_rows(infos, keep))


def _mask_rows(infos: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    out = {}
    for key, value in infos.items():
        if key.startswith("_") and isinstance(value, np.ndarray) and value.dtype == bool:
            out[key] = value & keep
        elif isinstance(value, dict):
            out[key] = _mask_rows(value, keep)
        else:
            out[key] = value
    return out


class LengthPenalty(_VectorShaping):
    """``-coef`` per agent step in every row that stepped (see the single-env ``LengthPenalty``).

    Example:
        >>> import gymnasium as gym, numpy as np, llm_gym
        >>> envs = LengthPenalty(gym.make_vec("llm_gym/Arithmetic-v0", 2,
        ...     vectorization_mode="vector_entry_point"), coef=0.01)
        >>> _ = envs.reset(seed=0)
        >>> envs.step(np.array([65, 65]))[1].tolist()
        [-0.01, -0.01]
    """

    def __init__(self, env: VectorEnv, coef: float = 0.001, name: str = "length_penalty"
                 ) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, coef=coef, name=name)
        super().__init__(env, LengthPenaltyTerm(coef, name))


class PotentialShaping(_VectorShaping):
    """``gamma * Phi(s') - Phi(s)`` per row (Ng, Harada & Russell, 1999), one ``Phi`` per row.

    Example:
        >>> import gymnasium as gym, numpy as np
        >>> envs = PotentialShaping(gym.make_vec("CartPole-v1", 2), lambda o: -abs(o[2]))
        >>> _ = envs.reset(seed=0)
        >>> sorted(envs.step(np.array([0, 1]))[4]["reward_components"])
        ['_env', '_potential', 'env', 'potential']
    """

    def __init__(self, env: VectorEnv, potential: Any, gamma: float = 0.99,
                 name: str = "potential") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, potential=potential, gamma=gamma,
                                                 name=name, _disable_deepcopy=True)
        super().__init__(env, PotentialTerm(potential, gamma, name))


class RewardTerms(_VectorShaping):
    """Weighted named terms per row (see the single-env ``RewardTerms``)."""

    def __init__(self, env: VectorEnv, terms: Any = None, response_terms: Any = None,
                 weights: Any = None, name_prefix: str = "") -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, terms=terms, response_terms=response_terms, weights=weights,
            name_prefix=name_prefix, _disable_deepcopy=True)
        super().__init__(env, WeightedTerms(terms, response_terms, weights, name_prefix),
                         "RewardTerms(response_terms=...)")


class OverlongPenalty(_VectorShaping):
    """DAPO's soft overlong punishment on each row's finished turns (see the single-env one)."""

    def __init__(self, env: VectorEnv, max_tokens: int | None = None,
                 cache_tokens: int | None = None, weight: float = 1.0,
                 name: str = "overlong_penalty") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, max_tokens=max_tokens,
                                                 cache_tokens=cache_tokens, weight=weight,
                                                 name=name)
        vector_tokenizer(env, "OverlongPenalty")  # before reading its token budget
        # Every vector env answers get_attr (TokenVectorEnv, Sync, Async); one value for all rows.
        budget = int(env.unwrapped.get_attr("max_new_tokens")[0])
        super().__init__(env, OverlongPenaltyTerm(max_tokens, cache_tokens, weight, name, budget))

    def penalty(self, num_tokens: int) -> float:
        """The unweighted penalty of a reply of ``num_tokens`` tokens, in ``[-1, 0]``."""
        return self.term.penalty(num_tokens)


class FormatBonus(_VectorShaping):
    """``bonus`` per row whose finished reply is well formatted (see the single-env one)."""

    def __init__(self, env: VectorEnv, pattern: Any = None, bonus: float = 0.1,
                 whole: bool = False, name: str = "format_bonus", *, marker: str | None = None,
                 think: bool = False) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, pattern=pattern, bonus=bonus, whole=whole,
                                                 name=name, marker=marker, think=think)
        super().__init__(env, FormatBonusTerm(pattern, bonus, whole, name, marker, think))

    def matches(self, text: str) -> bool:
        """Whether ``text`` earns the bonus."""
        return self.term.matches(text)


__all__ = ["FormatBonus", "LengthPenalty", "OverlongPenalty", "PotentialShaping",
           "RewardTerms"]
