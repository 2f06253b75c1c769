"""Env-step throughput: the batched TokenVectorEnv beside CartPole's vector env, and LeftRight-v0.

Goals (DESIGN.md: the env must never be the bottleneck next to a model; issue 24):
* At 256 envs, one env-step of the batched ``TokenVectorEnv`` costs at most 5x one env-step of
  Gymnasium's ``CartPole-v1`` vector env (``gym.make_vec(..., "vector_entry_point")``) timed in
  the same run, on ``Arithmetic-v0`` and ``LeftRightText-v0`` (and the tool env
  ``ArithmeticTool-v0``), both with a fixed token (the end-of-turn token: every turn ends at
  once, so single-turn envs reset every other step) and with random valid tokens.
* Task generation (``sample_task``) costs at most 20 µs per reset for procedural envs.
* ``LeftRight-v0`` steps at least 0.8x as fast as ``CartPole-v1`` stepped the same way
  (``gym.make``, random actions from a pre-generated array, reset on done).
* With one shaping wrapper (``--wrappers``, a vector twin from ``llm_gym.wrappers.vector``), the
  batched env stays under 6 µs per env-step at 256 envs.

The cost of resets and of scoring is reported apart: a second, instrumented run of each case
times every sub-env ``reset``, ``sample_task`` and the batch's ``score_turns`` call (the
timed rows above it run without instrumentation).

Run it on an otherwise idle machine, e.g.::

    nice -n 10 python benchmarks/env_step.py
    nice -n 10 python benchmarks/env_step.py --ids llm_gym/LeftRightText-v0 --num-envs 256
    nice -n 10 python benchmarks/env_step.py --num-envs 256 --skip-classic \
        --wrappers '[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]'
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym import vector as vector_module
from llm_gym.wrappers.stack import make_env, parse_wrappers

VECTOR_IDS = ["llm_gym/Arithmetic-v0", "llm_gym/LeftRightText-v0", "llm_gym/ArithmeticTool-v0"]
TOKENS = ("fixed", "random")
GOAL_RATIO = 5.0  # per env-step, times CartPole's vector env
GOAL_TASK_US = 20.0  # task generation per reset


def best_of(repeats: int, run: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """Fastest (wall, CPU) seconds of ``repeats`` runs: the least disturbed by other load.

    The process CPU time is reported next to the wall time because this machine is shared:
    other processes stretch the wall clock, much less the CPU time this process used.
    """
    timings = [run() for _ in range(repeats)]
    return min(t[0] for t in timings), min(t[1] for t in timings)


class Timer:
    """Wall-clock and process CPU seconds of a ``with`` block."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = (time.perf_counter() - self._wall, time.process_time() - self._cpu)


def action_array(envs: Any, tokens: str, steps: int, seed: int) -> np.ndarray:
    """``(steps, num_envs)`` actions: all the end-of-turn token, or uniform random token ids."""
    shape = (steps, envs.num_envs)
    if tokens == "fixed":
        return np.full(shape, envs.unwrapped.tokenizer.eos_token_id, dtype=np.int64)
    return np.random.default_rng(seed).integers(0, envs.single_action_space.n, size=shape)


def time_vector_env(env_id: str, num_envs: int, steps: int, seed: int = 0,
                    wrappers: list | None = None, tokens: str = "random") -> tuple[float, float]:
    """(wall, CPU) seconds for ``steps`` batched steps of ``num_envs`` envs."""
    envs = make_env(env_id, num_envs, wrappers=wrappers)
    return time_steps(envs, action_array(envs, tokens, steps, seed), seed)


def time_cartpole_vector(num_envs: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """(wall, CPU) seconds for ``steps`` batched steps of CartPole's own vector env."""
    envs = gym.make_vec("CartPole-v1", num_envs, vectorization_mode="vector_entry_point")
    return time_steps(envs, np.random.default_rng(seed).integers(0, 2, size=(steps, num_envs)),
                      seed)


def time_steps(envs: Any, actions: Any, seed: int) -> tuple[float, float]:
    """(wall, CPU) seconds to step the reset vector env ``envs`` through ``actions``; closes it."""
    envs.reset(seed=seed)
    with Timer() as timer:
        for action in actions:
            envs.step(action)
    envs.close()
    return timer.seconds


@contextmanager
def patched(cls: type, name: str, wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    """Replace ``cls.name`` by ``wrap(original)`` for the block, then put it back."""
    own = name in cls.__dict__
    original = getattr(cls, name)
    setattr(cls, name, wrap(original))
    try:
        yield
    finally:
        if own:
            setattr(cls, name, original)
        else:
            delattr(cls, name)


def timed(totals: dict[str, float], key: str, func: Callable) -> Callable:
    """``func`` adding its seconds to ``totals[key]`` and its calls to ``totals[key + 's']``."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
            totals[key + "s"] += 1
    return wrapper


def cost_breakdown(env_id: str, num_envs: int, steps: int, tokens: str,
                   seed: int = 0) -> dict[str, float]:
    """Seconds and calls of sub-env resets, task generation and scoring over ``steps`` steps."""
    envs = make_env(env_id, num_envs)
    actions = action_array(envs, tokens, steps, seed)
    envs.reset(seed=seed)
    cls = type(envs.unwrapped.envs[0])
    totals = dict.fromkeys(("reset", "resets", "task", "tasks", "score", "scores"), 0.0)

    def scorer(func: Callable) -> Callable:
        def score(turns: Any) -> Any:
            totals["turns"] = totals.get("turns", 0) + len(turns)
            return timed(totals, "score", func)(turns)
        return score

    original_score = vector_module.score_turns
    with patched(cls, "reset", partial(timed, totals, "reset")), \
            patched(cls, "sample_task", partial(timed, totals, "task")):
        vector_module.score_turns = scorer(original_score)
        try:
            for action in actions:
                envs.step(action)
        finally:
            vector_module.score_turns = original_score
    envs.close()
    return totals


def vector_rows(ids: list[str], sizes: list[int], env_steps: int, repeats: int,
                wrappers: list | None = None) -> list[str]:
    """Rows of the main table, printed as they come: CartPole's vector env, then each case."""
    rows = []
    for num_envs in sizes:
        steps = max(50, env_steps // num_envs)
        done = steps * num_envs
        cart_wall, cart_cpu = best_of(repeats, partial(time_cartpole_vector, num_envs, steps))
        rows.append(f"| CartPole-v1 (vector) | {num_envs} | random | {cart_wall / done * 1e6:.2f} "
                    f"| {cart_cpu / done * 1e6:.2f} | 1.0 | | | | | |")
        print(rows[-1], flush=True)
        for env_id in ids:
            for tokens in TOKENS:
                wall, cpu = best_of(repeats, partial(time_vector_env, env_id, num_envs, steps,
                                                     wrappers=wrappers, tokens=tokens))
                parts = cost_breakdown(env_id, num_envs, steps, tokens)
                resets = max(parts["resets"], 1)
                rows.append(
                    f"| {env_id} | {num_envs} | {tokens} | {wall / done * 1e6:.2f} | "
                    f"{cpu / done * 1e6:.2f} | {wall / cart_wall:.1f} / {cpu / cart_cpu:.1f} | "
                    f"{parts['reset'] / done * 1e6:.2f} | {parts['score'] / done * 1e6:.2f} | "
                    f"{100 * parts['resets'] / done:.1f} | {parts['reset'] / resets * 1e6:.1f} | "
                    f"{parts['task'] / max(parts['tasks'], 1) * 1e6:.1f} |"
                )
                print(rows[-1], flush=True)
    return rows


def time_single_env(env_id: str, steps: int, seed: int = 0) -> tuple[float, float]:
    """(wall, CPU) seconds for ``steps`` steps of ``gym.make(env_id)``, resetting on done."""
    env = gym.make(env_id)
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, size=steps)
    env.reset(seed=seed)
    with Timer() as timer:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
    env.close()
    return timer.seconds


def classic_rows(steps: int, repeats: int) -> tuple[list[str], float, float]:
    """Table rows, and LeftRight/CartPole steps/s ratios by wall and by CPU time."""
    timings = {}
    for env_id in ("llm_gym/LeftRight-v0", "CartPole-v1"):
        timings[env_id] = best_of(repeats, partial(time_single_env, env_id, steps))
    rows = [f"| {env_id} | {steps / wall:,.0f} | {wall / steps * 1e6:.2f} | "
            f"{cpu / steps * 1e6:.2f} |" for env_id, (wall, cpu) in timings.items()]
    (lr_wall, lr_cpu), (cp_wall, cp_cpu) = timings.values()
    return rows, cp_wall / lr_wall, cp_cpu / lr_cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", nargs="+", default=VECTOR_IDS)
    parser.add_argument("--num-envs", nargs="+", type=int, default=[256])
    parser.add_argument("--env-steps", type=int, default=100_000,
                        help="env-steps per vector timing (batched steps = this / num_envs)")
    parser.add_argument("--classic-steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="timings per row; best is kept")
    parser.add_argument("--wrappers", help="wrapper stack JSON applied to the vector env")
    parser.add_argument("--skip-classic", action="store_true", help="only the vector rows")
    args = parser.parse_args(argv)
    wrappers = parse_wrappers(args.wrappers)

    names = " + ".join(w["name"] for w in wrappers) or "no wrapper"
    print(f"## TokenVectorEnv (byte tokenizer, NEXT_STEP autoreset), {names}; load average "
          f"{os.getloadavg()[0]:.2f} at the start\n")
    print("Tokens: `fixed` = the end-of-turn token every step, `random` = uniform token ids. "
          "µs are per env-step (batched step / num_envs) unless the column says per reset; "
          "ratio to CartPole's vector env by wall / by CPU time; reset and scoring from an "
          "instrumented run.\n")
    print("| env | num_envs | tokens | µs per env-step | CPU µs | × CartPole (wall / CPU) | "
          "reset µs | scoring µs | resets per 100 env-steps | µs per reset | task gen µs per "
          "reset |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    vector_rows(args.ids, args.num_envs, args.env_steps, args.repeats, wrappers)
    print(f"\nGoals: × CartPole ≤ {GOAL_RATIO:g}; task generation ≤ {GOAL_TASK_US:g} µs per "
          f"reset. Load average at the end {os.getloadavg()[0]:.2f}.")
    if args.skip_classic:
        return

    print("\n## Classic env, gym.make, random actions, reset on done\n")
    rows, ratio, cpu_ratio = classic_rows(args.classic_steps, args.repeats)
    print("| env | steps/s | µs per step | CPU µs per step |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nLeftRight-v0 / CartPole-v1 steps/s: {ratio:.2f}x by wall clock, {cpu_ratio:.2f}x "
          "by CPU time (goal: at least 0.8x)")


if __name__ == "__main__":
    main()
