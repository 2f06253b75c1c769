"""Per-step cost of getting a constrained env's action mask to the sampler: dense vs token ids.

A rollout token step on a constrained env (``LeftRightText-v0``, ``constrained=True``) with a
large vocabulary (SmolLM2's 49,152 tokens by default), timed without a model (fixed random
logits), so what is left is the env step, the mask's way to the sampler and the sampling itself:

* **dense** — the path before issue 8's point 1, reproduced here step for step: the vector env
  stacks every row's ``action_mask()`` into a ``(batch, vocab)`` observation, the rollout copies
  it to bool, fixes empty rows, copies it to the device, and records its rows for the trainer.
* **ids** — the path now: inside ``compact_action_masks()`` the observation has no dense mask;
  the rollout takes ``allowed_tokens()`` (a few ids per row), builds the mask on the device with
  :func:`~llm_gym.agents.sampling.mask_from_token_ids` and records the ids.

Both then call the same :func:`~llm_gym.agents.sampling.sample_tokens`. Rows act with the
sampled tokens, so the masks follow real episodes (turns end, replies are appended).

``--rollout`` instead times whole greedy ``collect_rollouts`` calls with a tiny model built on
the same tokenizer (so its head is 49,152 wide), through whatever ``llm_gym`` is importable:
run it once on this checkout and once with ``PYTHONPATH`` pointing at an older one to compare
the code before and after.

    nice -n 5 python benchmarks/action_mask_step.py --batch 256 --steps 20
    nice -n 5 python benchmarks/action_mask_step.py --batch 256 --rollout
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import llm_gym  # noqa: E402, F401
from llm_gym.agents.rollout import collect_rollouts  # noqa: E402
from llm_gym.agents.sampling import sample_tokens  # noqa: E402
from llm_gym.models import smollm2_gguf_path, tiny_model  # noqa: E402
from llm_gym.tokenizers import load_tokenizer  # noqa: E402


def dense_mask(obs: dict[str, np.ndarray], device: str) -> tuple[torch.Tensor, np.ndarray]:
    """The old rollout's mask handling: bool copy, empty rows freed, host -> device."""
    allowed = np.array(obs["action_mask"], dtype=bool)
    allowed[~allowed.any(axis=1)] = True
    return torch.from_numpy(allowed).to(device), allowed


def ids_mask(envs, num_rows: int, vocab: int, device: str) -> tuple[torch.Tensor, tuple]:
    from llm_gym.agents.sampling import mask_from_token_ids  # absent before the change

    rows, ids = envs.unwrapped.allowed_tokens()
    mask = mask_from_token_ids(torch.from_numpy(rows), torch.from_numpy(ids), num_rows, vocab,
                               device)
    return mask, (rows, ids)


def run(envs, mode: str, steps: int, device: str, seed: int) -> dict[str, float]:
    """Seconds per step of (env step, mask to device, sampling), and recorded mask bytes."""
    num_rows, vocab = envs.num_envs, int(envs.single_action_space.n)
    logits = torch.randn((num_rows, vocab), generator=torch.Generator().manual_seed(seed))
    logits = logits.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    obs, _ = envs.reset(seed=seed)
    env_s = mask_s = sample_s = 0.0
    recorded = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        if mode == "dense":
            allowed, kept = dense_mask(obs, device)
            recorded += kept.copy().nbytes  # the old recorder kept allowed[active]
        else:
            allowed, kept = ids_mask(envs, num_rows, vocab, device)
            recorded += kept[0].nbytes + kept[1].nbytes
        t1 = time.perf_counter()
        ids, _ = sample_tokens(logits, allowed=allowed, generator=generator)
        actions = ids.cpu().numpy().astype(np.int64)
        t2 = time.perf_counter()
        obs, *_ = envs.step(actions)
        t3 = time.perf_counter()
        mask_s, sample_s, env_s = mask_s + t1 - t0, sample_s + t2 - t1, env_s + t3 - t2
    return {"env_ms": 1e3 * env_s / steps, "mask_ms": 1e3 * mask_s / steps,
            "sample_ms": 1e3 * sample_s / steps,
            "step_ms": 1e3 * (env_s + mask_s + sample_s) / steps,
            "recorded_bytes_per_step": recorded / steps}


def time_rollouts(tokenizer, batch: int, max_length: int, repeats: int) -> dict:
    """Seconds per token step of greedy ``collect_rollouts`` (fastest of ``repeats``)."""
    model, _ = tiny_model(tokenizer)
    envs = gym.make_vec("llm_gym/LeftRightText-v0", batch, constrained=True, tokenizer=tokenizer,
                        max_length=max_length, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled")
    runs = []
    for r in range(repeats):
        out = collect_rollouts(model, envs, seed=r, temperature=0)
        steps = int(out.lengths.max())
        masks = out.action_masks
        stored = sum(t.nbytes for t in vars(masks).values() if isinstance(t, torch.Tensor))
        runs.append({"step_ms": 1e3 * out.rollout_s / steps, "model_ms": 1e3 * out.model_s / steps,
                     "env_ms": 1e3 * out.env_s / steps, "steps": steps,
                     "agent_tokens": out.num_agent_tokens, "mask_bytes": stored})
    return min(runs, key=lambda x: x["step_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=None, help="default: SmolLM2's (49,152 tokens)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rollout", action="store_true", help="time collect_rollouts instead")
    parser.add_argument("--max-length", type=int, default=160, help="--rollout: episode cap")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(args.tokenizer or str(smollm2_gguf_path()))
    if args.rollout:
        row = time_rollouts(tokenizer, args.batch, args.max_length, args.repeats)
        print(json.dumps({"rollout": row, "vocab": tokenizer.vocab_size, "batch": args.batch,
                          "load_avg": os.getloadavg(), "code": llm_gym.__file__}))
        return
    envs = gym.make_vec("llm_gym/LeftRightText-v0", args.batch, constrained=True,
                        tokenizer=tokenizer, vectorization_mode="vector_entry_point",
                        autoreset_mode="NextStep")
    results: dict[str, list[dict[str, float]]] = {"dense": [], "ids": []}
    for r in range(args.repeats):  # alternate (A B B A ...): the machine is shared
        for mode in (("dense", "ids") if r % 2 == 0 else ("ids", "dense")):
            if mode == "dense":
                results[mode].append(run(envs, mode, args.steps, args.device, seed=r))
            else:
                with envs.unwrapped.compact_action_masks():
                    results[mode].append(run(envs, mode, args.steps, args.device, seed=r))
    best = {mode: min(runs, key=lambda x: x["step_ms"]) for mode, runs in results.items()}
    for mode, row in best.items():
        print(f"{mode:5s}: step {row['step_ms']:7.2f} ms = env {row['env_ms']:6.2f} + mask "
              f"{row['mask_ms']:6.2f} + sample {row['sample_ms']:6.2f}; recorded "
              f"{row['recorded_bytes_per_step'] / 1e6:7.3f} MB/step", flush=True)
    print(json.dumps({"vocab": int(envs.single_action_space.n), "batch": args.batch,
                      "steps": args.steps, "device": args.device, "torch_threads": 1,
                      "load_avg": os.getloadavg(), "best": best}))


if __name__ == "__main__":
    main()
