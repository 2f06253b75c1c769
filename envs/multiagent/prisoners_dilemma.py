"""The iterated prisoner's dilemma as a PettingZoo Parallel env (the classic face).

PettingZoo ships no prisoner's dilemma, so this is the one game whose rules llm_gym writes
itself; its token face (:mod:`llm_gym.envs.multiagent.prisoners_dilemma_text_v0`) adds the
language: a free-text message to the opponent before every move.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

COOPERATE, DEFECT, NO_MOVE = 0, 1, 2
# Axelrod's payoffs (The Evolution of Cooperation, 1984): temptation 5 > reward 3 > punishment 1
# > sucker 0, and 2R > T + S, so steady cooperation beats taking turns at exploiting.
PAYOFFS = {(COOPERATE, COOPERATE): (3, 3), (COOPERATE, DEFECT): (0, 5),
           (DEFECT, COOPERATE): (5, 0), (DEFECT, DEFECT): (1, 1)}


class PrisonersDilemmaEnv(ParallelEnv):
    """The iterated prisoner's dilemma for two players, ``num_rounds`` rounds.

    ## Action Space
    `Discrete(2)`: 0 cooperate, 1 defect.

    ## Observation Space
    `Discrete(3)`: the opponent's move last round (2 before the first round).

    ## Rewards
    Each round, Axelrod's payoffs: both cooperate 3 each, both defect 1 each, a defector
    against a cooperator 5 and the cooperator 0.

    ## Episode End
    Terminated for both players after `num_rounds` rounds.

    Example:
        >>> game = PrisonersDilemmaEnv(num_rounds=2)
        >>> _ = game.reset(seed=0)
        >>> _, rewards, *_ = game.step({"player_0": 0, "player_1": 1})
        >>> rewards
        {'player_0': 0.0, 'player_1': 5.0}
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "name": "prisoners_dilemma_v0"}

    def __init__(self, num_rounds: int = 5, render_mode: str | None = None) -> None:
        if isinstance(num_rounds, bool) or not isinstance(num_rounds, int) or num_rounds < 1:
            raise ValueError(f"num_rounds must be an int >= 1, got {num_rounds!r}")
        self.num_rounds, self.render_mode = num_rounds, render_mode
        self.possible_agents = ["player_0", "player_1"]
        self.agents: list[str] = []
        self.round = 0
        self._last = dict.fromkeys(self.possible_agents, NO_MOVE)
        self._spaces = {a: (spaces.Discrete(3), spaces.Discrete(2)) for a in self.possible_agents}

    def observation_space(self, agent: str) -> spaces.Space:
        return self._spaces[agent][0]

    def action_space(self, agent: str) -> spaces.Space:
        return self._spaces[agent][1]

    def observe(self, agent: str) -> np.int64:
        """The opponent's last move (``NO_MOVE`` before the first round)."""
        return np.int64(self._last[self._opponent(agent)])

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.int64], dict[str, dict]]:
        self.agents = list(self.possible_agents)
        self.round = 0
        self._last = dict.fromkeys(self.possible_agents, NO_MOVE)
        return {a: self.observe(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("step() called after the game ended (or before reset()); "
                               "call reset()")
        if not isinstance(actions, dict) or set(actions) != set(self.agents):
            raise ValueError(f"actions must be a dict with one move for each of {self.agents}, "
                             f"got {actions!r}")
        moves = {}
        for agent, action in actions.items():
            if isinstance(action, (bool, np.bool_)) or action not in (COOPERATE, DEFECT):
                raise ValueError(f"the move of {agent} must be 0 (cooperate) or 1 (defect), "
                                 f"got {action!r}")
            moves[agent] = int(action)
        payoff = PAYOFFS[(moves["player_0"], moves["player_1"])]
        rewards = {a: float(p) for a, p in zip(self.possible_agents, payoff, strict=True)}
        self._last, self.round = moves, self.round + 1
        over = self.round >= self.num_rounds
        live = list(self.agents)
        self.agents = [] if over else live
        return ({a: self.observe(a) for a in live}, rewards, dict.fromkeys(live, over),
                dict.fromkeys(live, False), {a: {} for a in live})

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return f"round {self.round} of {self.num_rounds}, last moves {self._last}"

    def _opponent(self, agent: str) -> str:
        return self.possible_agents[1 - self.possible_agents.index(agent)]


def parallel_env(**kwargs: Any) -> PrisonersDilemmaEnv:
    """The classic face as a Parallel env."""
    return PrisonersDilemmaEnv(**kwargs)


def raw_env(**kwargs: Any) -> Any:
    """The classic face as an AEC env (PettingZoo's ``parallel_to_aec``)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(parallel_env(**kwargs))


env = raw_env
