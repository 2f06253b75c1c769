"""Over-optimisation on a learned reward: GRPO on SmolLM2 (offline GGUF) against a reward model.

Gao et al. (2022) showed that optimising a learned reward (the *proxy*) raises it steadily while
the true reward (the *gold*) first rises and then falls. On Arithmetic-v0 the gold is known: the
env's verifiable accuracy. This trains GRPO with ``LearnedReward`` (the reward model alone,
``env_weight=0``) and a k3 KL term to the frozen reference (``beta``), and records, per update,
the proxy (mean reward-model score of the training samples), the gold (their accuracy) and the
KL to the reference; every ``--eval-every`` updates it also evaluates greedily on held-out
questions (``split="test"``): mean RM score and accuracy. Writes ``result.json``, ``table.md``
and ``overoptimisation.png`` (proxy and gold against KL, the update where held-out gold peaks
marked) to ``--out-dir``.

``--reward verifiable`` trains the same way on the env's own reward instead (the control: same
budget, same KL leash) while still scoring its held-out replies with the reward model, so the
two runs' proxy and gold can be set side by side; when both runs' results are in
``--out-dir``, ``side_by_side.png`` is drawn.

    python benchmarks/rlhf_arithmetic.py --rm models/arith_rm --updates 12 --minutes 20
    python benchmarks/rlhf_arithmetic.py --rm models/arith_rm --updates 12 --minutes 20 \
        --reward verifiable
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llm_gym.agents.grpo import GRPOAgent, GRPOConfig  # noqa: E402
from llm_gym.agents.token_envs import evaluate_policy  # noqa: E402
from llm_gym.wrappers import make_env  # noqa: E402


def rm_stack(args: argparse.Namespace) -> list[dict]:
    return [{"name": "LearnedReward", "kwargs": {"reward_model": args.rm, "device": "cpu"}}]


def held_out(agent: GRPOAgent, args: argparse.Namespace, update: int, kl: float) -> dict:
    """Greedy held-out evaluation: mean RM score (proxy) and accuracy (gold).

    Scored through the reward model whatever the run trains on, so both runs are measured alike.
    """
    envs = make_env(agent.env_id, min(32, args.eval_episodes), autoreset_mode="Disabled",
                    env_kwargs={"tokenizer": agent.tokenizer, **agent.env_kwargs,
                                "split": "test"}, wrappers=rm_stack(args))
    try:
        ev = evaluate_policy(agent.model, envs, args.eval_episodes,
                             seed=agent.EVAL_SEED).to_dict()
    finally:
        envs.close()
    row = {"update": update, "kl": kl, "proxy": ev["mean_return"], "gold": ev["success_rate"],
           "mean_length": ev["mean_length"]}
    print(json.dumps({"held_out": row}), flush=True)
    return row


def run(args: argparse.Namespace) -> dict:
    """Train, logging proxy/gold/KL per update and held-out every ``eval_every`` updates."""
    config = GRPOConfig(group_size=args.group_size, prompts_per_batch=args.prompts_per_batch,
                        learning_rate=args.lr, micro_batch_size=8, temperature=args.temperature,
                        kl_coef=args.beta)
    stack = rm_stack(args) if args.reward == "learned" else []
    agent = GRPOAgent("llm_gym/Arithmetic-v0", args.model, config, seed=args.seed,
                      env_kwargs={"max_new_tokens": args.max_new_tokens}, device="cpu",
                      wrappers=stack)  # no log_dir: no 0.5 GB checkpoints in the results
    train_rows: list[dict] = []
    evals = [held_out(agent, args, 0, 0.0)]
    deadline = time.perf_counter() + args.minutes * 60

    def callback(metrics: dict) -> bool:
        update = agent.num_updates
        row = {"update": update, "proxy": metrics.get("reward/learned_reward"),
               "gold": metrics.get("rollout/success_rate"), "kl": metrics.get("train/kl")}
        train_rows.append(row)
        print(json.dumps({"train": row}), flush=True)
        if update % args.eval_every == 0:
            evals.append(held_out(agent, args, update, float(row["kl"] or 0.0)))
        return time.perf_counter() < deadline and update < args.updates

    start = time.perf_counter()
    agent.learn(10**9, callback=callback)
    if evals[-1]["update"] != agent.num_updates:
        evals.append(held_out(agent, args, agent.num_updates, float(train_rows[-1]["kl"] or 0)))
    agent.close()
    return {"train": train_rows, "held_out": evals, "seconds": time.perf_counter() - start,
            "load_avg_end": os.getloadavg()}


def table(result: dict) -> str:
    lines = ["| update | KL to reference (train) | held-out RM score (proxy) | "
             "held-out accuracy (gold) |", "|---:|---:|---:|---:|"]
    for row in result["held_out"]:
        lines.append(f"| {row['update']} | {row['kl']:.4f} | {row['proxy']:.3f} | "
                     f"{row['gold']:.1%} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["held_out"]
    kl = [r["kl"] for r in rows]
    fig, proxy_ax = plt.subplots(figsize=(6, 4))
    proxy_ax.plot(kl, [r["proxy"] for r in rows], "o-", color="tab:blue", label="proxy (RM)")
    proxy_ax.set_xlabel("KL to the reference (train batch, per token)")
    proxy_ax.set_ylabel("held-out RM score (proxy)", color="tab:blue")
    gold_ax = proxy_ax.twinx()
    gold_ax.plot(kl, [r["gold"] for r in rows], "s-", color="tab:orange", label="gold")
    gold_ax.set_ylabel("held-out accuracy (gold)", color="tab:orange")
    best = max(range(len(rows)), key=lambda i: rows[i]["gold"])
    gold_ax.axvline(kl[best], color="grey", linestyle="--")
    gold_ax.annotate(f"gold peaks (update {rows[best]['update']})", (kl[best], rows[best]["gold"]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def side_by_side(out: Path) -> None:
    """Held-out proxy and gold by update, GRPO on the learned reward beside the verifiable one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, style in (("result.json", "o-"), ("result_verifiable.json", "s--")):
        result = json.loads((out / name).read_text())
        rows, label = result["held_out"], f"trained on the {result['args']['reward']} reward"
        updates = [r["update"] for r in rows]
        axes[0].plot(updates, [r["proxy"] for r in rows], style, label=label)
        axes[1].plot(updates, [r["gold"] for r in rows], style, label=label)
    axes[0].set_title("held-out RM score (proxy)")
    axes[1].set_title("held-out accuracy (gold)")
    for ax in axes:
        ax.set_xlabel("update")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "side_by_side.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rm", required=True, help="reward model folder (llm-gym train-rm)")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--updates", type=int, default=12)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="benchmarks/results/rlhf_arithmetic")
    parser.add_argument("--reward", choices=("learned", "verifiable"), default="learned",
                        help="what GRPO trains on (held-out replies are RM-scored either way)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(table(result))
    name = "" if args.reward == "learned" else "_verifiable"
    (out / f"result{name}.json").write_text(json.dumps({"args": vars(args), **result}, indent=2))
    (out / f"table{name}.md").write_text(table(result) + "\n")
    if args.reward == "learned":
        plot(result, out / "overoptimisation.png")
    if (out / "result.json").exists() and (out / "result_verifiable.json").exists():
        side_by_side(out)


if __name__ == "__main__":
    main()
