"""``llm-gym compare``: every agent on every env it can act in, one table and one plot.

``--variants`` makes it a shaping experiment: every run is repeated under each named wrapper
stack (``{}`` or ``[]``: unshaped), and the table shows each variant's shaped return beside the
unshaped task metrics (``env_return``, ``success_rate``, ``mean_length``), because a shaped
return alone hides reward hacking.

Example:
    llm-gym compare --envs llm_gym/LeftRight-v0,FrozenLake-v1 --agents q-learning,greedy,sb3-ppo
        --timesteps 5000 --seeds 0,1 --out runs/compare
    llm-gym compare --envs CartPole-v1 --agents sb3-ppo --timesteps 2000 --variants
        '{"unshaped": [], "length": [{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]}'
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from llm_gym.agents.factory import AGENT_NAMES, LLM_AGENTS
from llm_gym.commands.arguments import (
    add_device_argument,
    add_tracking_arguments,
    agent_device,
    check_tracking_arguments,
    json_object,
    resolve_device,
)
from llm_gym.wrappers.stack import WrapperStack, parse_wrappers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``compare`` subcommand."""
    parser = subparsers.add_parser(
        "compare", help="train several agents on several envs and compare them")
    parser.add_argument("--envs", required=True, metavar="ID,ID",
                        help="comma-separated env ids")
    parser.add_argument("--agents", required=True, metavar="A,B",
                        help=f"comma-separated agent names ({', '.join(AGENT_NAMES)})")
    parser.add_argument("--timesteps", type=int, required=True,
                        help="env-step budget of every run (tokens on token envs)")
    parser.add_argument("--seeds", default="0", metavar="S,S", help="comma-separated seeds")
    parser.add_argument("--out", default="runs/compare", metavar="DIR",
                        help="folder for comparison.{md,csv,json} and learning_curves.png")
    parser.add_argument("--env-kwargs", default="{}", metavar="JSON",
                        help='per-env gym.make arguments, e.g. '
                             '\'{"llm_gym/LeftRightText-v0": {"constrained": true}}\'')
    parser.add_argument("--model", help="model of grpo/ppo on token envs (default tiny)")
    parser.add_argument("--config", metavar="FILE", help="config file of grpo/ppo (TOML/JSON)")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="deterministic evaluation episodes per run (default 10)")
    parser.add_argument("--wrappers", metavar="JSON",
                        help="reward wrappers every run trains on, as for llm-gym train")
    parser.add_argument("--variants", metavar="JSON",
                        help='reward variants: name -> wrapper list, e.g. \'{"unshaped": [], '
                             '"short": [{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]}\'')
    parser.add_argument("--untrained", action="store_true",
                        help="also evaluate each agent before training (untrained_return column)")
    add_tracking_arguments(parser)  # --report-to: each run's logs in OUT/runs/<run>
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress lines inside a run (one each tenth of its budget)")
    parser.set_defaults(func=run_compare)


def split_list(text: str, what: str) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``; an empty list is an error naming ``what``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"--{what} needs at least one value, got {text!r}")
    return items


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``."""
    try:
        return [int(s) for s in split_list(text, "seeds")]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None


def per_env_kwargs(text: str, envs: list[str]) -> dict[str, dict[str, Any]]:
    """The ``--env-kwargs`` JSON: an object mapping env ids (of ``--envs``) to kwargs."""
    value = json_object(text)
    if not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("--env-kwargs must map env ids to objects, e.g. "
                         '{"llm_gym/LeftRightText-v0": {"constrained": true}}')
    unknown = sorted(set(value) - set(envs))
    if unknown:
        raise ValueError(f"--env-kwargs names envs not in --envs: {unknown}")
    return value


def parse_variants(text: str) -> dict[str, WrapperStack]:
    """The ``--variants`` JSON: variant name -> wrapper stack (``{}`` or ``[]``: unshaped).

    Example:
        >>> parse_variants('{"plain": {}, "short": [{"name": "LengthPenalty"}]}')["plain"]
        WrapperStack([])
    """
    value = json_object(text, "--variants")
    if not value:
        raise ValueError("--variants needs at least one variant, e.g. '{\"unshaped\": []}'")
    return {name: parse_wrappers(stack or [], f"--variants {name!r}")
            for name, stack in value.items()}


def print_run(index: int, total: int, result: Any) -> None:
    """One progress line per finished run."""
    spec, ev = result.spec, result.evaluation
    rate = "–" if ev.success_rate is None else f"{ev.success_rate:.2f}"
    before = ("" if result.initial_return is None
              else f"untrained {result.initial_return:6.3g} -> ")
    print(f"[{index + 1}/{total}] {spec.curve_name:<18} {spec.env_id:<28} seed {spec.seed}: "
          f"{before}return {ev.mean_return:6.3g}  success {rate}  {result.wall_clock_s:6.1f} s",
          flush=True)
    if result.too_few_updates:
        print(f"  warning: {result.updates} update(s) in {spec.timesteps} steps: the result says "
              "more about the seed than the setup; raise --timesteps", flush=True)


def print_progress(runs: list[Any], index: int, steps: int, metrics: dict[str, float]) -> None:
    """A line inside a run, each tenth of its budget (issue 21: nothing showed until it ended)."""
    spec = runs[index]
    reward = metrics.get("rollout/ep_rew_mean")
    said = "" if reward is None else f", training return {reward:.3g}"
    updates = metrics.get("train/updates")
    said += "" if updates is None else f", {updates:.0f} updates"
    print(f"  [{index + 1}/{len(runs)}] {spec.curve_name} on {spec.env_id} seed {spec.seed}: "
          f"{steps}/{spec.timesteps} steps ({100 * steps / spec.timesteps:.0f}%){said}",
          flush=True)


def run_compare(args: argparse.Namespace) -> int:
    """Plan, run, print the table and the files written."""
    from llm_gym.agents.compare import plan_runs, run_comparison

    check_tracking_arguments(args)
    device = resolve_device(args.device)
    envs, agents = split_list(args.envs, "envs"), split_list(args.agents, "agents")
    variants = None if args.variants is None else parse_variants(args.variants)
    runs, skipped = plan_runs(envs, agents, args.timesteps, parse_seeds(args.seeds),
                              per_env_kwargs(args.env_kwargs, envs),
                              wrappers=parse_wrappers(args.wrappers), variants=variants)
    for spec in runs:
        if spec.agent in LLM_AGENTS:
            spec.model, spec.config = args.model, args.config
        spec.config, placement = agent_device(spec.agent, device, spec.config)
        spec.device = placement.get("device")
    for note in skipped:
        print(f"skip: {note}")
    print(f"{len(runs)} runs of {args.timesteps} steps", flush=True)
    start = time.perf_counter()
    report = run_comparison(runs, out_dir=args.out, skipped=skipped,
                            eval_episodes=args.eval_episodes, eval_initial=args.untrained,
                            on_run_end=lambda i, r: print_run(i, len(runs), r),
                            on_progress=None if args.no_progress else (
                                lambda i, steps, m: print_progress(runs, i, steps, m)),
                            eval_every=args.eval_every, report_to=args.report_to)
    print()
    print(report.markdown(with_skipped=False))  # the skip list was printed before the runs
    print(f"\n{len(runs)} runs in {time.perf_counter() - start:.0f} s; wrote "
          + ", ".join(str(p) for p in report.files.values()))
    return 0
