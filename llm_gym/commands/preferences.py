"""``llm-gym preferences``: build preference pairs (TRL's format) from an env's own reward.

Samples ``--n`` replies to each of ``--items`` task items with ``--model`` and pairs a
higher-scored reply with a lower-scored one by the env's verifiable reward; ties are dropped.
The rows are conversational TRL rows (``prompt``, ``chosen``, ``rejected``, plus
``chosen_score``, ``rejected_score``, ``task_index``), ready for ``llm-gym train-rm`` or TRL's
``RewardTrainer``/``DPOTrainer`` (:mod:`llm_gym.agents.preferences`, :mod:`llm_gym.preferences`).

Example:
    llm-gym preferences --env llm_gym/Arithmetic-v0 --model smollm2 --n 4 --items 64
        --out data/arith_pairs.jsonl
    llm-gym preferences --env llm_gym/GSM8K-v0 --model smollm2 --n 4 --items 32
        --env-kwargs '{"data_files": "train.jsonl", "max_new_tokens": 256}' --out gsm8k.jsonl
"""

from __future__ import annotations

import argparse
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``preferences`` subcommand."""
    parser = subparsers.add_parser(
        "preferences", help="sample replies on an env and pair them by its reward (TRL format)")
    parser.add_argument("--env", required=True, metavar="ID",
                        help="a single-turn token env, e.g. llm_gym/Arithmetic-v0")
    parser.add_argument("--model", default="tiny",
                        help="policy that samples: tiny, smollm2, a hub id or path (default tiny)")
    parser.add_argument("--n", type=int, default=4,
                        help="replies sampled per task item (default 4)")
    parser.add_argument("--items", type=int, default=64,
                        help="task items 0..ITEMS-1 to sample (default 64)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="where to write the pairs: .jsonl, .json (JSON lines) or .parquet")
    parser.add_argument("--env-kwargs", default="{}", metavar="JSON",
                        help='gym.make keyword arguments as JSON, e.g. \'{"data_files": '
                             '"train.jsonl"}\'')
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature, above 0 (default 1.0)")
    parser.add_argument("--batch-rows", type=int, default=32,
                        help="episodes per rollout batch (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.set_defaults(func=run_preferences)


def run_preferences(args: argparse.Namespace) -> int:
    """Sample, pair, write, and print the counts."""
    from pathlib import Path

    from llm_gym.agents.preferences import build_preferences
    from llm_gym.commands.arguments import json_object
    from llm_gym.preferences import OUTPUT_SUFFIXES, write_preferences

    if Path(args.out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {args.out}: write .jsonl, .json (JSON lines) or .parquet")
    start = time.perf_counter()
    rows, counts = build_preferences(
        args.env, args.model, items=args.items, n=args.n, env_kwargs=json_object(args.env_kwargs),
        temperature=args.temperature, seed=args.seed, batch_rows=args.batch_rows,
        progress_bar=True)
    print(f"{counts.items} items x {args.n} replies = "
          f"{counts.replies} replies, mean reward {counts.mean_reward:.3f}")
    print(f"pairs: {counts.pairs}; ties dropped: {counts.ties}; items whose replies all scored "
          f"the same: {counts.items_all_equal}; replies with a failed reward: "
          f"{counts.dropped_replies}")
    out = write_preferences(rows, args.out)
    print(f"wrote {counts.pairs} pairs to {out} in {time.perf_counter() - start:.0f} s")
    return 0
