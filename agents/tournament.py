"""Round-robin tournaments: every pair of players, seats swapped, Elo with bootstrap intervals.

All players play the real PettingZoo game: classic players (random, minimax, SB3 models) read
its observation (the classic face), LLM agents play its token face through
:class:`~llm_gym.envs.multiagent.policies.AgentPolicy`. Ratings are the maximum-likelihood
Bradley-Terry fit on the Elo scale (draws count half a win), computed with Hunter's MM
algorithm (Hunter 2004, "MM algorithms for generalized Bradley-Terry models"), with one
virtual draw per pair as a prior so that a player who never loses keeps a finite rating (the
prior BayesElo uses, Coulom 2005). The 95% intervals are a percentile bootstrap over games.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llm_gym.envs.multiagent.games import GameRules
from llm_gym.envs.multiagent.policies import Forfeit, Policy, Turn

ELO_SCALE = 400.0 / np.log(10.0)  # Elo points per natural-log unit of strength
ELO_MEAN = 1000.0


@dataclass
class PairResult:
    """Games between players ``a`` and ``b``, counted from ``a``'s side."""

    a: str
    b: str
    wins: int = 0
    draws: int = 0
    losses: int = 0
    forfeits: int = 0  # games that ended because a player named no legal move

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses


@dataclass
class TournamentResult:
    """Every pair's results and the players' ratings."""

    players: list[str]
    pairs: list[PairResult]
    elo: dict[str, float] = field(default_factory=dict)
    elo_low: dict[str, float] = field(default_factory=dict)
    elo_high: dict[str, float] = field(default_factory=dict)


def play_game(rules: GameRules, policies: Sequence[Policy], rng: np.random.Generator,
              game_kwargs: dict[str, Any] | None = None) -> tuple[list[float], bool]:
    """One game; ``policies[i]`` plays seat ``i``. Returns each seat's score and a forfeit flag.

    A player whose policy raises :class:`Forfeit` or names an illegal move loses (-1; +1 to
    the others).

    Example:
        >>> from llm_gym.envs.multiagent.games import TICTACTOE
        >>> from llm_gym.envs.multiagent.policies import MinimaxPolicy
        >>> scores, _ = play_game(TICTACTOE, [MinimaxPolicy()] * 2, np.random.default_rng(0))
        >>> scores
        [0.0, 0.0]
    """
    env = rules.make_classic(**(game_kwargs or {}))
    env.reset(seed=int(rng.integers(2**31)))
    seats = {agent: i for i, agent in enumerate(env.possible_agents)}
    scores, moved = [0.0] * len(seats), set()
    while not (any(env.terminations.values()) or any(env.truncations.values())):
        agent = env.agent_selection
        turn = Turn(env, agent, rules, agent not in moved, rng)
        moved.add(agent)
        try:
            move = int(policies[seats[agent]](turn))
            if not 0 <= move < len(turn.legal) or not turn.legal[move]:
                raise Forfeit(f"illegal move {move}")
        except Forfeit:
            return [-1.0 if a == agent else 1.0 for a in seats], True
        env.step(move)
        for other, seat in seats.items():
            scores[seat] += float(env.rewards.get(other, 0.0))
    return scores, False


def run_tournament(rules: GameRules, players: dict[str, Policy], games_per_pair: int,
                   seed: int = 0, bootstrap: int = 200,
                   game_kwargs: dict[str, Any] | None = None,
                   progress: Callable[[str, str], None] | None = None) -> TournamentResult:
    """Play every pair ``games_per_pair`` games (seats alternating) and rate the players.

    Example:
        >>> from llm_gym.envs.multiagent.games import TICTACTOE
        >>> from llm_gym.envs.multiagent.policies import MinimaxPolicy, random_policy
        >>> result = run_tournament(TICTACTOE, {"random": random_policy,
        ...                                     "minimax": MinimaxPolicy()}, 10)
        >>> result.pairs[0].wins, result.elo["minimax"] > result.elo["random"]
        (0, True)
    """
    if len(players) < 2:
        raise ValueError(f"a tournament needs at least two players, got {list(players)}")
    if games_per_pair < 1:
        raise ValueError(f"games_per_pair must be >= 1, got {games_per_pair}")
    rng = np.random.default_rng(seed)
    pairs = []
    for a, b in itertools.combinations(players, 2):
        if progress is not None:
            progress(a, b)
        pair = PairResult(a, b)
        for game in range(games_per_pair):
            a_first = game % 2 == 0  # seats swapped every game
            order = [players[a], players[b]] if a_first else [players[b], players[a]]
            scores, forfeit = play_game(rules, order, rng, game_kwargs)
            a_score = scores[0] if a_first else scores[1]
            pair.wins += a_score > 0
            pair.losses += a_score < 0
            pair.draws += a_score == 0
            pair.forfeits += forfeit
        pairs.append(pair)
    result = TournamentResult(list(players), pairs)
    rate(result, bootstrap, rng)
    return result


def fit_elo(players: Sequence[str], pairs: Sequence[PairResult], iterations: int = 500
            ) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale (mean 1000), one virtual draw per pair as prior.

    Example:
        >>> elo = fit_elo(["a", "b"], [PairResult("a", "b", wins=3, losses=1)])
        >>> round(elo["a"] - elo["b"])  # (3 + 0.5) : (1 + 0.5) points
        147
    """
    index = {p: i for i, p in enumerate(players)}
    n = len(players)
    points = np.zeros(n)
    games = np.zeros((n, n))
    for pair in pairs:
        i, j = index[pair.a], index[pair.b]
        total = pair.games + 1  # + the virtual draw
        points[i] += pair.wins + 0.5 * pair.draws + 0.5
        points[j] += pair.losses + 0.5 * pair.draws + 0.5
        games[i, j] += total
        games[j, i] += total
    strength = np.ones(n)
    for _ in range(iterations):
        denominator = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        strength = points / denominator
        strength /= np.exp(np.log(strength).mean())
    elo = ELO_SCALE * np.log(strength)
    return {p: float(ELO_MEAN + elo[index[p]] - elo.mean()) for p in players}


def rate(result: TournamentResult, bootstrap: int, rng: np.random.Generator) -> None:
    """Fill ``result``'s Elo ratings and their 95% percentile-bootstrap intervals."""
    result.elo = fit_elo(result.players, result.pairs)
    samples = []
    for _ in range(bootstrap):
        resampled = []
        for pair in result.pairs:
            probs = np.array([pair.wins, pair.draws, pair.losses]) / pair.games
            w, d, los = rng.multinomial(pair.games, probs)
            resampled.append(PairResult(pair.a, pair.b, int(w), int(d), int(los)))
        samples.append(fit_elo(result.players, resampled, iterations=200))
    for player in result.players:
        values = [s[player] for s in samples] or [result.elo[player]]
        result.elo_low[player] = float(np.percentile(values, 2.5))
        result.elo_high[player] = float(np.percentile(values, 97.5))


def format_tables(result: TournamentResult) -> str:
    """The pair table (rates from the first player's side) and the rating table, as text."""
    w = max(18, *(len(p) for p in result.players))
    lines = [f"{'A':<{w}} {'B':<{w}} {'games':>5} {'A win':>6} {'draw':>6} {'A loss':>6} "
             f"{'forfeit':>7}"]
    for p in result.pairs:
        lines.append(f"{p.a:<{w}} {p.b:<{w}} {p.games:>5} {p.wins / p.games:>6.1%} "
                     f"{p.draws / p.games:>6.1%} {p.losses / p.games:>6.1%} {p.forfeits:>7}")
    lines += ["", f"{'player':<{w}} {'Elo':>6}  {'95% CI (bootstrap)':<18}"]
    for player in sorted(result.players, key=result.elo.get, reverse=True):
        lines.append(f"{player:<{w}} {result.elo[player]:>6.0f}  "
                     f"[{result.elo_low[player]:.0f}, {result.elo_high[player]:.0f}]")
    return "\n".join(lines)


def plot_elo(result: TournamentResult, path: Any, title: str = "") -> None:
    """Write a PNG of the ratings with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    players = sorted(result.players, key=result.elo.get)
    elo = np.array([result.elo[p] for p in players])
    low = elo - np.array([result.elo_low[p] for p in players])
    high = np.array([result.elo_high[p] for p in players]) - elo
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(players) + 1.5))
    ax.barh(players, elo - ELO_MEAN, left=ELO_MEAN, xerr=[low, high], capsize=4)
    ax.axvline(ELO_MEAN, color="grey", linewidth=0.8)
    ax.set_xlabel("Elo (95% bootstrap interval)")
    ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
