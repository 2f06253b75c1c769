"""Stable-Baselines3 agents (PPO, A2C, DQN; sb3-contrib MaskablePPO) on llm_gym envs.

SB3 models already have llm_gym's agent interface; :func:`make_sb3_agent` only builds one (of
the SB3 class an ``sb3-*`` row of :data:`~llm_gym.agents.factory.AGENTS` names) with the right
policy for the env (``MultiInputPolicy`` for token envs, whose observation is a Dict),
wraps the env in :class:`~llm_gym.agents.base.EpisodeRecorder` and hangs the records on the model
as ``model.episode_log`` so every SB3 run has a learning curve like the llm_gym agents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.agents.base import AgentEnvMismatch, EpisodeRecord, EpisodeRecorder
from llm_gym.agents.sb3_loading import safe_custom_objects
from llm_gym.wrappers.stack import WrappersLike, is_token_env, make_env

# SB3 classes that act only on Discrete action spaces (by class name: sb3-contrib is optional).
DISCRETE_ONLY = frozenset({"DQN", "MaskablePPO"})


class TokenEpisodeRecorder(EpisodeRecorder):
    """:class:`EpisodeRecorder` for token envs that also counts tokens, as the LLM agents do.

    ``tokens`` is the running total of conversation tokens (prompt, env replies and the agent's
    tokens) of the finished episodes, the same count as GRPO's and PPO's ``episode_log``.
    """

    def __init__(self, env: gym.Env, records: list[EpisodeRecord] | None = None) -> None:
        super().__init__(env, records)
        self.tokens = self.records[-1].tokens if self.records else 0

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        count = len(self.records)
        result = super().step(action)
        if len(self.records) > count:
            self.tokens += int(np.asarray(result[0]["attention_mask"]).sum())
            self.records[-1].tokens = self.tokens
        return result


def check_sb3_compatible(model_class: type, env: gym.Env) -> None:
    """Raise :class:`AgentEnvMismatch` (a ``ValueError``) when ``model_class`` can't act in ``env``.

    Example:
        >>> from stable_baselines3 import DQN
        >>> check_sb3_compatible(DQN, gym.make("CartPole-v1"))
    """
    env_id = env.spec.id if env.spec else type(env.unwrapped).__name__
    names = {c.__name__ for c in model_class.__mro__}
    algo = model_class.__name__
    if not isinstance(env.action_space, gym.spaces.Discrete) and names & DISCRETE_ONLY:
        raise AgentEnvMismatch(f"{algo} needs a Discrete action space; {env_id} has "
                               f"{env.action_space}. Use sb3-ppo or sb3-a2c")
    if is_token_env(env) and not isinstance(env.observation_space, gym.spaces.Dict):
        # e.g. a TextInterface: SB3 policies act on the token ids, not on text.
        raise AgentEnvMismatch(
            f"{algo} acts on a token env's token ids; {env_id} is wrapped to observe "
            f"{env.observation_space}. Leave the text face out")
    if "DQN" in names and isinstance(env.observation_space, gym.spaces.Dict):
        # SB3's DQN accepts Dict observations, but its replay buffer (1M transitions by
        # default) would hold two full conversations per transition: tens of GB on a token env.
        raise AgentEnvMismatch(
            f"{algo} is not offered on {env_id} (a Dict/token observation): its replay buffer "
            "would store whole conversations. Use sb3-ppo, sb3-a2c or sb3-maskable-ppo")
    if "MaskablePPO" in names:
        try:
            env.get_wrapper_attr("action_masks")
        except AttributeError:
            raise AgentEnvMismatch(
                f"{algo} needs an env with action_masks(); {env_id} has none. Use a "
                "token env (e.g. llm_gym/LeftRightText-v0 with constrained=True) or sb3-ppo"
            ) from None


def make_sb3_agent(
    model_class: type, env: str | gym.Env, *, seed: int = 0, log_dir: str | Path | None = None,
    env_kwargs: dict[str, Any] | None = None, wrappers: WrappersLike = None, **kwargs: Any,
) -> Any:
    """Build an SB3 model for ``env`` whose training episodes land in ``model.episode_log``.

    Args:
        model_class: the SB3 algorithm (``stable_baselines3.PPO``, ``A2C``, ``DQN`` or
            ``sb3_contrib.MaskablePPO``).
        env: an env id or a single env.
        seed: the model's seed (policy init, sampling, env resets).
        log_dir: TensorBoard log folder (SB3's ``tensorboard_log``), or ``None``.
        env_kwargs: keyword arguments of ``gym.make`` when ``env`` is an id.
        wrappers: a wrapper stack (:mod:`llm_gym.wrappers.stack`): SB3 learns the shaped
            reward; ``episode_log`` records the shaped return.
        **kwargs: passed to the SB3 constructor (``n_steps``, ``learning_rate``, ``policy`` ...).

    Example:
        >>> import llm_gym
        >>> from stable_baselines3 import PPO
        >>> model = make_sb3_agent(PPO, "llm_gym/LeftRight-v0", n_steps=64, batch_size=32)
        >>> len(model.learn(128).episode_log) > 0
        True
    """
    base = make_env(env, env_kwargs=env_kwargs, wrappers=wrappers)
    check_sb3_compatible(model_class, base)
    recorder_cls = TokenEpisodeRecorder if is_token_env(base) else EpisodeRecorder
    recorder = recorder_cls(base)
    policy = kwargs.pop("policy", None) or (
        "MultiInputPolicy" if isinstance(base.observation_space, gym.spaces.Dict) else "MlpPolicy")
    model = model_class(policy, sb3_env(recorder), seed=seed, verbose=0,
                tensorboard_log=str(log_dir) if log_dir else None, **kwargs)
    model.episode_log = recorder.records
    return model


def sb3_env(recorder: gym.Env) -> Any:
    """What the SB3 model steps: token envs through :class:`SB3VecEnv`, classic envs as they are.

    SB3VecEnv hands SB3 the token env's Dict observations and its batched ``action_masks`` (for
    MaskablePPO) and never lets SB3 normalise token ids; classic envs go to SB3's own
    ``DummyVecEnv``. The recorder stays the innermost wrapper, so ``episode_log`` is the same.
    """
    if not is_token_env(recorder):
        return recorder
    from llm_gym.agents.sb3_vec_env import SB3VecEnv

    return SB3VecEnv(gym.vector.SyncVectorEnv(
        [lambda: recorder], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP))


def load_sb3_agent(
    model_class: type, path: str | Path, env: str | gym.Env, *,
    env_kwargs: dict[str, Any] | None = None, wrappers: WrappersLike = None, **kwargs: Any,
) -> Any:
    """Load a ``model_class`` model saved by ``model.save(path)`` to keep training on ``env``.

    The episode log saved with the model continues: new episodes are appended after the old
    ones, with env steps counted on from the model's ``num_timesteps``.
    """
    base = make_env(env, env_kwargs=env_kwargs, wrappers=wrappers)
    check_sb3_compatible(model_class, base)
    recorder_cls = TokenEpisodeRecorder if is_token_env(base) else EpisodeRecorder
    # SB3's own load would unpickle the zip's objects: decode them safely first (issue 19).
    kwargs["custom_objects"] = {**safe_custom_objects(path), **kwargs.get("custom_objects", {})}
    model = model_class.load(str(path), **kwargs)
    log: list[EpisodeRecord] = list(getattr(model, "episode_log", None) or [])
    recorder = recorder_cls(base, records=log)
    recorder.env_steps = int(model.num_timesteps)
    model.set_env(sb3_env(recorder))
    model.episode_log = recorder.records
    return model
