"""Wrapper stacks by name: one helper builds every wrapped env the trainers and the CLI use.

A stack is a list of ``{"name": ..., "kwargs": {...}}``, innermost first, as ``--wrappers``
takes it in JSON. Names are llm_gym's shaping wrappers (``FormatBonus``, ``LengthPenalty``,
``OverlongPenalty``, ``PotentialShaping``, ``RewardTerms``, ``LearnedReward``) and Gymnasium's
reward wrappers (``TransformReward``, ``ClipReward``, ``NormalizeReward``). Each name has a
single-env class and a vector twin (``gymnasium.wrappers`` / ``gymnasium.wrappers.vector``,
like Gymnasium's own), and :func:`apply_wrappers` picks the one that fits the env. Function
arguments (``potential``, ``func``, the values of ``terms`` / ``response_terms``) can be given as
``"package.module:name"`` strings, so a stack stays plain JSON and a run can record it.

:func:`make_env` is the one place an env is built from (id, env kwargs, stack): a single env,
or the batched token env of ``vector_entry_point`` (the trainers'), or a ``SyncVectorEnv`` of a
classic env, all wrapped the same way.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode, VectorEnv

LLM_GYM_WRAPPERS = ("FormatBonus", "LengthPenalty", "OverlongPenalty", "PotentialShaping",
                    "RewardTerms", "LearnedReward")
GYMNASIUM_WRAPPERS = ("TransformReward", "ClipReward", "NormalizeReward")
WRAPPER_NAMES = LLM_GYM_WRAPPERS + GYMNASIUM_WRAPPERS
FUNCTION_ARGS = ("potential", "func")  # arguments that take a function
FUNCTION_MAPS = ("terms", "response_terms")  # arguments that map names to functions


def wrapper_classes(name: str) -> tuple[type, type]:
    """(single-env class, vector class) of wrapper ``name``.

    Example:
        >>> [cls.__module__ for cls in wrapper_classes("LengthPenalty")]
        ['llm_gym.wrappers.shaping', 'llm_gym.wrappers.vector']
    """
    if name == "LearnedReward":  # its own modules: it loads a reward model (torch)
        from llm_gym.wrappers.learned import LearnedReward
        from llm_gym.wrappers.learned_vector import LearnedReward as VectorLearnedReward

        return LearnedReward, VectorLearnedReward
    if name in LLM_GYM_WRAPPERS:
        import llm_gym.wrappers.shaping
        import llm_gym.wrappers.vector

        return getattr(llm_gym.wrappers.shaping, name), getattr(llm_gym.wrappers.vector, name)
    if name in GYMNASIUM_WRAPPERS:
        import gymnasium.wrappers
        import gymnasium.wrappers.vector

        return getattr(gymnasium.wrappers, name), getattr(gymnasium.wrappers.vector, name)
    raise ValueError(f"unknown wrapper {name!r}; choose one of: {', '.join(WRAPPER_NAMES)}")


def parse_wrappers(value: str | Sequence[Mapping[str, Any]] | None,
                   flag: str = "--wrappers") -> list[dict[str, Any]]:
    """Check a wrapper stack (JSON text or a list) and return it as plain dicts.

    Every name must be known and every kwarg accepted by its class; nothing is built, so a bad
    stack fails before any training starts.

    Example:
        >>> parse_wrappers('[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]')
        [{'name': 'LengthPenalty', 'kwargs': {'coef': 0.01}}]
        >>> parse_wrappers('[{"name": "LengthPenalty", "kwargs": {"cof": 0.01}}]')
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: --wrappers: LengthPenalty does not take these arguments: ...
    """
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as err:
            raise ValueError(f"{flag} is not valid JSON ({err}): {value!r}") from None
    if isinstance(value, Mapping) or not isinstance(value, Sequence):
        raise ValueError(f'{flag} must be a list such as [{{"name": "LengthPenalty", "kwargs": '
                         f'{{"coef": 0.01}}}}], got {value!r}')
    stack = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(f'{flag}: each wrapper is {{"name": ..., "kwargs": {{...}}}}, '
                             f"got {item!r}")
        extra = sorted(set(item) - {"name", "kwargs"})
        if extra:
            raise ValueError(f"{flag}: unknown keys {extra} in {item!r}; use name and kwargs")
        kwargs = item.get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"{flag}: kwargs of {item['name']} must be an object, got "
                             f"{kwargs!r}")
        try:
            single, _ = wrapper_classes(item["name"])
        except ValueError as err:
            raise ValueError(f"{flag}: {err}") from None
        _check_arguments(single, item["name"], dict(kwargs), flag)
        stack.append({"name": item["name"], "kwargs": dict(kwargs)})
    return stack


def _check_arguments(cls: type, name: str, kwargs: dict[str, Any], flag: str) -> None:
    params = [p for p in inspect.signature(cls).parameters if p != "env"]
    try:
        inspect.signature(cls).bind(None, **kwargs)
    except TypeError as err:
        raise ValueError(f"{flag}: {name} does not take these arguments: {err}; it takes "
                         f"{', '.join(params)}") from None
    resolve_functions(name, kwargs)


def resolve_functions(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``"module:attr"`` strings of function arguments imported.

    Example:
        >>> resolve_functions("TransformReward", {"func": "math:tanh"})["func"].__name__
        'tanh'
    """
    out = dict(kwargs)
    for key in FUNCTION_ARGS:
        if isinstance(out.get(key), str):
            out[key] = _import(name, key, out[key])
    for key in FUNCTION_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {k: _import(name, f"{key}[{k!r}]", v) if isinstance(v, str) else v
                        for k, v in out[key].items()}
    return out


def _import(name: str, key: str, path: str) -> Any:
    module, _, attr = path.partition(":")
    try:
        found = getattr(importlib.import_module(module), attr) if attr else None
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{name}: {key}={path!r} cannot be imported ({err}); give "
                         "'package.module:function'") from None
    if not callable(found):
        raise ValueError(f"{name}: {key}={path!r} is not a function; give "
                         "'package.module:function'")
    return found


def apply_wrappers(env: gym.Env | VectorEnv, wrappers: Any) -> gym.Env | VectorEnv:
    """Wrap ``env`` (single or vector) in the stack ``wrappers``, innermost first.

    Example:
        >>> import gymnasium as gym
        >>> env = apply_wrappers(gym.make_vec("CartPole-v1", 2),
        ...                      [{"name": "ClipReward", "kwargs": {"max_reward": 0.5}}])
        >>> type(env).__module__
        'gymnasium.wrappers.vector.vectorize_reward'
    """
    for item in parse_wrappers(wrappers):
        single, batched = wrapper_classes(item["name"])
        cls = batched if isinstance(env, VectorEnv) else single
        env = cls(env, **resolve_functions(item["name"], item["kwargs"]))
    return env


def is_token_env_id(env_id: str) -> bool:
    """Whether the registered ``env_id`` builds an llm_gym token env (without building it)."""
    import llm_gym  # noqa: F401 - registers the llm_gym ids
    from llm_gym.token_env import TokenEnv

    entry = gym.spec(env_id).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    return isinstance(creator, type) and issubclass(creator, TokenEnv)


def make_env(env_id: str, num_envs: int | None = None, *,
             env_kwargs: Mapping[str, Any] | None = None, wrappers: Any = None,
             autoreset_mode: AutoresetMode | str | None = None) -> gym.Env | VectorEnv:
    """Build ``env_id`` with ``env_kwargs``, wrapped in ``wrappers``: one env or ``num_envs``.

    With ``num_envs``, a token env is the batched env of its ``vector_entry_point`` and a
    classic env a ``SyncVectorEnv``; the stack is applied with the vector twins.

    Example:
        >>> import llm_gym
        >>> envs = make_env("llm_gym/Arithmetic-v0", 4, autoreset_mode="Disabled",
        ...                 wrappers=[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}])
        >>> type(envs).__name__, envs.num_envs
        ('LengthPenalty', 4)
    """
    import llm_gym  # noqa: F401 - registers the llm_gym ids

    stack = parse_wrappers(wrappers)
    kwargs = dict(env_kwargs or {})
    if num_envs is None:
        env: Any = gym.make(env_id, **kwargs)
    elif is_token_env_id(env_id):
        if autoreset_mode is not None:
            kwargs["autoreset_mode"] = autoreset_mode
        env = gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point", **kwargs)
    else:
        vector_kwargs = {} if autoreset_mode is None else {"autoreset_mode": autoreset_mode}
        env = gym.make_vec(env_id, num_envs, vectorization_mode="sync",
                           vector_kwargs=vector_kwargs, **kwargs)
    try:
        return apply_wrappers(env, stack)
    except Exception:
        env.close()
        raise


def wrappers_of(env: gym.Env) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(id, env kwargs, stack) of a single env wrapped by name-known wrappers.

    Lets a trainer rebuild the same wrapped env as a batch: ``make_env(*wrappers_of(env))``.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> from llm_gym.wrappers import LengthPenalty
        >>> wrappers_of(LengthPenalty(gym.make("llm_gym/Arithmetic-v0"), coef=0.5))[2]
        [{'name': 'LengthPenalty', 'kwargs': {'coef': 0.5, 'name': 'length_penalty'}}]
    """
    stack = []
    inner = env
    while isinstance(inner, gym.Wrapper):
        name = type(inner).__name__
        if name in WRAPPER_NAMES and isinstance(inner, gym.utils.RecordConstructorArgs):
            stack.append({"name": name, "kwargs": dict(inner._saved_kwargs)})
        elif not _is_made_by_gym(inner):
            raise TypeError(f"{name} is not one of the wrappers a trainer can rebuild as a "
                            f"batch ({', '.join(WRAPPER_NAMES)}); pass a vector env instead")
        inner = inner.env
    spec = env.unwrapped.spec or env.spec
    if spec is None:
        raise TypeError(f"{env.unwrapped} has no spec: build it with gym.make(id) so the "
                        "trainer can build the batch of it, or pass a vector env")
    return spec.id, dict(spec.kwargs), stack[::-1]


def vector_wrappers_of(envs: VectorEnv) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(id, env kwargs, stack) of a ``SyncVectorEnv`` of single envs, wrapped at either level.

    The stack lists the sub-envs' wrappers, then the vector wrappers (innermost first), so a
    trainer can rebuild the same rewards on its own batched env.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> from llm_gym.wrappers import LengthPenalty
        >>> envs = gym.vector.SyncVectorEnv(
        ...     [lambda: LengthPenalty(gym.make("llm_gym/Arithmetic-v0"), 1.0)] * 2)
        >>> vector_wrappers_of(envs)[2][0]["name"]
        'LengthPenalty'
    """
    outer = []
    inner: Any = envs
    while isinstance(inner, gym.vector.VectorWrapper):
        name = type(inner).__name__
        if name not in WRAPPER_NAMES or not isinstance(inner, gym.utils.RecordConstructorArgs):
            raise TypeError(f"{name} is not one of the wrappers a trainer can rebuild on its "
                            f"batch ({', '.join(WRAPPER_NAMES)})")
        outer.append({"name": name, "kwargs": dict(inner._saved_kwargs)})
        inner = inner.env
    subs = getattr(inner, "envs", None)
    if not subs:
        raise TypeError(f"{inner} keeps its envs in other processes; pass an env id, a single "
                        "env or a SyncVectorEnv")
    env_id, kwargs, stack = wrappers_of(subs[0])
    return env_id, kwargs, stack + outer[::-1]


def _is_made_by_gym(wrapper: gym.Wrapper) -> bool:
    # gym.make adds these itself; they are rebuilt by make_env as well.
    return type(wrapper).__name__ in ("OrderEnforcing", "PassiveEnvChecker", "TimeLimit",
                                      "EnvCompatibility")
