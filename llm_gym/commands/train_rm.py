"""``llm-gym train-rm``: train a Bradley–Terry reward model on preference pairs.

Reads TRL-format preference data (a local file or a hub dataset id), holds out a share of the
prompts, trains a sequence-scoring head on ``--model`` with ``−log σ(r_chosen − r_rejected −
margin)`` and writes ``--out``: a transformers model folder
(``AutoModelForSequenceClassification.from_pretrained(DIR)``, TRL's reward models load the same
way) plus ``reward_model.json`` with the held-out pairwise accuracy
(:mod:`llm_gym.reward_training`). Use the folder as a reward with the ``LearnedReward`` wrapper.

Example:
    llm-gym train-rm --data data/arith_pairs.jsonl --model smollm2 --out models/arith_rm
    llm-gym train-rm --data pairs.jsonl --model tiny --out rm --lora '{"r": 8}' --epochs 3
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``train-rm`` subcommand."""
    parser = subparsers.add_parser(
        "train-rm", help="train a Bradley-Terry reward model on preference pairs")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="preference data: .jsonl/.json/.csv/.parquet or a hub dataset id")
    parser.add_argument("--model", default="tiny",
                        help="base model: tiny, smollm2, a .gguf file, a hub id or folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="a new folder to write")
    parser.add_argument("--split", default="train", help="hub split (default train)")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the pairs (2)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step (8)")
    parser.add_argument("--micro-batch-size", type=int, default=4,
                        help="pairs per forward/backward: lower it to save memory; the step "
                             "is the same (4)")
    parser.add_argument("--lr", type=float, default=5e-5, help="learning rate (5e-5)")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="constant margin in the loss; a `margin` column adds to it (0)")
    parser.add_argument("--eval-fraction", type=float, default=0.2,
                        help="share of prompts held out for the pairwise accuracy (0.2)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="longest prompt+reply in tokens (default: the model's context)")
    parser.add_argument("--lora", nargs="?", const="{}", default=None, metavar="JSON",
                        help="train a LoRA adapter and the head only; optional "
                             'peft.LoraConfig kwargs, e.g. \'{"r": 8}\'')
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.set_defaults(func=run_train_rm)


def run_train_rm(args: argparse.Namespace) -> int:
    """Check the data, train, save, and print the held-out accuracy."""
    from llm_gym.commands.arguments import json_object
    from llm_gym.preferences import load_preferences
    from llm_gym.reward_training import RewardModelConfig, train_reward_model

    config = RewardModelConfig(
        epochs=args.epochs, batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size, learning_rate=args.lr,
        margin=args.margin, eval_fraction=args.eval_fraction, max_length=args.max_length,
        lora=None if args.lora is None else json_object(args.lora, "--lora"), seed=args.seed)
    rows = load_preferences(args.data, split=args.split)  # bad data fails before the model loads
    print(f"training a reward model on {len(rows)} pairs from {args.data} ({args.model})")
    result = train_reward_model(rows, args.model, args.out, config)
    print(f"trained on {result.train_pairs} pairs in {result.seconds:.0f} s; loss per epoch: "
          + ", ".join(f"{x:.4f}" for x in result.losses))
    print(f"pairwise accuracy: train {result.train_accuracy:.3f}")
    if result.eval_accuracy is not None:
        print(f"held-out pairwise accuracy: {result.eval_accuracy:.3f} on {result.eval_pairs} "
              f"pairs (before training {result.eval_accuracy_before:.3f}); mean margin "
              f"{result.eval_margin:.3f}")
    print(f"saved to {result.out_dir}: AutoModelForSequenceClassification.from_pretrained"
          f"({result.out_dir!r}); reward with --wrappers '[{{\"name\": \"LearnedReward\", "
          f"\"kwargs\": {{\"reward_model\": \"{result.out_dir}\"}}}}]'")
    return 0
