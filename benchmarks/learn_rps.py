"""Does a tiny LM learn to exploit a biased rock-paper-scissors player? (issue 9, not a test)

The opponent plays rock 50%, paper 25%, scissors 25%, drawn from the game's seeded generator;
its best response is always paper (win 50%, draw 25%, loss 25%), against which a uniform
player wins 1/3. The tiny byte-level LM (``model="tiny"``, random weights) is trained from
scratch with GRPO on ``llm_gym/RockPaperScissorsText-v0`` (constrained to the three words);
before and after training it plays ``--eval-rounds`` rounds greedily against the same
opponent, and so does the uniform-random player, counted round by round.

    nice -n 5 python benchmarks/learn_rps.py --seeds 0,1,2 --tokens 10000 --eval-rounds 200 \
        --out benchmarks/results/learn_rps
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from llm_gym.agents.factory import make_agent
from llm_gym.agents.tournament import play_game
from llm_gym.envs.multiagent.games import RPS
from llm_gym.envs.multiagent.policies import AgentPolicy, Policy, Turn, random_policy
from llm_gym.models import torch_threads

ENV_ID = "llm_gym/RockPaperScissorsText-v0"
BIAS = (0.5, 0.25, 0.25)  # rock, paper, scissors (PettingZoo's moves 0, 1, 2)


def biased_opponent(turn: Turn) -> int:
    """Rock half the time, paper and scissors a quarter each (the game's generator)."""
    return int(turn.rng.choice(3, p=BIAS))


def recording(policy: Policy, moves: list[int]) -> Policy:
    def play(turn: Turn) -> int:
        moves.append(int(policy(turn)))
        return moves[-1]
    return play


def evaluate(player: Policy, rounds: int, cycles: int, seed: int) -> dict[str, float]:
    """Win/draw/loss rates per round of ``player`` against the biased opponent."""
    rng, mine, theirs = np.random.default_rng(seed), [], []
    while len(mine) < rounds:
        learner_seat = len(mine) // cycles % 2  # alternate seats (AEC order only; RPS is blind)
        seats = [recording(biased_opponent, theirs)] * 2
        seats[learner_seat] = recording(player, mine)
        play_game(RPS, seats, rng, {"max_cycles": cycles})
    # PettingZoo's RPS: move m beats move m - 1 (paper beats rock, scissors beat paper, ...)
    outcome = Counter((m - t) % 3 for m, t in zip(mine[:rounds], theirs[:rounds], strict=True))
    counts = Counter(mine[:rounds])
    return {"win": outcome[1] / rounds, "draw": outcome[0] / rounds, "loss": outcome[2] / rounds,
            **{f"played_{w}": counts[i] / rounds for i, w in enumerate(RPS.move_words)}}


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    config = {"learning_rate": args.lr, "group_size": args.group_size,
              "prompts_per_batch": args.prompts}
    env_kwargs = {"constrained": True, "opponent": biased_opponent,
                  "game_kwargs": {"max_cycles": args.cycles}}
    agent = make_agent("grpo", ENV_ID, model="tiny", config=config, seed=seed,
                       env_kwargs=env_kwargs)

    def greedy() -> dict[str, float]:
        return evaluate(AgentPolicy(agent), args.eval_rounds, args.cycles, 10_000 + seed)

    before = greedy()
    start = time.perf_counter()
    agent.learn(args.tokens)
    train_s = time.perf_counter() - start
    after = greedy()
    row = {"seed": seed, "before": before, "after": after, "train_s": round(train_s, 1),
           "updates": agent.num_updates, "tokens": agent.num_timesteps}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tokens", type=int, default=10_000, help="agent tokens of training")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4, help="games per batch (GRPO groups)")
    parser.add_argument("--cycles", type=int, default=5, help="rounds per game")
    parser.add_argument("--eval-rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/learn_rps")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with torch_threads(args.threads):
        uniform = evaluate(random_policy, args.eval_rounds, args.cycles, 10_000)
        print(json.dumps({"uniform_random": uniform}), flush=True)
        rows = [run_seed(int(s), args) for s in args.seeds.split(",")]
    summary = {"args": vars(args), "uniform_random": uniform, "runs": rows,
               "cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 1),
               "total_s": round(time.perf_counter() - start, 1)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "learn_rps.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"cpus={summary['cpus']} load={summary['load']} total={summary['total_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
