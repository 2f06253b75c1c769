"""TRL's side of ``benchmarks/vs_trl.py``: its GRPO/RLOO, DPO and reward-model runs.

Imported by ``vs_trl.py``'s worker subprocess only; the matched settings, the task, the reward
adapter, the preference pairs and the timeline are ``vs_trl.py``'s, shared with llm_gym's side.
"""

from __future__ import annotations

import copy
import tempfile
import time
from typing import Any

from vs_trl import (
    Settings,
    Timeline,
    _rm_setup,
    arithmetic_reward,
    load_policy,
    load_policy_tokenizer,
    preference_rows,
    rm_micro_pairs,
    task_env,
)


# ============================================================================ TRL workers
def trl_common(settings: Settings, out_dir: str, **extra: Any) -> dict[str, Any]:
    """TrainingArguments both TRL runs share: CPU, fp32, no checkpoint, no recompute."""
    return dict(
        output_dir=out_dir, use_cpu=True, bf16=False, fp16=False, report_to="none",
        save_strategy="no", logging_steps=1, max_steps=settings.steps + 1,
        gradient_checkpointing=False, optim="adamw_torch_fused", lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, seed=settings.seed,
        dataloader_num_workers=0, disable_tqdm=True, **extra)


def step_callback(line: Timeline) -> Any:
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            line.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            line.step_done()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any
                   ) -> None:
            if logs and "reward" in logs:
                line.rewards.append(float(logs["reward"]))

    return StepTimes()


def trl_rl(settings: Settings, algo: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset

    model, tokenizer = load_policy(settings)
    env = task_env(tokenizer, settings)
    tasks = [env.sample_task(i) for i in range(512)]
    data = Dataset.from_list([{"prompt": t.messages, "answer": str(t.answer)} for t in tasks])
    line = Timeline()
    accumulation = settings.rows // settings.micro_batch
    common = trl_common(
        settings, tempfile.mkdtemp(prefix=f"vs_trl_{algo}_"),
        per_device_train_batch_size=settings.micro_batch,
        gradient_accumulation_steps=accumulation, num_generations=settings.group_size,
        max_completion_length=settings.max_new_tokens, temperature=settings.temperature,
        top_p=1.0, top_k=0, learning_rate=settings.rl_lr, beta=0.0, num_iterations=1,
        epsilon=0.2, disable_dropout=True)
    if algo == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer

        common.update(loss_type="grpo", scale_rewards="group")
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer

    class Timed(Trainer):  # type: ignore[misc, valid-type]
        def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = super()._generate_single_turn(*args, **kwargs)
            now = time.perf_counter()
            ids = out[0] if isinstance(out, tuple) else out  # GRPO: (ids, logprobs); RLOO: ids
            line.gen.append((now, now - t0, sum(len(c) for c in ids)))
            return out

        def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                line.backprop.append((time.perf_counter(), int(inputs["completion_ids"].shape[0])))
            return super().compute_loss(model, inputs, *args, **kwargs)

    trainer = Timed(model=model, reward_funcs=arithmetic_reward(set(tokenizer.stop_token_ids)),
                    args=Config(**common), train_dataset=data, processing_class=tokenizer.hf,
                    callbacks=[step_callback(line)])
    trainer.train()
    return line.summary(settings.steps)


def trl_dpo(settings: Settings) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = load_policy(settings)
    rows = preference_rows(tokenizer, settings, (settings.steps + 1) * settings.pair_batch,
                           "train")
    line = Timeline()
    args = DPOConfig(**trl_common(
        settings, tempfile.mkdtemp(prefix="vs_trl_dpo_"),
        per_device_train_batch_size=min(settings.micro_batch, settings.pair_batch),
        gradient_accumulation_steps=max(1, settings.pair_batch // settings.micro_batch),
        learning_rate=settings.pair_lr, beta=settings.dpo_beta, disable_dropout=True))
    # TRL would reload the reference from the model's hub id, which an in-memory (GGUF or
    # tiny) model has not; a frozen copy is what llm_gym's DPOAgent holds too.
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = DPOTrainer(model=model, ref_model=reference, args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer.hf,
                         callbacks=[step_callback(line)])
    _count_pairs(trainer, line, settings)
    trainer.train()
    return line.summary(settings.steps)


def trl_rm(settings: Settings) -> dict[str, Any]:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    import llm_gym.reward_training as rt

    model, hf, _, held = _rm_setup(settings)
    _, policy_tok = load_policy_tokenizer(settings, hf)
    rows = preference_rows(policy_tok, settings, (settings.steps + 1) * settings.pair_batch,
                           "train")
    pad = model.config.pad_token_id
    before = rt.pairwise_accuracy(model, held, pad)[0]
    line = Timeline()
    args = RewardConfig(**trl_common(
        settings, tempfile.mkdtemp(prefix="vs_trl_rm_"),
        per_device_train_batch_size=rm_micro_pairs(settings),
        gradient_accumulation_steps=settings.pair_batch // rm_micro_pairs(settings),
        learning_rate=settings.pair_lr, disable_dropout=True))
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=hf, callbacks=[step_callback(line)])
    _count_pairs(trainer, line, settings)
    start = time.perf_counter()
    trainer.train()
    trained_s = time.perf_counter() - start
    model.eval()
    after = rt.pairwise_accuracy(model, held, pad)[0]
    return {**line.summary(settings.steps), "held_out_accuracy": {
        "before": before, "after": after, "train_wall_s": trained_s, "pairs": len(held)}}


def _count_pairs(trainer: Any, line: Timeline, settings: Settings) -> None:
    """Count 2 sequences (chosen, rejected) per pair each optimizer step."""
    from transformers import TrainerCallback

    class Pairs(TrainerCallback):
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            line.backprop.append((time.perf_counter() - 1e-9, 2 * settings.pair_batch))

    trainer.add_callback(Pairs())
