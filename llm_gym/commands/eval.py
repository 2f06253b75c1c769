r"""``llm-gym eval``: accuracy, pass@k, mean length and format-error rate of a model on an env.

Completions come from a model (``--model``: hub id, directory, GGUF file, or a name
:func:`llm_gym.models.load_model` knows) or from a JSON-lines file (``--completions``:
``{"index": i, "completion": "..."}`` or ``{"index": i, "completions": [...]}`` per line).

A model is evaluated through the rollout engine the trainers sample with
(:func:`llm_gym.agents.token_envs.play_items` over
:func:`~llm_gym.agents.rollout.collect_rollouts`: a batched token vector env, a KV cache, the one
sampler): each of the first ``--limit`` items is pinned ``--n`` times in the batch (like a GRPO
group), ``--batch-size`` episodes at a time, and each sample's reward and verdict are what the
env's ``info`` says when its episode ends, scored inside the vector env exactly as in training.
Whole episodes are evaluated: on the single-turn tasks (GSM8K, MATH, Arithmetic, Code) that is
the one reply; on multi-turn envs the sample is the episode (its return, the final verdict, the
agent's tokens of every turn), as a trainer sees it. ``--max-new-tokens`` sets the env's own
per-turn budget.

``--save-rollouts [FILE]`` (with ``--model``) writes every episode (tokens, text, per-step
rewards, info) as JSON lines to ``FILE`` (default ``rollouts.jsonl`` beside ``--out``), for
``llm-gym rescore``.

A completions file is scored by the env (its batch scorer ``score_responses`` when it has one,
else its ``end_turn`` hook) as one first-turn reply per line, without generation.

Example:
    $ llm-gym eval --env llm_gym/GSM8K-v0 --env-kwargs '{"data_files": "test.jsonl"}' \
        --model smollm2 --n 4 --k 1,4 --limit 50 --out results.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from llm_gym.commands.arguments import add_device_argument, json_object, resolve_device
from llm_gym.commands.output import write_json
from llm_gym.rewards.passk import mean_pass_at_k
from llm_gym.token_env import TokenEnv
from llm_gym.wrappers.stack import is_token_env, make_env

if TYPE_CHECKING:
    from llm_gym.agents.rollout import RolloutBatch

logger = logging.getLogger(__name__)

# Verdicts that mean "the reply had no usable final answer" (as opposed to a wrong one).
FORMAT_ERRORS = frozenset({"no_answer", "ambiguous", "echo", "rejected", "truncated"})


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``eval`` subcommand."""
    p = subparsers.add_parser("eval", help="evaluate a model or a completions file on an env")
    p.add_argument("--env", required=True, metavar="ID", help="env id, e.g. llm_gym/GSM8K-v0")
    p.add_argument("--env-kwargs", default="{}", metavar="JSON",
                   help="gym.make keyword arguments as a JSON object")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="NAME_OR_PATH",
                        help="hub id, local directory, .gguf file, 'smollm2' or 'tiny'")
    source.add_argument("--completions", metavar="FILE", type=Path,
                        help='JSON lines: {"index": i, "completion": "..."}')
    p.add_argument("--n", type=int, default=1, help="samples per item with --model (default 1)")
    p.add_argument("--k", default="1", help="comma-separated pass@k budgets (default 1)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first L items only")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="tokens per reply: the env's max_new_tokens (default: the env's own)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default: greedy for --n 1, else 1.0)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--batch-size", type=int, default=32, metavar="ROWS",
                   help="episodes sampled together with --model (default 32)")
    p.add_argument("--out", type=Path, default=None, help="write metrics and samples as JSON")
    p.add_argument("--save-rollouts", nargs="?", const="", default=None, metavar="FILE",
                   help="--model: write every episode as JSON lines (default rollouts.jsonl "
                        "beside --out) for llm-gym rescore")
    add_device_argument(p)
    p.set_defaults(func=run_eval)


@dataclass
class Sample:
    """One scored completion."""

    index: int
    completion: str
    tokens: int
    reward: float
    correct: bool
    verdict: str | None = None
    extracted: Any = None
    finished: bool = True
    tools: dict[str, float] | None = None  # a tool env's episode counts (info["tools"])


@dataclass
class Report:
    """Metrics over every sample, plus the samples themselves."""

    env_id: str
    source: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)


# ---------------------------------------------------------------------------- entry point
def run_eval(args: argparse.Namespace) -> int:
    """Run ``llm-gym eval``; prints the table, writes ``--out``; returns the exit code."""
    ks = _parse_ks(args.k)
    env_kwargs = json_object(args.env_kwargs)
    check_arguments(args, ks)
    if args.model is not None:
        if not is_token_env(args.env):
            raise ValueError(f"{args.env} is not a token env; eval scores text replies of LLM "
                             "envs")
        from llm_gym.models import load_model

        model, tokenizer = load_model(args.model, device=resolve_device(args.device))
        env_kwargs.setdefault("tokenizer", tokenizer)
        if args.max_new_tokens is not None:
            env_kwargs["max_new_tokens"] = args.max_new_tokens
        temperature = args.temperature if args.temperature is not None else (
            0.0 if args.n == 1 else 1.0)
        samples = sample_model(model, args.env, env_kwargs, limit=args.limit, n=args.n,
                               temperature=temperature, seed=args.seed,
                               batch_size=args.batch_size, rollouts=_rollouts_path(args))
    else:
        env = _make_env(args.env, env_kwargs)
        samples = score(env, read_completions(args.completions, env, args.limit))
    report = Report(args.env, args.model or str(args.completions), summarize(samples, ks),
                    samples)
    print(format_table(report))
    if args.out is not None:
        write_report(report, args.out)
        print(f"wrote {args.out}")
    if args.save_rollouts is not None:
        print(f"wrote {_rollouts_path(args)}")
    return 0


def check_arguments(args: argparse.Namespace, ks: list[int]) -> None:
    """Every check that needs no model and no env, before either loads (issue 21).

    Raises:
        ValueError: a count below 1, a pass@k budget above ``--n`` samples per item, a
            negative temperature, ``--save-rollouts`` without ``--model``.
        FileNotFoundError: the ``--completions`` file does not exist.
    """
    for flag in ("n", "batch_size", "limit", "max_new_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.temperature is not None and args.temperature < 0:
        raise ValueError(f"--temperature must be 0 (greedy) or more, got {args.temperature}")
    resolve_device(getattr(args, "device", None))  # CUDA asked for and absent: one line
    if args.model is not None and ks[-1] > args.n:
        raise ValueError(f"pass@{ks[-1]} needs at least {ks[-1]} samples per item and --n is "
                         f"{args.n}; raise --n to {ks[-1]} or lower --k")
    if args.completions is not None:
        if args.save_rollouts is not None:
            raise ValueError("--save-rollouts stores the episodes a --model plays; a "
                             "completions file has none")
        if not args.completions.is_file():
            raise FileNotFoundError(f"--completions {args.completions} does not exist; give "
                                    "a JSON-lines file of completions")


def _rollouts_path(args: argparse.Namespace) -> Path | None:
    """Where ``--save-rollouts`` writes (None without it)."""
    if args.save_rollouts is None:
        return None
    if args.save_rollouts:
        return Path(args.save_rollouts)
    return (args.out.parent if args.out is not None else Path(".")) / "rollouts.jsonl"


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--k must be comma-separated integers like 1,5, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ValueError(f"--k budgets must be >= 1, got {text!r}")
    return ks


def _make_env(env_id: str, env_kwargs: dict[str, Any]) -> TokenEnv:
    env = gym.make(env_id, **env_kwargs).unwrapped
    if not isinstance(env, TokenEnv):
        raise ValueError(f"{env_id} is not a token env; eval scores text replies of LLM envs")
    return env


def _indices(num_tasks: int | None, limit: int | None, name: str) -> list[int]:
    if num_tasks is None and limit is None:
        raise ValueError(f"{name} has unbounded items; pass --limit")
    count = num_tasks if limit is None else (
        min(limit, num_tasks) if num_tasks is not None else limit)
    if count < 1:
        raise ValueError(f"nothing to evaluate (--limit {limit}, {num_tasks} items)")
    return list(range(count))


# ---------------------------------------------------------------------------- completions
def read_completions(path: Path, env: TokenEnv, limit: int | None) -> dict[int, list[str]]:
    """``{index: [completion, ...]}`` from a JSON-lines file, validated against the env."""
    by_index: dict[int, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            index = row.get("index") if isinstance(row, dict) else None
            texts = row.get("completions", [row.get("completion")]) if index is not None else []
            if not isinstance(index, int) or not texts or not all(isinstance(t, str)
                                                                  for t in texts):
                raise ValueError(f"{path}:{number}: need {{'index': int, 'completion': str}} "
                                 "or {'index': int, 'completions': [str, ...]}")
            if env.num_tasks is not None and not 0 <= index < env.num_tasks:
                raise ValueError(f"{path}:{number}: index {index} outside [0, {env.num_tasks})")
            by_index[index].extend(texts)
    keep = sorted(by_index)[:limit] if limit is not None else sorted(by_index)
    if not keep:
        raise ValueError(f"{path} holds no completions")
    return {i: by_index[i] for i in keep}


def sample_model(model: Any, env_id: str, env_kwargs: dict[str, Any], *, limit: int | None,
                 n: int, temperature: float, seed: int = 0, batch_size: int = 32,
                 rollouts: Path | None = None) -> list[Sample]:
    """Sample ``n`` episodes on each of the first ``limit`` items through the rollout engine.

    The env is built as the trainers build theirs (the batched token env of ``env_id``,
    autoreset disabled) and played by :func:`llm_gym.agents.token_envs.play_items`; each
    sample is read from the env's final ``info`` of its episode.

    Args:
        model: the causal LM; ``env_kwargs`` must carry its ``tokenizer``.
        env_id: a registered token env id.
        env_kwargs: its ``gym.make_vec`` keyword arguments.
        limit: evaluate items ``0 .. limit-1`` (default every item).
        n: samples per item.
        temperature: sampling temperature; ``0`` is greedy.
        seed: reset and sampling seed.
        batch_size: most episodes played together.
        rollouts: also write every episode to this JSON-lines file (replaced if it exists).
    """
    from tqdm import tqdm

    from llm_gym.agents.rollout_records import RolloutWriter
    from llm_gym.agents.token_envs import first_env, play_items

    num_tasks, name = _task_count(env_id, env_kwargs)
    rows = [index for index in _indices(num_tasks, limit, name) for _ in range(n)]
    batches = -(-len(rows) // batch_size)  # as few batches as --batch-size allows, even sizes
    envs = make_env(env_id, -(-len(rows) // batches), env_kwargs=env_kwargs,
                    autoreset_mode="Disabled")
    samples: list[Sample] = []
    failed = 0
    try:
        tokenizer = first_env(envs).tokenizer
        stops = np.array(sorted(tokenizer.stop_token_ids), dtype=np.int64)
        writer = None
        if rollouts is not None:
            rollouts.unlink(missing_ok=True)
            writer = RolloutWriter(rollouts, env_id, env_kwargs, tokenizer, source="eval")
        with tqdm(total=len(rows), desc="sampling", unit="episode", file=sys.stderr) as bar:
            for batch in play_items(model, envs, rows, temperature=temperature, seed=seed):
                done = len(samples)
                samples += [_episode(batch, row, rows[done + row], tokenizer, stops)
                            for row in range(batch.num_rows)]
                failed += int((~batch.valid).sum())
                if writer is not None:
                    writer.write(batch)
                bar.update(batch.num_rows)
    finally:
        envs.close()
    if failed:
        logger.warning("the env's scorer failed on %d of %d episodes (info['reward_error']); "
                       "they score 0", failed, len(samples))
    return samples


def _task_count(env_id: str, env_kwargs: dict[str, Any]) -> tuple[int | None, str]:
    """The env's number of items (``None``: unbounded) and its class name."""
    env = _make_env(env_id, env_kwargs)
    try:
        return env.num_tasks, type(env).__name__
    finally:
        env.close()


def _episode(batch: RolloutBatch, row: int, index: int, tokenizer: Any,
             stops: np.ndarray) -> Sample:
    """Row ``row`` of a rollout as a :class:`Sample`: what the agent wrote, scored by the env."""
    info = batch.infos[row]
    length = int(batch.attention_mask[row].sum())
    ids = batch.input_ids[row, :length].numpy()
    agent = batch.agent_mask[row, :length].numpy().astype(bool)
    # The text after the prompt (the reply; on multi-turn envs the env's replies between the
    # agent's turns too). Finished: the agent's last reply ended with a stop token, which is left
    # out as the env leaves it out of the reply it scores.
    first, last = int(agent.argmax()), length - 1 - int(agent[::-1].argmax())
    finished = bool(ids[last] in stops)
    tail = ids[first:last] if finished else ids[first:last + 1]
    reward = float(batch.returns[row])
    correct = bool(info.get("correct", info.get("success", reward > 0)))
    return Sample(
        index=index,
        completion=tokenizer.decode(tail.tolist(), skip_special_tokens=True),
        tokens=int((agent & ~np.isin(ids, stops)).sum()), reward=reward,
        correct=correct and finished,
        verdict=_plain(info.get("verdict")) or (None if finished else "truncated"),
        extracted=_plain(info.get("extracted")), finished=finished,
        tools=({k: float(_plain(v)) for k, v in info["tools"].items()}
               if isinstance(info.get("tools"), dict) else None),
    )


def _plain(value: Any) -> Any:
    """A numpy scalar from a vector env's ``info`` as the Python value the env gave."""
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------- scoring
def score(env: TokenEnv, generated: dict[int, list[Any]]) -> list[Sample]:
    """Score every completion with the env (texts, or ``(ids, finished)`` from a model)."""
    from tqdm import tqdm

    samples: list[Sample] = []
    for index, items in tqdm(generated.items(), desc="scoring", unit="item", file=sys.stderr):
        texts, ids, finished = [], [], []
        for item in items:
            if isinstance(item, str):
                texts.append(item)
                ids.append(env.tokenizer.encode(item))
                finished.append(True)
            else:
                ids.append(item[0])
                texts.append(env.tokenizer.decode(item[0], skip_special_tokens=True))
                finished.append(item[1])
        samples.extend(_score_item(env, index, texts, ids, finished))
    return samples


def _score_item(env: TokenEnv, index: int, texts: list[str], ids: list[list[int]],
                finished: list[bool]) -> list[Sample]:
    batch = getattr(env, "score_responses", None)
    done = [i for i, f in enumerate(finished) if f]
    results: dict[int, Sample] = {}
    if batch is not None and done:
        for i, result in zip(done, batch([index] * len(done), [texts[i] for i in done]),
                             strict=True):
            # The env's convention for info["extracted"]: "" when no answer was found.
            extracted = "" if result.answer is None else str(result.answer)
            results[i] = Sample(index, texts[i], len(ids[i]), result.reward,
                                result.verdict == "correct", result.verdict, extracted)
    for i, text in enumerate(texts):
        if i not in results:
            env.reset(options={"index": index})
            turn = env.end_turn(text, ids[i], finished[i])
            info = turn.info
            verdict = info.get("verdict") or (None if finished[i] else "truncated")
            correct = bool(info.get("correct", info.get("success", turn.reward > 0)))
            results[i] = Sample(index, text, len(ids[i]), float(turn.reward),
                                correct and finished[i], verdict, info.get("extracted"),
                                finished[i])
    return [results[i] for i in range(len(texts))]


def summarize(samples: list[Sample], ks: list[int]) -> dict[str, float | None]:
    """Accuracy, pass@k per budget, mean reward, mean length and format-error rate."""
    per_item: dict[int, list[bool]] = defaultdict(list)
    for sample in samples:
        per_item[sample.index].append(sample.correct)
    fewest = min(len(v) for v in per_item.values())
    metrics: dict[str, float | None] = {
        "items": float(len(per_item)),
        "samples": float(len(samples)),
        "accuracy": sum(s.correct for s in samples) / len(samples),
        "mean_reward": sum(s.reward for s in samples) / len(samples),
        "mean_length": sum(s.tokens for s in samples) / len(samples),
    }
    for k in ks:
        if k > fewest:
            raise ValueError(f"pass@{k} needs at least {k} samples per item, some have {fewest}; "
                             "raise --n or lower --k")
        counts = [(len(v), sum(v)) for v in per_item.values()]
        metrics[f"pass@{k}"] = mean_pass_at_k(counts, k)
    verdicts = [s.verdict for s in samples]
    metrics["format_error_rate"] = (sum(v in FORMAT_ERRORS for v in verdicts) / len(samples)
                                    if all(v is not None for v in verdicts) else None)
    tools = [s.tools for s in samples if s.tools is not None]
    if tools:  # a tool env: how often the model called, and how well, beside its accuracy
        metrics["tool_call_rate"] = sum(t.get("calls", 0) > 0 for t in tools) / len(tools)
        for key in ("calls", "errors", "parse_failures"):
            metrics[f"tool_{key}"] = sum(t.get(key, 0.0) for t in tools) / len(tools)
    return metrics


# ---------------------------------------------------------------------------- output
def format_table(report: Report) -> str:
    """The metrics as an aligned two-column table."""
    rows = [("env", report.env_id), ("source", report.source)]
    for name, value in report.metrics.items():
        if value is None:
            text = "n/a"
        elif name in ("items", "samples"):
            text = str(int(value))
        else:
            text = f"{value:.4f}"
        rows.append((name, text))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {text}" for name, text in rows)


def write_report(report: Report, path: Path) -> None:
    """Write metrics and samples as JSON."""
    payload = {"env": report.env_id, "source": report.source, "metrics": report.metrics,
               "samples": [vars(s) for s in report.samples]}
    # default=str: an extracted answer may be a sympy object or the like.
    write_json(path, payload, indent=2, default=str)
