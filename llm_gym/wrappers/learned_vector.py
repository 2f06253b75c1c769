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
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from llm_gym.wrappers.learned import RewardModelTerm, task_messages
from llm_gym.wrappers.response import last_response
from llm_gym.wrappers.vector import _row, _VectorShaping, vector_tokenizer


class LearnedReward(RewardModelTerm, _VectorShaping):
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

    needs_rows = False
    uses_responses = True
    keeps_row_state = True

    def __init__(self, env: VectorEnv, reward_model: str | Path, weight: float = 1.0,
                 env_weight: float = 0.0, name: str = "learned_reward",
                 device: str | None = None, dtype: str | None = None,
                 batch_size: int = 16) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, reward_model=str(reward_model), weight=weight, env_weight=env_weight,
            name=name, device=device, dtype=dtype, batch_size=batch_size)
        _VectorShaping.__init__(self, env)
        if self._mode == AutoresetMode.SAME_STEP:
            raise ValueError("LearnedReward needs autoreset_mode 'Disabled' or 'NextStep': "
                             "'SameStep' starts a row's next task before its reply is scored")
        self._tokenizer = vector_tokenizer(env, "LearnedReward")
        self.configure(reward_model, weight, env_weight, name, device, dtype, batch_size)
        self._prompts: list[Any] = [None] * self.num_envs
        self._scored: dict[int, tuple[float, float]] = {}

    def reset_row(self, row: int, obs: Any) -> None:  # noqa: D102
        self._prompts[row] = task_messages(self.env, row)

    def response_terms(self, response):  # noqa: D102
        return {self.name: 0.0}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        self._scored = {}
        obs, rewards, terminated, truncated, infos = super().step(actions)
        for i, (score, below) in self._scored.items():
            infos = self._add_info(infos, {"rm_score": score, "verifiable_reward": below}, i)
        return obs, rewards, terminated, truncated, infos

    def vector_terms(self, obs, actions, rewards, terminated, truncated, infos, stepped):
        # Every row whose turn ended is scored in one reward-model call.
        values = {self.name: np.zeros(self.num_envs)}
        rows = np.flatnonzero(stepped & self._turn_ended(obs, terminated, truncated))
        if rows.size == 0:
            return values, []
        responses = [last_response(_row(obs, int(i)), self._tokenizer) for i in rows]
        texts = ["" if r is None else r.text for r in responses]
        try:
            scores = self.raw_scores([self._prompts[i] for i in rows], texts)
        except Exception as err:  # noqa: BLE001 - a broken reward model is a counted failure
            return values, [(int(i), err) for i in rows]
        values[self.name][rows] = self.weight * scores
        self._scored = {int(i): (float(s), float(rewards[i]))
                        for i, s in zip(rows, scores, strict=True)}
        return values, []


__all__ = ["LearnedReward"]
