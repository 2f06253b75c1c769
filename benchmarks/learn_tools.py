"""GRPO on SmolLM2-135M-Instruct (offline GGUF) with and without a calculator tool (CPU).

Arm ``tools``: ``llm_gym/ArithmeticTool-v0`` (5-digit sums and products, a calculator tool);
arm ``plain``: the same questions in ``llm_gym/Arithmetic-v0`` with no tool, the control. Both
train GRPO for the same wall-clock budget and are evaluated greedily on held-out questions
(``split="test"``, never rewarded in training) before and after: accuracy, tool-call rate,
parse failures. The tools arm can start with a supervised warm start on traces the env's oracle
writes (``--sft-examples``: call the calculator on the question, copy its result), measured
after SFT and again after GRPO. Writes ``result.json`` and ``curve.png`` to ``--out-dir``.

    nice -n 5 python benchmarks/learn_tools.py --arm tools --minutes 20 --constrained --bonus 0.2
    nice -n 5 python benchmarks/learn_tools.py --arm tools --minutes 20 --sft-examples 256
    nice -n 5 python benchmarks/learn_tools.py --arm plain --minutes 20
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import llm_gym  # noqa: E402, F401
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig  # noqa: E402
from llm_gym.agents.metrics import tool_counters  # noqa: E402
from llm_gym.agents.rollout import collect_rollouts  # noqa: E402
from llm_gym.agents.sft import SFTAgent  # noqa: E402
from llm_gym.agents.sft_algorithm import SFTConfig  # noqa: E402
from llm_gym.models import load_model  # noqa: E402
from llm_gym.tools.calculator import calculator  # noqa: E402
from llm_gym.tools.calls import format_tool_call  # noqa: E402

TASK = {"digits": 5, "operations": "+*"}


def held_out(agent: Any, env_id: str, env_kwargs: dict, episodes: int) -> dict:
    """Greedy accuracy, tool counters and reply length on ``episodes`` test-split questions."""
    rows = 32
    envs = gym.make_vec(env_id, rows, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", tokenizer=agent.tokenizer,
                        **{**env_kwargs, "split": "test"})
    infos, lengths = [], []
    for start in range(0, episodes, rows):
        batch = collect_rollouts(agent.model, envs, indices=list(range(start, start + rows)),
                                 seed=1 + start, temperature=0.0)
        infos += batch.infos[: episodes - start]
        lengths += batch.lengths.tolist()[: episodes - start]
    envs.close()
    return {"accuracy": float(np.mean([bool(i.get("success")) for i in infos])),
            "mean_agent_tokens": float(np.mean(lengths)), **tool_counters(infos)}


def oracle_traces(env_id: str, env_kwargs: dict, tokenizer: Any, count: int) -> list[dict]:
    """``count`` conversations the env's oracle writes (TRL's SFT format): call, result, answer.

    Training-split items ``0..count-1``; the prompt is the env's own (tool list included), the
    call passes the question's expression to the calculator, the answer copies its result.
    """
    env = gym.make(env_id, tokenizer=tokenizer, **{**env_kwargs, "constrained": False}).unwrapped
    rows = []
    for index in range(count):
        env.reset(options={"index": index})
        question = env.inner.item(index)["question"]
        result = calculator(question)
        rows.append({"messages": [
            *env.task.messages,
            {"role": "assistant", "content": format_tool_call("calculator",
                                                              {"expression": question})},
            {"role": "tool", "content": result},
            {"role": "assistant", "content": str(env.inner.task.answer)}]})
    env.close()
    return rows


def warm_start(model: Any, tokenizer: Any, env_id: str, env_kwargs: dict,
               args: argparse.Namespace, out: Path) -> SFTAgent:
    """SFT of ``model`` on the oracle's traces (the usual SFT -> RL recipe); the trained agent."""
    rows = oracle_traces(env_id, env_kwargs, tokenizer, args.sft_examples)
    config = SFTConfig(learning_rate=args.sft_lr, batch_size=8,
                       num_train_epochs=args.sft_epochs)
    sft = SFTAgent(env_id, model, config, data=rows, env_kwargs=env_kwargs, tokenizer=tokenizer,
                   seed=args.seed, log_dir=out / "sft")
    start = time.perf_counter()
    sft.learn(args.sft_examples * args.sft_epochs)
    print(f"sft: {args.sft_examples} traces x {args.sft_epochs} epochs in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return sft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=("tools", "plain"), default="tools")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--constrained", action="store_true",
                        help="tools arm: answer-or-call grammar masks")
    parser.add_argument("--bonus", type=float, default=0.0,
                        help="tools arm: weight of llm_gym.tools.shaping:first_tool_call")
    parser.add_argument("--sft-examples", type=int, default=0,
                        help="tools arm: warm start on this many oracle traces first (0: none)")
    parser.add_argument("--sft-epochs", type=int, default=2)
    parser.add_argument("--sft-lr", type=float, default=5e-5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    out = Path(args.out_dir or f"benchmarks/results/learn_tools/{args.arm}")
    if args.arm == "tools":
        env_id = "llm_gym/ArithmeticTool-v0"
        env_kwargs = {"constrained": args.constrained, "max_new_tokens": args.max_new_tokens,
                      "max_calls": 2}
    else:
        env_id, env_kwargs = "llm_gym/Arithmetic-v0", {**TASK, "max_new_tokens": 24}
    wrappers = None
    if args.bonus:
        wrappers = [{"name": "RewardTerms", "kwargs": {
            "terms": {"first_call": "llm_gym.tools.shaping:first_tool_call"},
            "weights": {"first_call": args.bonus}}}]
    config = GRPOConfig(group_size=args.group_size, prompts_per_batch=args.prompts_per_batch,
                        learning_rate=args.lr, micro_batch_size=8,
                        temperature=args.temperature)
    t0 = time.perf_counter()
    model, tokenizer = load_model(args.model)
    before = held_out(argparse.Namespace(model=model, tokenizer=tokenizer), env_id, env_kwargs,
                      args.eval_episodes)
    print(f"before: {before} ({time.perf_counter() - t0:.0f} s)", flush=True)
    after_sft = None
    if args.sft_examples:
        sft = warm_start(model, tokenizer, env_id, env_kwargs, args, out)
        model, tokenizer = sft.model, sft.tokenizer
        after_sft = held_out(sft, env_id, env_kwargs, args.eval_episodes)
        print(f"after sft: {after_sft}", flush=True)
    agent = GRPOAgent(env_id, model, config, env_kwargs=env_kwargs, tokenizer=tokenizer,
                      seed=args.seed, log_dir=out, wrappers=wrappers)
    deadline = time.perf_counter() + args.minutes * 60
    curve: list[dict] = []

    def callback(metrics: dict) -> bool:
        keep = ("time/env_steps", "rollout/ep_rew_mean", "rollout/success_rate",
                "tools/call_rate", "tools/parse_failures", "time/rollout_s", "time/update_s")
        curve.append({k: metrics[k] for k in keep if k in metrics})
        print(f"update {len(curve):3d} reward {metrics['rollout/ep_rew_mean']:.3f} "
              f"success {metrics.get('rollout/success_rate', float('nan')):.3f} "
              f"calls {metrics.get('tools/call_rate', 0.0):.2f} "
              f"rollout {metrics['time/rollout_s']:.0f}s update {metrics['time/update_s']:.0f}s",
              flush=True)
        return time.perf_counter() < deadline

    train_start = time.perf_counter()
    agent.learn(10**9, callback=callback)
    train_s = time.perf_counter() - train_start
    after = held_out(agent, env_id, env_kwargs, args.eval_episodes)
    print(f"after: {after}", flush=True)
    result = {
        "args": vars(args), "env": env_id, "env_kwargs": env_kwargs, "before": before,
        "after_sft": after_sft, "after": after, "train_seconds": train_s,
        "updates": agent.num_updates,
        "seconds_per_update": train_s / max(agent.num_updates, 1),
        "env_steps": agent.num_timesteps, "curve": curve, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_avg_end": os.getloadavg(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    _plot(curve, out / "curve.png", args.arm)


def _plot(curve: list[dict], path: Path, arm: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    updates = range(1, len(curve) + 1)
    ax.plot(updates, [c.get("rollout/success_rate", np.nan) for c in curve], label="accuracy")
    if arm == "tools":
        ax.plot(updates, [c.get("tools/call_rate", np.nan) for c in curve], label="call rate")
    ax.set_xlabel("update")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"GRPO, SmolLM2-135M, {arm} (training batches)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
