"""An SB3 ``VecEnv`` over a Gymnasium vector env, so SB3 can step the batched token env.

SB3 takes single Gymnasium envs or its own ``VecEnv``; a Gymnasium ``VectorEnv`` such as
:class:`~llm_gym.vector.TokenVectorEnv` is neither (``The environment is of type
TokenVectorEnv, not a Gymnasium environment``). :class:`SB3VecEnv` speaks SB3's protocol on top
of one: Dict observations as they are, a list of info dicts, and SB3's reset-in-the-same-step
convention (``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]``).
``action_masks()`` and ``env_method("action_masks")`` give sb3-contrib's MaskablePPO its masks.

SB3's ``VecNormalize`` would turn token ids and masks into normalised floats: on a token env
use :class:`TokenVecNormalize`, which normalises only the floating-point observation keys (none,
in a plain token env) and the reward, and refuses an integer key in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from llm_gym.vector import row_info


class SB3VecEnv(VecEnv):
    """Stable-Baselines3 ``VecEnv`` view of a Gymnasium ``VectorEnv``.

    Args:
        envs: a Gymnasium vector env whose ``autoreset_mode`` is ``Disabled`` (finished rows are
            reset here, with ``reset(options={"reset_mask": done})``, as
            :class:`~llm_gym.vector.TokenVectorEnv` and ``SyncVectorEnv`` support) or
            ``SameStep``. ``NextStep`` is refused: its extra reset step would reach SB3 as a
            transition whose action was ignored.

    Wrap it in SB3's ``VecMonitor`` for ``rollout/ep_rew_mean`` in SB3's logs.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> envs = gym.make_vec("llm_gym/LeftRightText-v0", 2, constrained=True,
        ...                     vectorization_mode="vector_entry_point", autoreset_mode="Disabled")
        >>> venv = SB3VecEnv(envs)
        >>> obs = venv.reset()
        >>> obs["input_ids"].shape[0], venv.action_masks().shape
        (2, (2, 260))
        >>> obs, rewards, dones, infos = venv.step(venv.action_masks().argmax(axis=1))
        >>> rewards.dtype, dones.shape, len(infos)
        (dtype('float32'), (2,), 2)
    """

    def __init__(self, envs: VectorEnv) -> None:
        if not isinstance(envs, VectorEnv):
            raise TypeError(f"SB3VecEnv wraps a Gymnasium VectorEnv (gym.make_vec), got "
                            f"{type(envs).__name__}; wrap single envs in SB3's DummyVecEnv")
        mode = AutoresetMode(envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if mode == AutoresetMode.NEXT_STEP:
            raise ValueError(
                f"SB3VecEnv needs autoreset_mode 'Disabled' or 'SameStep', got {mode.value!r}; "
                "build the env with gym.make_vec(id, n, vectorization_mode='vector_entry_point', "
                "autoreset_mode='Disabled') (or vector_kwargs={'autoreset_mode': 'SameStep'} "
                "for a sync/async vector env)")
        self.envs = envs
        self.autoreset_mode = mode
        # Live buffers (TokenVectorEnv(copy=False)) change under SB3's feet on the next step,
        # after SB3 stored them as the previous observation: copy them here.
        self._copy_obs = getattr(envs.unwrapped, "copy", True) is False
        self._actions: np.ndarray | None = None
        super().__init__(envs.num_envs, envs.single_observation_space, envs.single_action_space)

    # ------------------------------------------------------------------ the VecEnv protocol
    def reset(self) -> Any:
        # SB3 stores one seed and one options dict per env for the next reset (VecEnv.seed,
        # VecEnv.set_options); a Gymnasium vector env takes one list of seeds, one options dict.
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] if self._options[0] else None
        if any(o != self._options[0] for o in self._options):
            raise ValueError("SB3VecEnv passes one options dict to every row; got different "
                             "options per env. Pass one dict to set_options")
        obs, infos = self.envs.reset(seed=seeds, options=options)
        self.reset_infos = [row_info(infos, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return self._own(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        obs, rewards, terminated, truncated, infos = self.envs.step(self._actions)
        self._actions = None
        dones = np.asarray(terminated | truncated, dtype=bool)
        rows = [row_info(infos, i) for i in range(self.num_envs)]
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            obs = self._own(obs)
            for i in map(int, np.flatnonzero(dones)):
                final = rows[i].pop("final_obs")
                final_info = rows[i].pop("final_info", {})
                self.reset_infos[i] = rows[i]  # the row's info is already the reset's
                rows[i] = {**final_info, "terminal_observation": final}
        elif dones.any():
            terminal = {i: _row(obs, i) for i in map(int, np.flatnonzero(dones))}  # own copies
            obs, reset_infos = self.envs.reset(options={"reset_mask": dones})
            obs = self._own(obs)
            for i, final in terminal.items():
                rows[i]["terminal_observation"] = final
                self.reset_infos[i] = row_info(reset_infos, i)
        else:
            obs = self._own(obs)
        for i, info in enumerate(rows):
            # SB3 bootstraps the value of a time-limit end, not of a real one (Gym 0.26 API).
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, np.asarray(rewards, dtype=np.float32), dones, rows

    def close(self) -> None:
        self.envs.close()

    def action_masks(self) -> np.ndarray:
        """Boolean ``(num_envs, n_actions)`` mask of the allowed actions of every row."""
        base = self.envs.unwrapped
        if hasattr(base, "action_masks"):
            return np.asarray(base.action_masks(), dtype=bool)
        return np.stack([np.asarray(m, dtype=bool) for m in self._call("action_masks")])

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "action_masks":
            self.action_masks()  # raises AttributeError where there are none (has_attr)
            return [self.action_masks] * len(self._indices(indices))
        values = self._sub_env_values(attr_name)
        return [values[i] for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        for env in self._sub_envs(indices):
            setattr(env.unwrapped, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None,
                   **method_kwargs: Any) -> list[Any]:
        if method_name == "action_masks":  # one batched call, not one per row (MaskablePPO)
            masks = self.action_masks()
            return [masks[i] for i in self._indices(indices)]
        targets = self._indices(indices)
        if hasattr(self.envs.unwrapped, "envs"):
            return [self._sub_envs([i])[0].get_wrapper_attr(method_name)(
                *method_args, **method_kwargs) for i in targets]
        results = self._call(method_name, *method_args, **method_kwargs)
        return [results[i] for i in targets]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        from stable_baselines3.common.env_util import is_wrapped

        if not hasattr(self.envs.unwrapped, "envs"):
            return [False] * len(self._indices(indices))  # async workers: not inspectable
        return [is_wrapped(env, wrapper_class) for env in self._sub_envs(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs  # token envs render text (ansi), not images

    # ------------------------------------------------------------------ helpers
    def _own(self, obs: Any) -> Any:
        if self._copy_obs and isinstance(obs, dict):
            return {key: np.array(value) for key, value in obs.items()}
        return np.array(obs) if self._copy_obs else obs

    def _indices(self, indices: Any) -> list[int]:
        return list(self._get_indices(indices))

    def _sub_envs(self, indices: Any) -> list[gym.Env]:
        base = self.envs.unwrapped
        if not hasattr(base, "envs"):
            raise AttributeError(f"{type(base).__name__} does not expose its sub-envs")
        return [base.envs[i] for i in self._indices(indices)]

    def _sub_env_values(self, name: str) -> list[Any]:
        base = self.envs.unwrapped
        if hasattr(base, "envs"):
            return [env.get_wrapper_attr(name) for env in base.envs]
        return list(self.envs.get_attr(name))

    def _call(self, name: str, *args: Any, **kwargs: Any) -> list[Any]:
        base = self.envs.unwrapped
        if hasattr(base, "envs"):
            return [env.get_wrapper_attr(name)(*args, **kwargs) for env in base.envs]
        return list(self.envs.call(name, *args, **kwargs))


class TokenVecNormalize(VecNormalize):
    """SB3's ``VecNormalize`` that never normalises token ids or masks (issue 21).

    ``VecNormalize`` normalises every key of a Dict observation by default, so on a token env
    it silently feeds the policy floats instead of token ids. This one normalises only the
    ``Box`` keys of a floating-point dtype (by default all of them, none in a plain token env,
    which leaves reward normalisation), and refuses ``norm_obs_keys`` that name an integer key.
    It saves and loads like ``VecNormalize`` (``save``, ``TokenVecNormalize.load``).

    Args:
        venv: the SB3 ``VecEnv`` (e.g. :class:`SB3VecEnv`).
        norm_obs_keys: keys to normalise (floating-point keys only), ``None``: all of those.
        **kwargs: the rest of ``VecNormalize``'s arguments (``norm_reward``, ``gamma``, ...).

    Raises:
        ValueError: ``norm_obs_keys`` names an integer key (token ids, masks).

    Example:
        >>> venv = TokenVecNormalize(make_sb3_vec_env("llm_gym/LeftRightText-v0", 2, seed=0))
        >>> obs = venv.reset()
        >>> obs["input_ids"].dtype, venv.norm_obs, venv.norm_reward
        (dtype('int64'), False, True)
    """

    def __init__(self, venv: VecEnv, norm_obs_keys: list[str] | None = None,
                 **kwargs: Any) -> None:
        space = venv.observation_space
        floats = _float_keys(space)
        if norm_obs_keys is not None:
            integer = [k for k in norm_obs_keys if k not in floats]
            if integer:
                raise ValueError(f"TokenVecNormalize will not normalise {integer}: token ids and "
                                 f"masks must stay integers; normalise only {floats}")
        elif isinstance(space, gym.spaces.Dict):
            norm_obs_keys = floats
        if isinstance(space, gym.spaces.Dict) and not norm_obs_keys:
            kwargs["norm_obs"] = False  # nothing to normalise but the reward
        super().__init__(venv, norm_obs_keys=norm_obs_keys, **kwargs)


def _float_keys(space: gym.Space) -> list[str]:
    """The keys of a Dict space whose arrays are floating point (``[]`` for other spaces)."""
    if not isinstance(space, gym.spaces.Dict):
        return []
    return [key for key, sub in space.spaces.items()
            if isinstance(sub, gym.spaces.Box) and np.issubdtype(sub.dtype, np.floating)]


def _row(obs: Any, i: int) -> Any:
    """A copy of row ``i`` of a batched (Dict or array) observation."""
    if isinstance(obs, dict):
        return {key: np.array(value[i]) for key, value in obs.items()}
    return np.array(obs[i])


def make_sb3_vec_env(env_id: str, num_envs: int, *, env_kwargs: dict[str, Any] | None = None,
                     wrappers: Any = None, seed: int | None = None) -> SB3VecEnv:
    """``num_envs`` copies of ``env_id`` (with a wrapper stack) as one SB3 ``VecEnv``.

    A token env becomes one :class:`~llm_gym.vector.TokenVectorEnv` (autoreset disabled, rows
    reset by the adapter), a classic env a ``SyncVectorEnv`` resetting in the same step; the
    stack (:mod:`llm_gym.wrappers.stack`) is applied with the vector twins of the wrappers.

    Example:
        >>> import llm_gym
        >>> venv = make_sb3_vec_env("llm_gym/LeftRightText-v0", 4, seed=0)
        >>> venv.reset()["input_ids"].shape[0]
        4
    """
    from llm_gym.wrappers.stack import is_token_env, make_env

    mode = AutoresetMode.DISABLED if is_token_env(env_id) else AutoresetMode.SAME_STEP
    venv = SB3VecEnv(make_env(env_id, num_envs, env_kwargs=env_kwargs, wrappers=wrappers,
                              autoreset_mode=mode))
    if seed is not None:
        venv.seed(seed)
    return venv
