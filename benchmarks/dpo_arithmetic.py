"""DPO on SmolLM2's own Arithmetic-v0 samples: held-out accuracy before and after (issue 10).

1. ``llm-gym preferences`` samples ``--n`` replies per training question and pairs a correct
   reply with a wrong one by the env's verifiable reward;
2. the pairs are split by prompt: most train DPO, the rest measure held-out preference accuracy
   (``rewards/accuracies``: the implicit reward ranks the chosen reply higher);
3. DPO (sigmoid loss, β = ``--beta``) trains on ``--epochs`` passes over the training pairs;
4. greedy accuracy on ``split="test"`` questions (never sampled for pairs) before and after.

Writes ``pairs.jsonl``, ``train.jsonl``, ``heldout.jsonl``, the DPO run folder (metrics.csv,
TensorBoard) and ``result.json`` to ``--out-dir``.

    python benchmarks/dpo_arithmetic.py --model smollm2 --items 48
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from llm_gym.agents.dpo import DPOAgent, DPOConfig  # noqa: E402
from llm_gym.cli import main as cli  # noqa: E402
from llm_gym.preferences import load_preferences, write_preferences  # noqa: E402
from llm_gym.reward_training import split_by_prompt  # noqa: E402

ENV = "llm_gym/Arithmetic-v0"


def make_pairs(args: argparse.Namespace, out: Path) -> tuple[Path, Path, dict]:
    """Pairs from the model's own samples (the CLI), split by prompt into train / held out."""
    pairs = out / "pairs.jsonl"
    start = time.perf_counter()
    if args.pairs:  # reuse pairs sampled before (another DPO setting on the same data)
        pairs = Path(args.pairs)
    elif code := cli(["preferences", "--env", ENV, "--model", args.model, "--n", str(args.n),
                      "--items", str(args.items), "--out", str(pairs), "--temperature",
                      str(args.temperature), "--seed", str(args.seed), "--env-kwargs",
                      json.dumps({"max_new_tokens": args.max_new_tokens})]):
        raise SystemExit(f"llm-gym preferences failed ({code})")
    rows = [dict(r) for r in load_preferences(str(pairs))]
    train, held = split_by_prompt(rows, args.heldout_fraction, args.seed)
    train_file = write_preferences([rows[i] for i in train], out / "train.jsonl")
    held_file = write_preferences([rows[i] for i in held], out / "heldout.jsonl")
    info = {"file": str(pairs), "pairs": len(rows), "train_pairs": len(train),
            "heldout_pairs": len(held), "seconds": time.perf_counter() - start}
    return train_file, held_file, info


def evaluate(agent: DPOAgent, args: argparse.Namespace, held: Path) -> dict:
    """Greedy test-split accuracy and held-out preference metrics."""
    result = agent.evaluate(args.eval_episodes, env_kwargs={"split": "test"}, batch_size=32)
    return {"test_accuracy": result["success_rate"], "mean_length": result["mean_length"],
            "heldout": agent.preference_metrics(str(held))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--items", type=int, default=48, help="training questions sampled")
    parser.add_argument("--n", type=int, default=4, help="replies per question")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--pairs", help="reuse this pairs file instead of sampling new pairs")
    parser.add_argument("--heldout-fraction", type=float, default=0.2)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="benchmarks/results/dpo_arithmetic")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, held, pairs_info = make_pairs(args, out)
    config = DPOConfig(data=str(train), kl_coef=args.beta, learning_rate=args.lr,
                       batch_size=args.batch_size, num_train_epochs=args.epochs)
    agent = DPOAgent(ENV, args.model, config, env_kwargs={"max_new_tokens": args.max_new_tokens},
                     seed=args.seed, log_dir=out / "dpo", device=args.device)
    before = evaluate(agent, args, held)
    start = time.perf_counter()
    agent.learn(agent.default_timesteps())
    train_s = time.perf_counter() - start
    after = evaluate(agent, args, held)
    result = {"args": vars(args), "pairs": pairs_info, "updates": agent.num_updates,
              "pairs_trained": agent.num_timesteps, "train_s": train_s,
              "before": before, "after": after,
              "train_pair_metrics_after": agent.preference_metrics(),
              "machine": {"platform": platform.platform(), "load": os.getloadavg(),
                          "torch_threads": args.threads}}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("pairs", "updates", "train_s", "before", "after")},
                     indent=1))


if __name__ == "__main__":
    main()
