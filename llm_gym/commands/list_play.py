"""``llm-gym list`` (every registered id; ``--agents``: every agent name) and ``llm-gym play ID``.

``play`` plays a token env through :class:`~llm_gym.wrappers.TextInterface` (type a whole
reply, Enter sends it with the end-of-turn token) and a classic env with a ``Discrete`` action
space by typing an action number (or its name, when the env names its actions). It shows the
render, each reward and the episode's return; end of input (Ctrl-D) ends the game cleanly.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from llm_gym.commands.arguments import env_creator, json_object
from llm_gym.registration import (
    DATASET_ENVS,
    NAMESPACE,
    SERVER_ENVS,
    TOKEN_ENVS,
    env_ids,
    server_env_ids,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``list`` and ``play`` subcommands."""
    lister = subparsers.add_parser("list", help="list every llm_gym environment id")
    lister.add_argument("--agents", action="store_true",
                        help="list the agent names instead (from the agent table)")
    lister.set_defaults(func=run_list)
    player = subparsers.add_parser("play", help="play an environment in the terminal")
    player.add_argument("env_id", metavar="ID", help="an env id, e.g. llm_gym/Arithmetic-v0")
    player.add_argument("--env-kwargs", default="{}", metavar="JSON",
                        help="keyword arguments for gym.make as a JSON object, "
                             'e.g. \'{"digits": 2}\'')
    player.add_argument("--seed", type=int, default=None, help="seed of the first reset")
    player.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    player.add_argument("--opponent", metavar="AGENT",
                        help="games (TicTacToeText-v0 ...): who plays the other seat, as in "
                             "llm-gym tournament --agents (random, minimax, lm:MODEL, "
                             "grpo:PATH, sb3-maskable-ppo:PATH)")
    player.set_defaults(func=run_play)


# ---------------------------------------------------------------------------- list
def describe(env_id: str) -> str:
    """The first line of the env class's docstring, or why it cannot be imported."""
    try:
        creator = load_env_creator(gym.spec(env_id).entry_point)
    except (ImportError, AttributeError) as err:
        return f"(unavailable: {err})"
    doc = (creator.__doc__ or "").strip()
    return doc.splitlines()[0].replace("``", "") if doc else ""


def run_list(args: argparse.Namespace) -> int:
    """Print one line per registered id: id, kind, what it needs (dataset, server), description."""
    if getattr(args, "agents", False):
        return list_agents()
    rows = []
    for env_id in [*env_ids(), *server_env_ids()]:
        name = env_id.removeprefix(f"{NAMESPACE}/")
        kind = "token" if name in TOKEN_ENVS or name in SERVER_ENVS else "classic"
        dataset = "server" if name in SERVER_ENVS else "yes" if name in DATASET_ENVS else "no"
        rows.append((env_id, kind, dataset, describe(env_id)))
    width = max(len(row[0]) for row in rows)
    print(f"{'ID':<{width}}  {'KIND':<7}  {'DATASET':<7}  DESCRIPTION")
    for env_id, kind, dataset, text in rows:
        print(f"{env_id:<{width}}  {kind:<7}  {dataset:<7}  {text}")
    from llm_gym.envs.multiagent import GAME_MODULES

    print("\nMulti-agent games (PettingZoo; from llm_gym.envs.multiagent import MODULE)")
    print(f"{'MODULE':<22}  {'API':<8}  SINGLE-AGENT VIEWS")
    for module, (api, views) in GAME_MODULES.items():
        print(f"{module:<22}  {api:<8}  {', '.join(views)}")
    return 0


def list_agents() -> int:
    """Print one line per agent of the agent table: name, env kinds it acts in, summary."""
    from llm_gym.agents.factory import AGENTS

    width = max(len(name) for name in AGENTS)
    print(f"{'AGENT':<{width}}  {'ENVS':<13}  DESCRIPTION")
    for name, entry in AGENTS.items():
        kinds = ",".join(sorted(entry.env_kinds))
        print(f"{name:<{width}}  {kinds:<13}  {entry.summary}")
    return 0


# ---------------------------------------------------------------------------- play
def make_play_env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """``gym.make`` with ``render_mode="ansi"`` when the env supports it."""
    metadata = getattr(env_creator(env_id), "metadata", {})
    kwargs = dict(env_kwargs)
    if "ansi" in metadata.get("render_modes", []):
        kwargs.setdefault("render_mode", "ansi")
    return gym.make(env_id, **kwargs)


def run_play(args: argparse.Namespace) -> int:
    """Play ``args.env_id`` reading actions from stdin."""
    env_kwargs = json_object(args.env_kwargs)
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.opponent:
        from llm_gym.commands.tournament import opponent_for

        env_kwargs["opponent"] = opponent_for(args.env_id, args.opponent)
    from llm_gym.wrappers.response import has_token_observations

    env = make_play_env(args.env_id, env_kwargs)
    try:
        if has_token_observations(env):
            from llm_gym.wrappers import TextInterface

            player = TextPlayer(TextInterface(env), sys.stdin, sys.stdout)
        elif isinstance(env.action_space, gym.spaces.Discrete):
            player = DiscretePlayer(env, sys.stdin, sys.stdout)
        else:
            raise ValueError(
                f"{args.env_id} has action space {env.action_space}; play supports token envs "
                "and classic envs with a Discrete action space"
            )
        for episode in range(args.episodes):
            seed = args.seed if episode == 0 else None
            if not player.play_episode(seed):
                break
    finally:
        env.close()
    return 0


class _Player:
    """One episode loop shared by both faces; subclasses read and show actions."""

    def __init__(self, env: gym.Env, stdin: TextIO, stdout: TextIO) -> None:
        self.env, self.stdin, self.stdout = env, stdin, stdout

    def say(self, text: str = "", end: str = "\n") -> None:
        self.stdout.write(text + end)
        self.stdout.flush()

    def play_episode(self, seed: int | None) -> bool:
        """Play one episode; False when input ended (EOF) before it finished."""
        obs, info = self.env.reset(seed=seed)
        self.show_start(obs, info)
        total, steps = 0.0, 0
        while True:
            action = self.read_action()
            if action is None:
                self.say(f"\n(end of input) return so far: {total:g} after {steps} steps")
                return False
            obs, reward, terminated, truncated, info = self.env.step(action)
            total, steps = total + float(reward), steps + 1
            self.show_step(obs, float(reward), info)
            if terminated or truncated:
                how = "terminated" if terminated else "truncated"
                self.say(f"episode {how}: return {total:g} after {steps} steps")
                return True

    def read_line(self, prompt: str) -> str | None:
        self.say(prompt, end="")
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\n")


class TextPlayer(_Player):
    """Type whole replies to a token env behind a TextInterface."""

    # TextInterface's own bookkeeping; every other info entry (correct, answer...) is shown.
    hidden_info = frozenset({"new_text", "reward_components", "response_tokens", "dropped_tokens",
                             "task_index", "prompt_tokens"})

    def show_start(self, obs: str, info: dict[str, Any]) -> None:
        self.say(info["new_text"])

    def read_action(self) -> str | None:
        return self.read_line("your reply> ")

    def show_step(self, obs: str, reward: float, info: dict[str, Any]) -> None:
        parts = [f"reward {reward:g}"]
        if "reward_components" in info:
            parts.append(f"components {info['reward_components']}")
        parts += [f"{k}={v!r}" for k, v in info.items() if k not in self.hidden_info]
        self.say("  ".join(parts))
        if info["new_text"]:
            self.say(info["new_text"])


class DiscretePlayer(_Player):
    """Type action numbers (or names) to a classic env with a Discrete action space."""

    def show_start(self, obs: Any, info: dict[str, Any]) -> None:
        self.show_state(obs)

    def show_state(self, obs: Any) -> None:
        frame = self.env.render() if self.env.render_mode == "ansi" else None
        self.say(frame if isinstance(frame, str) else f"observation: {obs}")

    def read_action(self) -> int | None:
        space = self.env.action_space
        names = [n.lower() for n in getattr(self.env.unwrapped, "action_names", ())]
        choices = ", ".join(f"{i}={n}" for i, n in enumerate(names)) or f"0..{space.n - 1}"
        while True:
            line = self.read_line(f"action ({choices})> ")
            if line is None:
                return None
            text = line.strip().lower()
            if text in names:
                return names.index(text) + int(space.start)
            if text.lstrip("-").isdigit() and space.contains(int(text)):
                return int(text)
            self.say(f"not an action: {line!r}; type one of {choices}")

    def show_step(self, obs: Any, reward: float, info: dict[str, Any]) -> None:
        self.say(f"reward {reward:g}")
        self.show_state(obs)
