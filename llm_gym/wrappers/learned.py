"""``LearnedReward``: a reward model's score of each finished reply, as a shaping term.

This is how a learned reward enters RL in llm_gym (DESIGN.md, Preferences): as one more reward
wrapper, so GRPO, PPO, RLOO or any agent trains on it with nothing else changed. With PPO and
its per-token KL penalty to the reference model it is the classic RLHF setup (Ouyang et al.
2022). The vector twin (:mod:`llm_gym.wrappers.learned_vector`) scores every row whose turn
ended in one batched forward pass on the reward model's device. Both twins hold a
:class:`RewardModelTerm` (the scorer and its weights; its state is the row's task messages).

The reward model reads the task's opening messages and the reply *text* (decoded with the
policy's tokenizer, re-encoded with the reward model's own tokenizer and chat template), so a
reward model with another tokenizer than the policy's works; the policy still trains on exactly
the tokens it emitted. Multi-turn envs: each finished turn is scored after the opening messages
only (the env's replies in between are not shown to the reward model).

The returned reward is ``env_weight * env reward + weight * score``; by default
``env_weight=0`` (the reward model alone, as in RLHF). ``env_weight`` scales everything below
the wrapper, like ``RewardTerms``' ``"env"`` weight, so stack other shaping terms *above* it.
On the step a turn ends, ``info["rm_score"]`` holds the raw score and
``info["verifiable_reward"]`` the reward of the env below (unscaled), so both can be logged even
when the env's share of the reward is 0 (Gao et al. 2022: a learned reward is a proxy; always
report the true metric beside it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.wrappers.response import ReplyTerm, Scored, Step, require_token_env
from llm_gym.wrappers.shaping import _Shaping


def task_messages(envs: Any, row: int = 0) -> list[dict[str, str]] | None:
    """The opening messages of the task row ``row`` of an env (single or vector) is on."""
    base = envs.unwrapped
    subs = getattr(base, "envs", None)
    if subs is not None:
        task = subs[row].unwrapped.task
    elif isinstance(base, gym.Env):
        task = base.task
    else:
        task = base.get_attr("task")[row]
    return None if task is None else [dict(m) for m in task.messages]


class RewardModelTerm(ReplyTerm):
    """``weight *`` the reward model's score of a finished reply; the state is the task's messages.

    The wrappers set each episode's state with :func:`task_messages` (the env knows its task,
    the observation only its tokens).
    """

    keeps_state = True

    def __init__(self, reward_model: str | Path, weight: float, env_weight: float, name: str,
                 device: str | None, dtype: str | None, batch_size: int) -> None:
        from llm_gym.reward_model import load_reward_scorer

        if not isinstance(reward_model, (str, Path)):
            raise TypeError(f"reward_model must be the folder of a reward model (llm-gym "
                            f"train-rm --out DIR), got {type(reward_model).__name__}")
        for label, value in (("weight", weight), ("env_weight", env_weight)):
            if not math.isfinite(float(value)):
                raise ValueError(f"{label} must be a finite number, got {value}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        super().__init__(name)
        folder = str(Path(reward_model).expanduser().resolve())
        self.scorer = load_reward_scorer(folder, device, dtype, int(batch_size))
        self.weight, self.scale = float(weight), float(env_weight)

    def __call__(self, state: Any, step: Step) -> Scored:  # noqa: D102
        (scored,) = self.rows([state], [step])
        if isinstance(scored, Exception):
            raise scored
        return scored

    def rows(self, states: list[Any], steps: list[Step]) -> list[Scored | Exception]:
        """Every finished reply scored in one reward-model call (``batch_size`` per pass).

        ``info`` gets the raw score and the reward below (unscaled), so both can be logged
        (Gao et al. 2022). A failed call fails every row it scored.
        """
        out: list[Scored | Exception] = [Scored({self.name: 0.0}, s) for s in states]
        live = [k for k, step in enumerate(steps) if step.reply is not None]
        if not live:
            return out
        try:
            scores = self.scorer.score([states[k] for k in live],
                                       [steps[k].reply.text for k in live])
            if not np.isfinite(scores).all():
                raise ValueError(f"the reward model returned non-finite scores "
                                 f"{scores.tolist()}")
        except Exception as err:  # noqa: BLE001 - a broken reward model is a counted failure
            return [err if k in live else scored for k, scored in enumerate(out)]
        for k, score in zip(live, scores, strict=True):
            info = {"rm_score": float(score), "verifiable_reward": float(steps[k].reward)}
            out[k] = Scored({self.name: self.weight * float(score)}, states[k], info)
        return out


class LearnedReward(_Shaping):
    """``weight *`` a reward model's score of each finished reply, plus ``env_weight *`` the env's.

    Args:
        env: an llm_gym token env.
        reward_model: folder of a reward model (``llm-gym train-rm --out DIR``, or any
            transformers sequence-classification model with one output).
        weight: weight of the reward model's score.
        env_weight: weight of the reward below (the env's verifiable reward); 0: the reward
            model alone.
        name: the term's name in ``info["reward_components"]``.
        device: the reward model's torch device (default: GPU when present).
        dtype: the reward model's dtype (default: bfloat16 on a GPU, float32 on a CPU).
        batch_size: replies per forward pass (vector twin).

    Example:
        >>> import gymnasium as gym, tempfile, llm_gym
        >>> from llm_gym.reward_model import build_reward_model, save_reward_model
        >>> folder = save_reward_model(*build_reward_model("tiny"), tempfile.mkdtemp() + "/rm", {})
        >>> env = LearnedReward(gym.make("llm_gym/Arithmetic-v0"), folder, env_weight=1.0)
        >>> _ = env.reset(seed=0)
        >>> info = env.step(env.unwrapped.tokenizer.eos_token_id)[4]
        >>> sorted(info["reward_components"]), "rm_score" in info
        (['env', 'learned_reward'], True)
    """

    def __init__(self, env: gym.Env, reward_model: str | Path, weight: float = 1.0,
                 env_weight: float = 0.0, name: str = "learned_reward",
                 device: str | None = None, dtype: str | None = None,
                 batch_size: int = 16) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, reward_model=str(reward_model), weight=weight, env_weight=env_weight,
            name=name, device=device, dtype=dtype, batch_size=batch_size)
        require_token_env(env, "LearnedReward")  # before loading the reward model
        super().__init__(env, RewardModelTerm(reward_model, weight, env_weight, name, device,
                                              dtype, batch_size))

    def _start(self, obs: Any) -> list[dict[str, str]] | None:
        return task_messages(self.env)
