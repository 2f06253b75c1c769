"""``llm-gym card``: one page per env id — what it is, and what a user should expect to score.

A card holds the env's spaces, budgets and data, the sections of its docstring (Description,
Rewards, Episode End, Arguments), and reference scores measured when the card was written:

* ``random``: uniform random actions (over the allowed tokens where the env masks them);
* classic agents trained briefly on a classic face (``--agents``, through ``llm-gym compare``'s
  own planning, so agents that cannot act in the env are left out with the reason);
* a model prompted as it is (``--model``, token envs): accuracy, pass@k over ``--n`` samples per
  item, and the share of items whose samples all scored the same — the groups in which GRPO
  finds no signal — through ``llm-gym eval``'s sampling, the trainers' rollout engine (whole
  episodes: on multi-turn envs the episode's return and verdict, not only the first turn's).

Each card ends with the command that wrote it, the date and the machine. ``--all`` writes a card
for every registered ``llm_gym/`` id plus an index; the manual includes them (``docs/cards``).

Example:
    $ llm-gym card llm_gym/Arithmetic-v0 --model smollm2 --out docs/cards
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import os
import platform
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.commands.arguments import json_object
from llm_gym.registration import env_ids
from llm_gym.wrappers.stack import is_token_env

# Docstring sections a card shows (Gymnasium's env docstring layout).
SECTIONS = ("Description", "Rewards", "Episode End", "Arguments")
_BUDGETS = ("max_new_tokens", "max_turns", "max_length", "horizon", "max_steps", "num_tasks")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``card`` subcommand."""
    p = subparsers.add_parser("card", help="write an env card: spaces, data, reference scores")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("env", nargs="?", metavar="ID", help="env id, e.g. llm_gym/GSM8K-v0")
    target.add_argument("--all", action="store_true", help="every registered llm_gym/ id")
    p.add_argument("--env-kwargs", default="{}", metavar="JSON",
                   help="gym.make keyword arguments; with --all, an object of id -> kwargs")
    p.add_argument("--episodes", type=int, default=20, help="episodes of the random policy")
    p.add_argument("--agents", default="q-learning,sb3-ppo", metavar="A,B",
                   help="classic agents trained on classic faces ('' for none)")
    p.add_argument("--timesteps", type=int, default=5000, help="training steps of each agent")
    p.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                   help="a model prompted as it is on token envs, e.g. smollm2 (default: none)")
    p.add_argument("--n", type=int, default=4, help="samples per item for the model")
    p.add_argument("--limit", type=int, default=8, help="items the model is sampled on")
    p.add_argument("--out", type=Path, default=Path("cards"), help="folder for the cards")
    p.set_defaults(func=run_card)


@dataclass
class Card:
    """Everything one card shows."""

    env_id: str
    facts: list[tuple[str, str]]
    sections: dict[str, str]
    scores: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_card(args: argparse.Namespace) -> int:
    """Run ``llm-gym card``: write one card (or all, with an index); print where."""
    if args.episodes < 1 or args.n < 1 or args.limit < 1:
        raise ValueError("--episodes, --n and --limit must each be at least 1")
    ids = sorted(env_ids()) if args.all else [args.env]  # not the server ids: no server here
    kwargs = json_object(args.env_kwargs)
    if args.all:
        unknown = sorted(set(kwargs) - set(ids))
        if unknown or not all(isinstance(v, dict) for v in kwargs.values()):
            raise ValueError("with --all, --env-kwargs maps registered ids to objects, e.g. "
                             '{"llm_gym/GSM8K-v0": {"data_files": "gsm8k/train.jsonl"}}')
    args.out.mkdir(parents=True, exist_ok=True)
    model = _load_model(args.model)
    written = []
    for env_id in ids:
        env_kwargs = kwargs.get(env_id, {}) if args.all else kwargs
        card = build_card(env_id, env_kwargs, args, model)
        path = args.out / card_file(env_id)
        path.write_text(render(card, _command(), _machine()), encoding="utf-8")
        written.append((env_id, path))
        print(f"wrote {path}")
    if args.all:
        index = args.out / "index.md"
        index.write_text(render_index(written), encoding="utf-8")
        print(f"wrote {index}")
    return 0


def card_file(env_id: str) -> str:
    """``llm_gym/GSM8K-v0`` -> ``GSM8K-v0.md``."""
    return env_id.split("/")[-1] + ".md"


def build_card(env_id: str, env_kwargs: dict[str, Any], args: argparse.Namespace,
               model: tuple[Any, Any] | None) -> Card:
    """Describe ``env_id`` and measure its reference scores.

    An env that cannot be built here (a hub dataset, offline) gets a card that says so.
    """
    spec = gym.spec(env_id)
    try:
        env = gym.make(env_id, **env_kwargs)
    except (OSError, ValueError, ImportError) as err:
        card = Card(env_id, [("entry point", f"`{spec.entry_point}`")],
                    docstring_sections(_entry_class(spec)))
        card.notes.append(f"Not built here ({type(err).__name__}: {_first_line(err)}); "
                          "no scores measured. Pass local data with `--env-kwargs`.")
        return card
    card = Card(env_id, describe(env, spec, env_kwargs), docstring_sections(type(env.unwrapped)))
    card.scores.append(random_scores(env, args.episodes))
    env.close()
    if not is_token_env(env):
        card.scores.extend(classic_scores(env_id, env_kwargs, args))
    elif model is not None:
        card.scores.append(model_scores(env_id, env_kwargs, args, model))
    return card


def describe(env: gym.Env, spec: gym.envs.registration.EnvSpec,
             env_kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The card's facts: entry point, face, spaces, budgets and data."""
    inner = env.unwrapped
    face = "token" if is_token_env(env) else "classic"
    facts = [("entry point", f"`{spec.entry_point}`"), ("face", face),
             ("action space", f"`{env.action_space}`"),
             ("observation space", f"`{_space_text(env.observation_space)}`")]
    budgets = [f"`{name}` = {getattr(inner, name)}" for name in _BUDGETS
               if isinstance(getattr(inner, name, None), int | np.integer)]
    if budgets:
        facts.append(("budgets", ", ".join(budgets)))
    if spec.max_episode_steps is not None:
        facts.append(("time limit", f"{spec.max_episode_steps} steps"))
    data = env_kwargs.get("data_files") or spec.kwargs.get("data_files")
    facts.append(("data", f"`{data}`" if data else "generated or built in (no files)"))
    if env_kwargs:
        facts.append(("kwargs", f"`{env_kwargs}`"))
    return facts


def _space_text(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {v.shape}" for k, v in space.spaces.items()) + ")"
    return str(space)


def docstring_sections(cls: type | None) -> dict[str, str]:
    """The ``## Section`` blocks of an env class docstring that a card shows."""
    doc = (inspect.getdoc(cls) or "") if cls is not None else ""
    found: dict[str, str] = {}
    for block in re.split(r"^## ", doc, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        body = body.split("\nExample:")[0].strip()
        if title.strip() in SECTIONS and body:
            found[title.strip()] = body
    return found


def _entry_class(spec: gym.envs.registration.EnvSpec) -> type | None:
    """The env class behind ``spec`` without building the env (Gymnasium's own loader)."""
    try:
        creator = gym.envs.registration.load_env_creator(spec.entry_point) if isinstance(
            spec.entry_point, str) else spec.entry_point
    except (ImportError, AttributeError):
        return None
    return creator if isinstance(creator, type) else None


# ---------------------------------------------------------------------------- reference scores
def random_scores(env: gym.Env, episodes: int) -> dict[str, Any]:
    """Uniform random actions (among the allowed tokens where the env masks them)."""
    from llm_gym.agents.evaluation import evaluate_agent
    from llm_gym.agents.greedy import RandomAgent

    result = evaluate_agent(RandomAgent(env), env, episodes, deterministic=False)
    return {"policy": "random", "episodes": result.episodes, "mean_return": result.mean_return,
            "success_rate": result.success_rate, "mean_length": result.mean_length}


def classic_scores(env_id: str, env_kwargs: dict[str, Any],
                   args: argparse.Namespace) -> list[dict[str, Any]]:
    """Classic agents trained for ``--timesteps`` and evaluated greedily (one seed each)."""
    from llm_gym.agents.compare import plan_runs, run_comparison

    names = [a for a in args.agents.split(",") if a]
    if not names:
        return []
    runs, _ = plan_runs([env_id], names, args.timesteps, env_kwargs={env_id: env_kwargs})
    report = run_comparison(runs, eval_episodes=args.episodes)
    return [{"policy": f"{run.spec.agent} ({args.timesteps} steps)",
             "episodes": run.evaluation.episodes, "mean_return": run.evaluation.mean_return,
             "success_rate": run.evaluation.success_rate,
             "mean_length": run.evaluation.mean_length} for run in report.runs]


def model_scores(env_id: str, env_kwargs: dict[str, Any], args: argparse.Namespace,
                 model: tuple[Any, Any]) -> dict[str, Any]:
    """The model as it is: ``--n`` episodes at temperature 1 on each of the first ``--limit``."""
    from llm_gym.commands.eval import sample_model, summarize

    lm, tokenizer = model
    samples = sample_model(lm, env_id, {**env_kwargs, "tokenizer": tokenizer}, limit=args.limit,
                           n=args.n, temperature=1.0)
    metrics = summarize(samples, sorted({1, args.n}))
    by_item: dict[int, set[float]] = {}
    for sample in samples:
        by_item.setdefault(sample.index, set()).add(sample.reward)
    equal = sum(len(rewards) == 1 for rewards in by_item.values()) / len(by_item)
    return {"policy": f"{args.model} prompted (T=1)", "episodes": len(samples),
            "mean_return": metrics["mean_reward"], "success_rate": metrics["accuracy"],
            "mean_length": metrics["mean_length"], "pass@1": metrics["pass@1"],
            f"pass@{args.n}": metrics[f"pass@{args.n}"], "all-equal groups": equal}


def _load_model(name: str | None) -> tuple[Any, Any] | None:
    if name is None:
        return None
    from llm_gym.models import load_model

    return load_model(name)


# ---------------------------------------------------------------------------- rendering
def render(card: Card, command: str, machine: str) -> str:
    """The card as Markdown."""
    lines = [f"# `{card.env_id}`", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in card.facts]
    for title in SECTIONS:
        if title in card.sections:
            lines += ["", f"## {title}", "", card.sections[title]]
    lines += ["", "## Reference scores", ""]
    lines += _score_table(card.scores) if card.scores else ["None measured."]
    lines += [f"\n{note}" for note in card.notes]
    lines += ["", f"Written by `{command}` on {datetime.date.today().isoformat()}, {machine}.", ""]
    return "\n".join(lines)


def _score_table(scores: list[dict[str, Any]]) -> list[str]:
    columns = ["policy", "episodes", "mean_return", "success_rate", "mean_length"]
    columns += [k for s in scores for k in s if k not in columns]
    columns = list(dict.fromkeys(columns))
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for s in scores:
        rows.append("| " + " | ".join(_cell(s.get(c)) for c in columns) + " |")
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_index(written: list[tuple[str, Path]]) -> str:
    """The cards' index page."""
    lines = ["# Environment cards", "",
             "One page per registered id, written by `llm-gym card --all`: spaces, budgets, data "
             "and reference scores measured on the date each card gives.", ""]
    lines += [f"- [`{env_id}`]({path.name})" for env_id, path in written]
    return "\n".join(lines) + "\n"


def _command() -> str:
    return "llm-gym " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else (
        "llm-gym card")


def _machine() -> str:
    # torch is imported only when a model was loaded; without one no GPU was used either way.
    torch = sys.modules.get("torch")
    gpu = "a CUDA GPU" if torch is not None and torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores, {platform.system()} {platform.machine()}, {gpu}"


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:200] if str(err) else ""
