"""``llm-gym train``: train one agent on one env, save it, and print its evaluation.

Everything of a run lands in one folder (``--log-dir``, default ``runs/<agent>-<env>-s<seed>``):
the saved agent (``agent.zip`` for SB3, ``agent.npz`` for the table agents, ``agent/`` for grpo
and ppo), ``run.json`` (what was trained, so ``--resume DIR`` needs nothing else),
``episodes.csv`` and ``learning_curve.png`` (the learning curve) and ``eval.json`` (strict JSON:
a value that is not a number is ``null``); the end of the output lists them.

``--wrappers`` trains on a shaped reward: a JSON list of ``{"name": ..., "kwargs": {...}}``
(llm_gym's shaping wrappers or Gymnasium's reward wrappers, innermost first); run.json records
it, so ``--resume`` rebuilds the same stack.

Example:
    llm-gym train --env llm_gym/LeftRight-v0 --agent q-learning --timesteps 2000
    llm-gym train --resume runs/q-learning-LeftRight-v0-s0 --timesteps 1000
    llm-gym train --env llm_gym/Arithmetic-v0 --agent grpo --timesteps 256
        --wrappers '[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]'
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
from pathlib import Path
from typing import Any

from llm_gym.agents.factory import AGENT_NAMES
from llm_gym.commands.arguments import json_object
from llm_gym.commands.output import output_lines, write_json
from llm_gym.wrappers.stack import WRAPPER_NAMES, parse_wrappers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``train`` subcommand."""
    parser = subparsers.add_parser("train", help="train an agent on an environment")
    parser.add_argument("--env", metavar="ID", help="env id, e.g. llm_gym/LeftRight-v0")
    parser.add_argument("--agent", choices=AGENT_NAMES, help="which agent to train")
    parser.add_argument("--model", help="grpo/ppo on token envs: tiny, smollm2, a hub id or path")
    parser.add_argument("--config", metavar="FILE", help="agent config, TOML or JSON")
    parser.add_argument("--timesteps", type=int, default=10_000,
                        help="env steps to train (tokens on token envs; default 10000)")
    parser.add_argument("--env-kwargs", default="{}", metavar="JSON",
                        help='gym.make keyword arguments as JSON, e.g. \'{"constrained": true}\'')
    parser.add_argument("--wrappers", metavar="JSON",
                        help='reward wrappers, innermost first, e.g. \'[{"name": '
                             '"LengthPenalty", "kwargs": {"coef": 0.01}}]\' (names: '
                             f'{", ".join(WRAPPER_NAMES)})')
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--log-dir", metavar="DIR",
                        help="run folder (default runs/<agent>-<env>-s<seed>)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="deterministic evaluation episodes at the end (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_train)



def run_train(args: argparse.Namespace) -> int:
    """Train (or resume), save, evaluate and print the result table."""
    from llm_gym.agents.compare import ComparisonReport, aggregate, train_and_evaluate

    if args.timesteps < 1:
        raise ValueError(f"--timesteps must be at least 1, got {args.timesteps}")
    agent, spec, run_dir, learn_kwargs = _agent_and_spec(args)
    print(f"training {spec.agent} on {spec.env_id} for {spec.timesteps} steps -> {run_dir}")
    result = train_and_evaluate(agent, spec, eval_episodes=args.eval_episodes,
                                progress_bar=not args.no_progress, learn_kwargs=learn_kwargs)
    _save_run(agent, result, run_dir, args)
    print(ComparisonReport(aggregate([result]), [result], []).markdown())
    print(f"\n{_result_line(result)}")
    print(f"saved to {run_dir}:")
    for line in output_lines(run_dir):
        print(f"  {line}")
    return 0


def _result_line(result: Any) -> str:
    # train measures only the trained agent (quickstart's untrained number would cost a second
    # evaluation), so this is the one number, with what it is.
    ev = result.evaluation
    rate = "" if ev.success_rate is None else f", success rate {ev.success_rate:.2f}"
    return (f"trained: mean return {ev.mean_return:.3g} ± {ev.std_return:.3g} over "
            f"{ev.episodes} greedy episodes{rate}")


def _agent_and_spec(args: argparse.Namespace) -> tuple[Any, Any, Path, dict[str, Any]]:
    from llm_gym.agents.compare import RunSpec
    from llm_gym.agents.factory import agent_file, load_agent, make_agent

    if args.resume:
        saved = _read_run(Path(args.resume))
        for key in ("env", "agent"):
            given = getattr(args, key)
            if given is not None and given != saved[key]:
                raise ValueError(f"--{key} {given} differs from the resumed run's {saved[key]}; "
                                 "leave it out when resuming")
        wrappers = saved.get("wrappers") or []
        if args.wrappers is not None and parse_wrappers(args.wrappers) != wrappers:
            raise ValueError(f"--wrappers differs from the resumed run's {json.dumps(wrappers)}; "
                             "leave it out when resuming")
        run_dir = Path(args.log_dir or args.resume)
        name, env_id, env_kwargs = saved["agent"], saved["env"], saved["env_kwargs"]
        agent = load_agent(name, agent_file(name, args.resume), env_id, env_kwargs=env_kwargs,
                           seed=saved["seed"], log_dir=run_dir, wrappers=wrappers)
        # SB3, GRPO and PPO restart their step counter unless told (SB3's semantics); the table
        # agents always go on.
        resets = "reset_num_timesteps" in inspect.signature(agent.learn).parameters
        learn_kwargs = {"reset_num_timesteps": False} if resets else {}
        args.model = args.model or saved.get("model")
        args.config = args.config or saved.get("config")
        return agent, RunSpec(env_id, name, args.timesteps, saved["seed"], env_kwargs,
                              wrappers=wrappers), run_dir, learn_kwargs
    if not args.env or not args.agent:
        raise ValueError("train needs --env and --agent (or --resume DIR)")
    env_kwargs = json_object(args.env_kwargs)
    wrappers = parse_wrappers(args.wrappers)  # a bad stack fails here, before any model loads
    short = args.env.split("/")[-1]
    run_dir = Path(args.log_dir or f"runs/{args.agent}-{short}-s{args.seed}")
    agent = make_agent(args.agent, args.env, model=args.model, config=args.config,
                       seed=args.seed, log_dir=run_dir, env_kwargs=env_kwargs, wrappers=wrappers)
    spec = RunSpec(args.env, args.agent, args.timesteps, args.seed, env_kwargs, wrappers=wrappers)
    return agent, spec, run_dir, {}


def _read_run(directory: Path) -> dict[str, Any]:
    path = directory / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume {directory}: no run.json there; resume a folder "
                                "written by llm-gym train")
    return json.loads(path.read_text())


def _save_run(agent: Any, result: Any, run_dir: Path, args: argparse.Namespace) -> None:
    from llm_gym.agents.compare_plot import plot_learning_curves
    from llm_gym.agents.factory import agent_file

    spec = result.spec
    run_dir.mkdir(parents=True, exist_ok=True)
    agent.save(str(agent_file(spec.agent, run_dir)))
    total = int(getattr(agent, "num_timesteps", result.env_steps))
    write_json(run_dir / "run.json", {
        "agent": spec.agent, "env": spec.env_id, "env_kwargs": spec.env_kwargs,
        "wrappers": spec.wrappers, "seed": spec.seed, "model": args.model, "config": args.config,
        "num_timesteps": total})
    write_json(run_dir / "eval.json", result.evaluation.to_dict())
    # Every agent gets the same plot (GRPO and PPO also draw their own reward_curve.png).
    plot_learning_curves([result], run_dir / "learning_curve.png")
    with (run_dir / "episodes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["env_steps", "tokens", "episode_return",
                                                    "length", "success", "wall_time"])
        writer.writeheader()
        writer.writerows(r.to_dict() for r in result.episodes)
