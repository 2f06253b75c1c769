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
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
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
from llm_gym.agents.rollout import collect_rollouts
from llm_gym.token_env import TokenEnv
from llm_gym.tokenizers import ByteTokenizer, load_tokenizer
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


    # ------------------------------------------------------------------------- evaluation
    def evaluate(self, num_episodes: int = 10, deterministic: bool = True,
                 seed: int = 1_000_000) -> dict[str, Any]:
        """Play ``num_episodes`` evaluation episodes; return their summary.

        Token envs play through the training vector env (batched, KV-cached; greedy decoding
        when ``deterministic``), classic envs through a fresh single env. Episode ``i`` starts
        from seed ``seed + i``.

        Returns:
            ``mean_return``, ``std_return``, ``success_rate`` (``None`` when the env cannot
            say), ``mean_length`` (env steps), ``episodes`` and ``returns``.
        """
        from llm_gym.agents.evaluation import evaluate_agent

        if int(num_episodes) < 1:
            raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
        if isinstance(self.policy, ClassicPolicy):
            if self.env_id is None:
                raise ValueError("evaluate needs the env id; build the agent from an id")
            env = gym.make(self.env_id, **self.env_kwargs)
            with _torch_threads(self._threads):
                return evaluate_agent(self, env, int(num_episodes), deterministic=deterministic,
                                      seed=seed).to_dict()
        return self._evaluate_tokens(int(num_episodes), deterministic, seed)

    def _evaluate_tokens(self, num_episodes: int, deterministic: bool,
                         seed: int) -> dict[str, Any]:
        from llm_gym.agents.evaluation import SUCCESS_THRESHOLDS, is_success

        spec = gym.spec(self.env_id) if self.env_id else None
        threshold = spec.reward_threshold if spec and spec.reward_threshold is not None else (
            SUCCESS_THRESHOLDS.get(self.env_id))
        temperature = 0.0 if deterministic else self.config.temperature
        generator = torch.Generator().manual_seed(seed)
        returns: list[float] = []
        lengths: list[int] = []
        successes: list[bool | None] = []
        n = self.envs.num_envs
        while len(returns) < num_episodes:
            batch = collect_rollouts(self.policy.net.model, self.envs, temperature=temperature,
                                     seed=seed + len(returns), generator=generator)
            for i in range(min(n, num_episodes - len(returns))):
                returns.append(float(batch.returns[i]))
                lengths.append(int(batch.lengths[i]))
                successes.append(is_success(batch.infos[i], returns[-1], threshold))
        known = [s for s in successes if s is not None]
        return {
            "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "success_rate": float(np.mean(known)) if known else None,
            "mean_length": float(np.mean(lengths)), "episodes": num_episodes,
            "returns": returns,
        }

    # ------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the agent to directory ``path``: config, weights, optimizer, RNG, counters.

        The directory is written next to ``path`` and renamed into place, so a crash while
        saving leaves the previous checkpoint intact.
        """
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        meta = {
            "face": "token" if isinstance(self.policy, TokenPolicy) else "classic",
            "env_id": self.env_id, "env_kwargs": self.env_kwargs, "seed": self.seed,
            "config": asdict(self.config), "num_timesteps": self.num_timesteps,
            "iteration": self.iteration, "num_tokens": self.num_tokens,
        }
        state = {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "predict_generator": self._predict_generator.get_state(),
            "episode_log": [r.to_dict() for r in self.episode_log],
        }
        if isinstance(self.policy, TokenPolicy):
            self.policy.net.model.save_pretrained(tmp / "model")
            state["value_head"] = self.policy.net.value_head.state_dict()
            if self.policy.ref is not None:
                self.policy.ref.save_pretrained(tmp / "reference")
            meta["tokenizer"] = _save_tokenizer(self.tokenizer, tmp / "tokenizer")
        else:
            state["net"] = self.policy.net.state_dict()
        torch.save(state, tmp / "state.pt")
        (tmp / "ppo.json").write_text(json.dumps(meta, indent=2, default=str))
        _replace_dir(tmp, path)

    @classmethod
    def load(cls, path: str | Path, env: str | gym.vector.VectorEnv | None = None,
             **kwargs: Any) -> PPOAgent:
        """Rebuild a saved agent; ``learn`` on it resumes the run.

        Args:
            path: a directory written by :meth:`save`.
            env: the env to attach (default: the saved env id with the saved ``env_kwargs``).
            **kwargs: overrides of the constructor's keyword arguments (``log_dir``,
                ``device``, ``config``, ...).

        Token-env runs resume exactly (rollout ``k`` is seeded from ``k``; weights, optimizer
        and sampling RNG are restored). Classic runs restart their envs' episodes at load.
        """
        path = Path(path)
        meta_file = path / "ppo.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path} is not a PPOAgent checkpoint (no ppo.json)")
        meta = json.loads(meta_file.read_text())
        state = torch.load(path / "state.pt", weights_only=False)
        options: dict[str, Any] = {
            "config": PPOConfig.from_dict(meta["config"]), "env_kwargs": meta["env_kwargs"],
            "seed": meta["seed"], **kwargs,
        }
        env = env if env is not None else meta["env_id"]
        if meta["face"] == "token":
            from transformers import AutoModelForCausalLM

            options.setdefault("tokenizer", _load_tokenizer(meta["tokenizer"], path))
            model = AutoModelForCausalLM.from_pretrained(path / "model")
            agent = cls(env, model.to(options.get("device") or _device()), **options)
            agent.policy.net.value_head.load_state_dict(state["value_head"])
            if agent.policy.ref is not None and (path / "reference").is_dir():
                ref = AutoModelForCausalLM.from_pretrained(path / "reference")
                agent.policy.ref.load_state_dict(ref.state_dict())
        else:
            agent = cls(env, **options)
            agent.policy.net.load_state_dict(state["net"])
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.generator.set_state(state["generator"])
        agent._predict_generator.set_state(state["predict_generator"])
        agent.episode_log = [EpisodeRecord(**r) for r in state["episode_log"]]
        agent.num_timesteps, agent.iteration = meta["num_timesteps"], meta["iteration"]
        agent.num_tokens = meta["num_tokens"]
        return agent


def _save_tokenizer(tokenizer: Any, folder: Path) -> str:
    """Save an HF tokenizer into ``folder``; return what :func:`_load_tokenizer` reads back."""
    if isinstance(tokenizer, ByteTokenizer):
        return "byte"
    tokenizer.hf.save_pretrained(folder)
    return "tokenizer"


def _load_tokenizer(saved: str, path: Path) -> Any:
    return load_tokenizer("byte" if saved == "byte" else str(path / saved))


def _device() -> str:
    from llm_gym.models import default_device

    return default_device()


def _replace_dir(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path``; an existing ``path`` is swapped out first, then removed."""
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)


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
