"""GSM8K gradings per second through the math-verify worker pool (not a test).

Grades the 7,473 GSM8K train reference solutions against their golds (all correct) and the same
solutions with the final answer changed by one (all wrong: wrong answers are the common case early
in training), in one batch each, with a fresh pool of ``--workers`` processes (startup excluded).

    nice -n 10 python benchmarks/rewards_math.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from llm_gym.data import shared_data_dir
from llm_gym.rewards.math import GradingPool, grade_batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="timed passes per case")
    args = parser.parse_args()
    root = shared_data_dir()
    if root is None:
        print("shared data folder absent (set LLM_GYM_SHARED_DATA)", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in (root / "gsm8k" / "train.jsonl").open()]
    answers = [r["answer"] for r in rows]
    wrong = [a[: a.rindex("####")] + "#### " + a[a.rindex("####") + 4:].strip() + "1"
             for a in answers]
    pool = GradingPool(num_workers=args.workers)
    grade_batch(answers[: args.workers * 4], answers[: args.workers * 4], pool=pool)  # start
    print(f"cpus={os.cpu_count()} workers={args.workers} items={len(rows)}")
    for name, responses, expected in (("correct", answers, 1.0), ("wrong", wrong, 0.0)):
        for run in range(args.repeat):
            start = time.perf_counter()
            results = grade_batch(responses, answers, strict=True, pool=pool)
            elapsed = time.perf_counter() - start
            ok = sum(r.reward == expected for r in results)
            print(f"{name:8s} run {run}: {len(results) / elapsed:7.0f} gradings/s "
                  f"({elapsed:.2f} s, {ok}/{len(results)} as expected)")
    print(f"worker kills: {pool.kills}")
    pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
