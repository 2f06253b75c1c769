"""GSM8K on SmolLM2-135M-Instruct (offline GGUF): SFT warm start, then GRPO, held-out accuracy.

The recipe of issue 23 ("GSM8K that moves, on the offline model"): the model alone has no
signal for RL (pass@8 = 0 on 14 problems), so (1) SFT on GSM8K train's worked solutions, then
(2) GRPO from the SFT model, with or without the curriculum sampler (``docs/curriculum.md``) and
``FormatBonus``. Every stage is measured greedily on the same held-out problems: the last
``--heldout-n`` rows of ``train.jsonl``, which are cut off before any training env or SFT row is
built (the train env holds only the first rows, so neither SFT nor GRPO can draw them; the env
has no split of its own for local files: ``split`` only picks a hub split). Reported: accuracy
with a 95% Wilson interval, the verdict mix (``no_answer`` = no ``#### n`` line), reply length,
and pass@1/pass@8 (unbiased estimator, ``--passk-n`` problems x 8 samples at temperature 0.7).
Evaluation plays batches through :func:`llm_gym.agents.token_envs.play_items` (KV cache).

SFT rows are TRL's SFT format: the env's own prompt (system prompt, question, the instruction
"On the last line, write '#### ' followed by the final answer") and as the assistant turn the
reference solution with GSM8K's calculator annotations ``<<48/2=24>>`` removed, ending in
``#### 72``, the line the strict reward reads (``llm_gym/rewards/math.py``).

``summary.json`` (and ``curve.png``) in ``--out-dir`` is rewritten after every stage, so a run cut
short still keeps what it measured.

    nice -n 10 python benchmarks/learn_gsm8k.py --quick            # smoke test, tiny model
    nice -n 10 python benchmarks/learn_gsm8k.py --sft-examples 512 --grpo-minutes 20
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import llm_gym  # noqa: E402, F401
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig  # noqa: E402
from llm_gym.agents.sft import SFTAgent  # noqa: E402
from llm_gym.agents.sft_algorithm import SFTConfig  # noqa: E402
from llm_gym.agents.token_envs import play_items  # noqa: E402
from llm_gym.models import load_model  # noqa: E402
from llm_gym.rewards.passk import mean_pass_at_k  # noqa: E402

ENV_ID = "llm_gym/GSM8K-v0"
DATA = "/work/shared/data/gsm8k/train.jsonl"
_CALC = re.compile(r"<<[^<>]*>>")


def wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def mcnemar_p(before: list[bool], after: list[bool]) -> dict[str, float]:
    """Exact two-sided McNemar test on the same problems: is the change more than chance?

    Only the discordant problems count (solved after, not before: ``gained``; the other way:
    ``lost``); under "no change" each is a fair coin.
    """
    gained = sum(a and not b for b, a in zip(before, after, strict=True))
    lost = sum(b and not a for b, a in zip(before, after, strict=True))
    n = gained + lost
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2 ** n if n else 1.0
    return {"gained": gained, "lost": lost, "p_two_sided": min(1.0, 2 * tail)}


def solution(answer: str) -> str:
    """A GSM8K reference solution as the assistant's reply: no ``<<..>>``, ``#### n`` last."""
    body, _, final = _CALC.sub("", answer).rpartition("####")
    return f"{body.rstrip()}\n#### {final.strip()}"


def split_files(data: str, heldout_n: int, work: Path, limit: int | None) -> dict[str, Any]:
    """Write the train part and the held-out tail of ``data`` to ``work`` (outside the repo)."""
    rows = [json.loads(line) for line in Path(data).read_text().splitlines() if line.strip()]
    if limit:
        rows = rows[:limit]
    train, heldout = rows[:-heldout_n], rows[-heldout_n:]
    work.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("heldout", heldout)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return {"rows": len(rows), "train_rows": len(train), "heldout_rows": len(heldout),
            "heldout_indices": [len(train), len(rows) - 1], "train": train,
            "train_file": str(work / "train.jsonl"), "heldout_file": str(work / "heldout.jsonl")}


def play(model: Any, tokenizer: Any, args: argparse.Namespace, data_file: str,
         indices: list[int], temperature: float, seed: int) -> list[dict]:
    """One episode per index on the held-out file, batched: the final infos (+ length)."""
    envs = gym.make_vec(ENV_ID, args.eval_rows, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", tokenizer=tokenizer, data_files=data_file,
                        max_new_tokens=args.max_new_tokens)
    out = []
    start = time.perf_counter()
    for batch in play_items(model, envs, indices, temperature=temperature, seed=seed):
        for i in range(batch.num_rows):
            out.append({"success": bool(batch.infos[i].get("success")),
                        "verdict": batch.infos[i].get("verdict", "truncated"),
                        "length": int(batch.lengths[i]),
                        "truncated": not bool(batch.terminated[i])})
        print(f"  {len(out)}/{len(indices)} played, {np.mean([o['success'] for o in out]):.3f} "
              f"correct, {time.perf_counter() - start:.0f} s", flush=True)
    envs.close()
    return out


def held_out(model: Any, tokenizer: Any, args: argparse.Namespace, split: dict,
             stage: str) -> dict:
    """Greedy accuracy (Wilson 95%) on the held-out rows, then pass@1/@8 on a subset."""
    start = time.perf_counter()
    model.eval()
    greedy = play(model, tokenizer, args, split["heldout_file"], list(range(args.eval_n)),
                  0.0, seed=1)
    correct = sum(o["success"] for o in greedy)
    result = {"accuracy": correct / len(greedy), "correct": correct, "n": len(greedy),
              "ci95": wilson(correct, len(greedy)),
              "verdicts": dict(Counter(o["verdict"] for o in greedy)),
              "truncated_share": float(np.mean([o["truncated"] for o in greedy])),
              "mean_reply_tokens": float(np.mean([o["length"] for o in greedy])),
              "solved": [int(o["success"]) for o in greedy],
              "greedy_seconds": time.perf_counter() - start}
    print(f"{stage}: greedy {correct}/{len(greedy)} = {result['accuracy']:.3f} "
          f"CI95 [{result['ci95'][0]:.3f}, {result['ci95'][1]:.3f}] "
          f"{result['verdicts']} ({result['greedy_seconds']:.0f} s)", flush=True)
    if args.passk_n:
        start = time.perf_counter()
        k = args.passk_samples
        indices = [i for i in range(args.passk_n) for _ in range(k)]
        sampled = play(model, tokenizer, args, split["heldout_file"], indices,
                       args.passk_temperature, seed=2)
        counts = [(k, sum(o["success"] for o in sampled[i * k:(i + 1) * k]))
                  for i in range(args.passk_n)]
        result.update({"passk_n": args.passk_n, "passk_samples": k,
                       "pass@1": mean_pass_at_k(counts, 1), f"pass@{k}": mean_pass_at_k(counts, k),
                       "passk_correct_samples": sum(c for _, c in counts),
                       "passk_seconds": time.perf_counter() - start})
        print(f"{stage}: pass@1 {result['pass@1']:.3f} pass@{k} {result[f'pass@{k}']:.3f} "
              f"on {args.passk_n} x {k} ({result['passk_seconds']:.0f} s)", flush=True)
    return result


def sft_rows(split: dict, tokenizer: Any, args: argparse.Namespace) -> tuple[list[dict], int]:
    """The first ``--sft-examples`` train rows whose solution fits ``--max-new-tokens``."""
    env = gym.make(ENV_ID, tokenizer=tokenizer, data_files=split["heldout_file"],
                   max_new_tokens=args.max_new_tokens).unwrapped  # only for its prompt
    rows, skipped = [], 0
    for row in split["train"]:
        if len(rows) == args.sft_examples:
            break
        reply = solution(row["answer"])
        if len(tokenizer.encode(reply)) + 2 > args.max_new_tokens:
            skipped += 1
            continue
        rows.append({"messages": [*env.messages(row["question"]),
                                  {"role": "assistant", "content": reply}]})
    env.close()
    return rows, skipped


def run_sft(model: Any, tokenizer: Any, args: argparse.Namespace, split: dict,
            summary: dict) -> Any:
    rows, skipped = sft_rows(split, tokenizer, args)
    config = SFTConfig(learning_rate=args.sft_lr, batch_size=args.sft_batch,
                       micro_batch_size=args.sft_micro_batch, num_train_epochs=args.sft_epochs,
                       checkpoint_every=0, checkpoint_minutes=0)
    env_kwargs = {"data_files": split["train_file"], "max_new_tokens": args.max_new_tokens}
    sft = SFTAgent(ENV_ID, model, config, data=rows, env_kwargs=env_kwargs, tokenizer=tokenizer,
                   seed=args.seed)
    losses: list[dict] = []

    def callback(metrics: dict) -> bool:
        losses.append({k: metrics[k] for k in ("train/loss", "train/mean_token_accuracy")
                       if k in metrics})
        if len(losses) % 10 == 1:
            print(f"  sft step {len(losses)} loss {metrics.get('train/loss', float('nan')):.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        return None

    start = time.perf_counter()
    sft.learn(len(rows) * args.sft_epochs, callback=callback)
    summary["sft"] = {"examples": len(rows), "skipped_too_long": skipped,
                      "epochs": args.sft_epochs, "steps": len(losses),
                      "seconds": time.perf_counter() - start, "curve": losses}
    print(f"sft: {len(rows)} solutions x {args.sft_epochs} epochs, {len(losses)} steps in "
          f"{summary['sft']['seconds']:.0f} s", flush=True)
    return sft.model


def run_grpo(model: Any, tokenizer: Any, args: argparse.Namespace, split: dict,
             summary: dict, use_curriculum: bool, key: str = "grpo") -> GRPOAgent:
    curriculum = {"min_tries": 4, "retest_rate": 0.1} if use_curriculum else None
    config = GRPOConfig(group_size=args.group_size, prompts_per_batch=args.prompts_per_batch,
                        learning_rate=args.grpo_lr, micro_batch_size=args.grpo_micro_batch,
                        temperature=args.temperature, curriculum=curriculum,
                        checkpoint_every=0, checkpoint_minutes=0)
    wrappers = ([{"name": "FormatBonus", "kwargs": {"marker": "####", "bonus": args.format_bonus}}]
                if args.format_bonus else None)
    agent = GRPOAgent(ENV_ID, model, config, tokenizer=tokenizer, seed=args.seed,
                      env_kwargs={"data_files": split["train_file"],
                                  "max_new_tokens": args.max_new_tokens}, wrappers=wrappers)
    curve: list[dict] = []
    deadline = time.perf_counter() + args.grpo_minutes * 60

    def callback(metrics: dict) -> bool:
        keep = ("time/env_steps", "rollout/ep_rew_mean", "rollout/success_rate",
                "reward/env", "reward/format_bonus", "time/rollout_s", "time/update_s",
                "rollout/equal_groups", "rollout/sampled_groups")
        curve.append({k: float(v) for k, v in metrics.items()
                      if k in keep or k.startswith("curriculum/")})
        print(f"  {key} update {len(curve):3d} reward {metrics['rollout/ep_rew_mean']:.3f} "
              f"success {metrics.get('rollout/success_rate', float('nan')):.3f} "
              f"all-equal groups {metrics['rollout/equal_groups']:.0f}"
              f"/{metrics['rollout/sampled_groups']:.0f} "
              f"rollout {metrics['time/rollout_s']:.0f}s update {metrics['time/update_s']:.0f}s",
              flush=True)
        return len(curve) < args.grpo_updates and time.perf_counter() < deadline

    start = time.perf_counter()
    agent.learn(10**9, callback=callback)
    sampled = sum(c.get("rollout/sampled_groups", 0.0) for c in curve)
    equal = sum(c.get("rollout/equal_groups", 0.0) for c in curve)
    summary[key] = {"updates": agent.num_updates, "env_steps": agent.num_timesteps,
                    "seconds": time.perf_counter() - start, "curve": curve,
                    "curriculum": curriculum, "wrappers": wrappers,
                    "sampled_groups": sampled, "equal_groups": equal,
                    "equal_share": equal / sampled if sampled else None}
    return agent


def device_name(threads: int) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"cpu: {cpu}, {os.cpu_count()} cores, torch threads {threads}"


def commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write(summary: dict, out: Path, t0: float) -> None:
    """Rewrite summary.json and curve.png with what has been measured so far."""
    summary["minutes"] = (time.perf_counter() - t0) / 60
    summary["load_avg_end"] = list(os.getloadavg())
    for stage in STAGES:
        if isinstance(summary.get(f"{stage}_detail"), dict):
            summary[stage] = summary[f"{stage}_detail"]["accuracy"]
            summary[f"ci95_{stage}"] = summary[f"{stage}_detail"]["ci95"]
    before = summary.get("before_detail")
    if isinstance(before, dict):  # paired: the same held-out problems at every stage
        summary["mcnemar_vs_before"] = {
            stage: mcnemar_p([bool(x) for x in before["solved"]],
                             [bool(x) for x in summary[f"{stage}_detail"]["solved"]])
            for stage in STAGES[1:] if isinstance(summary.get(f"{stage}_detail"), dict)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _plot(summary, out / "curve.png")


STAGES = ("before", "after_sft", "after", "after_other_arm")


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    stages = [s for s in STAGES if f"{s}_detail" in summary]
    details = [summary[f"{s}_detail"] for s in stages]
    acc = [d["accuracy"] for d in details]
    low = [d["accuracy"] - d["ci95"][0] for d in details]
    high = [d["ci95"][1] - d["accuracy"] for d in details]
    arm = "curriculum" if summary["settings"]["curriculum"] else "no curriculum"
    other = "no curriculum" if summary["settings"]["curriculum"] else "curriculum"
    labels = {"before": "before", "after_sft": "after SFT", "after": f"GRPO\n{arm}",
              "after_other_arm": f"GRPO\n{other}"}
    left.errorbar(range(len(stages)), acc, yerr=[low, high], fmt="o-", capsize=4)
    left.set_xticks(range(len(stages)), [labels[s] for s in stages])
    left.set_xlim(-0.5, len(STAGES) - 0.5)
    left.set_ylabel("greedy held-out accuracy (95% CI)")
    left.set_title(f"GSM8K held-out, greedy, n={summary.get('heldout_n')}")
    for key, name in (("grpo", arm), ("grpo_other_arm", other)):
        curve = summary.get(key, {}).get("curve", [])
        if curve:
            updates = range(1, len(curve) + 1)
            right.plot(updates, [c.get("rollout/success_rate", np.nan) for c in curve],
                       label=f"success, {name}")
    if right.lines:
        right.legend()
    right.set_xlabel("GRPO update")
    right.set_title("GRPO training batches")
    fig.suptitle(f"{summary['settings']['model']}: SFT -> GRPO on GSM8K ({summary['device']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: tiny model from a config, a handful of rows and steps")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--data", default=DATA)
    p.add_argument("--heldout-n", type=int, default=500,
                   help="last rows of the data, never trained on, evaluated greedily")
    p.add_argument("--eval-n", type=int, default=None,
                   help="evaluate the first this many held-out rows (default: all of them)")
    p.add_argument("--eval-rows", type=int, default=32, help="episodes per evaluation batch")
    p.add_argument("--passk-n", type=int, default=50, help="held-out problems for pass@k (0: off)")
    p.add_argument("--passk-samples", type=int, default=8)
    p.add_argument("--passk-temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--sft-examples", type=int, default=1024, help="0: no SFT stage")
    p.add_argument("--sft-epochs", type=int, default=1)
    p.add_argument("--sft-lr", type=float, default=5e-5)
    p.add_argument("--sft-batch", type=int, default=8)
    p.add_argument("--sft-micro-batch", type=int, default=4)
    p.add_argument("--grpo-updates", type=int, default=50, help="0: no GRPO stage")
    p.add_argument("--grpo-minutes", type=float, default=60.0)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompts-per-batch", type=int, default=4)
    p.add_argument("--grpo-lr", type=float, default=1e-6)
    p.add_argument("--grpo-micro-batch", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.7, help="GRPO sampling temperature")
    p.add_argument("--curriculum", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--both-arms", action="store_true",
                   help="also run GRPO the other way (curriculum off if on), from the same SFT "
                        "model: reported as after_other_arm")
    p.add_argument("--format-bonus", type=float, default=0.0,
                   help="FormatBonus(marker='####') weight during GRPO (0: off)")
    p.add_argument("--skip-before", action="store_true", help="no stage-0 evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default="benchmarks/results/learn_gsm8k")
    p.add_argument("--work-dir", default="/tmp/learn_gsm8k",
                   help="where the train/held-out split files go (never the repo)")
    args = p.parse_args()
    if args.quick:
        args.model, args.heldout_n, args.passk_n, args.passk_samples = "tiny", 8, 2, 4
        args.sft_examples, args.grpo_updates, args.group_size = 8, 2, 2
        args.prompts_per_batch, args.eval_rows, args.max_new_tokens = 2, 8, 48
        args.data_limit = 64
        if args.out_dir == "benchmarks/results/learn_gsm8k":
            args.out_dir = "/tmp/learn_gsm8k/quick"
    else:
        args.data_limit = None
    args.eval_n = min(args.eval_n or args.heldout_n, args.heldout_n)
    if args.passk_n > args.heldout_n:
        raise SystemExit(f"--passk-n must lie in [0, --heldout-n={args.heldout_n}]")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = Path(args.out_dir)
    split = split_files(args.data, args.heldout_n, Path(args.work_dir), args.data_limit)
    settings = {k: v for k, v in vars(args).items()}
    summary: dict[str, Any] = {
        "heldout_n": args.eval_n, "heldout_reserved": args.heldout_n, "before": None,
        "after_sft": None, "after": None, "ci95_after": None, "device": device_name(args.threads),
        "machine": platform.platform(), "torch_threads": args.threads, "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "settings": settings,
        "data": {k: v for k, v in split.items() if k != "train"}, "load_avg_start":
        list(os.getloadavg()), "stage_seconds": {}}
    model, tokenizer = load_model(args.model, device="cpu")
    if args.quick and args.max_new_tokens < 400:
        # The byte tokenizer spells a solution in ~300 tokens: let SFT see short ones only.
        split["train"] = [r for r in split["train"] if len(solution(r["answer"])) < 46] or \
            [{"question": "What is 3 + 4?", "answer": "3 + 4 = 7\n#### 7"}]
    if not args.skip_before:
        start = time.perf_counter()
        summary["before_detail"] = held_out(model, tokenizer, args, split, "before")
        summary["stage_seconds"]["before"] = time.perf_counter() - start
        write(summary, out, t0)
    if args.sft_examples:
        start = time.perf_counter()
        model = run_sft(model, tokenizer, args, split, summary)
        summary["stage_seconds"]["sft"] = time.perf_counter() - start
        start = time.perf_counter()
        summary["after_sft_detail"] = held_out(model, tokenizer, args, split, "after_sft")
        summary["stage_seconds"]["eval_after_sft"] = time.perf_counter() - start
        write(summary, out, t0)
    arms = [("grpo", "after", args.curriculum)]
    if args.both_arms:
        arms.append(("grpo_other_arm", "after_other_arm", not args.curriculum))
    for key, stage, use_curriculum in arms if args.grpo_updates else []:
        start = time.perf_counter()
        start_model = copy.deepcopy(model) if args.both_arms else model  # both from the SFT model
        agent = run_grpo(start_model, tokenizer, args, split, summary, use_curriculum, key)
        summary["stage_seconds"][key] = time.perf_counter() - start
        write(summary, out, t0)
        start = time.perf_counter()
        summary[f"{stage}_detail"] = held_out(agent.model, tokenizer, args, split, stage)
        summary["stage_seconds"][f"eval_{stage}"] = time.perf_counter() - start
        agent.close()
        write(summary, out, t0)
    write(summary, out, t0)
    print(json.dumps({k: summary.get(k) for k in ("heldout_n", "before", "after_sft", "after",
                                                   "ci95_after", "minutes")}), flush=True)


if __name__ == "__main__":
    main()
