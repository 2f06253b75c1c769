"""Round-robin tournaments: results, Elo, the CLI, LLM agents on the token face."""

from __future__ import annotations

import numpy as np
import pytest

from llm_gym.agents.tournament import PairResult, fit_elo, play_game, run_tournament
from llm_gym.cli import main
from llm_gym.envs.multiagent.games import CONNECT_FOUR, TICTACTOE
from llm_gym.envs.multiagent.policies import AgentPolicy, MinimaxPolicy, random_policy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_minimax_never_loses_to_random_at_tictactoe():
    result = run_tournament(TICTACTOE, {"random": random_policy, "minimax": MinimaxPolicy()},
                            games_per_pair=60, seed=1, bootstrap=50)
    pair = result.pairs[0]
    assert (pair.a, pair.b, pair.games, pair.wins, pair.forfeits) == ("random", "minimax", 60,
                                                                       0, 0)
    assert pair.losses > 40  # random loses most games, draws the rest
    assert result.elo_low["minimax"] > result.elo_high["random"]


def test_minimax_beats_random_at_connect_four():
    rng = np.random.default_rng(0)
    wins = sum(play_game(CONNECT_FOUR, [MinimaxPolicy(depth=2), random_policy], rng)[0][0] > 0
               for _ in range(6))
    assert wins >= 5


def test_elo_fit_is_symmetric_and_orders_by_score():
    even = fit_elo(["a", "b"], [PairResult("a", "b", wins=5, losses=5)])
    assert even["a"] == pytest.approx(even["b"]) == pytest.approx(1000)
    chain = fit_elo(["a", "b", "c"], [PairResult("a", "b", 8, 0, 2), PairResult("b", "c", 8, 0, 2),
                                      PairResult("a", "c", 9, 0, 1)])
    assert chain["a"] > chain["b"] > chain["c"]


def test_tournament_cli_prints_the_tables_and_plot(tmp_path, capsys):
    plot = tmp_path / "elo.png"
    assert main(["tournament", "--game", "tictactoe", "--agents", "random,minimax",
                 "--games", "6", "--bootstrap", "20", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("random "))
    assert row[:4] == ["random", "minimax", "6", "0.0%"]  # games, random's win rate
    assert "95% CI (bootstrap)" in out and plot.stat().st_size > 0


@pytest.mark.parametrize("agents,message", [("random", "two different"),
                                            ("random,random", "two different"),
                                            ("random,alphazero", "unknown agent"),
                                            ("random,grpo:/no/such/run", "no saved agent")])
def test_tournament_cli_rejects_bad_agent_lists(agents, message, capsys):
    assert main(["tournament", "--game", "tictactoe", "--agents", agents]) == 2
    assert message in capsys.readouterr().err


def test_an_untrained_lm_plays_legal_moves_on_the_token_face():
    from llm_gym.agents.factory import make_agent

    agent = make_agent("grpo", "llm_gym/TicTacToeText-v0", model="tiny",
                       config={"group_size": 2, "prompts_per_batch": 1})
    lm = AgentPolicy(agent, max_length=512, max_new_tokens=4)
    result = run_tournament(TICTACTOE, {"lm": lm, "random": random_policy}, 4, bootstrap=10)
    assert result.pairs[0].games == 4 and result.pairs[0].forfeits == 0
    seat = next(iter(lm._seats.values()))
    assert "You are" in seat.text() and "<|im_start|>assistant" in seat.text()
