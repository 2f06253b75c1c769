"""Multi-agent games as PettingZoo envs with token-level faces.

Each game module follows PettingZoo's layout: ``env()`` (wrapped), ``raw_env``, and
``parallel_env()`` for simultaneous games. The games step PettingZoo's own envs underneath.
:mod:`~llm_gym.envs.multiagent.single_agent` turns a game into an ordinary env for one seat,
the other seats played by the policies of :mod:`~llm_gym.envs.multiagent.policies`.

Example:
    >>> from llm_gym.envs.multiagent import tictactoe_text_v0
    >>> tictactoe_text_v0.raw_env.metadata["name"]
    'tictactoe_text_v0'
"""

from __future__ import annotations

# module -> (PettingZoo API, the single-agent views registered with Gymnasium). Strings only:
# `llm-gym list` reads this without importing the games.
GAME_MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "tictactoe_text_v0": ("AEC", ("llm_gym/TicTacToeText-v0", "llm_gym/TicTacToe-v0")),
    "connect_four_text_v0": ("AEC", ("llm_gym/ConnectFourText-v0", "llm_gym/ConnectFour-v0")),
    "rps_text_v0": ("Parallel", ("llm_gym/RockPaperScissorsText-v0",
                                 "llm_gym/RockPaperScissors-v0")),
    "prisoners_dilemma_text_v0": ("Parallel", ("llm_gym/PrisonersDilemmaText-v0",
                                               "llm_gym/PrisonersDilemma-v0")),
}
