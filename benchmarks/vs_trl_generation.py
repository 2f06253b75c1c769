"""Why is generation inside llm_gym's GRPO loop slower than the standalone rollout engine?

Same model, batch and settings as ``benchmarks/vs_trl.py``'s GRPO (G x prompts rows, 12 new
tokens, temperature 0.7, stop tokens live), in one process, alternating:

* ``in-loop``: the rollouts of a short ``GRPOAgent.learn`` (timed by wrapping
  ``collect_rollouts``; the first is the warm-up);
* ``standalone``: ``collect_rollouts`` on a fresh vector env of the same rows, between updates;
* ``standalone, no stop``: the same with the stop tokens masked (``rollout_throughput.py``'s
  regime: every row writes the full budget);
* ``generate``: ``model.generate`` on the same prompts and settings (TRL's generation call).

``--profile`` also runs the learn under cProfile and prints the top of the cumulative profile.

    python benchmarks/vs_trl_generation.py --model smollm2 --updates 3 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rollout_throughput import NoStop  # noqa: E402  (the same stop-token mask, beside this file)

import llm_gym  # noqa: E402, F401
import llm_gym.agents.grpo as grpo_module  # noqa: E402
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig  # noqa: E402
from llm_gym.agents.rollout import collect_rollouts  # noqa: E402
from llm_gym.models import load_model  # noqa: E402


def standalone(model, tokenizer, rows: int, group: int, args, stop: bool) -> tuple[float, int]:
    envs = gym.make_vec("llm_gym/Arithmetic-v0", rows, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", tokenizer=tokenizer,
                        max_new_tokens=args.new_tokens)
    indices = np.repeat(np.arange(rows // group) + 1000, group).tolist()
    policy = model if stop else NoStop(model, sorted(tokenizer.stop_token_ids))
    model.eval()
    start = time.perf_counter()
    batch = collect_rollouts(policy, envs, indices=indices, seed=0,
                             temperature=args.temperature,
                             generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start, batch.num_agent_tokens


def generate(model, tokenizer, rows: int, group: int, args) -> tuple[float, int]:
    env = gym.make("llm_gym/Arithmetic-v0", tokenizer=tokenizer).unwrapped
    prompts = [tokenizer.prompt_tokens(env.sample_task(1000 + i // group).messages)
               for i in range(rows)]
    width, pad = max(map(len, prompts)), tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    stops = sorted(tokenizer.stop_token_ids)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0,
                             top_p=1.0, temperature=args.temperature,
                             max_new_tokens=args.new_tokens, pad_token_id=pad,
                             eos_token_id=stops)
    elapsed = time.perf_counter() - start
    completion = out[:, width:]
    # Real tokens: up to and including the first stop token (what TRL keeps).
    is_stop = torch.isin(completion, torch.tensor(stops))
    first = torch.where(is_stop.any(1), is_stop.int().argmax(1) + 1, completion.shape[1])
    return elapsed, int(first.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, device="cpu", dtype="float32")
    rows, group = args.group_size * args.prompts, args.group_size
    config = GRPOConfig(group_size=group, prompts_per_batch=args.prompts, loss_type="grpo",
                        temperature=args.temperature, learning_rate=2e-5, micro_batch_size=8,
                        checkpoint_every=0, checkpoint_minutes=0)
    agent = GRPOAgent("llm_gym/Arithmetic-v0", model, config, tokenizer=tokenizer, seed=0,
                      env_kwargs={"max_new_tokens": args.new_tokens})
    log: list[tuple[str, float, int]] = []
    collect = grpo_module.collect_rollouts

    def timed(*a, **k):
        start = time.perf_counter()
        batch = collect(*a, **k)
        log.append(("in-loop", time.perf_counter() - start, batch.num_agent_tokens))
        return batch

    grpo_module.collect_rollouts = timed

    def others() -> None:
        log.append(("standalone", *standalone(model, tokenizer, rows, group, args, True)))
        log.append(("generate", *generate(model, tokenizer, rows, group, args)))
        log.append(("standalone, no stop",
                    *standalone(model, tokenizer, rows, group, args, False)))

    others()  # warm-up of the standalone paths
    log.clear()
    profiler = cProfile.Profile() if args.profile else None
    done = [0]

    def after_update(_metrics) -> bool:
        if profiler:
            profiler.disable()
        others()
        done[0] += 1
        if profiler:
            profiler.enable()
        return done[0] < args.updates

    if profiler:
        profiler.enable()
    agent.learn(10**12, callback=after_update)
    if profiler:
        profiler.disable()
    log = log[1:]  # the first in-loop rollout is the warm-up
    print(f"model {args.model}, {rows} rows, {args.new_tokens} new tokens, temperature "
          f"{args.temperature}, {torch.get_num_threads()} threads, load "
          f"{os.getloadavg()[0]:.1f}")
    for name in ("in-loop", "standalone", "standalone, no stop", "generate"):
        runs = [(s, t) for n, s, t in log if n == name]
        seconds, tokens = sum(s for s, _ in runs), sum(t for _, t in runs)
        print(f"{name:20s} {len(runs)} runs  {tokens:6d} tokens  {seconds:7.2f} s  "
              f"{tokens / seconds:8.1f} tok/s")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())


if __name__ == "__main__":
    main()
