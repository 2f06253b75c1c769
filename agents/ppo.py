"""PPO with a learned value, for token envs (RLHF form) and classic envs (CleanRL form).

One algorithm, two faces. :class:`PPOAgent` looks at the env: a token env gets an LLM policy with
a value head on its last hidden state (:class:`~llm_gym.agents.value_head.ValueHead`), a classic
env with ``Discrete`` actions gets a small MLP actor-critic. Both faces
(:mod:`llm_gym.agents.ppo_policies`) hand the same batch to the same advantage, loss and update
code (:mod:`llm_gym.agents.ppo_algorithm`, which documents the RLHF details).

Example:
    >>> agent = PPOAgent("llm_gym/LeftRight-v0", config=PPOConfig(num_envs=2, num_steps=16))
    >>> agent.learn(32).num_timesteps
    32
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from llm_gym.agents.base import EpisodeRecord, episode_success
from llm_gym.agents.ppo_algorithm import PPOConfig, ppo_update
from llm_gym.agents.ppo_policies import ClassicPolicy, TokenPolicy
from llm_gym.token_env import TokenEnv
from llm_gym.tokenizers import load_tokenizer
from llm_gym.vector import TokenVectorEnv

__all__ = ["PPOAgent", "PPOConfig", "is_token_env"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- agent


def is_token_env(env: str | gym.vector.VectorEnv) -> bool:
    """Whether ``env`` (an id or a vector env) is an llm_gym token env."""
    if isinstance(env, TokenVectorEnv):
        return True
    if not isinstance(env, str):
        return False
    entry = gym.spec(env).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    return isinstance(creator, type) and issubclass(creator, TokenEnv)


class PPOAgent:
    """PPO on a token env (an LLM policy) or a classic env (an MLP policy), SB3's interface.

    Args:
        env: a registered id (``"llm_gym/Arithmetic-v0"``, ``"CartPole-v1"``) or a vector env:
            a :class:`~llm_gym.vector.TokenVectorEnv` with ``autoreset_mode=DISABLED``, or a
            Gymnasium vector env with ``autoreset_mode=SAME_STEP`` and ``Discrete`` actions.
        model: token envs only: a name for :func:`llm_gym.models.load_model` (``"tiny"``,
            ``"smollm2"``, a hub id or path) or a causal LM module.
        config: hyperparameters (default :class:`PPOConfig()`).
        env_kwargs: keyword arguments for ``gym.make`` / ``gym.make_vec`` when ``env`` is an id.
        tokenizer: the tokenizer of a ``model`` given as a module (default: the env's).
        seed: seeds the network init, the sampling and the envs.
        log_dir: where metrics (TensorBoard, CSV) and checkpoints go; ``None`` keeps none.
        device: torch device of an LLM policy (default: GPU when present).

    Example:
        >>> agent = PPOAgent("llm_gym/LeftRight-v0", config=PPOConfig(num_envs=2, num_steps=16))
        >>> agent = agent.learn(64)
        >>> agent.predict(2, deterministic=True)[0].shape
        ()
    """

    def __init__(
        self, env: str | gym.vector.VectorEnv, model: str | torch.nn.Module = "tiny",
        config: PPOConfig | None = None, *, env_kwargs: dict[str, Any] | None = None,
        tokenizer: Any = None, seed: int = 0, log_dir: str | Path | None = None,
        device: str | None = None,
    ) -> None:
        if config is not None and not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
        self.config = cfg = config or PPOConfig()
        self.seed, self.env_kwargs = int(seed), dict(env_kwargs or {})
        self.env_id = env if isinstance(env, str) else getattr(env.spec, "id", None)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.generator = torch.Generator().manual_seed(self.seed)
        self._predict_generator = torch.Generator().manual_seed(self.seed + 1)
        self.num_timesteps = self.iteration = self.num_tokens = 0
        self.episode_log: list[EpisodeRecord] = []
        self._start = time.perf_counter()
        self.policy: TokenPolicy | ClassicPolicy
        self._threads: int | None = None  # torch threads while learning (None: unchanged)
        if is_token_env(env):
            lm, tokenizer = self._resolve_model(env, model, tokenizer, device)
            self.tokenizer = tokenizer
            envs = env if isinstance(env, TokenVectorEnv) else gym.make_vec(
                env, cfg.num_envs, vectorization_mode="vector_entry_point",
                autoreset_mode=AutoresetMode.DISABLED, tokenizer=tokenizer, **self.env_kwargs)
            self.policy = TokenPolicy(envs, lm, cfg, self.seed)
            lr = 1e-5 if cfg.learning_rate is None else cfg.learning_rate
        else:
            self.tokenizer = None
            envs = env if isinstance(env, gym.vector.VectorEnv) else gym.vector.SyncVectorEnv(
                [functools.partial(gym.make, env, **self.env_kwargs)] * cfg.num_envs,
                autoreset_mode=AutoresetMode.SAME_STEP)
            self.policy = ClassicPolicy(envs, cfg, self.seed)
            # A 64-unit MLP does microseconds of work per call: intra-op threads only add
            # synchronisation (25 s instead of 0.5 s for 1280 LeftRight steps on 2 busy cores).
            lr = 3e-4 if cfg.learning_rate is None else cfg.learning_rate
            self._threads = 1
        self.envs = envs
        self.optimizer = torch.optim.AdamW(
            [p for p in self.policy.parameters() if p.requires_grad], lr=lr, eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay)

    @staticmethod
    def _resolve_model(env: Any, model: str | torch.nn.Module, tokenizer: Any,
                       device: str | None) -> tuple[torch.nn.Module, Any]:
        from llm_gym.models import default_device, load_model, tiny_model

        env_tokenizer = env.tokenizer if isinstance(env, TokenVectorEnv) else None
        if isinstance(model, str):
            if model == "tiny" and (env_tokenizer or tokenizer) is not None:
                lm, tok = tiny_model(tokenizer or env_tokenizer)
                lm = lm.to(device or default_device())
            else:
                lm, tok = load_model(model, device=device)
        elif isinstance(model, torch.nn.Module):
            lm, tok = model, load_tokenizer(tokenizer or env_tokenizer)
        else:
            raise TypeError(f"model must be a name or a torch module, got {type(model).__name__}")
        return lm, tok

    # ------------------------------------------------------------------------- training
    def learn(self, total_timesteps: int, callback: Any = None,
              progress_bar: bool = False) -> PPOAgent:
        """Train for ``total_timesteps`` more env steps (agent tokens on token envs).

        The step counter carries on across calls (SB3's ``reset_num_timesteps=False``), so
        ``learn`` on a loaded checkpoint continues the run. ``callback(metrics)`` is called
        after every update; returning ``False`` stops training.
        """
        if int(total_timesteps) < 1:
            raise ValueError(f"total_timesteps must be at least 1, got {total_timesteps}")
        target = self.num_timesteps + int(total_timesteps)
        bar = tqdm(total=int(total_timesteps), disable=not progress_bar, unit="step")
        with _torch_threads(self._threads), bar:
            while self.num_timesteps < target:
                before = self.num_timesteps
                metrics = self._iteration()
                bar.update(min(self.num_timesteps, target) - before)
                logger.debug("ppo iteration %d: %s", self.iteration, metrics)
                if callback is not None and callback(metrics) is False:
                    break
        return self

    def _iteration(self) -> dict[str, float]:
        """One rollout and one update; returns the iteration's metrics."""
        steps_before, episodes_before = self.num_timesteps, len(self.episode_log)
        start = time.perf_counter()
        self.policy.net.eval()  # no dropout, in rollouts or updates (RLHF report)
        batch, metrics = self.policy.collect(self)
        rollout_s = time.perf_counter() - start
        metrics.update(ppo_update(self.policy, self.optimizer, batch, self.config,
                                  self.generator))
        update_s = time.perf_counter() - start - rollout_s
        self.iteration += 1
        steps = self.num_timesteps - steps_before
        metrics.update(self._episode_metrics(len(self.episode_log) - episodes_before))
        metrics.update({
            "time/rollout_s": rollout_s, "time/update_s": update_s,
            "time/env_steps": float(self.num_timesteps), "time/iterations": float(self.iteration),
            "time/fps": steps / max(rollout_s + update_s, 1e-9),
        })
        if "rollout/tokens" in metrics:
            metrics["time/tokens_per_s"] = metrics["rollout/tokens"] / max(rollout_s, 1e-9)
        return metrics

    def _episode_metrics(self, new_episodes: int) -> dict[str, float]:
        # SB3's window: the last 100 finished episodes (token rollouts finish num_envs each time).
        window = self.episode_log[-100:]
        known = [r.success for r in window if r.success is not None]
        nan = float("nan")
        return {
            "rollout/ep_rew_mean": float(np.mean([r.episode_return for r in window])) if window
            else nan,
            "rollout/ep_len_mean": float(np.mean([r.length for r in window])) if window else nan,
            "rollout/success_rate": float(np.mean(known)) if known else nan,
            "rollout/episodes": float(new_episodes),
        }

    def record_episode(self, episode_return: float, length: int, info: dict[str, Any],
                       tokens: int) -> None:
        """Append a finished training episode to :attr:`episode_log`."""
        self.num_tokens += tokens
        self.episode_log.append(EpisodeRecord(
            env_steps=self.num_timesteps, tokens=self.num_tokens, episode_return=episode_return,
            length=length, success=episode_success(info, episode_return, True),
            wall_time=time.perf_counter() - self._start,
        ))

    # ------------------------------------------------------------------------- acting
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """The action for one observation (a 0-d int64 array) or a batch of them.

        Token envs take the Dict observation (single: ``input_ids`` of shape ``(max_length,)``);
        classic envs a raw observation. ``state`` is passed through (no recurrence).
        """
        if isinstance(self.policy, TokenPolicy):
            if not isinstance(observation, dict) or "input_ids" not in observation:
                raise TypeError("a token-env policy needs the env's Dict observation")
            single = np.asarray(observation["input_ids"]).ndim == 1
            batch = {k: np.asarray(v)[None] if single else np.asarray(v)
                     for k, v in observation.items()}
        else:
            space = self.envs.single_observation_space
            obs = np.asarray(observation)
            single = obs.shape == space.shape
            batch = obs[None] if single else obs
        actions = self.policy.act(batch, deterministic, self._predict_generator).astype(np.int64)
        return (actions[0] if single else actions), state


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch intra-op threads, restoring the previous count after."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
