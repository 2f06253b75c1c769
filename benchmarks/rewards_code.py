"""Sandboxed code-reward throughput on honest MBPP reference solutions.

Runs ``code_pass_rate`` (sandbox call server + grader process) on the sanitized MBPP reference
solutions with 1 and 4 workers and reports runs/s and p50/p99 latency per run.

    nice -n 10 python benchmarks/rewards_code.py [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from llm_gym.rewards.code import code_pass_rate
from llm_gym.sandbox import SandboxPool, detect_isolation

DATA = Path(os.environ.get("LLM_GYM_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))


def bench(rows: list[dict], workers: int) -> dict[str, float]:
    latencies: list[float] = []

    def one(row: dict) -> float:
        start = time.perf_counter()
        result = code_pass_rate(row["code"], row["test_list"], test_imports=row["test_imports"],
                                pool=pool, timeout=30.0)
        if result.reward != 1.0:
            raise RuntimeError(f"reference solution {row['task_id']} failed: {result.verdict}")
        return time.perf_counter() - start

    with SandboxPool(workers=workers) as pool, ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, rows[:workers * 2]))  # warm-up
        start = time.perf_counter()
        latencies = list(ex.map(one, rows))
        wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {"workers": workers, "runs": len(rows), "runs_per_s": len(rows) / wall,
            "p50_s": float(np.percentile(lat, 50)), "p99_s": float(np.percentile(lat, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rows = json.loads((DATA / "mbpp" / "sanitized-mbpp.json").read_text())
    # Skip the few references that compute for seconds (e.g. 123): they measure the task.
    rows = [r for r in rows if r["task_id"] not in (123,)][: args.runs]
    print(f"machine: {platform.node()} {os.cpu_count()} cpus, load {os.getloadavg()}, "
          f"isolation {detect_isolation().level}")
    for workers in (1, 4):
        print(json.dumps(bench(rows, workers)))
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
