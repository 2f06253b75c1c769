"""``llm-gym quickstart``: both faces of the left/right walk, classic agents vs an LLM, offline.

On a CPU with no network it trains, for one budget each:

* the classic face ``llm_gym/LeftRight-v0``: Q-learning, SB3 PPO, llm_gym's PPO (MLP) and the
  one-step greedy baseline — which cannot reach the optimal +5, because the first step onto the
  trap costs -5;
* the text face ``llm_gym/LeftRightText-v0`` (the same MDP, one token per step, with the
  action-word mask): GRPO on a small language model built from a config (no download) and
  sb3-contrib's MaskablePPO on the byte tokens;

then prints the comparison table and writes it (markdown, CSV, JSON) with the learning curves
(``learning_curves.png``) to ``--out``.

Example:
    llm-gym quickstart --out runs/quickstart
"""

from __future__ import annotations

import argparse
import os
import time

from llm_gym.commands.compare import print_run

CLASSIC, TEXT = "llm_gym/LeftRight-v0", "llm_gym/LeftRightText-v0"
# GRPO on the tiny byte-level model: a high learning rate is what a from-scratch 2-layer model
# needs; 8 samples per prompt give the group baseline something to compare. A pretrained model
# keeps GRPOConfig's own learning rate. (Without the action-word mask the tiny model never
# spelled a valid word in 18k tokens: every episode ended at -1, so the mask stays on.)
GRPO_CONFIG = {"group_size": 8, "prompts_per_batch": 2, "learning_rate": 1e-3}
BUDGETS = {
    # name: (classic-face steps, text-face tokens, seeds)
    "small": (3_000, 3_000, (0,)),
    "full": (10_000, 8_000, (0, 1, 2)),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``quickstart`` subcommand."""
    parser = subparsers.add_parser(
        "quickstart", help="train classic agents and an LLM on the left/right walk and compare")
    parser.add_argument("--budget", choices=tuple(BUDGETS), default="small",
                        help="small: one seed, a few minutes on a CPU; full: 3 seeds, longer")
    parser.add_argument("--out", default="runs/quickstart", metavar="DIR",
                        help="folder for the table and learning_curves.png")
    parser.add_argument("--model", default="tiny",
                        help="GRPO's model: tiny (built from a config, default); smollm2 or a "
                             "hub id work too but are slow on a CPU")
    parser.add_argument("--skip-llm", action="store_true", help="classic agents only")
    parser.add_argument("--eval-episodes", type=int, default=5,
                        help="deterministic evaluation episodes per run (default 5)")
    parser.set_defaults(func=run_quickstart)


def quickstart_runs(budget: str, model: str = "tiny", llm: bool = True) -> list:
    """The runs of a quickstart budget (see :data:`BUDGETS`)."""
    from llm_gym.agents.compare import RunSpec

    steps, tokens, seeds = BUDGETS[budget]
    masked = {"constrained": True}
    runs = []
    for seed in seeds:
        runs += [RunSpec(CLASSIC, name, steps, seed)
                 for name in ("q-learning", "sb3-ppo", "ppo", "greedy")]
        if llm:
            config = GRPO_CONFIG if model == "tiny" else {
                k: v for k, v in GRPO_CONFIG.items() if k != "learning_rate"}
            runs.append(RunSpec(TEXT, "grpo", tokens, seed, dict(masked), config=config,
                                model=model, label=f"grpo ({model} LM)"))
        runs.append(RunSpec(TEXT, "sb3-maskable-ppo", tokens, seed, dict(masked)))
    return runs


def run_quickstart(args: argparse.Namespace) -> int:
    """Train every run of the budget, print the table, write the files."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the quickstart promises to run offline
    from llm_gym.agents.compare import run_comparison

    runs = quickstart_runs(args.budget, args.model, llm=not args.skip_llm)
    print(f"llm-gym quickstart ({args.budget}): {len(runs)} runs on the left/right walk, "
          "classic face and text face. The optimal return is +5 (right, right); the greedy "
          "one-step agent should stay below it.", flush=True)
    start = time.perf_counter()
    report = run_comparison(runs, out_dir=args.out, eval_episodes=args.eval_episodes,
                            eval_every=None, eval_initial=True,
                            on_run_end=lambda i, r: print_run(i, len(runs), r))
    print()
    print(report.markdown())
    print(f"\ndone in {time.perf_counter() - start:.0f} s; wrote "
          + ", ".join(str(p) for p in report.files.values()))
    return 0
