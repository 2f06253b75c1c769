"""``llm-gym train``: train one agent on one env, save it, and print its evaluation.

Everything of a run lands in one folder (``--log-dir``, default a new
``runs/<agent>-<env>-s<seed>-<YYYYmmdd-HHMMSS>``, as TensorBoard names runs):
the saved agent (``agent.zip`` for SB3, ``agent.npz`` for the table agents, ``agent/`` for grpo
and ppo), ``run.json`` (what is trained, written before training starts, so ``--resume DIR``
needs nothing else),
``episodes.csv`` and ``learning_curve.png`` (the learning curve) and ``eval.json`` (strict JSON:
a value that is not a number is ``null``); the end of the output lists them.

``--self-play JSON`` trains grpo/rloo/reinforce-pp/ppo on a game view against a league of its own
past snapshots (:class:`~llm_gym.agents.league.SelfPlayLeague`; settings
``snapshot_every``, ``pool_size``, ``latest_prob``, ``temperature``, ``seed``); run.json records
them and the checkpoints hold the pool, so ``--resume`` continues with the same league.

``--wrappers`` trains on a shaped reward: a JSON list of ``{"name": ..., "kwargs": {...}}``
(llm_gym's shaping wrappers or Gymnasium's reward wrappers, innermost first); run.json records
it, so ``--resume`` rebuilds the same stack.

Interruption (issue 14): grpo, rloo, reinforce-pp and ppo checkpoint to ``DIR/checkpoints``
every ``checkpoint_every`` updates (50) and ``checkpoint_minutes`` minutes (10), config keys;
the first checkpoint comes after 3 updates or 1 minute (issue 21). Ctrl-C or SIGTERM stops
them after the current update with a checkpoint (a second one stops at once); other agents
are saved as they are. Either way the exact resume command is printed. ``--resume DIR`` loads
the newest intact save of the run (a checkpoint or ``agent/``; a corrupt one is skipped with a
warning), and ``metrics.csv`` rows past it are dropped, as they are logged again.

A run owns its folder (issue 19): it holds an exclusive lock on ``DIR/run.lock`` while it runs,
so a second writer (fresh or ``--resume``) is refused; a fresh run refuses a ``--log-dir`` that
already holds a run (use ``--resume``, ``--overwrite``, which removes that run's files once the
lock is taken, or another ``--log-dir``); run.json and every checkpoint record the run id, and
retention deletes only this run's own older checkpoints.

``--timesteps`` is always the run's total: a resumed run trains up to it (default: the total
the run was started with), so ``--resume DIR`` alone finishes an interrupted run. As in SB3, a
run finishes the batch it is collecting, so it may end past the total: the first line says where
(``to 1500 steps (last batch completes: 1536)``; a GRPO run ends within half a rollout batch of
it) and the last how many steps were taken. The first line also names the model (run.json
records it, the default included).

``--curriculum JSON`` (grpo, rloo, reinforce-pp, ppo on token envs) draws the task items by
recent pass rate (:class:`~llm_gym.agents.curriculum.Curriculum`, ``{}`` for its defaults);
run.json records it, the checkpoints hold its state. ``--save-rollouts [FILE]`` appends every
training episode to ``FILE`` (default ``DIR/rollouts.jsonl``) for ``llm-gym rescore``.

``--agent dpo --data FILE`` trains from preference pairs instead of env rollouts; its
``--timesteps`` counts pairs (default: one pass over the file) and the evaluation is the env's.
``--agent sft --data FILE`` does the same with conversations in TRL's SFT format (examples).

``--config run.toml`` may hold the whole command, told from an agent config by a top-level
``env``, ``agent`` or ``resume`` key (:mod:`llm_gym.commands.run_config`); flags override it.
``--eval-every N`` evaluates the greedy policy every N steps (``eval/*`` metrics,
``eval_curve.{csv,png}``); ``--report-to`` sends metrics to TensorBoard, W&B or neither.

Example:
    llm-gym train --env llm_gym/LeftRight-v0 --agent q-learning --timesteps 2000
    llm-gym train --resume runs/q-learning-LeftRight-v0-s0 --timesteps 3000
    llm-gym train --env llm_gym/Arithmetic-v0 --agent grpo --timesteps 256
        --wrappers '[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]'
    llm-gym train --env llm_gym/TicTacToeText-v0 --agent grpo --model tiny
        --env-kwargs '{"constrained": true}' --self-play '{"snapshot_every": 5, "pool_size": 4}'
    llm-gym train --env llm_gym/Arithmetic-v0 --env-kwargs '{"num_tasks": 64}' --agent grpo
        --curriculum '{"band": [0, 1], "retest_rate": 0.1}' --save-rollouts
"""

from __future__ import annotations

import argparse
import inspect
import json
import uuid
from pathlib import Path
from typing import Any

from llm_gym.agents.factory import AGENT_NAMES
from llm_gym.agents.run_folder import (
    LOCK_FILE,
    RunLock,
    clear_run,
    default_run_dir,
    holds_run,
    lock_run_folder,
)
from llm_gym.commands.arguments import (
    add_device_argument,
    add_tracking_arguments,
    agent_device,
    check_tracking_arguments,
    curriculum_settings,
    json_object,
    resolve_device,
)
from llm_gym.commands.output import output_lines
from llm_gym.commands.train_files import (
    agent_steps,
    last_batch_note,
    report_to,
    result_line,
    run_record,
    save_interrupted,
    save_run,
    saved_path,
    write_run,
)
from llm_gym.wrappers.stack import WRAPPER_NAMES, WrapperStack, parse_wrappers

DEFAULT_TIMESTEPS = 10_000
RUNS = "runs"  # where default run folders go, relative to the working directory


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``train`` subcommand."""
    parser = subparsers.add_parser("train", help="train an agent on an environment")
    parser.add_argument("--env", metavar="ID", help="env id, e.g. llm_gym/LeftRight-v0")
    parser.add_argument("--agent", choices=AGENT_NAMES, help="which agent to train")
    parser.add_argument("--model", help="grpo/ppo/dpo on token envs: tiny, smollm2, a hub id or "
                                           "path")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML or JSON: an agent config (LLM agents: checkpoint_every=50 "
                             "updates, checkpoint_minutes=10; the first checkpoint comes after "
                             "3 updates or 1 minute), or an experiment file, told apart by a "
                             "top-level env, agent or resume key: its keys are this command's "
                             "options (env_kwargs a table, wrappers an array of tables), the "
                             "agent config in a [config] table; flags given here override it")
    parser.add_argument("--data", metavar="FILE",
                        help="dpo: preference pairs in TRL's format (prompt, chosen, rejected), "
                             "e.g. from llm-gym preferences; sft: conversations in TRL's SFT "
                             "format (messages, or prompt and completion); --timesteps counts "
                             "pairs or examples (default: one pass over them)")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="the run's total env steps (tokens on token envs); with --resume "
                             "the run trains up to this total, not this much more (default "
                             f"{DEFAULT_TIMESTEPS}, or the resumed run's total)")
    parser.add_argument("--env-kwargs", default="{}", metavar="JSON",
                        help='gym.make keyword arguments as JSON, e.g. \'{"constrained": true}\'')
    parser.add_argument("--wrappers", metavar="JSON",
                        help='reward wrappers, innermost first, e.g. \'[{"name": '
                             '"LengthPenalty", "kwargs": {"coef": 0.01}}]\' (names: '
                             f'{", ".join(WRAPPER_NAMES)})')
    parser.add_argument("--self-play", metavar="JSON",
                        help="game views, LLM agents: train against a league of past snapshots, "
                             'e.g. \'{"snapshot_every": 5, "pool_size": 4}\' (also latest_prob, '
                             "temperature, seed)")
    parser.add_argument("--curriculum", metavar="JSON",
                        help="LLM agents: draw task items by recent pass rate, e.g. '{\"band\": "
                             "[0, 1], \"retest_rate\": 0.1}' ('{}': defaults; see "
                             "docs/curriculum.md)")
    parser.add_argument("--save-rollouts", nargs="?", const="", default=None, metavar="FILE",
                        help="LLM agents: append every training episode to FILE as JSON lines "
                             "(default DIR/rollouts.jsonl), for llm-gym rescore")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--log-dir", metavar="DIR",
                        help="run folder (default: a new runs/<agent>-<env>-s<seed>-<time>); "
                             "one that holds a run is refused unless --overwrite")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from its newest intact save")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --log-dir (its checkpoints, saves, run.json "
                             "and metrics are removed once its lock is taken)")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="deterministic evaluation episodes at the end (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_tracking_arguments(parser)
    add_device_argument(parser)
    ray = parser.add_argument_group("on Ray (grpo, rloo, reinforce-pp; pip install 'llm_gym[ray]')")
    ray.add_argument("--rollout-workers", type=int, default=0, metavar="N",
                     help="play each batch on N Ray actors, a slice of the rows and a policy "
                          "copy each (same results as one process)")
    ray.add_argument("--scoring-workers", type=int, default=0, metavar="N",
                     help="run sandboxed code tests and math grading on N Ray actors")
    ray.add_argument("--ray-address", metavar="ADDR",
                     help="join this Ray cluster (default: start a local instance)")
    parser.set_defaults(func=run_train)



def run_train(args: argparse.Namespace) -> int:
    """Train (or resume), save, evaluate and print the result table."""
    if args.timesteps is not None and args.timesteps < 1:
        raise ValueError(f"--timesteps must be at least 1, got {args.timesteps}")
    check_tracking_arguments(args)
    resolve_device(args.device)  # CUDA asked for and absent: one line, before anything loads
    new_parent = not (args.resume or args.log_dir or Path(RUNS).exists())
    run_dir = _run_dir(args)
    # The folder's lock for the whole command: a second writer is refused (issue 19).
    with lock_run_folder(run_dir) as lock:
        try:
            _claim(lock, args)
            return _train(args, run_dir)
        finally:
            _discard_if_unused(run_dir, new_parent)


def _run_dir(args: argparse.Namespace) -> Path:
    """The run folder: the resumed one, ``--log-dir``, or a new timestamped one."""
    if getattr(args, "overwrite", False) and args.resume:
        raise ValueError("--overwrite starts a new run and --resume continues one; pass one")
    if args.resume or args.log_dir:
        return Path(args.log_dir or args.resume)
    if not args.env or not args.agent:
        raise ValueError("train needs --env and --agent (or --resume DIR)")
    return default_run_dir(f"{RUNS}/{args.agent}-{args.env.split('/')[-1]}-s{args.seed}")


def _claim(lock: RunLock, args: argparse.Namespace) -> None:
    """Refuse (or with ``--overwrite`` clear) a folder that holds another run; fresh runs only."""
    if args.resume or not holds_run(lock.folder):
        return
    if not getattr(args, "overwrite", False):
        raise FileExistsError(f"--log-dir {lock.folder} already holds a run; continue it with "
                              f"--resume {lock.folder}, replace it with --overwrite, or pass "
                              "another --log-dir")
    clear_run(lock)


def _discard_if_unused(run_dir: Path, new_parent: bool) -> None:
    """Remove a run folder left with only its lock file by a failed start (``runs/`` too if new).

    A mistake on the command line must leave nothing behind (tests/commands/test_cli_errors.py).
    """
    if run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
        (run_dir / LOCK_FILE).unlink()
        run_dir.rmdir()
        if new_parent and not any(run_dir.parent.iterdir()):
            run_dir.parent.rmdir()


def _train(args: argparse.Namespace, run_dir: Path) -> int:
    """Build or load the agent in the locked ``run_dir``, train, save and print."""
    from llm_gym.agents.compare import ComparisonReport, aggregate, train_and_evaluate
    from llm_gym.agents.factory import LLM_AGENTS
    from llm_gym.agents.training import stop_on_signals

    agent, spec, learn_kwargs, total = _agent_and_spec(args, run_dir)
    rollouts = _save_rollouts(agent, args, run_dir)
    done = agent_steps(agent)
    report_to(agent, args, run_record(spec, args, total, done))
    # run.json first: a run killed at any moment can be resumed (issue 14).
    write_run(run_dir, spec, args, total, done)
    model = f" with model {args.model}" if args.model is not None else ""
    print(f"training {spec.agent}{model} on {spec.env_id} to {total} steps"
          f"{last_batch_note(agent, total, done)}{f' (from {done})' if done else ''} -> {run_dir}")
    try:
        with stop_on_signals(graceful=spec.agent in LLM_AGENTS):
            # A fresh run also evaluates the untrained policy (as quickstart does), so the
            # output says what training changed; a resumed run's start is not untrained.
            result = train_and_evaluate(agent, spec, eval_episodes=args.eval_episodes,
                                        eval_initial=not done and args.eval_episodes > 0,
                                        progress_bar=not args.no_progress,
                                        learn_kwargs=learn_kwargs, eval_every=args.eval_every)
    except KeyboardInterrupt as interrupt:
        save_interrupted(agent, interrupt, spec, run_dir, args, total)
        raise
    else:
        save_run(agent, result, run_dir, args, total)
    finally:
        _close(agent)
    print(ComparisonReport(aggregate([result]), [result], []).markdown())
    print(f"\n{result_line(result)}")
    print(f"took {result.env_steps} env steps (the run's total was set to {total})")
    print(f"saved to {run_dir}:")
    for line in output_lines(run_dir):
        print(f"  {line}")
    if rollouts is not None:
        print(f"  {'rollouts (JSON lines)':<24}{rollouts}")
    return 0


def _save_rollouts(agent: Any, args: argparse.Namespace, run_dir: Path) -> Path | None:
    """Attach ``--save-rollouts``' writer to the agent; the file, or None."""
    if args.save_rollouts is None:
        return None
    from llm_gym.agents.rollout_records import attach_rollout_writer

    path = Path(args.save_rollouts) if args.save_rollouts else run_dir / "rollouts.jsonl"
    args.save_rollouts = str(path)  # run.json records it; --resume goes on writing it
    return attach_rollout_writer(agent, path).path


def _close(agent: Any) -> None:
    """Release what the agent holds beyond memory: its envs, and its Ray workers if any."""
    close = getattr(agent, "close", None)
    if callable(close):
        close()


def _agent_and_spec(args: argparse.Namespace, run_dir: Path
                    ) -> tuple[Any, Any, dict[str, Any], int]:
    """The agent, its RunSpec (timesteps: what is left), learn kwargs, the total."""
    from llm_gym.agents.compare import RunSpec
    from llm_gym.agents.factory import make_agent

    if args.resume:
        return _resumed(args, run_dir)
    if not args.env or not args.agent:
        raise ValueError("train needs --env and --agent (or --resume DIR)")
    env_kwargs = json_object(args.env_kwargs)
    wrappers = parse_wrappers(args.wrappers)  # a bad stack fails here, before any model loads
    league = _self_play(args.self_play, args.agent)  # so does a bad --self-play
    config = _with_curriculum(_config(args), args)  # and a bad --curriculum
    config, placement = agent_device(args.agent, resolve_device(args.device), config)
    agent = make_agent(args.agent, args.env, model=args.model, config=config,
                       seed=args.seed, log_dir=run_dir, env_kwargs=env_kwargs, wrappers=wrappers,
                       distributed=_distributed(args), **placement)
    if league is not None:
        league.attach(agent)
    # run.json and the output name the model used, the default included (issue 21).
    args.model = args.model or getattr(agent, "model_spec", None)
    # The run's id: run.json records it, and resume takes only checkpoints that carry it.
    args.run_id = getattr(agent, "run_id", None) or uuid.uuid4().hex
    # DPO's steps are preference pairs: by default one pass over them (num_train_epochs).
    default = agent.default_timesteps() if hasattr(agent, "default_timesteps") else None
    total = args.timesteps or default or DEFAULT_TIMESTEPS
    spec = RunSpec(args.env, args.agent, total, args.seed, env_kwargs, wrappers=wrappers)
    return agent, spec, {}, total


def _distributed(args: argparse.Namespace) -> dict[str, Any]:
    """The Ray flags as agent keyword arguments (checked: counts are not negative)."""
    for flag in ("rollout_workers", "scoring_workers"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be 0 or more, got "
                             f"{getattr(args, flag)}")
    return {"rollout_workers": args.rollout_workers, "scoring_workers": args.scoring_workers,
            "ray_address": args.ray_address}


def _config(args: argparse.Namespace) -> Any:
    """``--config`` with ``--data`` set in it (dpo, sft); a misplaced ``--data`` is an error."""
    if args.data is None:
        return args.config
    if args.agent not in ("dpo", "sft"):
        raise ValueError(f"--data is the preference file of dpo or the SFT data of sft; "
                         f"{args.agent} learns from the env's reward, leave --data out")
    from llm_gym.agents.factory import load_config

    return {**(load_config(args.config) or {}), "data": args.data}


def _with_curriculum(config: Any, args: argparse.Namespace) -> Any:
    """``config`` with ``--curriculum``'s settings in it (checked, defaults filled in)."""
    args.curriculum = curriculum_settings(args.curriculum, args.agent)
    if args.curriculum is None:
        return config
    from llm_gym.agents.factory import load_config

    return {**(load_config(config) or {}), "curriculum": args.curriculum}


def _resumed(args: argparse.Namespace, run_dir: Path
             ) -> tuple[Any, Any, dict[str, Any], int]:
    from llm_gym.agents.compare import RunSpec

    saved = _read_run(Path(args.resume))
    for key in ("env", "agent"):
        given = getattr(args, key)
        if given is not None and given != saved[key]:
            raise ValueError(f"--{key} {given} differs from the resumed run's {saved[key]}; "
                             "leave it out when resuming")
    wrappers = parse_wrappers(saved.get("wrappers"), f"--resume {args.resume}: run.json wrappers")
    if args.wrappers is not None and parse_wrappers(args.wrappers) != wrappers:
        raise ValueError(f"--wrappers differs from the resumed run's "
                         f"{json.dumps(wrappers.to_json())}; leave it out when resuming")
    _same_curriculum(args, saved)
    args.save_rollouts = args.save_rollouts if args.save_rollouts is not None else saved.get(
        "save_rollouts")
    self_play = saved.get("self_play")
    if args.self_play is not None and _self_play(args.self_play, saved["agent"]).config.to_dict(
            ) != self_play:
        raise ValueError(f"--self-play differs from the resumed run's {json.dumps(self_play)}; "
                         "leave it out when resuming")
    name, env_id, env_kwargs = saved["agent"], saved["env"], saved["env_kwargs"]
    agent = _load_saved(name, Path(args.resume), env_id, env_kwargs, saved["seed"], run_dir,
                        wrappers, _distributed(args), resolve_device(args.device))
    if self_play is not None:  # the checkpoint's pool is restored when the league attaches
        _self_play(self_play, name).attach(agent)
    args.self_play = self_play
    args.run_id = getattr(agent, "run_id", None) or saved.get("run_id") or uuid.uuid4().hex
    done = agent_steps(agent)
    total = args.timesteps or saved.get("timesteps")
    if total is None:
        raise ValueError(f"--resume {args.resume}: the run has {done} steps and no recorded "
                         "total; pass --timesteps, the run's new total")
    if total <= done:
        raise ValueError(f"--timesteps {total} is the run's total and it already has {done} "
                         f"steps; pass a larger total, e.g. --timesteps {2 * done}")
    # learn(n) with SB3's reset_num_timesteps=False (the table agents always go on) trains n
    # more steps: what is left of the total.
    resets = "reset_num_timesteps" in inspect.signature(agent.learn).parameters
    learn_kwargs = {"reset_num_timesteps": False} if resets else {}
    args.model = args.model or saved.get("model")
    for key in ("report_to", "eval_every"):  # a resumed run reports as it did, unless told
        setattr(args, key, getattr(args, key) if getattr(args, key) is not None else saved.get(key))
    args.config = args.config or saved.get("config")
    args.data = args.data or saved.get("data")  # dpo: recorded again in run.json
    spec = RunSpec(env_id, name, total - done, saved["seed"], env_kwargs, wrappers=wrappers)
    return agent, spec, learn_kwargs, total


def _same_curriculum(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    """Refuse a ``--curriculum`` that differs from the resumed run's; take the run's."""
    curriculum = saved.get("curriculum")
    if args.curriculum is not None and curriculum_settings(args.curriculum,
                                                           saved["agent"]) != curriculum:
        raise ValueError(f"--curriculum differs from the resumed run's {json.dumps(curriculum)}; "
                         "leave it out when resuming")
    args.curriculum = curriculum


def _self_play(config: str | dict[str, Any] | None, agent: str) -> Any:
    """The league of ``--self-play`` (validated before any model loads), or ``None``."""
    if config is None:
        return None
    from llm_gym.agents.factory import GRPO_FAMILY
    from llm_gym.agents.league import SelfPlayLeague

    players = (*GRPO_FAMILY, "ppo")  # the trainers that play the env (dpo reads a file)
    if agent not in players:
        raise ValueError(f"--self-play trains a language model against its past snapshots; use "
                         f"--agent {' or '.join(players)}, not {agent}")
    return SelfPlayLeague(config)


def _load_saved(name: str, folder: Path, env_id: str, env_kwargs: dict[str, Any], seed: int,
                run_dir: Path, wrappers: WrapperStack, distributed: dict[str, Any],
                device: str | None = None) -> Any:
    from llm_gym.agents.factory import AGENTS, agent_file, distributed_options, load_agent

    distributed = distributed_options(name, distributed)  # Ray is a choice of this invocation
    entry = AGENTS[name]
    if entry.family == "llm":
        from llm_gym.agents.checkpoints import latest_checkpoint

        if latest_checkpoint(folder) is None:
            raise FileNotFoundError(f"--resume {folder}: no checkpoint there yet (the run was "
                                    "stopped before its first); start it again")
        # The newest intact save of the run: a checkpoint or the final agent/ (checkpoints.py).
        path = folder
    else:
        path = agent_file(name, folder)
        if not saved_path(path).exists() and entry.saved_file is not None:
            raise FileNotFoundError(f"--resume {folder}: no saved agent ({path.name}) there; "
                                    "the run was stopped before anything was saved, start it "
                                    "again")
    return load_agent(name, path, env_id, env_kwargs=env_kwargs, seed=seed, log_dir=run_dir,
                      wrappers=wrappers, distributed=distributed, device=device)


def _read_run(directory: Path) -> dict[str, Any]:
    path = directory / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume {directory}: no run.json there; resume a folder "
                                "written by llm-gym train")
    return json.loads(path.read_text())
