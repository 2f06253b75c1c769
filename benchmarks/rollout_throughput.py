"""Tokens/s of the KV-cached rollout engine through the token vector env vs ``model.generate``.

Same model, same prompts (Arithmetic-v0 items 0..B-1), same number of new tokens per row: the
rollout policy never emits a stop token (its logit is masked) so every row runs to the turn budget,
and ``generate`` runs with ``min_new_tokens = max_new_tokens``. Both sample (temperature 1).

    nice -n 10 python benchmarks/rollout_throughput.py --model smollm2 --batch-sizes 1 16 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

import llm_gym  # noqa: E402, F401
from llm_gym.agents.rollout import collect_rollouts  # noqa: E402
from llm_gym.models import load_model  # noqa: E402


class NoStop(torch.nn.Module):
    """The policy with its stop tokens masked, so each row writes exactly the turn budget."""

    def __init__(self, model: torch.nn.Module, stop_ids: list[int]) -> None:
        super().__init__()
        self.model, self.stop_ids = model, stop_ids

    def forward(self, **kwargs):
        out = self.model(**kwargs)
        out.logits[..., self.stop_ids] = float("-inf")
        return out


def sync() -> None:
    """Wait for queued GPU work, so the timer measures it (a no-op on a CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_rollout(model, tokenizer, batch: int, new_tokens: int) -> dict:
    envs = gym.make_vec("llm_gym/Arithmetic-v0", batch, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", tokenizer=tokenizer,
                        max_new_tokens=new_tokens)
    policy = NoStop(model, sorted(tokenizer.stop_token_ids))
    sync()
    start = time.perf_counter()
    out = collect_rollouts(policy, envs, indices=list(range(batch)), seed=0,
                           generator=torch.Generator().manual_seed(0))
    sync()
    elapsed = time.perf_counter() - start
    assert int(out.lengths.min()) == new_tokens, "every row must write the full budget"
    return {"seconds": elapsed, "tokens": out.num_agent_tokens,
            "tokens_per_s": out.num_agent_tokens / elapsed, "model_s": out.model_s,
            "env_s": out.env_s}


def time_generate(model, tokenizer, batch: int, new_tokens: int) -> dict:
    env = gym.make("llm_gym/Arithmetic-v0", tokenizer=tokenizer).unwrapped
    prompts = [tokenizer.prompt_tokens(env.sample_task(i).messages) for i in range(batch)]
    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    ids, mask = ids.to(model.device), mask.to(model.device)
    torch.manual_seed(0)
    sync()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0,
                             top_p=1.0, temperature=1.0, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, pad_token_id=pad)
    sync()
    elapsed = time.perf_counter() - start
    tokens = (out.shape[1] - width) * batch
    return {"seconds": elapsed, "tokens": tokens, "tokens_per_s": tokens / elapsed}


def median_run(runs: list[dict]) -> dict:
    """The run with the median tokens/s."""
    return sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None,
                        help="default: bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    results = []
    time_rollout(model, tokenizer, 2, 2)  # warm-up
    time_generate(model, tokenizer, 2, 2)
    for batch in args.batch_sizes:
        # Alternate the two (A B B A ...) and keep the median: the CPU is shared, so load
        # drifts during a run and a single back-to-back pair is noisy.
        runs: dict[str, list[dict]] = {"rollout": [], "generate": []}
        for r in range(args.repeats):
            order = ("rollout", "generate") if r % 2 == 0 else ("generate", "rollout")
            for name in order:
                timer = time_rollout if name == "rollout" else time_generate
                runs[name].append(timer(model, tokenizer, batch, args.new_tokens))
        rollout, generate = (median_run(runs[k]) for k in ("rollout", "generate"))
        row = {"batch": batch, "new_tokens": args.new_tokens, "rollout": rollout,
               "generate": generate, "runs": runs,
               "ratio": rollout["tokens_per_s"] / generate["tokens_per_s"]}
        results.append(row)
        print(f"batch {batch:3d}: rollout {rollout['tokens_per_s']:8.1f} tok/s  generate "
              f"{generate['tokens_per_s']:8.1f} tok/s  ratio {row['ratio']:.2f}", flush=True)
    param = next(model.parameters())
    report = {"model": args.model, "device": str(param.device), "dtype": str(param.dtype),
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "results": results}
    finish(report, args.out)


def finish(report: dict, out: str | None) -> None:
    """Write ``report`` as JSON to ``out`` (when given) and print its load average."""
    if out:
        with open(out, "w") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report["load_avg"]))


if __name__ == "__main__":
    main()
