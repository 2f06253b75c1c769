"""Tic-tac-toe: can GRPO train the tiny LM to win or draw >= 90% against random (issue 23)?

The last round's five runs against the random player all stopped at 77-84% win-or-draw: the
LM learns to attack but not to defend, because a random opponent rarely punishes an open line.
This script trains the same tiny byte-level LM (GRPO, constrained to legal cells) against an
opponent that plays minimax with probability ``--minimax-share`` on each move and a random
legal move otherwise, so undefended lines are punished in training, then plays the same
100-game tournament as before (random and minimax, seats alternating, seed 0).

``--shaping blunder`` adds a step term (``RewardTerms``) that charges each move what it throws
away of the position's game-theoretic value for the LM (tic-tac-toe's exact minimax value,
+1/0/-1, read from the conversation): ``min(0, value after the move - value before it)``. A
move that gives away a draw costs -1 at once, whether or not the random opponent then punishes
it. (Potential-based shaping would telescope to a constant over an episode, and GRPO's
advantage is the episode's return: it would change nothing. This term is not policy-invariant
on purpose: it asks for safe play, which is what win-or-draw against random rewards.)

``--sft-games N`` first fine-tunes the tiny LM (the ``sft`` agent, TRL's SFT format) on N
games in which minimax (random tie-breaks) plays the LM's seat against the random player, the
SFT -> RL recipe of the tools issue; GRPO against ``--minimax-share`` then starts from it.
``--sft-teacher ordered`` breaks minimax's ties in a fixed order, so every board has one move.

    python benchmarks/learn_tictactoe.py --minimax-share 0,0.3,0.6 --timesteps 60000
    python benchmarks/learn_tictactoe.py --minimax-share 0 --shaping blunder --timesteps 60000
    python benchmarks/learn_tictactoe.py --quick        # a smoke run: seconds, not a result

Writes ``benchmarks/results/learn_tictactoe/runs.json`` (one row per share: training time,
updates, the tournament's win/draw/loss against random and minimax).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import llm_gym  # noqa: E402,F401  (registers the ids)
from llm_gym.agents.grpo import GRPOAgent  # noqa: E402
from llm_gym.agents.grpo_algorithm import GRPOConfig  # noqa: E402
from llm_gym.agents.sft import SFTAgent  # noqa: E402
from llm_gym.agents.sft_algorithm import SFTConfig  # noqa: E402
from llm_gym.agents.tournament import run_tournament  # noqa: E402
from llm_gym.envs.multiagent.games import game_rules  # noqa: E402
from llm_gym.envs.multiagent.policies import (  # noqa: E402
    _TTT_LINES,
    AgentPolicy,
    MinimaxPolicy,
    Turn,
    _board_from_planes,
    _ttt_after,
    _ttt_value,
    random_policy,
)

ENV_ID = "llm_gym/TicTacToeText-v0"
OUT = Path(__file__).parent / "results" / "learn_tictactoe"


class PartlyMinimax:
    """Minimax on a share of the moves, a random legal move on the rest (the game's generator).

    ``share=0`` is the random player, ``share=1`` the perfect one.
    """

    def __init__(self, share: float) -> None:
        self.share, self.minimax = share, MinimaxPolicy()

    def __call__(self, turn: Turn) -> int:
        if turn.rng.random() < self.share:
            return self.minimax(turn)
        return random_policy(turn)


class OrderedMinimax:
    """Minimax with fixed tie-breaks: a move that wins now, else the first best cell of ORDER.

    One board, one move: SFT then imitates a function of the board rather than a spread over
    equally good cells (``MinimaxPolicy`` breaks ties at random, so its games teach a mixture).
    """

    ORDER = (4, 0, 2, 6, 8, 1, 3, 5, 7)  # centre, corners, edges

    def __call__(self, turn: Turn) -> int:
        board = _board_from_planes(turn.observation["observation"])
        legal = [m for m in self.ORDER if turn.legal[m]]
        after = {m: _ttt_after(board, m) for m in legal}
        wins_now = [m for m in legal if any(all(after[m][i] == 2 for i in line)
                                            for line in _TTT_LINES)]
        if wins_now:
            return wins_now[0]
        values = {m: -_ttt_value(after[m]) for m in legal}
        return max(legal, key=values.__getitem__)  # max keeps the first best: ORDER breaks ties


class BlunderPenalty:
    """Step term: ``min(0, value after - value before)`` on the step that writes the LM's cell."""

    BOARD = re.compile(r"([1-9XO]) ([1-9XO]) ([1-9XO])\n([1-9XO]) ([1-9XO]) ([1-9XO])\n"
                       r"([1-9XO]) ([1-9XO]) ([1-9XO])")

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.digits = {tokenizer.encode(str(d))[0]: d - 1 for d in range(1, 10)}

    def __call__(self, obs, action, reward, terminated, truncated, info) -> float:
        move = self.digits.get(int(action))
        if move is None or terminated or truncated:
            return 0.0
        ids = np.asarray(obs["input_ids"])[np.asarray(obs["attention_mask"]).astype(bool)]
        text = self.tokenizer.decode(ids.tolist())
        me = "O" if "You are O" in text else "X"
        boards = self.BOARD.findall(text)
        if not boards:
            return 0.0
        board = tuple(1 if c == me else 0 if c.isdigit() else 2 for c in boards[-1])
        if board[move] != 0:
            return 0.0
        before = _ttt_value(board)
        after = -_ttt_value(_ttt_after(board, move))
        return float(min(0, after - before))


def minimax_games(count: int, seed: int, teacher: str = "random-ties") -> list[dict]:
    """``count`` conversations (TRL's SFT format) in which minimax plays the LM's seat.

    Each game is the env's own conversation: its opening, then per move minimax's cell as the
    assistant's reply and the board the env answers with (the random player has moved).
    """
    import gymnasium as gym

    env = gym.make(ENV_ID, constrained=True).unwrapped
    tok, rows = env.tokenizer, []
    minimax = OrderedMinimax() if teacher == "ordered" else MinimaxPolicy()
    rng = np.random.default_rng(seed)
    for game in range(count):
        env.reset(seed=seed * 100_000 + game)
        messages, first, done = list(env.task.messages), True, False
        while not done:
            play = env.game
            move = minimax(Turn(play.env, play.learner, env.rules, first, rng))
            word = env.rules.move_words[move]
            messages.append({"role": "assistant", "content": word})
            for token in [*tok.encode(word), tok.eos_token_id]:
                _, _, terminated, truncated, _ = env.step(token)
                done = terminated or truncated
                if done:
                    break
            if not done:
                messages.append({"role": "user", "content": env.rules.board(play.env,
                                                                             play.learner)})
            first = False
        rows.append({"messages": messages})
    env.close()
    return rows


def train_and_play(share: float, timesteps: int, lr: float, prompts: int, games: int,
                   seed: int, shaping: str = "none", sft_games: int = 0, sft_epochs: int = 3,
                   size: tuple[int, int] = (64, 2), teacher: str = "random-ties") -> dict:
    """Train against ``PartlyMinimax(share)``, then the tournament against random and minimax.

    ``size`` is the tiny LM's (hidden size, layers); (64, 2) is ``model="tiny"``.
    """
    from llm_gym.models import tiny_model

    torch.manual_seed(seed)
    model, _ = tiny_model(hidden_size=size[0], num_layers=size[1], seed=seed)
    sft_s, sft_vs_random, sft = 0.0, None, None
    if sft_games:
        start = time.perf_counter()
        sft = SFTAgent(ENV_ID, model, SFTConfig(learning_rate=1e-3, batch_size=16,
                                                num_train_epochs=sft_epochs),
                       data=minimax_games(sft_games, seed, teacher),
                       env_kwargs={"constrained": True}, seed=seed)
        sft.learn(sft_games * sft_epochs)
        sft_s = time.perf_counter() - start
        model = sft.model
        sft_vs_random = versus(sft, games)["random"]
    config = GRPOConfig(learning_rate=lr, prompts_per_batch=prompts, group_size=4)
    wrappers = None
    if shaping == "blunder":
        from llm_gym.tokenizers import ByteTokenizer

        wrappers = [{"name": "RewardTerms",
                     "kwargs": {"terms": {"blunder": BlunderPenalty(ByteTokenizer())}}}]
    agent = GRPOAgent(ENV_ID, model, config, seed=seed, wrappers=wrappers,
                      env_kwargs={"constrained": True, "opponent": PartlyMinimax(share)})
    start = time.perf_counter()
    if timesteps:
        agent.learn(timesteps, progress_bar=False)
    train_s = time.perf_counter() - start
    log = agent.episode_log
    quarter = max(1, len(log) // 4)
    wins = [float(r.episode_return > 0) for r in log]
    rows = versus(agent, games)
    return {
        "minimax_share": share, "shaping": shaping, "timesteps": timesteps, "learning_rate": lr,
        "batch": f"{prompts} x 4", "updates": agent.num_updates,
        "train_s": round(train_s, 1),
        "train_win_rate_first_quarter": float(np.mean(wins[:quarter])) if wins else None,
        "train_win_rate_last_quarter": float(np.mean(wins[-quarter:])) if wins else None,
        "vs": rows, "win_or_draw_vs_random": rows["random"]["win"] + rows["random"]["draw"],
        "model": {"hidden_size": size[0], "layers": size[1]}, "sft_games": sft_games,
        "sft_epochs": sft_epochs, "sft_teacher": teacher, "sft_s": round(sft_s, 1),
        "after_sft_vs_random": sft_vs_random,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def versus(agent, games: int) -> dict:
    """The LM's win/draw/loss shares against random and minimax (seats alternating, seed 0)."""
    players = {"lm": AgentPolicy(agent, constrained=True), "random": random_policy,
               "minimax": MinimaxPolicy()}
    result = run_tournament(game_rules("tictactoe"), players, games, seed=0, bootstrap=0)
    rows = {}
    for pair in result.pairs:
        if "lm" not in (pair.a, pair.b):
            continue
        other = pair.b if pair.a == "lm" else pair.a
        win, loss = (pair.wins, pair.losses) if pair.a == "lm" else (pair.losses, pair.wins)
        rows[other] = {"win": win / pair.games, "draw": pair.draws / pair.games,
                       "loss": loss / pair.games, "games": pair.games}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minimax-share", default="0,0.3,0.6",
                        help="comma-separated shares of the opponent's moves played by minimax")
    parser.add_argument("--timesteps", type=int, default=60000, help="agent tokens per run")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--prompts", type=int, default=16, help="games per GRPO batch")
    parser.add_argument("--games", type=int, default=100, help="tournament games per pair")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shaping", choices=("none", "blunder"), default="none",
                        help="blunder: charge each move the game value it throws away")
    parser.add_argument("--sft-games", type=int, default=0,
                        help="first fine-tune on this many games minimax plays (0: no SFT)")
    parser.add_argument("--sft-epochs", type=int, default=3)
    parser.add_argument("--sft-teacher", choices=("random-ties", "ordered"), default="random-ties",
                        help="minimax's tie-breaks in the SFT games: at random, or a fixed order "
                             "(a win now first, then centre, corners, edges)")
    parser.add_argument("--size", default="64,2",
                        help="the tiny LM's hidden size and layers (64,2 is model 'tiny')")
    parser.add_argument("--quick", action="store_true", help="smoke run (not a result)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.timesteps, args.games, args.prompts = 400, 4, 2
    torch.set_num_threads(1)
    rows = []
    for share in (float(s) for s in args.minimax_share.split(",")):
        row = train_and_play(share, args.timesteps, args.lr, args.prompts, args.games, args.seed,
                             args.shaping, args.sft_games, args.sft_epochs,
                             tuple(int(v) for v in args.size.split(",")), args.sft_teacher)
        rows.append(row)
        vs_r, vs_m = row["vs"]["random"], row["vs"]["minimax"]
        if row["after_sft_vs_random"] is not None:
            sft_r = row["after_sft_vs_random"]
            print(f"after SFT on {args.sft_games} minimax games ({row['sft_s']:.0f} s): vs random "
                  f"{sft_r['win']:.0%}/{sft_r['draw']:.0%}/{sft_r['loss']:.0%}", flush=True)
        print(f"share {share:.2f}, shaping {args.shaping}: {row['updates']} updates, "
              f"{row['train_s']:.0f} s; "
              f"vs random {vs_r['win']:.0%}/{vs_r['draw']:.0%}/{vs_r['loss']:.0%} "
              f"(win or draw {row['win_or_draw_vs_random']:.0%}); "
              f"vs minimax {vs_m['win']:.0%}/{vs_m['draw']:.0%}/{vs_m['loss']:.0%}", flush=True)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        name = "runs" + (f"_{args.shaping}" if args.shaping != "none" else "") + (
            f"_sft{args.sft_games}" if args.sft_games else "") + (
            "_ordered" if args.sft_teacher == "ordered" else "") + (
            f"_size{args.size.replace(',', 'x')}" if args.size != "64,2" else "") + ".json"
        (args.out / name).write_text(json.dumps(
            {"date": time.strftime("%Y-%m-%d"), "env": ENV_ID, "model": "tiny",
             "load_average": os.getloadavg(), "runs": rows}, indent=1))
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
