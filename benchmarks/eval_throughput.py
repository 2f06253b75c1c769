"""Generated tokens/s of ``llm-gym eval``'s sampling beside the rollout engine's at the same batch.

Issue 24 asks that evaluation run at the engine's speed: ``llm-gym eval`` samples through the
trainers' rollout engine (:func:`llm_gym.commands.eval.sample_model`), batching across items.
This times, on one loaded model and the same ``--env`` items:

* ``eval``: ``sample_model`` (what ``llm-gym eval --n N --limit L`` runs after loading the
  model), tokens counted from its samples;
* ``engine, stops``: the rollout engine alone (:func:`~llm_gym.agents.token_envs.play_items`,
  which eval calls) on the same rows with the same seeds, so the same tokens: what eval adds
  is the difference;
* ``engine, full budget``: ``benchmarks/rollout_throughput.py``'s workload: stop tokens masked,
  so every row writes ``--max-new-tokens``.

    python benchmarks/eval_throughput.py --env llm_gym/GSM8K-v0 --limit 4 --n 8 \\
        --max-new-tokens 200 --data-files ../shared/data/gsm8k/train.jsonl
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402
from rollout_throughput import NoStop, finish  # noqa: E402

import llm_gym  # noqa: E402, F401
from llm_gym.agents.token_envs import play_items  # noqa: E402
from llm_gym.commands.eval import sample_model  # noqa: E402
from llm_gym.models import load_model  # noqa: E402


def time_eval(model, env_id: str, env_kwargs: dict, limit: int, n: int, temperature: float,
              batch: int) -> dict:
    start = time.perf_counter()
    samples = sample_model(model, env_id, env_kwargs, limit=limit, n=n, temperature=temperature,
                           batch_size=batch)
    elapsed = time.perf_counter() - start
    tokens = sum(s.tokens for s in samples)
    return {"seconds": elapsed, "tokens": tokens, "tokens_per_s": tokens / elapsed,
            "rows": len(samples), "unfinished": sum(not s.finished for s in samples)}


def time_engine(policy, env_id: str, env_kwargs: dict, limit: int, n: int, temperature: float
                ) -> dict:
    rows = [i for i in range(limit) for _ in range(n)]
    envs = gym.make_vec(env_id, len(rows), vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", **env_kwargs)
    start = time.perf_counter()
    # The engine's entry eval uses, with its seeds: the same rows sample the same tokens.
    tokens = sum(batch.num_agent_tokens
                 for batch in play_items(policy, envs, rows, temperature=temperature, seed=0))
    elapsed = time.perf_counter() - start
    envs.close()
    return {"seconds": elapsed, "tokens": tokens, "tokens_per_s": tokens / elapsed,
            "rows": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="llm_gym/GSM8K-v0")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--data-files", default=None, help="local data for the env")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    env_kwargs = {"tokenizer": tokenizer, "max_new_tokens": args.max_new_tokens}
    if args.data_files:
        env_kwargs["data_files"] = args.data_files
    batch = args.limit * args.n
    stop_ids = sorted(tokenizer.stop_token_ids)
    # Warm-up (the first forwards of a process allocate), then the engine before eval, so
    # neither pays it.
    time_engine(model, args.env, {**env_kwargs, "max_new_tokens": 8}, 2, 1, args.temperature)
    results = {
        "engine, stops": time_engine(model, args.env, env_kwargs, args.limit, args.n,
                                     args.temperature),
        "eval": time_eval(model, args.env, env_kwargs, args.limit, args.n, args.temperature,
                          batch),
        "engine, full budget": time_engine(NoStop(model, stop_ids), args.env, env_kwargs,
                                           args.limit, args.n, args.temperature),
    }
    for name, row in results.items():
        print(f"{name:20s} {row['tokens_per_s']:7.1f} tok/s  ({row['tokens']} tokens, "
              f"{row['seconds']:.1f} s)", flush=True)
    base = results["engine, stops"]["tokens_per_s"]
    print(f"eval / engine on the same rows: {results['eval']['tokens_per_s'] / base:.2f}")
    report = {"args": vars(args), "batch": batch, "results": results,
              "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
              "load_avg": os.getloadavg()}
    finish(report, args.out)


if __name__ == "__main__":
    main()
