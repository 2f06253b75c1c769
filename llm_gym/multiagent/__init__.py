"""Multi-agent games for single-agent trainers: opponents, single-seat views, tournaments.

The games themselves (PettingZoo envs with token faces) live in
:mod:`llm_gym.envs.multiagent`.
"""

from __future__ import annotations
