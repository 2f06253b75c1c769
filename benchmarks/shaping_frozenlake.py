"""Shaping experiment: slippery FrozenLake on both faces, with and without the same potential.

``FrozenLake-v1`` (classic, SB3 PPO) and its token twin ``llm_gym/FrozenLakeText-v0`` (GRPO on a
tiny LM from scratch with the action-word mask, and sb3-maskable-ppo in the byte vocabulary)
train with and without ``PotentialShaping`` on one potential, ``-(Manhattan distance to the
goal) / 6``, read from either face's observation (the classic state, or the last map the token
env showed). The agents are evaluated greedily every ``--eval-every`` env steps; "steps to a
stable success rate" is the step count from which every evaluation reached ``--solve-rate``
(slippery 4x4 FrozenLake's best policies succeed about 74-82% of the time). Writes
``result.json`` and ``table.md`` to ``--out-dir``.

    nice -n 10 python benchmarks/shaping_frozenlake.py --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from llm_gym.agents.compare import RunSpec, run_one  # noqa: E402
from llm_gym.tokenizers import ByteTokenizer  # noqa: E402

MAP = ("SFFF", "FHFH", "FFFH", "HFFG")  # FrozenLake-v1's 4x4 map
CELLS = set("SFHGA")


class GoalDistance:
    """``Phi(s) = -(Manhattan distance from the agent to the goal) / 6`` on either face.

    A classic observation is the state index; a token observation (byte tokenizer) holds the
    map the env last showed, with ``A`` where the agent stands.
    """

    def __init__(self) -> None:
        self.tokenizer = ByteTokenizer()
        self.__name__ = "goal_distance"

    def __call__(self, obs: Any) -> float:
        row, col = self.position(obs)
        return -((3 - row) + (3 - col)) / 6

    def position(self, obs: Any) -> tuple[int, int]:
        if not isinstance(obs, dict):
            return divmod(int(obs), 4)
        length = int(np.count_nonzero(obs["attention_mask"]))
        ids, agent = obs["input_ids"][:length], np.asarray(obs["agent_mask"][:length], bool)
        mine = np.flatnonzero(agent)
        # The env's last message: after the agent's last token, or the prompt before the first.
        end = length if not mine.size or mine[-1] < length - 1 else int(mine[0])
        text = self.tokenizer.decode(ids[:end].tolist(), skip_special_tokens=True)
        rows = [line for line in text.splitlines() if len(line) == 4 and set(line) <= CELLS]
        for r, line in enumerate(rows[-4:]):
            if "A" in line:
                return r, line.index("A")
        return 0, 0


def specs(args: argparse.Namespace) -> list[RunSpec]:
    potential = [{"name": "PotentialShaping",
                  "kwargs": {"potential": GoalDistance(), "gamma": args.gamma}}]
    grpo = {"group_size": 8, "prompts_per_batch": 2, "learning_rate": 2e-3,
            "max_sampling_rounds": 1}
    plans = [("FrozenLake-v1", "sb3-ppo", {}, None, args.classic_steps),
             ("llm_gym/FrozenLakeText-v0", "grpo", {"constrained": True}, grpo,
              args.text_steps),
             ("llm_gym/FrozenLakeText-v0", "sb3-maskable-ppo", {"constrained": True},
              {"n_steps": 256, "batch_size": 64}, args.text_steps)]
    runs = []
    for env_id, agent, kwargs, config, steps in plans:
        if agent not in args.agents.split(","):
            continue
        for variant, stack in (("unshaped", []), ("potential", potential)):
            if variant not in args.variants.split(","):
                continue
            for seed in args.seeds:
                runs.append(RunSpec(env_id, agent, steps, seed, kwargs, config=config,
                                    wrappers=stack, variant=variant))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--agents", default="sb3-ppo,grpo,sb3-maskable-ppo")
    parser.add_argument("--classic-steps", type=int, default=30_000)
    parser.add_argument("--text-steps", type=int, default=20_000, help="agent tokens")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--solve-rate", type=float, default=0.6)
    parser.add_argument("--gamma", type=float, default=1.0,
                        help="gamma of the shaping term (Ng et al.: the agent's discount; GRPO "
                             "has none, SB3 PPO uses 0.99)")
    parser.add_argument("--variants", default="unshaped,potential")
    parser.add_argument("--out-dir", default="benchmarks/results/shaping_frozenlake")
    args = parser.parse_args()
    results = []
    for spec in specs(args):
        start = time.perf_counter()
        result = run_one(spec, eval_episodes=args.eval_episodes, eval_every=args.eval_every,
                         solve_rate=args.solve_rate)
        ev = result.evaluation
        print(f"{spec.env_id} {spec.agent} {spec.variant} seed {spec.seed}: success "
              f"{ev.success_rate} env_return {ev.env_return:.3f} steps_to_stable "
              f"{result.steps_to_solve} ({time.perf_counter() - start:.0f} s)", flush=True)
        results.append({"env": spec.env_id, "agent": spec.agent, "variant": spec.variant,
                        "seed": spec.seed, "steps": result.env_steps,
                        "success_rate": ev.success_rate, "env_return": ev.env_return,
                        "shaped_return": ev.mean_return, "steps_to_stable": result.steps_to_solve,
                        "success_curve": result.success_curve,
                        "train_s": result.wall_clock_s, "load_avg": os.getloadavg()[0]})
    lines = ["| env | agent | variant | seed | env steps | final success | steps to stable "
             f"success >= {args.solve_rate} | train s |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        stable = "never" if r["steps_to_stable"] is None else f"{r['steps_to_stable']:,}"
        lines.append(f"| {r['env']} | {r['agent']} | {r['variant']} | {r['seed']} | "
                     f"{r['steps']:,} | {r['success_rate']:.2f} | {stable} | "
                     f"{r['train_s']:.0f} |")
    print("\n".join(lines))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    (out / "result.json").write_text(json.dumps(
        {"args": {k: v for k, v in vars(args).items()}, "results": results,
         "machine": platform.platform(), "cpu_count": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
