"""llm_gym: Gymnasium environments for training language models with reinforcement learning.

``import llm_gym`` registers every ``llm_gym/...`` id with Gymnasium and imports nothing heavy
(no torch, transformers or datasets).

Example:
    >>> import gymnasium as gym
    >>> import llm_gym
    >>> env = gym.make("llm_gym/LeftRightText-v0")
"""

from __future__ import annotations

from llm_gym.registration import env_ids, register_envs

__version__ = "0.1.0"
__all__ = ["env_ids", "register_envs", "__version__"]

register_envs()
