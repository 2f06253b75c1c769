"""Experiment files: a whole ``llm-gym train`` command in one TOML or JSON file (issue 21).

``--config FILE`` takes two layouts, told apart by the top level:

* an **experiment file** has a top-level ``env``, ``agent`` or ``resume`` key. Its top-level
  keys are the command's options (``env``, ``agent``, ``timesteps``, ``seed``, ``model``, ...;
  ``-`` or ``_`` alike), ``env_kwargs``/``self_play``/``curriculum`` as tables, ``wrappers`` as
  an array of tables, ``report_to`` as a string or a list; the agent's settings (what an agent
  config file holds) go in a ``[config]`` table, or ``config = "grpo.toml"`` names such a file.
  Flags given on the command line override the file.
* anything else is an **agent config** (GRPOConfig fields and so on), as before. No agent
  config has an ``env``, ``agent`` or ``resume`` field, so no file is both.

Example ``run.toml``::

    env = "llm_gym/Arithmetic-v0"
    agent = "grpo"
    timesteps = 256
    env_kwargs = {max_new_tokens = 4}
    wrappers = [{name = "LengthPenalty", kwargs = {coef = 0.01}}]

    [config]
    group_size = 2
    prompts_per_batch = 2
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXPERIMENT_KEYS = ("env", "agent", "resume")
JSON_OPTIONS = ("env_kwargs", "wrappers", "self_play", "curriculum")  # JSON text on the CLI


def is_experiment(values: Any) -> bool:
    """Whether a loaded ``--config`` file is an experiment file (see the module docstring).

    Example:
        >>> is_experiment({"env": "llm_gym/LeftRight-v0", "agent": "q-learning"})
        True
        >>> is_experiment({"group_size": 4, "learning_rate": 1e-5})
        False
    """
    return isinstance(values, dict) and any(key in values for key in EXPERIMENT_KEYS)


def experiment_defaults(parser: argparse.ArgumentParser, path: str) -> dict[str, Any] | None:
    """The options an experiment file sets, as ``parser`` defaults; ``None`` for an agent config.

    Raises:
        ValueError: a key that is not an option of the command (the valid ones are listed).
    """
    from llm_gym.agents.factory import load_config

    values = load_config(path)
    if not is_experiment(values):
        return None
    options = {action.dest: action for action in parser._actions
               if action.option_strings and action.dest != "help"}
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in options:
            raise ValueError(f"--config {path}: {key!r} is not an option of llm-gym "
                             f"{parser.prog.split()[-1]}; valid keys: "
                             f"{', '.join(sorted(options))}")
        defaults[dest] = _as_option(dest, value, options[dest])
    return defaults


def _as_option(dest: str, value: Any, action: argparse.Action) -> Any:
    """A file value in the form the command's parsed flag has."""
    if dest in JSON_OPTIONS and not isinstance(value, str):
        return json.dumps(value)
    if dest == "report_to" and isinstance(value, list):
        return ",".join(value)
    if action.type is not None and isinstance(value, str) and action.type is not str:
        return action.type(value)
    return value


def apply_experiment_file(parser: argparse.ArgumentParser, args: argparse.Namespace,
                          argv: Sequence[str] | None) -> argparse.Namespace:
    """Re-parse ``argv`` with an experiment file's options as defaults (flags win).

    ``args.config`` becomes the file's agent config (its ``[config]`` table or file, or
    ``None``) and ``args.experiment`` the file's path; an agent config file is left as it is.
    """
    path = getattr(args, "config", None)
    if args.command != "train" or path is None or not str(path).endswith(
            (".toml", ".json")) or not Path(path).is_file():
        return args
    command = args.subcommand_parsers[args.command]
    defaults = experiment_defaults(command, path)
    if defaults is None:
        return args
    agent_config = defaults.pop("config", None)
    if isinstance(agent_config, str) and not Path(agent_config).is_absolute():
        agent_config = str(Path(path).parent / agent_config)  # beside the experiment file
    saved = {action.dest: action.default for action in command._actions}
    command.set_defaults(**defaults)
    try:
        args = parser.parse_args(argv)
    finally:
        command.set_defaults(**{key: saved.get(key) for key in defaults})
    args.config, args.experiment = agent_config, str(path)
    return args
