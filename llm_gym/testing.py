"""Conformance checks for llm_gym envs, shipped inside the package (as PettingZoo does).

Use them on your own token env before registering it: each check raises ``AssertionError``
with a message saying what broke. They need no test framework.

Example:
    >>> import gymnasium as gym, llm_gym
    >>> from llm_gym.testing import check_token_env
    >>> check_token_env(gym.make("llm_gym/LeftRightText-v0"))
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

Step = tuple[Any, float, bool, bool, dict[str, Any]]
Trace = list[Any]


def bad_actions(vocab_size: int) -> list[tuple[str, Any]]:
    """Actions every token env must refuse with ``TypeError`` or ``ValueError``.

    Example:
        >>> [name for name, _ in bad_actions(260)][:3]
        ['negative', 'vocab_size', 'bool']
    """
    return [
        ("negative", -1),
        ("vocab_size", vocab_size),
        ("bool", True),
        ("numpy_bool", np.bool_(True)),
        ("float", 5.0),
        ("numpy_float", np.float64(5.0)),
        ("float_array_0d", np.array(5.0)),
        ("float_array", np.array([5.0])),
        ("string", "5"),
        ("none", None),
        ("array_2", np.array([1, 2])),
        ("array_1x1", np.array([[1]])),
        ("array_1", np.array([1])),
        ("bool_array_0d", np.array(True)),
        ("huge", 2**70),
        ("numpy_negative", np.int64(-1)),
    ]


def integer_scalar_actions(token: int) -> list[tuple[str, Any]]:
    """Spellings of ``token`` every token env must accept like the plain int."""
    return [
        ("int", int(token)),
        ("numpy_int64", np.int64(token)),
        ("numpy_int32", np.int32(token)),
        ("numpy_uint8", np.uint8(token)) if token < 256 else ("numpy_uint16", np.uint16(token)),
        ("array_0d", np.array(token)),
    ]


def sample_actions(env: gym.Env, n: int, seed: int = 0) -> np.ndarray:
    """``n`` action ids that end turns often: action words, answers, stops and noise.

    Pure random tokens almost never end a turn (2 stop tokens in 260), so a trace of them only
    tests the token budget. This mixes whole replies (the env's ``action_words`` when it has
    them, otherwise short numbers), stop tokens and random tokens, fixed in advance by ``seed``.
    """
    rng = np.random.default_rng(seed)
    base = env.unwrapped
    tokenizer = getattr(base, "tokenizer", None)
    if tokenizer is None:  # a classic env: its own action space
        return rng.integers(0, env.action_space.n, size=n)
    words = list(getattr(base, "action_words", ())) or ["42", "#### 7", "\\boxed{3}", "x"]
    out: list[int] = []
    while len(out) < n:
        kind = rng.integers(6)
        if kind <= 1:
            out += tokenizer.encode(words[rng.integers(len(words))]) + [tokenizer.eos_token_id]
        elif kind <= 4:
            out += rng.integers(0, base.vocab_size, size=rng.integers(1, 7)).tolist()
        else:
            out.append(tokenizer.eos_token_id)
    return np.array(out[:n], dtype=np.int64)


def collect_trace(
    env: gym.Env, seed: int, actions: Sequence[int], options: dict[str, Any] | None = None
) -> Trace:
    """Reset with ``seed``, step ``actions`` (resetting, unseeded, after each episode end)."""
    obs, info = env.reset(seed=seed, options=options)
    trace: Trace = [("reset", obs, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append(("step", obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, info = env.reset(options=options)
            trace.append(("reset", obs, info))
    return trace


def assert_same(a: Any, b: Any, where: str = "value") -> None:
    """Deep equality of observations, infos and traces (numpy arrays by value and dtype)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        same = a_arr.shape == b_arr.shape and a_arr.dtype == b_arr.dtype
        assert same and np.array_equal(a_arr, b_arr), f"{where} differs: {a!r} != {b!r}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where} keys differ: {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where} lengths differ: {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where} differs: {a!r} != {b!r}"


def check_determinism(make_env: Callable[[], gym.Env], seed: int = 0, n: int = 200) -> None:
    """Same seed and actions give the same trace: across instances and on a reused instance."""
    first = make_env()
    actions = sample_actions(first, n, seed)
    trace = collect_trace(first, seed, actions)
    collect_trace(first, seed + 1, sample_actions(first, n // 2, seed + 1))  # dirty it
    assert_same(collect_trace(first, seed, actions), trace, "trace of a reused env")
    assert_same(collect_trace(make_env(), seed, actions), trace, "trace of a new env")


def check_bad_actions(env: gym.Env, seed: int = 0) -> None:
    """Each bad action raises TypeError/ValueError and leaves the env as an untouched twin."""
    obs, _ = env.reset(seed=seed)
    twin = copy.deepcopy(env)
    good = sample_actions(env, 8, seed)
    for name, action in bad_actions(env.action_space.n):
        try:
            env.step(action)
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError(f"bad action {name} ({action!r}) was accepted")
        assert_same(env.unwrapped._observation(), obs, f"observation after bad action {name}")
    for i, action in enumerate(good):
        step = env.step(action)
        assert_same(step, twin.step(action), f"step {i} after bad actions")
        if step[2] or step[3]:
            break


def check_scalar_actions(env: gym.Env, seed: int = 0) -> None:
    """Numpy integer scalars and 0-d int arrays step exactly like the plain int."""
    env.reset(seed=seed)
    token = int(sample_actions(env, 1, seed)[0])
    expected = copy.deepcopy(env).step(token)
    for name, action in integer_scalar_actions(token):
        assert_same(copy.deepcopy(env).step(action), expected, f"step with {name}")


def run_to_episode_end(env: gym.Env, token: int, limit: int = 100_000) -> Step:
    """Step ``token`` until the episode ends; return the last step."""
    for _ in range(limit):
        step = env.step(token)
        if step[2] or step[3]:
            return step
    raise AssertionError(f"no episode end after {limit} steps of token {token}")


def check_step_order(make_env: Callable[[], gym.Env], seed: int = 0) -> None:
    """Step before reset and after the episode end raise a clear error; reset recovers.

    The env's own error is ``RuntimeError``; through ``gym.make`` Gymnasium's order check may
    raise its ``ResetNeeded`` first.
    """
    errors = (RuntimeError, gym.error.ResetNeeded)
    env = make_env()
    token = int(sample_actions(env, 1, seed)[0])
    _expect_raises(errors, env.step, token, what="step before reset")
    env.reset(seed=seed)
    run_to_episode_end(env, token)
    _expect_raises(errors, env.step, token, what="step after the episode ended")
    obs, _ = env.reset(seed=seed)
    assert_same(obs, make_env().reset(seed=seed)[0], "observation of the reset after the end")
    env.step(token)


def check_clone(make_env: Callable[[], gym.Env], seed: int = 0, n: int = 120) -> None:
    """Pickle and deepcopy mid-episode: the copies continue with identical traces."""
    env = make_env()
    actions = sample_actions(env, n, seed)
    env.reset(seed=seed)
    half = n // 2
    for action in actions[:half]:
        if env.step(action)[2:4] != (False, False):
            env.reset()
    clones = [copy.deepcopy(env), pickle.loads(pickle.dumps(env))]
    rest = _continue(env, actions[half:])
    for clone in clones:
        assert_same(_continue(clone, actions[half:]), rest, "trace of a clone")


def check_token_env(env: gym.Env, seed: int = 0, n: int = 200) -> None:
    """Run every check of this module on a token env (uses deep copies of ``env``).

    Args:
        env: the env to check (made with ``gym.make`` or not); it is not stepped itself.
        seed: seed of the resets and of the sampled actions.
        n: steps per trace (shorten it for envs whose turns are slow to score).

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> check_token_env(gym.make("llm_gym/FrozenLakeText-v0"))
    """
    from gymnasium.utils.env_checker import check_env

    def make_env() -> gym.Env:
        return copy.deepcopy(pristine)

    pristine = copy.deepcopy(env)
    check_env(make_env().unwrapped, skip_render_check=False)
    check_determinism(make_env, seed, n)
    check_bad_actions(make_env(), seed)
    check_scalar_actions(make_env(), seed)
    check_step_order(make_env, seed)
    check_clone(make_env, seed, max(2, n // 2))


def _continue(env: gym.Env, actions: Sequence[int]) -> Trace:
    trace: Trace = []
    for action in actions:
        step = env.step(action)
        trace.append(step)
        if step[2] or step[3]:
            trace.append(env.reset())
    return trace


def _expect_raises(
    errors: tuple[type[Exception], ...], fn: Callable[..., Any], *args: Any, what: str
) -> None:
    try:
        fn(*args)
    except errors:
        return
    raise AssertionError(f"{what} did not raise any of {[e.__name__ for e in errors]}")
