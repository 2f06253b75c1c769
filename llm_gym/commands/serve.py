"""``llm-gym serve ID``: serve an llm_gym env through OpenEnv's HTTP/WebSocket env server.

Each WebSocket session (OpenEnv's ``EnvClient``, TRL, torchforge, SkyRL, or
``llm_gym.integrations.openenv.make``) gets its own env, up to ``--max-sessions`` at once. Token
envs are played as text (the action is ``{"message": reply}``); classic envs with a Discrete
action space take an action number or name. Needs the ``openenv`` extra.

Example:
    llm-gym serve llm_gym/Arithmetic-v0 --port 8000 --max-sessions 16
    llm-gym serve llm_gym/GSM8K-v0 --env-kwargs '{"data_files": "gsm8k/train.jsonl"}'
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve", help="serve an env through OpenEnv's env server (HTTP/WebSocket)")
    parser.add_argument("env_id", metavar="ID", help="an env id, e.g. llm_gym/GSM8K-v0")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1; 0.0.0.0 for every one)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.add_argument("--max-sessions", type=int, default=8, metavar="N",
                        help="most concurrent sessions, each with its own env (default 8)")
    parser.add_argument("--env-kwargs", default="{}", metavar="JSON",
                        help="keyword arguments for gym.make as a JSON object, "
                             'e.g. \'{"digits": 2}\'')
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Check the arguments, build one env, then serve until interrupted."""
    from llm_gym.commands.arguments import json_object

    env_kwargs = json_object(args.env_kwargs)
    if args.max_sessions < 1:
        raise ValueError(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    try:
        import uvicorn

        from llm_gym.integrations.openenv_server import create_app, quiet_closed_sockets
    except ImportError as err:  # a missing extra is the user's to fix: one line, exit 2
        raise ValueError(f"llm-gym serve needs OpenEnv: pip install 'llm_gym[openenv]' "
                         f"({err})") from None

    app = create_app(args.env_id, env_kwargs, args.max_sessions)
    print(f"serving {args.env_id} at http://{args.host}:{args.port} (WebSocket sessions at "
          f"ws://{args.host}:{args.port}/ws, at most {args.max_sessions}); Ctrl-C stops",
          flush=True)
    quiet_closed_sockets()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
