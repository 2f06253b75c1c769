"""The ``llm-gym`` command line (also ``python -m llm_gym``).

Each subcommand lives in its own module under :mod:`llm_gym.commands` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets ``func`` (a callable that
takes the parsed args and returns an exit code). Modules are imported only when the command
line is parsed, so ``llm-gym list`` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES = ("list_play", "eval", "train", "compare", "quickstart", "export", "preferences",
                   "train_rm", "tournament", "card", "serve", "rescore")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="llm-gym",
        description="Gymnasium environments for training language models with RL.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"llm_gym.commands.{name}").add_parser(sub)
    parser.set_defaults(subcommand_parsers=sub.choices)  # main() reports typos with their usage
    return parser


def parse_arguments(parser: argparse.ArgumentParser,
                    argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown flag after a subcommand prints that subcommand's usage.

    argparse hands a subparser's leftovers up to the top-level parser, whose error shows the
    top-level usage (``llm-gym [-h] [-v] COMMAND ...``), which says nothing about the flag the
    user misspelt (issue 21). Here the subcommand's own parser reports them, with the closest
    flag it knows.
    """
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    command = args.subcommand_parsers[args.command]
    unknown = [word for word in extras if word.startswith("-")]
    known = [flag for action in command._actions for flag in action.option_strings]
    close = difflib.get_close_matches(unknown[0].split("=")[0], known, n=1) if unknown else []
    guess = f" (did you mean {close[0]}?)" if close else ""
    command.error(f"unrecognized arguments: {' '.join(extras)}{guess}")
    raise AssertionError("unreachable: ArgumentParser.error exits")  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code.

    This is the one place where a user's mistake becomes a message: exit code 2 and one line,
    ``llm-gym COMMAND: error: ...``, that names the fix (issue 14). A command raises
    ``ValueError``/``TypeError``/``OSError`` with such a message; anything else is a bug and
    keeps its traceback.
    """
    parser = build_parser()
    args = parse_arguments(parser, argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        from llm_gym.commands.run_config import apply_experiment_file

        args = apply_experiment_file(parser, args, argv)  # train --config run.toml
        check_env_arguments(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        message = user_error(err, args)
        if message is None:
            raise
        print(f"llm-gym {args.command}: error: {message}", file=sys.stderr)
        return 2


def check_env_arguments(args: argparse.Namespace) -> None:
    """Check ``--env``/``ID`` and ``--env-kwargs`` before a command loads a model or data."""
    from llm_gym.commands.arguments import check_env_request, json_object

    if getattr(args, "envs", None) is not None:  # compare: several ids, kwargs per id
        from llm_gym.commands.compare import per_env_kwargs, split_list

        envs = split_list(args.envs, "envs")
        kwargs = per_env_kwargs(args.env_kwargs, envs)
        for env_id in envs:
            check_env_request(env_id, kwargs.get(env_id, {}))
        return
    env_id = getattr(args, "env", None) or getattr(args, "env_id", None)
    if env_id is None or getattr(args, "resume", None):
        return  # nothing given, or a resumed run whose run.json already built once
    check_env_request(env_id, json_object(getattr(args, "env_kwargs", None) or "{}"))


def user_error(err: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message for a user's mistake, or ``None`` when ``err`` is a bug."""
    import gymnasium as gym

    if not isinstance(err, (ValueError, TypeError, OSError, gym.error.Error)):
        return None
    env_id = getattr(args, "env", None) or getattr(args, "env_id", None)
    if isinstance(err, ConnectionError) and env_id is not None:
        from llm_gym.commands.arguments import dataset_hint, needs_hub_dataset

        if needs_hub_dataset(env_id, {}):
            return dataset_hint(env_id)
    # Messages quoting a nested error can span lines; the contract is one line.
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
