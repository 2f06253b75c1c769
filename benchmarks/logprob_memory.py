"""Peak memory of one forward + backward of the chosen-token log-probs (issue 8, point 4).

The case of the issue: a 2-layer model with Qwen2.5's 151,936-token vocabulary, micro-batch 4,
1,024 tokens of which the last 256 are the agent's. Each method runs in a fresh process; the
figure is its peak RSS above the RSS it had once the model and the batch existed (CPU; on a GPU
read torch.cuda.max_memory_allocated instead).

    python benchmarks/logprob_memory.py            # both methods, a table and a JSON line
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

VOCAB, BATCH, LENGTH, AGENT, HIDDEN = 151_936, 4, 1024, 256, 256


def measure(method: str) -> dict[str, float]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm_gym.agents.logprobs import chosen_logprobs

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=LENGTH, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, VOCAB, (BATCH, LENGTH))
    attention = torch.ones_like(ids)
    agent = torch.zeros_like(ids, dtype=torch.bool)
    agent[:, LENGTH - AGENT:] = True
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method == "full":  # the former implementation: full fp32 log_softmax over every position
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        logp = logp * agent[:, 1:]
    else:
        logp = chosen_logprobs(model, ids, attention, positions=agent)
    logp.sum().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "peak_above_baseline_gb": round((peak - baseline) / 2**20, 2)}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2])))
        return
    rows = []
    for method in ("full", "lean"):
        out = subprocess.run([sys.executable, __file__, "--one", method], capture_output=True,
                             text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    for row in rows:
        print(f"{row['method']:<5} peak above baseline: {row['peak_above_baseline_gb']:.2f} GB")
    print(json.dumps({"vocab": VOCAB, "batch": BATCH, "length": LENGTH, "agent_tokens": AGENT,
                      "results": rows}))


if __name__ == "__main__":
    main()
