"""``llm-gym export``: write a trained LLM agent as a transformers model folder.

Reads the newest complete save of a run of ``llm-gym train`` with any LLM agent (grpo, rloo,
reinforce-pp, ppo on a token env, dpo, sft) and writes
``OUT_DIR`` with ``config.json``, ``model.safetensors``, ``generation_config.json`` and the
tokenizer with its chat template, for ``AutoModelForCausalLM`` / ``AutoTokenizer``, TRL and vLLM
(:mod:`llm_gym.agents.export`). A LoRA run is merged into its base unless ``--adapter`` is given.

Example:
    llm-gym export runs/grpo-Arithmetic-v0-s0-20260101-120000 models/arithmetic
    llm-gym export runs/grpo-lora RUN_OUT --adapter --push-to-hub me/arithmetic-lora
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export", help="write a trained LLM agent's model (grpo, rloo, reinforce-pp, ppo, dpo, "
                       "sft) as a transformers model folder")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run folder of `llm-gym train` (or an agent save / checkpoint)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the model folder to write")
    parser.add_argument("--adapter", action="store_true",
                        help="LoRA runs: write the PEFT adapter instead of merging it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT_DIR when it exists and is not empty")
    parser.add_argument("--push-to-hub", metavar="REPO",
                        help="then upload OUT_DIR to the Hugging Face Hub repo REPO (user/name)")
    parser.add_argument("--private", action="store_true", help="create the hub repo private")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export, then say what was written and how to load it."""
    from llm_gym.agents.export import export_model, find_agent_state

    source = find_agent_state(args.run_dir)  # fails fast, before torch loads, on a bad folder
    out = export_model(args.run_dir, args.out_dir, adapter=args.adapter,
                       overwrite=args.overwrite, push_to_hub=args.push_to_hub,
                       private=args.private)
    kind = "PEFT adapter" if args.adapter else "model"
    print(f"exported {source} as a transformers {kind} to {out}")
    print(f"load it with AutoModelForCausalLM.from_pretrained({str(out)!r}) and "
          f"AutoTokenizer.from_pretrained({str(out)!r})")
    if args.push_to_hub:
        print(f"pushed to the Hugging Face Hub repo {args.push_to_hub}")
    return 0
