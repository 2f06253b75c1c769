"""Env-step throughput: the batched TokenVectorEnv, and LeftRight-v0 against CartPole-v1.

Goals (DESIGN.md: the env must never be the bottleneck next to a model):
* ``TokenVectorEnv`` adds under 5 µs per env-step at 256 envs (byte tokenizer, random valid
  tokens, so turns end at the token budget and rows autoreset often).
* ``LeftRight-v0`` steps at least 0.8x as fast as Gymnasium's ``CartPole-v1`` stepped the same
  way (``gym.make``, random actions from a pre-generated array, reset on done).
* With one shaping wrapper (``--wrappers``, a vector twin from ``llm_gym.wrappers.vector``), the
  batched env stays under 6 µs per env-step at 256 envs.

Run it on an otherwise idle machine, e.g.::

    nice -n 10 python benchmarks/env_step.py
    nice -n 10 python benchmarks/env_step.py --ids llm_gym/LeftRightText-v0 --num-envs 256
    nice -n 10 python benchmarks/env_step.py --num-envs 256 --skip-classic \
        --wrappers '[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]'
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.wrappers.stack import make_env, parse_wrappers

VECTOR_IDS = ["llm_gym/LeftRightText-v0", "llm_gym/Arithmetic-v0"]


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


def time_vector_env(env_id: str, num_envs: int, steps: int, seed: int = 0,
                    wrappers: list | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds for ``steps`` batched steps of ``num_envs`` envs, random tokens."""
    envs = make_env(env_id, num_envs, wrappers=wrappers)
    actions = np.random.default_rng(seed).integers(
        0, envs.single_action_space.n, size=(steps, num_envs)
    )
    envs.reset(seed=seed)
    with Timer() as timer:
        for action in actions:
            envs.step(action)
    envs.close()
    return timer.seconds


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


def vector_rows(ids: list[str], sizes: list[int], env_steps: int, repeats: int,
                wrappers: list | None = None) -> list[str]:
    rows = []
    for env_id in ids:
        for num_envs in sizes:
            steps = max(50, env_steps // num_envs)
            wall, cpu = best_of(repeats, partial(time_vector_env, env_id, num_envs, steps,
                                                 wrappers=wrappers))
            env_steps_done = steps * num_envs
            rows.append(f"| {env_id} | {num_envs} | {steps / wall:,.0f} | "
                        f"{env_steps_done / wall:,.0f} | {wall / env_steps_done * 1e6:.2f} | "
                        f"{cpu / env_steps_done * 1e6:.2f} |")
    return rows


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
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 64, 256])
    parser.add_argument("--env-steps", type=int, default=200_000,
                        help="env-steps per vector timing (batched steps = this / num_envs)")
    parser.add_argument("--classic-steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="timings per row; best is kept")
    parser.add_argument("--wrappers", help="wrapper stack JSON applied to the vector env")
    parser.add_argument("--skip-classic", action="store_true", help="only the vector rows")
    args = parser.parse_args(argv)
    wrappers = parse_wrappers(args.wrappers)

    names = " + ".join(w["name"] for w in wrappers) or "no wrapper"
    print(f"## TokenVectorEnv (byte tokenizer, random valid tokens, NEXT_STEP autoreset), "
          f"{names}\n")
    print("| env | num_envs | batched steps/s | env-steps/s | µs per env-step | CPU µs per "
          "env-step |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in vector_rows(args.ids, args.num_envs, args.env_steps, args.repeats, wrappers):
        print(row, flush=True)
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
