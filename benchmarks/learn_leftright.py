"""Who learns the left/right walk? Both faces, one table (not a test).

The walk's optimal return is +5 (right onto the -5 trap, then right onto the +10 goal). Agents
that look past one step reach it; the one-step greedy agent must not. Classic face
(``llm_gym/LeftRight-v0``): Q-learning, llm_gym's PPO (MLP), SB3 PPO, greedy, random. Text face
(``llm_gym/LeftRightText-v0``, action-word mask on): GRPO, RLOO and REINFORCE++ on the tiny
byte-level LM and sb3-contrib MaskablePPO. Every run is evaluated greedily every
``--eval-every`` steps; "steps/episodes to +5" count training up to the evaluation from which
every later one (the final one included) returned +5 in every episode; "untrained" is the
greedy return before training (a random init can be optimal by luck: that is why it is shown).

    nice -n 10 python benchmarks/learn_leftright.py --seeds 0,1,2 --out runs/learn_leftright
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from llm_gym.agents.compare import RunResult, RunSpec, run_comparison
from llm_gym.commands.quickstart import GRPO_CONFIG

CLASSIC, TEXT = "llm_gym/LeftRight-v0", "llm_gym/LeftRightText-v0"


def plan(seeds: list[int], classic_steps: int, text_tokens: int, llm: bool) -> list[RunSpec]:
    runs = []
    for seed in seeds:
        runs += [RunSpec(CLASSIC, name, classic_steps, seed)
                 for name in ("q-learning", "ppo", "sb3-ppo", "greedy", "random")]
        masked = {"constrained": True}
        if llm:  # GRPO and the two estimators that share its trainer, same settings
            runs += [RunSpec(TEXT, name, text_tokens, seed, dict(masked), config=GRPO_CONFIG,
                             model="tiny", label=f"{name} (tiny LM)")
                     for name in ("grpo", "rloo", "reinforce-pp")]
        runs.append(RunSpec(TEXT, "sb3-maskable-ppo", text_tokens, seed, dict(masked)))
    return runs


def episodes_to_solve(result: RunResult) -> int | None:
    if result.steps_to_solve is None:
        return None
    return sum(1 for r in result.episodes if r.env_steps <= result.steps_to_solve)


def table(results: list[RunResult]) -> str:
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.spec.env_id, r.spec.name), []).append(r)
    lines = ["| face | agent | seeds | untrained greedy return | final greedy return | "
             "reached +5 | steps to +5 | episodes to +5 | wall-clock s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (env_id, name), group in groups.items():
        finals = [g.evaluation.mean_return for g in group]
        solved = [g for g in group if g.steps_to_solve is not None]
        steps = [g.steps_to_solve for g in solved]
        episodes = [episodes_to_solve(g) for g in solved]
        face = "text" if env_id == TEXT else "classic"
        lines.append(
            f"| {face} | {name} | {len(group)} | "
            f"{', '.join(f'{g.initial_return:.0f}' for g in group)} | {np.mean(finals):.2f} "
            f"(min {min(finals):.0f}) | {len(solved)}/{len(group)} | "
            f"{_median(steps)} | {_median(episodes)} | "
            f"{np.mean([g.wall_clock_s for g in group]):.1f} |")
    return "\n".join(lines)


def _median(values: list) -> str:
    return f"{int(np.median(values))} (median)" if values else "never"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--classic-steps", type=int, default=5_000)
    parser.add_argument("--text-tokens", type=int, default=4_000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--skip-llm", action="store_true")
    parser.add_argument("--out", default="runs/learn_leftright")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = plan(seeds, args.classic_steps, args.text_tokens, not args.skip_llm)
    start = time.perf_counter()
    report = run_comparison(
        runs, out_dir=args.out, eval_episodes=3, eval_every=args.eval_every,
        on_run_end=lambda i, r: print(f"[{i + 1}/{len(runs)}] {r.spec.name} seed {r.spec.seed}: "
                                      f"final {r.evaluation.mean_return:.1f}, +5 at "
                                      f"{r.steps_to_solve} steps, {r.wall_clock_s:.1f} s",
                                      flush=True))
    print(f"\ncpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} "
          f"total={time.perf_counter() - start:.0f} s\n")
    print(table(report.runs))
    print(f"\nfiles: {', '.join(str(p) for p in report.files.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
