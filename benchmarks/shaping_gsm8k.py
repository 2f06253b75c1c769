"""Shaping experiment: GRPO on SmolLM2 (offline GGUF) on GSM8K-v0, unshaped vs FormatBonus.

Both variants train the same pretrained model from the same seed for ``--minutes`` each on the
local GSM8K train file minus its first ``--held-out`` problems, which serve as held-out
evaluation (never rewarded in training). The table gives the shaped return beside the unshaped
accuracy and mean response length. ``FormatBonus`` pays ``--bonus`` for a reply with exactly one
``#### <number>`` line, the format the GSM8K instruction asks for. Uses
``benchmarks/shaping_arithmetic.py`` for the training and the table.

    nice -n 10 python benchmarks/shaping_gsm8k.py --minutes 30 \\
        --data ../shared/data/gsm8k/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from shaping_arithmetic import run_variant  # noqa: E402

from llm_gym.agents.token_envs import evaluate_policy  # noqa: E402
from llm_gym.wrappers import make_env  # noqa: E402

FORMAT = r"#### -?[\d,]*\.?\d+"  # starts with a literal: linear-time search (FormatBonus docs)


def format_rate(agent, held_out: dict, episodes: int) -> dict:
    """Strict-format rate on the held-out items: the share of greedy replies with exactly one
    ``#### <number>`` line, read as the return of a 1.0 ``FormatBonus`` minus the env's reward."""
    stack = [{"name": "FormatBonus", "kwargs": {"pattern": FORMAT, "bonus": 1.0}}]
    envs = make_env(agent.env_id, min(32, episodes),
                    env_kwargs={"tokenizer": agent.tokenizer, **agent.env_kwargs, **held_out},
                    wrappers=stack, autoreset_mode="Disabled")
    try:
        result = evaluate_policy(agent.model, envs, episodes, seed=12345, temperature=0)
    finally:
        envs.close()
    bonus = [r - e for r, e in zip(result.returns, result.env_returns, strict=True)]
    return {"format_rate": sum(bonus) / len(bonus)}


def table(results: list[dict]) -> str:
    lines = ["| variant | updates | strict-format rate (before → after) | held-out accuracy "
             "(before → after) | mean length (before → after) | shaped return after |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        b, a = r["before"], r["after"]
        lines.append(
            f"| {r['variant']} | {r['updates']} | {b['format_rate']:.1%} → {a['format_rate']:.1%}"
            f" | {b['success_rate']:.1%} → {a['success_rate']:.1%} | {b['mean_length']:.1f} → "
            f"{a['mean_length']:.1f} | {a['mean_return']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per variant")
    parser.add_argument("--updates", type=int, default=10**9, help="at most this many updates")
    parser.add_argument("--data", default="../shared/data/gsm8k/train.jsonl")
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--variants", default="unshaped,format")
    parser.add_argument("--bonus", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompts-per-batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--out-dir", default="benchmarks/results/shaping_gsm8k")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line]
    train = {"dataset": rows[args.held_out:], "max_new_tokens": args.max_new_tokens,
             "max_length": args.max_length}
    held_out = {"dataset": rows[: args.held_out]}
    stacks = {"unshaped": [],
              "format": [{"name": "FormatBonus", "kwargs": {"pattern": FORMAT,
                                                            "bonus": args.bonus}}]}
    def measure(agent, items: dict) -> dict:
        return format_rate(agent, items, args.eval_episodes)

    results = [run_variant(name, stacks[name], args, "llm_gym/GSM8K-v0", train, held_out,
                           measure=measure)
               for name in args.variants.split(",")]
    print(table(results))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({
        "args": vars(args), "results": results, "machine": platform.platform(),
        "cpu_count": os.cpu_count()}, indent=2))
    (out / "table.md").write_text(table(results) + "\n")


if __name__ == "__main__":
    main()
