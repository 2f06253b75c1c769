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

from shaping_arithmetic import run_variant, table  # noqa: E402

FORMAT = r"#### -?[\d,]*\.?\d+"  # starts with a literal: linear-time search (FormatBonus docs)


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
    results = [run_variant(name, stacks[name], args, "llm_gym/GSM8K-v0", train, held_out)
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
