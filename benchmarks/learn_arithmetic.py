"""GRPO on SmolLM2-135M-Instruct (offline GGUF) on Arithmetic-v0 (CPU): held-out accuracy.

Trains for a wall-clock budget, evaluates greedy accuracy on the test split (questions never
rewarded in training) before and after, and writes ``result.json``, ``metrics.csv`` and
``reward_curve.png`` to ``--out-dir``.

    nice -n 10 python benchmarks/learn_arithmetic.py --minutes 15
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--digits", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--loss-type", default="grpo")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="benchmarks/results/learn_arithmetic")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--dtype", default=None,
                        help="float32, bfloat16 (default: bfloat16 on a GPU, float32 on a CPU)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out_dir)
    config = GRPOConfig(group_size=args.group_size, prompts_per_batch=args.prompts_per_batch,
                        learning_rate=args.lr, loss_type=args.loss_type, micro_batch_size=8,
                        temperature=args.temperature, dtype=args.dtype)
    env_kwargs = {"digits": args.digits, "max_new_tokens": args.max_new_tokens}
    agent = GRPOAgent("llm_gym/Arithmetic-v0", args.model, config, env_kwargs=env_kwargs,
                      seed=args.seed, log_dir=out, device=args.device)
    held_out = {"split": "test"}
    t0 = time.perf_counter()
    before = agent.evaluate(args.eval_episodes, env_kwargs=held_out, batch_size=32)
    eval_s = time.perf_counter() - t0
    print(f"before: {before} ({eval_s:.0f} s)", flush=True)
    deadline = time.perf_counter() + args.minutes * 60
    curve = []

    def callback(metrics: dict) -> bool:
        curve.append({k: metrics[k] for k in ("time/env_steps", "rollout/ep_rew_mean",
                                              "rollout/success_rate", "train/loss")
                      if k in metrics})
        print(f"update {len(curve):3d} reward {metrics['rollout/ep_rew_mean']:.3f} "
              f"rollout {metrics['time/rollout_s']:.0f}s update {metrics['time/update_s']:.0f}s",
              flush=True)
        return time.perf_counter() < deadline

    train_start = time.perf_counter()
    agent.learn(10**9, callback=callback)
    train_s = time.perf_counter() - train_start
    after = agent.evaluate(args.eval_episodes, env_kwargs=held_out, batch_size=32)
    print(f"after: {after}", flush=True)
    result = {
        "args": vars(args), "before": before, "after": after, "train_seconds": train_s,
        "updates": agent.num_updates, "env_steps": agent.num_timesteps, "curve": curve,
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "load_avg_end": os.getloadavg(),
        "device": str(agent.device), "dtype": str(next(agent.model.parameters()).dtype),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
