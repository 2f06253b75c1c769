"""``llm-gym rescore``: stored rollouts' returns under other reward wrappers, no model needed.

The cheap first step of a shaping experiment: ``llm-gym train --save-rollouts`` (or ``eval
--save-rollouts``) keeps every episode's reset (seed, item) and tokens; this command replays
those tokens into the env under each wrapper stack (:func:`~llm_gym.agents.rollout_records.
replay_episode`) and reports each variant's return on the *same* samples beside the unshaped env
return (the env replayed without wrappers) and the return recorded live. A token env is a pure
function of its reset and the agent's tokens, so a variant's return is exactly what that stack
would have given live.

Writes ``rescore.csv`` (one row per episode, one column per variant) and ``rescore.png`` (mean
and std per variant) in ``--out`` (default: the rollouts file's folder) and prints the table.

Example:
    llm-gym rescore runs/grpo-Arithmetic-v0-s0/rollouts.jsonl
        --wrappers '[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]'
        --variants '{"format": [{"name": "FormatBonus", "kwargs": {"bonus": 0.1}}]}'
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

from llm_gym.wrappers.stack import WrapperStack, parse_wrappers

ENV, LIVE = "env (unshaped)", "live (recorded)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``rescore`` subcommand."""
    p = subparsers.add_parser("rescore", help="recompute stored rollouts' returns under other "
                                              "reward wrappers (no model)")
    p.add_argument("rollouts", metavar="ROLLOUTS", type=Path,
                   help="a JSON-lines file written by train/eval --save-rollouts")
    p.add_argument("--wrappers", metavar="JSON",
                   help='a wrapper stack to score with, e.g. \'[{"name": "LengthPenalty", '
                        '"kwargs": {"coef": 0.01}}]\'')
    p.add_argument("--variants", metavar="JSON",
                   help='more stacks by name, e.g. \'{"short": [{"name": "LengthPenalty", '
                        '"kwargs": {"coef": 0.05}}]}\'')
    p.add_argument("--tokenizer", metavar="NAME",
                   help="the tokenizer to rebuild the env with (default: the recorded one)")
    p.add_argument("--limit", type=int, default=None, help="rescore the first N episodes only")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for rescore.csv and rescore.png (default: the rollouts' folder)")
    p.set_defaults(func=run_rescore)


def run_rescore(args: argparse.Namespace) -> int:
    """Replay, print the table, write the CSV and the plot."""
    from llm_gym.agents.rollout_records import read_rollouts

    variants = parse_variants(args.wrappers, args.variants)  # a bad stack fails before any work
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    records = read_rollouts(args.rollouts)[: args.limit]
    columns = rescore(records, variants, args.tokenizer)
    out = args.out if args.out is not None else args.rollouts.parent
    out.mkdir(parents=True, exist_ok=True)
    write_csv(records, columns, out / "rescore.csv")
    plot(columns, out / "rescore.png", title=f"{records[0]['env']}: {len(records)} episodes")
    print(format_table(columns))
    print(f"wrote {out / 'rescore.csv'} and {out / 'rescore.png'}")
    return 0


def parse_variants(wrappers: str | None, variants: str | None) -> dict[str, WrapperStack]:
    """``{name: stack}`` from ``--wrappers`` (named after its wrappers) and ``--variants``.

    Example:
        >>> list(parse_variants('[{"name": "LengthPenalty", "kwargs": {"coef": 0.1}}]', None))
        ['LengthPenalty']
    """
    out: dict[str, WrapperStack] = {}
    if wrappers is not None:
        stack = parse_wrappers(wrappers)
        out["+".join(spec.name for spec in stack) or "no wrappers"] = stack
    if variants is not None:
        try:
            named = json.loads(variants)
        except json.JSONDecodeError as err:
            raise ValueError(f"--variants is not valid JSON ({err}): {variants!r}") from None
        if not isinstance(named, dict) or not named:
            raise ValueError('--variants must be a JSON object of named stacks, e.g. '
                             '\'{"short": [{"name": "LengthPenalty", "kwargs": {"coef": 0.05}}]}\'')
        for name, stack in named.items():
            if name in out or name in (ENV, LIVE):
                raise ValueError(f"--variants names {name!r} twice; give each stack its own name")
            out[name] = parse_wrappers(stack, f"--variants {name}")
    if not out:
        raise ValueError("rescore needs --wrappers JSON or --variants JSON (the stacks to "
                         "score the stored episodes with)")
    return out


def rescore(records: list[dict[str, Any]], variants: dict[str, WrapperStack],
            tokenizer: str | None = None) -> dict[str, list[float]]:
    """Each episode's return: unshaped (replayed bare), recorded live, and under each variant."""
    from tqdm import tqdm

    from llm_gym.agents.rollout_records import replay_env, replay_episode

    stacks = {ENV: WrapperStack(), **variants}
    columns: dict[str, list[float]] = {ENV: [], LIVE: [float(r["return"]) for r in records]}
    columns.update({name: [] for name in variants})
    envs: dict[tuple[str, str], Any] = {}
    try:
        for record in tqdm(records, desc="rescoring", unit="episode", disable=len(records) < 50):
            source = json.dumps([record["env"], record.get("env_kwargs"),
                                 record.get("tokenizer")], sort_keys=True)
            for name, stack in stacks.items():
                key = (source, name)
                if key not in envs:
                    envs[key] = replay_env(record, stack, tokenizer)
                columns[name].append(replay_episode(envs[key], record)[0])
    finally:
        for env in envs.values():
            env.close()
    return columns


def _stats(values: list[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def format_table(columns: dict[str, list[float]]) -> str:
    """Markdown: each variant's mean and std, and its mean change from the unshaped return."""
    base = _stats(columns[ENV])[0]
    lines = ["| return | mean | std | vs env |", "|---|---:|---:|---:|"]
    for name, values in columns.items():
        mean, std = _stats(values)
        lines.append(f"| {name} | {mean:.4f} | {std:.4f} | {mean - base:+.4f} |")
    return "\n".join(lines)


def write_csv(records: list[dict[str, Any]], columns: dict[str, list[float]], path: Path
              ) -> None:
    """One row per episode: its item, seed, tokens and every column's return."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["episode", "index", "seed", "tokens", *columns])
        for i, record in enumerate(records):
            writer.writerow([i, record["index"], record["seed"], len(record["tokens"]),
                             *(repr(values[i]) for values in columns.values())])


def plot(columns: dict[str, list[float]], path: Path, title: str) -> None:
    """Bars of each column's mean return with its std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(columns)
    stats = [_stats(columns[name]) for name in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(names)), 3.5))
    ax.bar(range(len(names)), [m for m, _ in stats], yerr=[s for _, s in stats], capsize=4,
           color=["0.6", "0.8"] + ["C0"] * (len(names) - 2))
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("mean episode return (± std)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
