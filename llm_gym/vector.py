"""A batched vector env for token envs: one numpy array for the whole batch.

:class:`TokenVectorEnv` owns a :class:`~llm_gym.token_buffers.TokenBuffers` of ``num_envs`` rows and
hands one row to each sub-env. A step appends every agent's token with a few array operations;
only the rows whose turn ended call into Python (scored together in one call, then each appends
its reply), so the env adds microseconds per env-step and never becomes the bottleneck next to a
model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from llm_gym.token_env import TokenEnv, score_turns

# Info values assigned to a numeric batch array in one go (other types go in row by row).
_PLAIN_SCALARS = frozenset({int, float, bool})


class TokenVectorEnv(VectorEnv):
    """``num_envs`` token envs of one class stepped as a batch.

    Args:
        env_class: a :class:`TokenEnv` subclass.
        num_envs: batch size.
        autoreset_mode: ``NEXT_STEP`` (Gymnasium's default: a finished row is reset by the next
            ``step``, whose action for it is ignored) or ``DISABLED`` (finished rows stay frozen —
            their actions are ignored and they report reward 0 and no flags — until
            ``reset(options={"reset_mask": mask})``).
        copy: return copies of the batch arrays (``False`` returns the live buffers).
        **env_kwargs: passed to every sub-env.

    ``reset(options=...)`` takes ``"index"`` (an int or one per env) to pin task items, and
    ``"reset_mask"`` (bool per env) to reset only some rows. Bad options or seeds raise before
    any row is reset, so a rejected reset leaves every row as it was.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> envs = gym.make_vec("llm_gym/LeftRightText-v0", 4,
        ...                     vectorization_mode="vector_entry_point")
        >>> obs, info = envs.reset(seed=0)
        >>> obs["input_ids"].shape[0]
        4
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["ansi"]}

    def __init__(
        self,
        env_class: type[TokenEnv],
        num_envs: int,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        **env_kwargs: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        mode = AutoresetMode(autoreset_mode)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
            raise ValueError("TokenVectorEnv supports autoreset_mode NEXT_STEP or DISABLED")
        first = env_class(**env_kwargs)
        self.buffers = first.new_buffers(num_envs)
        shared = {**env_kwargs, **first.shared_kwargs()}
        self.envs: list[TokenEnv] = [first] + [env_class(**shared) for _ in range(1, num_envs)]
        for row, env in enumerate(self.envs):
            env.use_row(self.buffers, row)  # the batch builds observations; rows skip their own
        self.num_envs = num_envs
        self.copy = copy
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.render_mode = first.render_mode
        self.tokenizer = first.tokenizer
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(first.observation_space, num_envs)
        self.action_space = batch_space(first.action_space, num_envs)
        self._constrained = first.constrains_vocabulary
        self._dense_action_mask = True  # False inside compact_action_masks()
        self._started = np.zeros(num_envs, dtype=bool)
        self._done = np.zeros(num_envs, dtype=bool)
        # Each row's reset keys, repeated in its mid-turn infos (see _add_base_info).
        self._task_index = np.zeros(num_envs, dtype=int)
        self._prompt_tokens = np.zeros(num_envs, dtype=int)

    # ------------------------------------------------------------------ reset
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # Check every row's options, the mask and the seeds before resetting any row: a rejected
        # reset leaves every row as it was (RELIABILITY.md, Environment API).
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"options must be a dict such as {{'index': [0, 1]}} or None, got "
                            f"{type(options).__name__} {options!r}")
        options = dict(options or {})
        mask = self._reset_mask(options.pop("reset_mask", None))
        seeds = self._seeds(seed)
        indices = self._indices(options.pop("index", None))
        # Every row, masked or not: a bad index for a row left alone is still a caller's bug.
        row_options = [{**options, "index": index} for index in indices]
        for i, env in enumerate(self.envs):
            try:
                env.validate_options(row_options[i])
            except (TypeError, ValueError) as err:
                err.add_note(f"in the options of env {i}; no env was reset")
                raise
        row_infos = []
        for i in np.flatnonzero(mask).tolist():
            row_infos.append((i, self.envs[i].reset(seed=seeds[i], options=row_options[i])[1]))
            self._note_reset(i)
        self._started |= mask
        self._done &= ~mask
        return self._observations(), self._batch_infos({}, row_infos)

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, dtype=bool)
        arr = np.asarray(mask)
        if arr.dtype != bool:
            raise TypeError(f"reset_mask must be booleans, one per env, got dtype {arr.dtype}; "
                            "pass e.g. terminated | truncated")
        if arr.shape != (self.num_envs,):
            raise ValueError(f"reset_mask must have shape ({self.num_envs},), got {arr.shape}")
        return arr

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
            seeds: list[Any] = [int(seed) + i for i in range(self.num_envs)]
        elif isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, (str, bytes)):
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"need one seed per env ({self.num_envs}), got {len(seeds)}")
        else:
            raise TypeError(f"seed must be an int, None, or one int or None per env, got "
                            f"{type(seed).__name__} {seed!r}")
        for i, value in enumerate(seeds):
            if value is None:
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"seed of env {i} must be an int >= 0 or None, got "
                                f"{type(value).__name__} {value!r}")
            if value < 0:
                raise ValueError(f"seed of env {i} must be an int >= 0 or None, got {value}")
            seeds[i] = int(value)  # Gymnasium's seeding takes Python ints only
        return seeds

    def _indices(self, index: Any) -> list[Any]:
        if index is None or isinstance(index, (int, np.integer)):
            return [index] * self.num_envs  # one item for all (bools are caught per row)
        if isinstance(index, (str, bytes)) or not isinstance(index, (Sequence, np.ndarray)):
            raise TypeError(f"options['index'] must be an int, None, or one per env "
                            f"({self.num_envs}), got {type(index).__name__} {index!r}")
        if isinstance(index, np.ndarray) and index.ndim != 1:
            raise ValueError(f"options['index'] must be one-dimensional, one per env "
                             f"({self.num_envs}), got shape {index.shape}")
        index = list(index)
        if len(index) != self.num_envs:
            raise ValueError(f"options['index'] needs one entry per env ({self.num_envs}), "
                             f"got {len(index)}")
        return index

    # ------------------------------------------------------------------ step
    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray,
                                          np.ndarray, dict[str, Any]]:
        actions = self._validate(actions)
        if not self._started.all():
            raise RuntimeError("step() called before reset(); call envs.reset() first")
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        row_infos: list[tuple[int, dict[str, Any]]] = []  # batched once, at the end
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            reset_rows = self._done  # finished last step: reset now, action ignored
            for i in np.flatnonzero(reset_rows).tolist():
                row_infos.append((i, self.envs[i].reset()[1]))
                self._note_reset(i)
            self._done = np.zeros(self.num_envs, dtype=bool)
            active = ~reset_rows
        else:
            active = ~self._done
        rows = np.flatnonzero(active)
        ended = self.buffers.write_batch(rows, actions[rows])
        if ended:
            self._end_turns(ended, rewards, terminated, truncated, row_infos)
        infos = self._batch_infos({}, row_infos)
        mid_turn = active
        mid_turn[[i for i, _ in ended]] = False
        self._add_base_info(infos, np.flatnonzero(mid_turn))
        self._done |= terminated | truncated
        return self._observations(), rewards, terminated, truncated, infos

    def _end_turns(self, ended: list[tuple[int, bool]], rewards: np.ndarray,
                   terminated: np.ndarray, truncated: np.ndarray,
                   row_infos: list[tuple[int, dict[str, Any]]]) -> None:
        """Score the rows whose turn ended, set their flags and collect their infos."""
        # All rows that ended a turn are scored in one call, so a pooled grader (math workers,
        # the sandbox) grades them in parallel; score_turns turns reward failures into verdicts.
        envs = self.envs
        turns = [envs[i].ended_turn(finished) for i, finished in ended]
        steps = []
        for (i, finished), result in zip(ended, score_turns(turns), strict=True):
            _, reward, term, trunc, info = envs[i].apply_turn(result, finished)
            steps.append((reward, term, trunc))
            row_infos.append((i, info))
        rows = [i for i, _ in ended]
        rewards[rows], terminated[rows], truncated[rows] = zip(*steps, strict=True)

    def _note_reset(self, row: int) -> None:
        """Keep row ``row``'s reset keys (task_index, prompt_tokens) for its mid-turn infos."""
        base = self.envs[row].base_info
        self._task_index[row] = base["task_index"]
        self._prompt_tokens[row] = base["prompt_tokens"]

    def _add_base_info(self, infos: dict[str, Any], rows: np.ndarray) -> None:
        """Each mid-turn row's reset keys (task_index, prompt_tokens), as its single env gives.

        Filled from arrays kept at each row's reset rather than row by row: this runs every
        token.
        """
        if rows.size == 0:
            return
        for key, values in (("task_index", self._task_index),
                            ("prompt_tokens", self._prompt_tokens)):
            if key not in infos:
                infos[key] = np.zeros(self.num_envs, dtype=int)
                infos[f"_{key}"] = np.zeros(self.num_envs, dtype=bool)
            infos[key][rows] = values[rows]
            infos[f"_{key}"][rows] = True

    def _batch_infos(self, infos: dict[str, Any],
                     row_infos: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        """``infos`` with each ``(row, info)`` added, exactly as ``VectorEnv._add_info`` adds them.

        One pass per key instead of Gymnasium's per-row calls (which allocate a mask array per
        key and row): with many rows ending a turn in one step, that was most of the step.
        """
        columns: dict[str, list[tuple[int, Any]]] = {}
        for row, info in row_infos:
            for key, value in info.items():
                columns.setdefault(key, []).append((row, value))
        for key, entries in columns.items():
            rows = [row for row, _ in entries]
            values = [value for _, value in entries]
            nested = [isinstance(value, dict) for value in values]
            if key != "final_obs" and any(nested):
                if not all(nested):  # a key both nested and not: Gymnasium's row-by-row rules
                    for row, value in entries:
                        infos = self._add_info(infos, {key: value}, row)
                    continue
                array = self._batch_infos(infos.get(key, {}), entries)
            else:
                array = infos.get(key)
                if array is None:
                    array = self._info_array(key, values[0])
                if (array.ndim == 1 and array.dtype != object
                        and set(map(type, values)) <= _PLAIN_SCALARS):
                    array[rows] = values
                else:
                    for row, value in entries:
                        array[row] = value
            mask = infos.get(f"_{key}")
            if mask is None:
                mask = np.zeros(self.num_envs, dtype=np.bool_)
            mask[rows] = True
            infos[key], infos[f"_{key}"] = array, mask
        return infos

    def _info_array(self, key: str, value: Any) -> np.ndarray:
        """The batch array ``VectorEnv._add_info`` makes for ``key`` from its first value."""
        if key != "final_obs":
            if type(value) in (int, float, bool) or issubclass(type(value), np.number):
                return np.zeros(self.num_envs, dtype=type(value))
            if isinstance(value, np.ndarray):
                return np.zeros((self.num_envs, *value.shape), dtype=value.dtype)
        return np.full(self.num_envs, fill_value=None, dtype=object)

    def _validate(self, actions: Any) -> np.ndarray:
        arr = np.asarray(actions)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"actions must be integer token ids, got dtype {arr.dtype}")
        if arr.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {arr.shape}")
        vocab = self.single_action_space.n
        if arr.min() < 0 or arr.max() >= vocab:
            raise ValueError(f"actions must lie in [0, {vocab}), got {arr.min()}..{arr.max()}")
        return arr.astype(np.int64, copy=False)

    # ------------------------------------------------------------------ observations
    def _observations(self) -> dict[str, np.ndarray]:
        buf = self.buffers
        obs = {"input_ids": buf.input_ids, "attention_mask": buf.attention_mask,
               "agent_mask": buf.agent_mask}
        if self.copy:
            obs = {k: v.copy() for k, v in obs.items()}
        if self._constrained and self._dense_action_mask:
            obs["action_mask"] = np.stack([env.action_mask() for env in self.envs])
        return obs

    def action_masks(self) -> np.ndarray:
        """Boolean ``(num_envs, vocab_size)`` mask of allowed tokens."""
        return np.stack([env.action_masks() for env in self.envs])

    @property
    def constrains_vocabulary(self) -> bool:
        """Whether the rows constrain the vocabulary (``action_mask`` in the observations)."""
        return self._constrained

    def allowed_tokens(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(rows, token_ids)``: row ``rows[k]`` may write ``token_ids[k]``; None if unconstrained.

        The compact form of the observations' ``action_mask``: a few ids per row, which a
        sampler scatters into a mask on the model's device (no ``(num_envs, vocab)`` host array).

        Example:
            >>> import gymnasium as gym, llm_gym
            >>> envs = gym.make_vec("llm_gym/LeftRightText-v0", 2, constrained=True,
            ...                     vectorization_mode="vector_entry_point")
            >>> obs, _ = envs.reset(seed=0)
            >>> rows, ids = envs.unwrapped.allowed_tokens()
            >>> bool(obs["action_mask"][rows, ids].all()), int(obs["action_mask"].sum()) == len(ids)
            (True, True)
        """
        if not self._constrained:
            return None
        per_row = [env.allowed_tokens() for env in self.envs]
        rows = np.repeat(np.arange(self.num_envs), [len(ids) for ids in per_row])
        return rows, np.concatenate(per_row).astype(np.int64, copy=False)

    @contextmanager
    def compact_action_masks(self) -> Iterator[None]:
        """Inside, observations leave out ``action_mask``; read :meth:`allowed_tokens` instead.

        For a consumer that drives the batch itself (the LLM rollout): building the dense
        ``(num_envs, vocab)`` mask each step would cost more than the step (12.6 MB at 256 rows
        and a 49k vocabulary). Outside the block observations match ``observation_space``.
        """
        before = self._dense_action_mask
        self._dense_action_mask = False
        try:
            yield
        finally:
            self._dense_action_mask = before

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Each sub-env's attribute ``name``, as :class:`gymnasium.vector.SyncVectorEnv` gives."""
        return tuple(getattr(env, name) for env in self.envs)

    def render(self) -> tuple[str | None, ...]:
        return tuple(env.render() for env in self.envs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Each sub-env pickles a private copy of its row (TokenEnv.__getstate__); a copied
        # batch must step the copied buffers, so point every sub-env back at its row of them.
        self.__dict__.update(state)
        for row, env in enumerate(self.envs):
            env.use_row(self.buffers, row)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


def row_info(infos: dict[str, Any], row: int) -> dict[str, Any]:
    """Row ``row``'s entries of a Gymnasium vector-env ``info`` dict (``_key`` masks honoured).

    Example:
        >>> row_info({"a": np.array([1, 2]), "_a": np.array([False, True])}, 1)
        {'a': np.int64(2)}
    """
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        present = infos.get(f"_{key}")
        if present is not None and not present[row]:
            continue
        out[key] = row_info(value, row) if isinstance(value, dict) else value[row]
    return out
