"""What ``llm-gym train`` writes and prints about a run: run.json, the saves, the result line.

Split from :mod:`llm_gym.commands.train` (which decides what to train) to keep modules small.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path
from typing import Any

from llm_gym.commands.output import write_json


def agent_steps(agent: Any) -> int:
    """The env steps the agent has trained (0 before any)."""
    return int(getattr(agent, "num_timesteps", 0))


def result_line(result: Any) -> str:
    """The one-line summary of a run's greedy evaluation."""
    ev = result.evaluation
    rate = "" if ev.success_rate is None else f", success rate {ev.success_rate:.2f}"
    before = ("" if result.initial_return is None
              else f"untrained {result.initial_return:.3g} -> ")
    return (f"greedy return: {before}trained {ev.mean_return:.3g} ± {ev.std_return:.3g} over "
            f"{ev.episodes} episodes{rate}")


def saved_path(path: Path) -> Path:
    """The file an agent saved to ``path`` really has."""
    # SB3 appends .zip to a path without it; numpy appends .npz.
    return path if path.exists() else path.with_name(path.name + path.suffix)


def save_interrupted(agent: Any, interrupt: KeyboardInterrupt, spec: Any, run_dir: Path,
                     args: argparse.Namespace, total: int) -> None:
    """Say what an interrupted run kept, and how to go on."""
    from llm_gym.agents.checkpoints import latest_checkpoint
    from llm_gym.agents.factory import LLM_AGENTS, agent_file
    from llm_gym.agents.training import TrainingInterrupted

    if isinstance(interrupt, TrainingInterrupted):
        saved, steps = interrupt.checkpoint, interrupt.num_timesteps
    elif spec.agent in LLM_AGENTS:
        # Stopped mid-update: the weights in memory may be half-updated; the last periodic
        # checkpoint is the state to go on from.
        saved, steps = latest_checkpoint(run_dir), None
    else:
        saved = agent_file(spec.agent, run_dir)
        agent.save(str(saved))
        saved, steps = saved_path(saved), agent_steps(agent)
    if saved is None:
        print(f"interrupted; nothing was saved in {run_dir}", file=sys.stderr)
        return
    if steps is not None:
        write_run(run_dir, spec, args, total, steps)
    at = f" at {steps} env steps" if steps is not None else ""
    print(f"interrupted{at}; saved {saved}\nresume with: llm-gym train --resume "
          f"{shlex.quote(str(run_dir))}", file=sys.stderr)


def write_run(run_dir: Path, spec: Any, args: argparse.Namespace, total: int,
              done: int) -> None:
    """Write ``run.json``: everything ``--resume`` needs to rebuild the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "run.json", run_record(spec, args, total, done))


def run_record(spec: Any, args: argparse.Namespace, total: int, done: int) -> dict[str, Any]:
    """What ``run.json`` holds (also the run config W&B records)."""
    return {
        "agent": spec.agent, "env": spec.env_id, "env_kwargs": spec.env_kwargs,
        "wrappers": spec.wrappers.to_json(), "seed": spec.seed, "model": args.model,
        "config": args.config, "data": getattr(args, "data", None),
        "timesteps": total, "num_timesteps": done, "run_id": getattr(args, "run_id", None),
        "self_play": self_play_settings(args.self_play),
        "curriculum": getattr(args, "curriculum", None),
        "save_rollouts": getattr(args, "save_rollouts", None),
        "report_to": getattr(args, "report_to", None),
        "eval_every": getattr(args, "eval_every", None),
        "experiment": getattr(args, "experiment", None),
        "device": getattr(args, "device", None)}


def self_play_settings(config: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``--self-play`` as run.json records it (every setting, defaults included)."""
    from llm_gym.agents.league import SelfPlayConfig

    return None if config is None else SelfPlayConfig.from_json(config).to_dict()


def save_run(agent: Any, result: Any, run_dir: Path, args: argparse.Namespace,
             total: int) -> None:
    """Save the trained agent and write run.json, eval.json, the curve PNG and episodes.csv."""
    from llm_gym.agents.compare_plot import plot_learning_curves
    from llm_gym.agents.factory import agent_file

    spec = result.spec
    agent.save(str(agent_file(spec.agent, run_dir)))
    write_run(run_dir, spec, args, total, int(getattr(agent, "num_timesteps", result.env_steps)))
    write_json(run_dir / "eval.json", result.evaluation.to_dict())
    if result.evaluations:  # --eval-every: the greedy evaluations during training
        from llm_gym.agents.periodic_eval import write_eval_curve

        write_eval_curve(result.evaluations, run_dir,
                         title=f"greedy evaluation of {spec.agent} on {spec.env_id}")
    # Every agent gets the same plot (GRPO and PPO also draw their own reward_curve.png).
    plot_learning_curves([result], run_dir / "learning_curve.png")
    with (run_dir / "episodes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["env_steps", "tokens", "episode_return",
                                                    "length", "success", "wall_time",
                                                    "env_return"])
        writer.writeheader()
        writer.writerows(r.to_dict() for r in result.episodes)


def batch_steps(agent: Any) -> int | None:
    """Env steps of one collect when that is fixed (SB3's rollouts, PPO's), else ``None``."""
    if hasattr(agent, "n_steps") and hasattr(agent, "n_envs"):  # SB3 on-policy: n_steps * n_envs
        return int(agent.n_steps) * int(agent.n_envs)
    config = getattr(agent, "config", None)
    if hasattr(config, "num_steps") and hasattr(config, "num_envs"):  # llm_gym's PPO
        return int(config.num_steps) * int(config.num_envs)
    return None


def last_batch_note(agent: Any, total: int, done: int) -> str:
    """Where a run of ``total`` steps really ends, when whole batches overshoot it (issue 21).

    The trainers finish the batch they are collecting, as SB3 does (an SB3 run overshoots by up
    to ``n_steps * n_envs``): the note says so up front, so the final count is no surprise.
    GRPO's batches vary in length (episodes end early); it starts no batch that would end more
    than half a batch past the total.
    """
    batch = batch_steps(agent)
    if batch is not None:
        end = done + -(-(total - done) // batch) * batch
        return "" if end == total else f" (last batch completes: {end})"
    if hasattr(getattr(agent, "config", None), "group_size"):
        return " (batches vary in length; the run ends within half a batch of it)"
    return ""


def report_to(agent: Any, args: argparse.Namespace, run_config: dict[str, Any]) -> None:
    """Apply ``--report-to`` to the built agent; W&B for an agent that cannot log there fails."""
    from llm_gym.agents.run_reporting import configure_reporting, reports_to_wandb

    names = configure_reporting(agent, args.report_to, run_config)
    if "wandb" in names and not reports_to_wandb(agent):
        raise ValueError(f"--report-to wandb: only the LLM trainers (grpo, rloo, reinforce-pp, "
                         f"ppo, dpo, sft) log to W&B; {run_config['agent']} writes TensorBoard "
                         "(--report-to tensorboard)")
