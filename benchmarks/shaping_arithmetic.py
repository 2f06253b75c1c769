"""Shaping experiment: GRPO on SmolLM2 (offline GGUF) on Arithmetic-v0, under reward variants.

Each variant (unshaped, ``LengthPenalty``, ``OverlongPenalty``) trains the same pretrained model
from the same seed for the same wall-clock budget, then is evaluated greedily on held-out
questions (``split="test"``, never rewarded in training). The table gives the shaped return the
agent optimised beside the unshaped task metrics (accuracy, mean response length), because a
shaped return alone hides reward hacking. Writes ``result.json`` and one run folder (metrics.csv
with ``reward/<term>``, TensorBoard) per variant to ``--out-dir``.

    python benchmarks/shaping_arithmetic.py --updates 12 --minutes 15
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from llm_gym.agents.grpo import GRPOAgent, GRPOConfig  # noqa: E402


def variants(max_new_tokens: int, coef: float) -> dict[str, list[dict]]:
    """The reward variants compared: name -> wrapper stack."""
    return {
        "unshaped": [],
        "length": [{"name": "LengthPenalty", "kwargs": {"coef": coef}}],
        "overlong": [{"name": "OverlongPenalty",
                      "kwargs": {"max_tokens": max_new_tokens,
                                 "cache_tokens": max_new_tokens // 2}}],
    }


def run_variant(name: str, stack: list[dict], args: argparse.Namespace,
                env_id: str = "llm_gym/Arithmetic-v0", env_kwargs: dict | None = None,
                held_out: dict | None = None, measure=None) -> dict:
    """Train one variant for ``args.minutes`` and evaluate it before and after on held-out items.

    ``measure(agent, held_out)``, when given, adds its dict of metrics to each evaluation.
    """
    config = GRPOConfig(group_size=args.group_size, prompts_per_batch=args.prompts_per_batch,
                        learning_rate=args.lr, micro_batch_size=8, temperature=args.temperature)
    if env_kwargs is None:
        env_kwargs = {"digits": args.digits, "max_new_tokens": args.max_new_tokens}
    agent = GRPOAgent(env_id, args.model, config, env_kwargs=env_kwargs,
                      seed=args.seed, log_dir=Path(args.out_dir) / name, device=args.device,
                      wrappers=stack)
    held_out = {"split": "test"} if held_out is None else held_out
    before = agent.evaluate(args.eval_episodes, env_kwargs=held_out, batch_size=32)
    if measure is not None:
        before.update(measure(agent, held_out))
    deadline = time.perf_counter() + args.minutes * 60
    start = time.perf_counter()
    # A fixed number of updates keeps variants comparable on a shared, unevenly loaded machine;
    # the wall-clock budget is a cap.
    agent.learn(10**9, callback=lambda metrics: time.perf_counter() < deadline
                and agent.num_updates < args.updates)
    train_s = time.perf_counter() - start
    after = agent.evaluate(args.eval_episodes, env_kwargs=held_out, batch_size=32)
    if measure is not None:
        after.update(measure(agent, held_out))
    agent.close()
    result = {"variant": name, "wrappers": stack, "before": before, "after": after,
              "train_seconds": train_s, "updates": agent.num_updates,
              "env_steps": agent.num_timesteps, "load_avg_end": os.getloadavg(),
              "device": str(agent.device)}
    print(json.dumps({k: v for k, v in result.items() if k not in ("before", "after")}),
          flush=True)
    return result


def table(results: list[dict]) -> str:
    lines = ["| variant | updates | held-out accuracy (before → after) | mean length "
             "(before → after) | shaped return after | unshaped return after |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        b, a = r["before"], r["after"]
        lines.append(
            f"| {r['variant']} | {r['updates']} | {b['success_rate']:.1%} → "
            f"{a['success_rate']:.1%} | {b['mean_length']:.1f} → {a['mean_length']:.1f} | "
            f"{a['mean_return']:.3f} | {a['env_return']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per variant")
    parser.add_argument("--updates", type=int, default=10**9, help="at most this many updates")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--variants", default="unshaped,length,overlong")
    parser.add_argument("--digits", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--length-coef", type=float, default=0.02)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--out-dir", default="benchmarks/results/shaping_arithmetic")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    stacks = variants(args.max_new_tokens, args.length_coef)
    results = [run_variant(name, stacks[name], args) for name in args.variants.split(",")]
    print(table(results))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({
        "args": vars(args), "results": results, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}, indent=2))
    (out / "table.md").write_text(table(results) + "\n")


if __name__ == "__main__":
    main()
