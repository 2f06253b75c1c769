"""Multi-agent games as PettingZoo envs with token-level faces.

Each module follows PettingZoo's layout: ``env()`` (wrapped), ``raw_env``, and
``parallel_env()`` for simultaneous games. The games step PettingZoo's own envs underneath.

Example:
    >>> from llm_gym.envs.multiagent import tictactoe_text_v0
    >>> tictactoe_text_v0.raw_env.metadata["name"]
    'tictactoe_text_v0'
"""

from __future__ import annotations
