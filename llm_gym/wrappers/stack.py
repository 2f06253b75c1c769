"""Wrapper stacks by name: one helper builds every wrapped env the trainers and the CLI use.

A stack is written as a list of ``{"name": ..., "kwargs": {...}}``, innermost first, as
``--wrappers`` takes it in JSON. :func:`parse_wrappers` checks it once, at the edge (the CLI,
``make_agent``, a trainer's ``wrappers=``), into a :class:`WrapperStack`: a frozen tuple of
:class:`WrapperSpec` that every layer below takes as it is, and that :meth:`WrapperStack.to_json`
turns back into the list a run records.

Names are llm_gym's shaping wrappers (``FormatBonus``, ``LengthPenalty``, ``OverlongPenalty``,
``PotentialShaping``, ``RewardTerms``, ``LearnedReward``) and Gymnasium's reward wrappers
(``TransformReward``, ``ClipReward``, ``NormalizeReward``). Each name has a single-env class and
a vector twin (``gymnasium.wrappers`` / ``gymnasium.wrappers.vector``, like Gymnasium's own), and
:func:`apply_wrappers` picks the one that fits the env. Function arguments (``potential``,
``func``, the values of ``terms`` / ``response_terms``) can be given as ``"package.module:name"``
strings, so a stack stays plain JSON and a run can record it.

:func:`make_env` is the one place an env is built from (id or env instance, env kwargs, stack):
a single env, or the batched token env of ``vector_entry_point`` (the trainers'), or a
``SyncVectorEnv`` of a classic env, all wrapped the same way. :func:`is_token_env` is the one
answer to "is this a token env?" for an id, an env or a vector env.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

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


@dataclass(frozen=True, repr=False)
class WrapperSpec:
    """One checked wrapper of a stack: its name and its keyword arguments (read-only).

    Build stacks with :func:`parse_wrappers`, which checks the name and the arguments.

    Attributes:
        name: one of :data:`WRAPPER_NAMES`.
        kwargs: the wrapper's keyword arguments; function arguments may be
            ``"package.module:name"`` strings (see :func:`resolve_functions`).
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy does not pickle: Ray workers, deepcopy and spawn get the plain dict.
        return type(self), (self.name, dict(self.kwargs))

    def __repr__(self) -> str:
        return f"WrapperSpec({self.name!r}, {dict(self.kwargs)!r})"

    def to_json(self) -> dict[str, Any]:
        """``{"name": ..., "kwargs": {...}}``, the form ``--wrappers`` and run.json use."""
        return {"name": self.name, "kwargs": dict(self.kwargs)}


class WrapperStack(tuple[WrapperSpec, ...]):
    """A checked wrapper stack, innermost first: a tuple of :class:`WrapperSpec`.

    :func:`parse_wrappers` builds it; every function that takes a stack returns a
    ``WrapperStack`` given to it as it is, without checking it again.

    Example:
        >>> stack = parse_wrappers([{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}])
        >>> stack[0].name, stack.to_json()
        ('LengthPenalty', [{'name': 'LengthPenalty', 'kwargs': {'coef': 0.01}}])
        >>> parse_wrappers(stack) is stack
        True
    """

    __slots__ = ()

    def __new__(cls, specs: Iterable[WrapperSpec] = ()) -> WrapperStack:
        specs = tuple(specs)
        for spec in specs:
            if not isinstance(spec, WrapperSpec):
                raise TypeError(f"a WrapperStack holds WrapperSpecs, got {spec!r}; build it "
                                "with parse_wrappers")
        return super().__new__(cls, specs)

    def __add__(self, other: object) -> WrapperStack:  # type: ignore[override]
        if not isinstance(other, WrapperStack):
            return NotImplemented
        return WrapperStack((*self, *other))

    def __repr__(self) -> str:
        return f"WrapperStack({self.to_json()!r})"

    def to_json(self) -> list[dict[str, Any]]:
        """The stack as the plain list ``--wrappers`` takes and run.json records."""
        return [spec.to_json() for spec in self]

    def portable(self) -> list[dict[str, Any]] | None:
        """:meth:`to_json` if JSON can hold it, else ``None`` (an argument is a Python object).

        Example:
            >>> print(parse_wrappers([{"name": "TransformReward", "kwargs": {"func": abs}}])
            ...       .portable())
            None
        """
        stack = self.to_json()
        try:
            json.dumps(stack)
        except TypeError:
            return None
        return stack


# What the public functions that take a stack accept; parse_wrappers turns it into the stack.
WrappersLike: TypeAlias = WrapperStack | str | Sequence[Mapping[str, Any]] | None


def parse_wrappers(value: WrappersLike, flag: str = "--wrappers") -> WrapperStack:
    """Check a wrapper stack (JSON text or a list) once and return it as a :class:`WrapperStack`.

    Every name must be known and every kwarg accepted by its class; nothing is built, so a bad
    stack fails before any training starts. A :class:`WrapperStack` is returned as it is (it
    was checked when it was built), and ``None`` is the empty stack.

    Example:
        >>> parse_wrappers('[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]')
        WrapperStack([{'name': 'LengthPenalty', 'kwargs': {'coef': 0.01}}])
        >>> parse_wrappers('[{"name": "LengthPenalty", "kwargs": {"cof": 0.01}}]')
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: --wrappers: LengthPenalty does not take these arguments: ...
    """
    if isinstance(value, WrapperStack):
        return value
    if value is None:
        return WrapperStack()
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as err:
            raise ValueError(f"{flag} is not valid JSON ({err}): {value!r}") from None
    if isinstance(value, Mapping) or not isinstance(value, Sequence):
        raise ValueError(f'{flag} must be a list such as [{{"name": "LengthPenalty", "kwargs": '
                         f'{{"coef": 0.01}}}}], got {value!r}')
    return WrapperStack(item if isinstance(item, WrapperSpec) else _parse_item(item, flag)
                        for item in value)


def _parse_item(item: Any, flag: str) -> WrapperSpec:
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
    return WrapperSpec(item["name"], kwargs)


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


def apply_wrappers(env: gym.Env | VectorEnv, wrappers: WrappersLike) -> gym.Env | VectorEnv:
    """Wrap ``env`` (single or vector) in the stack ``wrappers``, innermost first.

    Example:
        >>> import gymnasium as gym
        >>> env = apply_wrappers(gym.make_vec("CartPole-v1", 2),
        ...                      [{"name": "ClipReward", "kwargs": {"max_reward": 0.5}}])
        >>> type(env).__module__
        'gymnasium.wrappers.vector.vectorize_reward'
    """
    for spec in parse_wrappers(wrappers):
        single, batched = wrapper_classes(spec.name)
        cls = batched if isinstance(env, VectorEnv) else single
        env = cls(env, **resolve_functions(spec.name, spec.kwargs))
    return env


def is_token_env(env: str | gym.Env | VectorEnv) -> bool:
    """Whether ``env`` is an llm_gym token env: an id (not built), an env or a vector env.

    Wrappers do not count: a wrapped token env is a token env.

    Example:
        >>> import gymnasium as gym
        >>> is_token_env("llm_gym/LeftRightText-v0"), is_token_env(gym.make("CartPole-v1"))
        (True, False)
    """
    from llm_gym.token_env import TokenEnv
    from llm_gym.vector import TokenVectorEnv

    if isinstance(env, (gym.Env, VectorEnv)):
        return isinstance(env.unwrapped, (TokenEnv, TokenVectorEnv))
    if not isinstance(env, str):
        return False
    import llm_gym  # noqa: F401 - registers the llm_gym ids

    entry = gym.spec(env).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    return isinstance(creator, type) and issubclass(creator, TokenEnv)



def make_env(env: str | gym.Env, num_envs: int | None = None, *,
             env_kwargs: Mapping[str, Any] | None = None, wrappers: WrappersLike = None,
             autoreset_mode: AutoresetMode | str | None = None) -> gym.Env | VectorEnv:
    """Build ``env`` with ``env_kwargs``, wrapped in ``wrappers``: one env or ``num_envs``.

    With ``num_envs``, a token env is the batched env of its ``vector_entry_point`` and a
    classic env a ``SyncVectorEnv``; the stack is applied with the vector twins. An env
    instance (single or vector) is wrapped as it is.

    Example:
        >>> import llm_gym
        >>> envs = make_env("llm_gym/Arithmetic-v0", 4, autoreset_mode="Disabled",
        ...                 wrappers=[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}])
        >>> type(envs).__name__, envs.num_envs
        ('LengthPenalty', 4)
    """
    stack = parse_wrappers(wrappers)
    if not isinstance(env, str):
        if env_kwargs:
            raise ValueError("env_kwargs only apply to an env id, not to an env instance")
        if num_envs is not None or autoreset_mode is not None:
            raise ValueError("num_envs and autoreset_mode only apply to an env id, not to an "
                             "env instance")
        return apply_wrappers(env, stack)
    import llm_gym  # noqa: F401 - registers the llm_gym ids

    kwargs = dict(env_kwargs or {})
    if num_envs is None:
        made: Any = gym.make(env, **kwargs)
    elif is_token_env(env):
        if autoreset_mode is not None:
            kwargs["autoreset_mode"] = autoreset_mode
        made = gym.make_vec(env, num_envs, vectorization_mode="vector_entry_point", **kwargs)
    else:
        vector_kwargs = {} if autoreset_mode is None else {"autoreset_mode": autoreset_mode}
        made = gym.make_vec(env, num_envs, vectorization_mode="sync",
                            vector_kwargs=vector_kwargs, **kwargs)
    try:
        return apply_wrappers(made, stack)
    except Exception:
        made.close()
        raise


def wrappers_of(env: gym.Env) -> tuple[str, dict[str, Any], WrapperStack]:
    """(id, env kwargs, stack) of a single env wrapped by name-known wrappers.

    Lets a trainer rebuild the same wrapped env as a batch: ``make_env(*wrappers_of(env))``.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> from llm_gym.wrappers import LengthPenalty
        >>> wrappers_of(LengthPenalty(gym.make("llm_gym/Arithmetic-v0"), coef=0.5))[2].to_json()
        [{'name': 'LengthPenalty', 'kwargs': {'coef': 0.5, 'name': 'length_penalty'}}]
    """
    stack = []
    inner = env
    while isinstance(inner, gym.Wrapper):
        name = type(inner).__name__
        if name in WRAPPER_NAMES and isinstance(inner, gym.utils.RecordConstructorArgs):
            stack.append(WrapperSpec(name, inner._saved_kwargs))
        elif not _is_made_by_gym(inner):
            raise TypeError(f"{name} is not one of the wrappers a trainer can rebuild as a "
                            f"batch ({', '.join(WRAPPER_NAMES)}); pass a vector env instead")
        inner = inner.env
    spec = env.unwrapped.spec or env.spec
    if spec is None:
        raise TypeError(f"{env.unwrapped} has no spec: build it with gym.make(id) so the "
                        "trainer can build the batch of it, or pass a vector env")
    return spec.id, dict(spec.kwargs), WrapperStack(stack[::-1])


def vector_wrappers_of(envs: VectorEnv) -> tuple[str, dict[str, Any], WrapperStack]:
    """(id, env kwargs, stack) of a ``SyncVectorEnv`` of single envs, wrapped at either level.

    The stack lists the sub-envs' wrappers, then the vector wrappers (innermost first), so a
    trainer can rebuild the same rewards on its own batched env.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> from llm_gym.wrappers import LengthPenalty
        >>> envs = gym.vector.SyncVectorEnv(
        ...     [lambda: LengthPenalty(gym.make("llm_gym/Arithmetic-v0"), 1.0)] * 2)
        >>> vector_wrappers_of(envs)[2][0].name
        'LengthPenalty'
    """
    outer = []
    inner: Any = envs
    while isinstance(inner, gym.vector.VectorWrapper):
        name = type(inner).__name__
        if name not in WRAPPER_NAMES or not isinstance(inner, gym.utils.RecordConstructorArgs):
            raise TypeError(f"{name} is not one of the wrappers a trainer can rebuild on its "
                            f"batch ({', '.join(WRAPPER_NAMES)})")
        outer.append(WrapperSpec(name, inner._saved_kwargs))
        inner = inner.env
    subs = getattr(inner, "envs", None)
    if not subs:
        raise TypeError(f"{inner} keeps its envs in other processes; pass an env id, a single "
                        "env or a SyncVectorEnv")
    env_id, kwargs, stack = wrappers_of(subs[0])
    return env_id, kwargs, stack + WrapperStack(outer[::-1])


def _is_made_by_gym(wrapper: gym.Wrapper) -> bool:
    # gym.make adds these itself; they are rebuilt by make_env as well.
    return type(wrapper).__name__ in ("OrderEnforcing", "PassiveEnvChecker", "TimeLimit",
                                      "EnvCompatibility")
