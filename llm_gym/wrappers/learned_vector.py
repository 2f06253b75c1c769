"""The vector twin of :class:`llm_gym.wrappers.learned.LearnedReward`: one batched RM call.

Every row whose turn ended this step is scored in one call of the reward model (in batches of
``batch_size``, on the reward model's device), instead of one forward pass per row. Rewards
equal the single-env wrapper's step by step. It runs in the ``Disabled`` (the trainers') and
``NextStep`` autoreset modes; ``SameStep`` resets a row before its reply is scored, so it is
refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv

from llm_gym.wrappers.learned import RewardModelTerm, task_messages
from llm_gym.wrappers.vector import _VectorShaping, vector_tokenizer


class LearnedReward(_VectorShaping):
    """A reward model's score of each row's finished reply (see the single-env one).

    Example:
        >>> import gymnasium as gym, numpy as np, tempfile, llm_gym
        >>> from llm_gym.reward_model import build_reward_model, save_reward_model
        >>> folder = save_reward_model(*build_reward_model("tiny"), tempfile.mkdtemp() + "/rm", {})
        >>> envs = LearnedReward(gym.make_vec("llm_gym/Arithmetic-v0", 2,
        ...     vectorization_mode="vector_entry_point"), folder)
        >>> _ = envs.reset(seed=0)
        >>> info = envs.step(np.array([258, 258]))[4]
        >>> info["_rm_score"].tolist()
        [True, True]
    """

    def __init__(self, env: VectorEnv, reward_model: str | Path, weight: float = 1.0,
                 env_weight: float = 0.0, name: str = "learned_reward",
                 device: str | None = None, dtype: str | None = None,
                 batch_size: int = 16) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, reward_model=str(reward_model), weight=weight, env_weight=env_weight,
            name=name, device=device, dtype=dtype, batch_size=batch_size)
        # Both checks before the reward model loads.
        mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if mode == AutoresetMode.SAME_STEP:
            raise ValueError("LearnedReward needs autoreset_mode 'Disabled' or 'NextStep': "
                             "'SameStep' starts a row's next task before its reply is scored")
        vector_tokenizer(env, "LearnedReward")
        super().__init__(env, RewardModelTerm(reward_model, weight, env_weight, name, device,
                                              dtype, batch_size))

    def _start(self, row: int, obs: Any) -> list[dict[str, str]] | None:
        return task_messages(self.env, row)


__all__ = ["LearnedReward"]
