"""``llm-gym tournament``: every pair of agents plays a game, seats swapped; Elo with intervals.

Agents (comma-separated): ``random``, ``minimax``, ``lm:MODEL`` (a language model as it is,
e.g. ``lm:tiny`` or ``lm:smollm2``), ``NAME:PATH`` for an llm_gym LLM agent saved by
``llm-gym train`` (``grpo:runs/ttt/agent``), and ``sb3-ALGO:PATH`` for a Stable-Baselines3 model
trained on the classic view (``sb3-maskable-ppo:runs/ttt/agent.zip``). LLM agents play the token
face of the game, classic agents its PettingZoo observation.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llm_gym.commands.arguments import json_object

# game -> the single-agent token view whose tokenizer and budgets LLM players use
TOKEN_VIEWS = {"tictactoe": "llm_gym/TicTacToeText-v0",
               "connect_four": "llm_gym/ConnectFourText-v0",
               "rps": "llm_gym/RockPaperScissorsText-v0",
               "prisoners_dilemma": "llm_gym/PrisonersDilemmaText-v0"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``tournament`` subcommand."""
    parser = subparsers.add_parser(
        "tournament", help="play every pair of agents in a game; win/draw/loss rates and Elo")
    parser.add_argument("--game", required=True, choices=sorted(TOKEN_VIEWS))
    parser.add_argument("--agents", required=True, metavar="A,B,...",
                        help="comma-separated: random, minimax, lm:MODEL, grpo:PATH, "
                             "sb3-maskable-ppo:PATH ...")
    parser.add_argument("--games", type=int, default=100,
                        help="games per pair, seats alternating (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=200,
                        help="bootstrap resamples of the Elo intervals (default 200)")
    parser.add_argument("--unconstrained", action="store_true",
                        help="LLM agents decode freely instead of within the legal move words")
    parser.add_argument("--game-kwargs", default="{}", metavar="JSON",
                        help='PettingZoo raw_env arguments, e.g. \'{"max_cycles": 5}\' for rps')
    parser.add_argument("--plot", metavar="PNG", help="write the ratings as a PNG here")
    parser.set_defaults(func=run_tournament_command)


def build_player(spec: str, game: str, seed: int, constrained: bool) -> Any:
    """The policy of one ``--agents`` entry."""
    from llm_gym.envs.multiagent.policies import POLICY_NAMES, AgentPolicy, make_policy

    if spec in POLICY_NAMES:
        return make_policy(spec)
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ValueError(f"unknown agent {spec!r}; use random, minimax, lm:MODEL, NAME:PATH "
                         "(an llm_gym LLM agent) or sb3-ALGO:PATH")
    if kind.startswith("sb3-"):
        from llm_gym.agents.factory import agent_entry
        from llm_gym.agents.sb3_loading import safe_custom_objects

        # A shared model file is input: its objects are decoded without unpickling (issue 19).
        model_cls = agent_entry(kind).agent_class()
        return make_policy(model_cls.load(target, custom_objects=safe_custom_objects(target)))
    env_id = TOKEN_VIEWS[game]
    if kind == "lm":
        from llm_gym.agents.factory import make_agent

        agent = make_agent("grpo", env_id, model=target, seed=seed,
                           config={"group_size": 2, "prompts_per_batch": 1})
    else:
        from llm_gym.agents.factory import LLM_AGENTS, load_agent

        if kind not in LLM_AGENTS:
            raise ValueError(f"unknown agent kind {kind!r} in {spec!r}; use lm, one of "
                             f"{list(LLM_AGENTS)}, or sb3-ALGO")
        if not Path(target).exists():
            raise ValueError(f"{spec!r}: no saved agent at {target}; pass the agent folder "
                             "that llm-gym train wrote")
        agent = load_agent(kind, target, env_id, seed=seed)
    import gymnasium as gym

    view = gym.spec(env_id).entry_point
    defaults = _view_defaults(view)
    return AgentPolicy(agent, constrained=constrained, **defaults)


def _view_defaults(entry_point: str) -> dict[str, int]:
    """The token view's ``max_length``/``max_new_tokens`` defaults, so players see the same."""
    import inspect

    from gymnasium.envs.registration import load_env_creator

    params = inspect.signature(load_env_creator(entry_point)).parameters
    return {k: params[k].default for k in ("max_length", "max_new_tokens")}


def opponent_for(env_id: str, spec: str) -> Any:
    """The player of ``spec`` for the other seat of the game view ``env_id`` (``llm-gym play``)."""
    from llm_gym.envs.multiagent import GAME_MODULES

    games = {view: game for game, view in TOKEN_VIEWS.items()}
    for _, views in GAME_MODULES.values():
        games.update({v: games[views[0]] for v in views})
    if env_id not in games:
        raise ValueError(f"--opponent is for the game views ({', '.join(sorted(games))}), "
                         f"not {env_id}")
    return build_player(spec, games[env_id], seed=0, constrained=True)


def run_tournament_command(args: argparse.Namespace) -> int:
    """Play the tournament, print the tables, write the PNG if asked."""
    from llm_gym.agents.tournament import format_tables, plot_elo, run_tournament
    from llm_gym.envs.multiagent.games import game_rules

    specs = [s.strip() for s in args.agents.split(",") if s.strip()]
    if len(set(specs)) < 2 or len(set(specs)) != len(specs):
        raise ValueError(f"--agents needs at least two different agents, each once; got {specs}")
    if args.games < 1:
        raise ValueError(f"--games must be >= 1, got {args.games}")
    game_kwargs = json_object(args.game_kwargs)
    players = {s: build_player(s, args.game, args.seed, not args.unconstrained) for s in specs}
    result = run_tournament(
        game_rules(args.game), players, args.games, seed=args.seed, bootstrap=args.bootstrap,
        game_kwargs=game_kwargs, progress=lambda a, b: print(f"playing {a} vs {b} ...",
                                                             flush=True))
    print(f"{args.game}: {args.games} games per pair, seats alternating; Elo: Bradley-Terry "
          f"fit, 95% intervals from {args.bootstrap} bootstrap resamples")
    print(format_tables(result))
    if args.plot:
        plot_elo(result, args.plot, title=f"{args.game} tournament")
        print(f"ratings plot: {args.plot}")
    return 0
