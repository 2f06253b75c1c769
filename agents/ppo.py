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

import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from llm_gym.agents.evaluation import EvalResult, evaluate_agent
from llm_gym.agents.ppo_algorithm import PPOConfig, ppo_update
from llm_gym.agents.ppo_policies import ClassicPolicy, TokenPolicy, build_model
from llm_gym.agents.token_envs import build_token_envs, first_env, saved_stack
from llm_gym.agents.trainer import Collected, LLMTrainer
from llm_gym.optimizers import adamw
from llm_gym.tokenizers import ByteTokenizer, load_tokenizer
from llm_gym.wrappers.stack import (
    WrappersLike,
    WrapperStack,
    apply_wrappers,
    is_token_env,
    make_env,
    parse_wrappers,
    wrappers_of,
)

__all__ = ["PPOAgent", "PPOConfig"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- agent


class PPOAgent(LLMTrainer):
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
        wrappers: a wrapper stack (:mod:`llm_gym.wrappers.stack`) applied to the envs: PPO
            learns from the shaped reward (token envs log each term as ``reward/<term>``).

    Example:
        >>> agent = PPOAgent("llm_gym/LeftRight-v0", config=PPOConfig(num_envs=2, num_steps=16))
        >>> agent = agent.learn(64)
        >>> agent.predict(2, deterministic=True)[0].shape
        ()
    """

    STATE_FORMAT = "llm_gym.PPOAgent/1"
    EVAL_SEED = 1_000_000

    def __init__(
        self, env: str | gym.vector.VectorEnv, model: str | torch.nn.Module = "tiny",
        config: PPOConfig | None = None, *, env_kwargs: dict[str, Any] | None = None,
        tokenizer: Any = None, seed: int = 0, log_dir: str | Path | None = None,
        device: str | None = None, wrappers: WrappersLike = None,
    ) -> None:
        if config is not None and not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
        self.config = cfg = config or PPOConfig()
        stack = parse_wrappers(wrappers)  # the edge: checked once, taken as is below
        self._init_run_state(log_dir)
        self.seed, self.env_kwargs = int(seed), dict(env_kwargs or {})
        self.model_spec = model if isinstance(model, str) and is_token_env(env) else None
        if "tokenizer" in self.env_kwargs:  # one tokenizer drives both the env and the model
            tokenizer = tokenizer if tokenizer is not None else self.env_kwargs.pop("tokenizer")
            self.env_kwargs.pop("tokenizer", None)
        self.env_id = env if isinstance(env, str) else getattr(env.spec, "id", None)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._predict_generator = torch.Generator().manual_seed(self.seed + 1)
        self.policy: TokenPolicy | ClassicPolicy
        if is_token_env(env):
            lm, tokenizer = self._resolve_model(env, model, tokenizer, device, cfg)
            self.tokenizer = tokenizer
            envs, env_id, _, self.wrappers = build_token_envs(
                env, cfg.num_envs, {"tokenizer": tokenizer, **self.env_kwargs}, stack)
            self.env_id = self.env_id or env_id
            self.policy = TokenPolicy(envs, lm, cfg, self.seed)
            lr = 1e-5 if cfg.learning_rate is None else cfg.learning_rate
        else:
            if cfg.curriculum is not None:
                raise ValueError("a curriculum draws task items of a token env (reset(options="
                                 "{'index': i})); this env is classic: leave curriculum out")
            self.tokenizer = None
            envs, self.wrappers = self._classic_envs(env, stack)
            self.policy = ClassicPolicy(envs, cfg, self.seed)
            # A 64-unit MLP does microseconds of work per call: intra-op threads only add
            # synchronisation (25 s instead of 0.5 s for 1280 LeftRight steps on 2 busy cores).
            lr = 3e-4 if cfg.learning_rate is None else cfg.learning_rate
            self._threads = 1
        self.envs = envs
        self.optimizer = adamw(
            [p for p in self.policy.parameters() if p.requires_grad], lr=lr, eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay)

    def _classic_envs(self, env: Any, stack: WrapperStack
                      ) -> tuple[gym.vector.VectorEnv, WrapperStack]:
        if isinstance(env, gym.vector.VectorEnv):
            return apply_wrappers(env, stack), stack
        if isinstance(env, gym.Env):
            env, made_with, inner = wrappers_of(env)
            self.env_id, self.env_kwargs = env, {**made_with, **self.env_kwargs}
            stack = inner + stack
        envs = make_env(env, self.config.num_envs, env_kwargs=self.env_kwargs, wrappers=stack,
                        autoreset_mode=AutoresetMode.SAME_STEP)
        return envs, stack

    @staticmethod
    def _resolve_model(env: Any, model: str | torch.nn.Module, tokenizer: Any,
                       device: str | None, cfg: PPOConfig) -> tuple[torch.nn.Module, Any]:
        from llm_gym.models import load_model

        env_tokenizer = (first_env(env).tokenizer if isinstance(env, gym.vector.VectorEnv)
                         else getattr(getattr(env, "unwrapped", None), "tokenizer", None))
        if isinstance(model, str):
            own = (tokenizer or env_tokenizer) if model == "tiny" else None
            lm, tok = load_model(model, device=device, dtype=cfg.dtype, lora=cfg.lora,
                                 tokenizer=None if own is None else load_tokenizer(own))
        elif isinstance(model, torch.nn.Module):
            lm, tok = model, load_tokenizer(tokenizer or env_tokenizer)
        else:
            raise TypeError(f"model must be a name or a torch module, got {type(model).__name__}")
        return lm, tok

    @property
    def iteration(self) -> int:
        """Updates done so far (the old name of :attr:`num_updates`)."""
        return self.num_updates

    # ------------------------------------------------------------------------- training
    def collect(self) -> Collected:
        """One rollout of the policy's face (no change to the agent's counters or log)."""
        self.policy.net.eval()  # no dropout, in rollouts or updates (RLHF report)
        return self.policy.collect(self.num_updates, self.generator)

    def train_on(self, collected: Collected) -> dict[str, float]:
        """PPO epochs on the collected batch, plus SB3's episode window metrics."""
        metrics = ppo_update(self.policy, self.optimizer, collected.batch, self.config,
                             self.generator)
        metrics.update(self._episode_metrics(len(collected.episodes)))
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

    # ------------------------------------------------------------------------- acting
    def _as_batch(self, observation: Any) -> tuple[Any, bool]:
        if isinstance(self.policy, TokenPolicy):
            return super()._as_batch(observation)
        obs = np.asarray(observation)
        single = obs.shape == self.envs.single_observation_space.shape
        return (obs[None] if single else obs), single

    def _act(self, batch: Any, deterministic: bool) -> np.ndarray:
        return self.policy.act(batch, deterministic, self._predict_generator)

    def _evaluate(self, num_episodes: int, deterministic: bool, seed: int,
                  env_kwargs: dict[str, Any], batch_size: int) -> EvalResult:
        """Token envs play through the training batch (KV-cached), classic ones a fresh env."""
        if isinstance(self.policy, TokenPolicy):
            return self._evaluate_tokens(self.policy.net.model, num_episodes, deterministic,
                                         seed, env_kwargs, batch_size, envs=self.envs)
        if self.env_id is None:
            raise ValueError("evaluate needs the env id; build the agent from an id")
        env = make_env(self.env_id, env_kwargs={**self.env_kwargs, **env_kwargs},
                       wrappers=self.wrappers)
        try:
            return evaluate_agent(self, env, num_episodes, deterministic=deterministic,
                                  seed=seed)
        finally:
            env.close()

    # ------------------------------------------------------------------------- persistence
    def _model_state(self) -> dict[str, Any]:
        return {"face": "token" if isinstance(self.policy, TokenPolicy) else "classic",
                "tokenizer": _tokenizer_source(self.tokenizer),
                "policy": self.policy.state_dict()}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])

    def _generators(self) -> dict[str, torch.Generator]:
        return {"sample": self.generator, "predict": self._predict_generator}

    def language_model(self) -> torch.nn.Module:
        """The LLM policy without its value head (token envs only)."""
        if not isinstance(self.policy, TokenPolicy):
            raise ValueError("save_pretrained writes a language model; this PPO agent acts in a "
                             "classic env with an MLP policy (use save())")
        return self.policy.net.model

    def curve_title(self) -> str:
        """``PPO`` on the reward-curve plot."""
        return "PPO"

    @classmethod
    def _from_state(cls, state: dict[str, Any], path: Any, env: Any,
                    kwargs: dict[str, Any]) -> PPOAgent:
        # Token-env runs resume exactly (weights, optimizer, RNG, data position, rollout seeds
        # from the update count); classic runs start fresh episodes.
        options: dict[str, Any] = {
            "config": PPOConfig.from_dict(state["config"]),
            "env_kwargs": state["env_kwargs"], "seed": state["seed"], **kwargs,
        }
        options["wrappers"] = saved_stack(state, kwargs.get("wrappers"), path)
        if state["face"] != "token":
            return cls(env, **options)
        options.setdefault("tokenizer", load_tokenizer(state["tokenizer"]))
        model = build_model(state["policy"]["model_config"], options.get("device") or
                            _default_device())
        return cls(env, model, **options)


def _tokenizer_source(tokenizer: Any) -> str | None:
    """What :func:`~llm_gym.tokenizers.load_tokenizer` needs to load ``tokenizer`` again."""
    if tokenizer is None:
        return None
    return "byte" if isinstance(tokenizer, ByteTokenizer) else tokenizer.name


def _default_device() -> str:
    from llm_gym.models import default_device

    return default_device()
