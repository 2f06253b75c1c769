"""Cross-paradigm comparison: every agent on every env it can act in, one table and one plot.

:func:`plan_runs` crosses envs × agents × seeds and sets aside (with the reason) the pairs an
agent cannot act in; :func:`run_comparison` trains each run for the same env-step budget
(agent tokens, on token envs), evaluates the final policy deterministically, and writes
``comparison.md``, ``comparison.csv``, ``comparison.json`` and ``learning_curves.png``.

Columns: ``env_steps`` counts the agent's steps (its tokens, on token envs); ``tokens`` counts
the conversation tokens of all training episodes (prompt, env replies and agent tokens: what a
model reads), 0 on classic envs; ``wall_clock_s`` is training time only.

Example:
    >>> from llm_gym.agents.compare import plan_runs, run_comparison
    >>> runs, skipped = plan_runs(["llm_gym/LeftRight-v0"], ["q-learning", "greedy"], 500)
    >>> report = run_comparison(runs, skipped=skipped, eval_episodes=2)
    >>> [row["agent"] for row in report.rows]
    ['q-learning', 'greedy']
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.agents.base import AgentEnvMismatch, EpisodeRecord
from llm_gym.agents.compare_plot import plot_learning_curves
from llm_gym.agents.evaluation import (
    EvalResult,
    evaluate_agent,
    json_ready,
)
from llm_gym.agents.factory import (
    AGENTS,
    LLM_AGENTS,
    check_agent_name,
    env_kind_mismatch,
    make_agent,
)
from llm_gym.agents.periodic_eval import PeriodicEval, ProgressReport, combine_callbacks
from llm_gym.agents.regret import plot_regret, regret_columns, regret_training_env
from llm_gym.models import torch_threads
from llm_gym.wrappers.stack import (
    WrappersLike,
    WrapperStack,
    is_token_env,
    make_env,
    parse_wrappers,
)

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("env", "agent", "variant", "seeds", "untrained_return", "return_mean",
                 "return_std", "env_return", "success_rate", "mean_length", "env_steps",
                 "tokens", "updates", "wall_clock_s", "steps_to_solve", "regret", "regret_std")
# Shown only when measured; env_return and mean_length (the unshaped task metrics beside the
# shaped return) whenever some run is shaped; updates for the trainer-core agents; regret on
# bandit envs (agents/regret.py).
OPTIONAL_COLUMNS = ("variant", "untrained_return", "env_return", "mean_length", "updates",
                    "steps_to_solve", "regret", "regret_std")
# Fewer policy updates than this and a run's result says more about its seed than its setup:
# a variants comparison on one GRPO batch trains every variant on the same episodes.
FEW_UPDATES = 3


@dataclass
class RunSpec:
    """One training run of a comparison.

    Attributes:
        env_id: registered env id.
        agent: agent name (see :data:`llm_gym.agents.factory.AGENT_NAMES`).
        timesteps: env-step budget (agent tokens on token envs).
        seed: seed of the agent and its envs.
        env_kwargs: ``gym.make`` keyword arguments.
        config: agent config (see :func:`~llm_gym.agents.factory.make_agent`).
        model: grpo/ppo model name or module.
        label: name in the table (default: ``agent``).
        wrappers: the wrapper stack the agent trains and is evaluated on (a list or JSON
            text is checked into a :class:`~llm_gym.wrappers.stack.WrapperStack`).
        variant: name of the reward variant (``llm-gym compare --variants``), or ``None``.
        device: torch device of an LLM agent, passed to ``make_agent(device=...)`` (``None``:
            its default).
    """

    env_id: str
    agent: str
    timesteps: int
    seed: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    config: Any = None
    model: Any = None
    label: str | None = None
    wrappers: WrapperStack = field(default_factory=WrapperStack)
    variant: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        self.wrappers = parse_wrappers(self.wrappers)  # a hand-built spec is an edge too

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for JSON (the config and model as text, the wrapper stack as JSON)."""
        plain = asdict(replace(self, wrappers=WrapperStack()))
        spec = {k: v if isinstance(v, (str, int, float, dict, type(None))) else repr(v)
                for k, v in plain.items()}
        stack = self.wrappers.portable()  # JSON, unless it holds Python functions
        spec["wrappers"] = stack if stack is not None else repr(self.wrappers.to_json())
        return spec

    @property
    def name(self) -> str:
        """The agent's name in the table."""
        return self.label or self.agent

    @property
    def curve_name(self) -> str:
        """The agent's name in the plot legend (with its reward variant)."""
        return self.name if self.variant is None else f"{self.name} [{self.variant}]"


@dataclass
class RunResult:
    """What one run measured."""

    spec: RunSpec
    evaluation: EvalResult
    env_steps: int
    tokens: int
    wall_clock_s: float
    episodes: list[EpisodeRecord]
    steps_to_solve: int | None = None
    initial_return: float | None = None  # greedy return before training (eval_initial)
    success_curve: list[tuple[int, float | None]] = field(default_factory=list)  # eval_every
    regret: list[float] | None = None  # per training pull, on bandit envs (agents/regret.py)
    updates: int | None = None  # policy updates made (trainer-core agents; None for others)
    # (env steps, greedy evaluation) of every eval_every evaluation, first and last included
    evaluations: list[tuple[int, EvalResult]] = field(default_factory=list)

    @property
    def too_few_updates(self) -> bool:
        """Whether the run made so few updates that its result is mostly noise."""
        return self.updates is not None and self.updates < FEW_UPDATES

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for JSON (the spec as :meth:`RunSpec.to_dict` gives it)."""
        return {"spec": self.spec.to_dict(), "evaluation": self.evaluation.to_dict(),
                "env_steps": self.env_steps, "tokens": self.tokens,
                "wall_clock_s": self.wall_clock_s, "steps_to_solve": self.steps_to_solve,
                "initial_return": self.initial_return, "success_curve": self.success_curve,
                "regret": self.regret, "updates": self.updates,
                "episodes": [r.to_dict() for r in self.episodes]}


@dataclass
class ComparisonReport:
    """The table rows (one per env × agent, over seeds), every run, and the skipped pairs."""

    rows: list[dict[str, Any]]
    runs: list[RunResult]
    skipped: list[str]
    files: dict[str, Path] = field(default_factory=dict)

    def markdown(self, with_skipped: bool = True) -> str:
        """The table as GitHub markdown, with the skipped pairs below it (``with_skipped``)."""
        columns = [c for c in TABLE_COLUMNS
                   if c not in OPTIONAL_COLUMNS or any(r[c] is not None for r in self.rows)]
        if not any(r["variant"] is not None or r["shaped"] for r in self.rows):
            columns = [c for c in columns if c not in ("env_return", "mean_length")]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in self.rows]
        if with_skipped:
            lines += [f"\nskipped: {note}" for note in self.skipped]
        return "\n".join(lines)


def mismatch_reason(
    agent: str, env_id: str, env_kwargs: dict[str, Any] | None = None,
) -> str | None:
    """Why ``agent`` cannot act in ``env_id``, or ``None`` when it can.

    The env kind (token or classic) is checked against the agent table
    (:data:`~llm_gym.agents.factory.AGENTS`); SB3 and tabular agents then check the env's
    spaces (which builds the env): the SB3 classes through
    :func:`~llm_gym.agents.sb3.check_sb3_compatible`, the others through their ``check_env``.
    """
    reason = env_kind_mismatch(agent, env_id)
    entry = AGENTS[agent]
    if reason is not None or entry.family == "llm":
        return reason
    from llm_gym.agents.sb3 import check_sb3_compatible

    env = make_env(env_id, env_kwargs=env_kwargs)
    try:
        if entry.family == "sb3":
            check_sb3_compatible(entry.agent_class(), env)
        else:
            entry.agent_class().check_env(env)
    except AgentEnvMismatch as err:
        return str(err).split(". Use")[0]
    finally:
        env.close()
    return None


def plan_runs(
    envs: Sequence[str], agents: Sequence[str], timesteps: int, seeds: Sequence[int] = (0,),
    env_kwargs: dict[str, dict[str, Any]] | None = None, *, wrappers: WrappersLike = None,
    variants: dict[str, WrappersLike] | None = None,
) -> tuple[list[RunSpec], list[str]]:
    """Every (env, agent, seed, variant) run an agent can act in, and a note for each it can't.

    ``env_kwargs`` maps an env id to its ``gym.make`` keyword arguments. ``wrappers`` is a
    stack every run trains on; ``variants`` maps a variant name to a stack put on top of it
    (``[]``: unshaped), and every run is repeated per variant. Each (env, stack) is built once
    here, so a wrapper that does not fit an env fails before any training starts.

    Example:
        >>> runs, _ = plan_runs(["CartPole-v1"], ["random"], 100, variants={
        ...     "plain": [], "short": [{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]})
        >>> [run.variant for run in runs]
        ['plain', 'short']
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be at least 1, got {timesteps}")
    for agent in agents:
        check_agent_name(agent)
    base = parse_wrappers(wrappers)
    stacks = {None: base} if variants is None else {
        name: base + parse_wrappers(stack or [], f"variant {name!r}")
        for name, stack in variants.items()}
    runs, skipped = [], []
    for env_id in envs:
        kwargs = dict((env_kwargs or {}).get(env_id, {}))
        for variant, stack in stacks.items():
            _check_stack(env_id, kwargs, stack, variant)
        for agent in agents:
            reason = mismatch_reason(agent, env_id, kwargs)
            if reason is not None:
                skipped.append(f"{agent} on {env_id}: {reason}")
                continue
            runs += [RunSpec(env_id, agent, timesteps, seed, kwargs, wrappers=stack,
                             variant=variant)
                     for variant, stack in stacks.items() for seed in seeds]
    return runs, skipped


def _check_stack(env_id: str, kwargs: dict[str, Any], stack: WrapperStack,
                 variant: str | None) -> None:
    if not stack:
        return
    try:
        make_env(env_id, env_kwargs=kwargs, wrappers=stack).close()
    except (TypeError, ValueError) as err:
        where = f" (variant {variant!r})" if variant is not None else ""
        raise type(err)(f"{env_id}{where}: {err}") from err


def run_one(spec: RunSpec, *, eval_episodes: int = 10, eval_every: int | None = None,
            eval_initial: bool = False, progress_bar: bool = False,
            solve_rate: float = 1.0,
            on_progress: Callable[[int, dict[str, float]], None] | None = None,
            report_to: str | None = None, metrics_dir: str | Path | None = None) -> RunResult:
    """Build the run's agent, train it for its budget and evaluate the final policy.

    With ``eval_every``, the greedy policy is also evaluated every ``eval_every`` env steps
    during training; :attr:`RunResult.steps_to_solve` is the step count from which every
    evaluation (the final one included) reached a success rate of ``solve_rate`` (1.0: every
    episode; lower for stochastic envs such as slippery FrozenLake), ``None`` if the final
    policy does not. With ``eval_every`` or ``eval_initial``, the untrained greedy policy is
    evaluated first (:attr:`RunResult.initial_return`), so the table shows what was learned.
    ``on_progress`` see :func:`train_and_evaluate`; ``report_to`` and ``metrics_dir`` see
    :func:`~llm_gym.agents.run_reporting.configure_reporting` (the spec is the W&B config).
    """
    # On a bandit env the agent trains on an env that records each pull's regret.
    env, regret = regret_training_env(spec)
    agent = make_agent(spec.agent, env, model=spec.model, config=spec.config,
                       seed=spec.seed, env_kwargs=None if regret else spec.env_kwargs or None,
                       wrappers=spec.wrappers,
                       **({"device": spec.device} if spec.device is not None else {}))
    if report_to is not None:
        from llm_gym.agents.run_reporting import configure_reporting

        configure_reporting(agent, report_to, spec.to_dict(), metrics_dir)
    result = train_and_evaluate(agent, spec, eval_episodes=eval_episodes, eval_every=eval_every,
                                eval_initial=eval_initial, progress_bar=progress_bar,
                                solve_rate=solve_rate, on_progress=on_progress)
    result.regret = regret.regrets if regret is not None else None
    return result


def train_and_evaluate(
    agent: Any, spec: RunSpec, *, eval_episodes: int = 10, eval_every: int | None = None,
    eval_initial: bool = False, progress_bar: bool = False,
    learn_kwargs: dict[str, Any] | None = None, solve_rate: float = 1.0,
    on_progress: Callable[[int, dict[str, float]], None] | None = None,
) -> RunResult:
    """Train a built (or loaded) ``agent`` for ``spec.timesteps`` and evaluate it greedily.

    ``learn_kwargs`` go to ``agent.learn`` (e.g. SB3's ``reset_num_timesteps=False`` on resume).
    ``on_progress(env_steps, metrics)`` is called each tenth of the budget (through the agent's
    callback). The wall-clock counts training only (no periodic evaluations, no imports).
    """
    eval_env = make_env(spec.env_id, env_kwargs=spec.env_kwargs, wrappers=spec.wrappers)
    tracker = PeriodicEval(agent, lambda: evaluate_trained(agent, spec, eval_env, eval_episodes),
                           eval_every, solve_rate)
    initial = None
    # MLPs and the tiny LM do microseconds of work per op: on a CPU, intra-op threads only add
    # synchronisation (GRPO on the tiny LM: 49 s with 2 threads, 4.5 s with 1, 2 busy cores).
    # Real LMs keep torch's default.
    threads = 1 if spec.agent not in LLM_AGENTS or spec.model in (None, "tiny") else None
    with torch_threads(threads):
        if eval_every or eval_initial:
            first = evaluate_trained(agent, spec, eval_env, eval_episodes)
            initial = first.mean_return
        if eval_every:
            tracker.record(int(getattr(agent, "num_timesteps", 0)), first)
        start = time.perf_counter()
        progress = (ProgressReport(agent, spec.timesteps, on_progress)
                    if on_progress is not None else None)
        agent.learn(spec.timesteps, callback=combine_callbacks(agent, tracker.callback(), progress),
                    progress_bar=progress_bar, **(learn_kwargs or {}))
        wall = time.perf_counter() - start - tracker.seconds
        evaluation = evaluate_trained(agent, spec, eval_env, eval_episodes)
    if eval_every:
        tracker.record(int(getattr(agent, "num_timesteps", 0)), evaluation)
    episodes = list(getattr(agent, "episode_log", []))
    env_steps = int(getattr(agent, "num_timesteps", episodes[-1].env_steps if episodes else 0))
    token_env = is_token_env(spec.env_id)
    tokens = int(getattr(agent, "num_tokens", 0) or (episodes[-1].tokens if episodes else 0))
    updates = getattr(agent, "num_updates", None) if spec.agent in LLM_AGENTS else None
    return RunResult(spec, evaluation, env_steps, tokens if token_env else 0, wall, episodes,
                     tracker.solved_at, initial, tracker.history,
                     updates=None if updates is None else int(updates),
                     evaluations=tracker.results)


def run_comparison(
    runs: Sequence[RunSpec], *, out_dir: str | Path | None = None, skipped: Sequence[str] = (),
    eval_episodes: int = 10, eval_every: int | None = None, eval_initial: bool = False,
    on_run_end: Callable[[int, RunResult], None] | None = None,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
    report_to: str | None = None,
) -> ComparisonReport:
    """Train and evaluate every run, aggregate per env × agent, and write the report files.

    Args:
        runs: from :func:`plan_runs` (or hand-built :class:`RunSpec` lists).
        out_dir: folder for ``comparison.{md,csv,json}`` and ``learning_curves.png``; ``None``
            writes nothing.
        skipped: notes of the pairs left out, carried into the report.
        eval_episodes: deterministic evaluation episodes per run.
        eval_every: see :func:`run_one`.
        eval_initial: see :func:`run_one`.
        on_run_end: called with (run index, result) after each run (CLI progress).
        on_progress: called with (run index, env steps, latest metrics) each tenth of a run.
        report_to: trackers of every run (see :func:`run_one`); with ``out_dir``, each run's
            metrics.csv and TensorBoard logs go to ``out_dir/runs/<NN>-<agent>-<env>-s<seed>``.
    """
    results = []
    for i, spec in enumerate(runs):
        logger.info("run %d/%d: %s on %s, seed %d", i + 1, len(runs), spec.name, spec.env_id,
                    spec.seed)
        progress = None if on_progress is None else (
            lambda steps, metrics, i=i: on_progress(i, steps, metrics))
        folder = (Path(out_dir) / "runs" / f"{i + 1:02d}-{spec.curve_name}-"
                  f"{spec.env_id.split('/')[-1]}-s{spec.seed}".replace(" ", "")
                  if out_dir is not None and report_to is not None else None)
        result = run_one(spec, eval_episodes=eval_episodes, eval_every=eval_every,
                         eval_initial=eval_initial, on_progress=progress, report_to=report_to,
                         metrics_dir=folder)
        results.append(result)
        if on_run_end is not None:
            on_run_end(i, result)
    report = ComparisonReport(aggregate(results), results, list(skipped))
    if out_dir is not None:
        report.files = write_report(report, Path(out_dir))
    return report


def aggregate(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One table row per (env, agent name, variant): means over seeds."""
    groups: dict[tuple[str, str, str | None], list[RunResult]] = {}
    for result in results:
        key = (result.spec.env_id, result.spec.name, result.spec.variant)
        groups.setdefault(key, []).append(result)
    rows = []
    for (env_id, name, variant), group in groups.items():
        env_returns = [r.evaluation.env_return for r in group]
        returns = [r.evaluation.mean_return for r in group]
        rates = [r.evaluation.success_rate for r in group if r.evaluation.success_rate is not None]
        solved = [r.steps_to_solve for r in group]
        initial = [r.initial_return for r in group]
        rows.append({
            "env": env_id, "agent": name, "variant": variant, "seeds": len(group),
            "shaped": any(r.spec.wrappers for r in group),
            "untrained_return": (float(np.mean(initial)) if all(v is not None for v in initial)
                                 else None),
            "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)) if len(group) > 1 else
            group[0].evaluation.std_return,
            "env_return": (float(np.mean(env_returns)) if all(v is not None for v in env_returns)
                           else None),
            "success_rate": float(np.mean(rates)) if rates else None,
            "mean_length": float(np.mean([r.evaluation.mean_length for r in group])),
            "env_steps": int(np.mean([r.env_steps for r in group])),
            "tokens": int(np.mean([r.tokens for r in group])),
            "updates": (int(np.mean([r.updates for r in group]))
                        if all(r.updates is not None for r in group) else None),
            "wall_clock_s": float(np.mean([r.wall_clock_s for r in group])),
            "steps_to_solve": (int(np.mean(solved)) if all(s is not None for s in solved)
                               else None),
            **regret_columns(group),
        })
    return rows


def write_report(report: ComparisonReport, out_dir: Path) -> dict[str, Path]:
    """Write the markdown, CSV, JSON and PNG of ``report`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out_dir / "comparison.md", "csv": out_dir / "comparison.csv",
             "json": out_dir / "comparison.json", "png": out_dir / "learning_curves.png"}
    files["markdown"].write_text(report.markdown() + "\n")
    with files["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(report.rows)
    files["json"].write_text(json.dumps(json_ready(
        {"rows": report.rows, "skipped": report.skipped,
         "runs": [r.to_dict() for r in report.runs]}), indent=1, allow_nan=False))
    plot_learning_curves(report.runs, files["png"])
    regret_png = plot_regret(report.runs, out_dir / "regret_curves.png")
    if regret_png is not None:
        files["regret_png"] = regret_png
    return files


def evaluate_trained(agent: Any, spec: RunSpec, env: gym.Env, episodes: int) -> EvalResult:
    """Deterministic evaluation, the same result for every agent.

    llm_gym's trainers play through their own batched ``evaluate`` (which gives
    :func:`~llm_gym.agents.evaluation.evaluate_agent`'s keys); every other agent through
    :func:`~llm_gym.agents.evaluation.evaluate_agent`. Success is judged on the env's own
    (unshaped) return, so a shaping wrapper cannot fake the success column.
    """
    from llm_gym.agents.trainer import LLMTrainer

    if isinstance(agent, LLMTrainer):
        return EvalResult(**agent.evaluate(num_episodes=episodes, deterministic=True))
    return evaluate_agent(agent, env, episodes, deterministic=True, seed=10_000 + spec.seed)



def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
