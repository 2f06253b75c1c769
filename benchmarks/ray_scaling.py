"""Ray scale-out on this machine: code-scoring and rollout throughput with 1, 2 and 4 workers.

Scoring: sanitized MBPP reference solutions through the sandbox (``code_pass_rate``), on a local
:class:`~llm_gym.sandbox.SandboxPool` with one slot and on
:class:`~llm_gym.distributed.scoring.ScoringWorkers` with N actors of one slot each; runs/s.

Rollouts: GRPO batches of Arithmetic-v0 (the same item indices, seeds and generator state each
time) played in this process by :func:`~llm_gym.agents.rollout.collect_rollouts` and by
:class:`~llm_gym.agents.rollout_workers.RolloutWorkers` with N actors; agent tokens/s per batch, and
Ray's overhead per batch at one worker against the single-process run (the issue's goal: at most
10%). The weights are sent once before the timed batches; that sync is reported on its own.

    nice -n 10 python benchmarks/ray_scaling.py --model smollm2 --rows 32 --batches 3 \\
        --out benchmarks/results/ray_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from llm_gym.agents.rollout import collect_rollouts  # noqa: E402
from llm_gym.agents.rollout_workers import RolloutWorkers, WorkerSpec  # noqa: E402
from llm_gym.distributed import connect  # noqa: E402
from llm_gym.distributed.scoring import ScoringWorkers  # noqa: E402
from llm_gym.models import load_model  # noqa: E402
from llm_gym.rewards.code import code_pass_rate  # noqa: E402
from llm_gym.sandbox import SandboxPool  # noqa: E402
from llm_gym.wrappers.stack import make_env  # noqa: E402

DATA = Path(os.environ.get("LLM_GYM_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
ENV = "llm_gym/Arithmetic-v0"


# ---------------------------------------------------------------------- scoring
def score_all(rows: list[dict], pool, concurrency: int) -> float:
    """Seconds to score every reference solution (each must pass) with ``concurrency`` calls."""

    def one(row: dict) -> None:
        result = code_pass_rate(row["code"], row["test_list"], test_imports=row["test_imports"],
                                pool=pool, timeout=30.0)
        if result.reward != 1.0:
            raise RuntimeError(f"reference {row['task_id']} failed: {result.verdict}")

    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(one, rows[: 2 * concurrency]))  # warm-up: grader start, imports
        start = time.perf_counter()
        list(ex.map(one, rows))
        return time.perf_counter() - start


def bench_scoring(rows: list[dict], worker_counts: list[int]) -> list[dict]:
    out = []
    with SandboxPool(workers=1) as pool:
        wall = score_all(rows, pool, 1)
    out.append({"scoring": "local pool, 1 slot", "workers": 0, "runs": len(rows),
                "runs_per_s": len(rows) / wall})
    print(json.dumps(out[-1]), flush=True)
    for n in worker_counts:
        workers = ScoringWorkers(n)
        try:
            wall = score_all(rows, workers.sandbox, n)
        finally:
            workers.close()
        out.append({"scoring": f"Ray, {n} actors x 1 slot", "workers": n, "runs": len(rows),
                    "runs_per_s": len(rows) / wall})
        print(json.dumps(out[-1]), flush=True)
    return out


# ---------------------------------------------------------------------- rollouts
def bench_rollouts(model_name: str, rows: int, batches: int, worker_counts: list[int]
                   ) -> list[dict]:
    model, tokenizer = load_model(model_name, device="cpu")
    envs = make_env(ENV, rows, env_kwargs={"tokenizer": tokenizer}, autoreset_mode="Disabled")
    indices = list(range(rows))

    def batch_args(k: int) -> dict:
        return {"indices": indices, "seed": 1000 * k,
                "generator": torch.Generator().manual_seed(k)}

    collect_rollouts(model, envs, **batch_args(99))  # warm-up
    times, tokens = [], []
    for k in range(batches):
        start = time.perf_counter()
        batch = collect_rollouts(model, envs, temperature=1.0, **batch_args(k))
        times.append(time.perf_counter() - start)
        tokens.append(batch.num_agent_tokens)
    single = {"rollout": "one process", "workers": 0, "rows": rows,
              "batch_s": float(np.median(times)), "tokens_per_s": sum(tokens) / sum(times)}
    print(json.dumps(single), flush=True)
    out = [single]
    spec = WorkerSpec(ENV, {}, [], tokenizer, model_name)
    for n in worker_counts:
        workers = RolloutWorkers(n, spec, rows)
        try:
            first_sync_s = workers.sync(model, 0)
            sync_s = workers.sync(model, 1)  # steady state: every later update's cost
            workers.collect(**batch_args(99), temperature=1.0, top_p=1.0,
                            pad_token_id=tokenizer.pad_token_id)  # warm-up
            times, same = [], True
            for k in range(batches):
                start = time.perf_counter()
                batch, _ = workers.collect(**batch_args(k), temperature=1.0, top_p=1.0,
                                           pad_token_id=tokenizer.pad_token_id)
                times.append(time.perf_counter() - start)
                same &= batch.num_agent_tokens == tokens[k]
        finally:
            workers.close()
        row = {"rollout": f"Ray, {n} workers", "workers": n, "rows": rows,
               "batch_s": float(np.median(times)), "tokens_per_s": sum(tokens) / sum(times),
               "weight_sync_s": sync_s, "first_weight_sync_s": first_sync_s,
               "weights_mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6,
               "same_tokens_as_one_process": bool(same),
               "overhead_vs_one_process": float(np.median(times)) / single["batch_s"] - 1}
        print(json.dumps(row), flush=True)
        out.append(row)
    envs.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rows", type=int, default=32, help="rows per rollout batch")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=120, help="MBPP references to score")
    parser.add_argument("--only", choices=["scoring", "rollouts"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    machine = (f"{platform.node()} {os.cpu_count()} cpus, torch {torch.__version__}, "
               f"load {os.getloadavg()}")
    print(f"machine: {machine}", flush=True)
    connect(num_cpus=max(8, 2 * max(args.workers)))
    result = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}}
    if args.only != "rollouts":
        rows = json.loads((DATA / "mbpp" / "sanitized-mbpp.json").read_text())
        # Skip references that compute for seconds (e.g. 123): they would measure the task.
        rows = [r for r in rows if r["task_id"] not in (123,)][: args.runs]
        result["scoring"] = bench_scoring(rows, args.workers)
    if args.only != "scoring":
        result["rollouts"] = bench_rollouts(args.model, args.rows, args.batches, args.workers)
    result["load_after"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
