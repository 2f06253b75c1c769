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
import logging
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
from llm_gym.agents.ppo_policies import ClassicPolicy, TokenPolicy, build_model
from llm_gym.agents.token_envs import (
    build_token_envs,
    evaluate_policy,
    first_env,
    portable,
    saved_stack,
)
from llm_gym.agents.training import (
    CheckpointSchedule,
    MetricsLogger,
    RewardFailures,
    TrainingInterrupted,
    drop_metrics_after,
    learn_target,
    load_checkpoint,
    plot_reward_curve,
    rng_state,
    save_checkpoint,
    set_rng_state,
    stop_requested,
    write_state_dir,
)
from llm_gym.token_env import TokenEnv
from llm_gym.tokenizers import ByteTokenizer, load_tokenizer
from llm_gym.vector import TokenVectorEnv
from llm_gym.wrappers.stack import apply_wrappers, make_env, parse_wrappers, wrappers_of

__all__ = ["PPOAgent", "PPOConfig", "is_token_env"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- agent


def is_token_env(env: str | gym.Env | gym.vector.VectorEnv) -> bool:
    """Whether ``env`` (an id, an env or a vector env, wrapped or not) is an llm_gym token env."""
    if isinstance(env, (gym.Env, gym.vector.VectorEnv)):
        return isinstance(env.unwrapped, (TokenVectorEnv, TokenEnv))
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
        wrappers: a wrapper stack (:mod:`llm_gym.wrappers.stack`) applied to the envs: PPO
            learns from the shaped reward (token envs log each term as ``reward/<term>``).

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
        device: str | None = None, wrappers: Any = None,
    ) -> None:
        if config is not None and not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
        self.config = cfg = config or PPOConfig()
        self.seed, self.env_kwargs = int(seed), dict(env_kwargs or {})
        if "tokenizer" in self.env_kwargs:  # one tokenizer drives both the env and the model
            tokenizer = tokenizer if tokenizer is not None else self.env_kwargs.pop("tokenizer")
            self.env_kwargs.pop("tokenizer", None)
        self.env_id = env if isinstance(env, str) else getattr(env.spec, "id", None)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.generator = torch.Generator().manual_seed(self.seed)
        self._predict_generator = torch.Generator().manual_seed(self.seed + 1)
        self.num_timesteps = self.iteration = self.num_tokens = 0
        self.episode_log: list[EpisodeRecord] = []
        self.stop_reason: str | None = None  # why the last learn stopped early, if it did
        self._start = time.perf_counter()
        self.policy: TokenPolicy | ClassicPolicy
        self._threads: int | None = None  # torch threads while learning (None: unchanged)
        if is_token_env(env):
            lm, tokenizer = self._resolve_model(env, model, tokenizer, device, cfg)
            self.tokenizer = tokenizer
            envs, env_id, _, self.wrappers = build_token_envs(
                env, cfg.num_envs, {"tokenizer": tokenizer, **self.env_kwargs}, wrappers)
            self.env_id = self.env_id or env_id
            self.policy = TokenPolicy(envs, lm, cfg, self.seed)
            lr = 1e-5 if cfg.learning_rate is None else cfg.learning_rate
        else:
            self.tokenizer = None
            envs, self.wrappers = self._classic_envs(env, wrappers)
            self.policy = ClassicPolicy(envs, cfg, self.seed)
            # A 64-unit MLP does microseconds of work per call: intra-op threads only add
            # synchronisation (25 s instead of 0.5 s for 1280 LeftRight steps on 2 busy cores).
            lr = 3e-4 if cfg.learning_rate is None else cfg.learning_rate
            self._threads = 1
        self.envs = envs
        self.optimizer = torch.optim.AdamW(
            [p for p in self.policy.parameters() if p.requires_grad], lr=lr, eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay)

    def _classic_envs(self, env: Any, wrappers: Any) -> tuple[gym.vector.VectorEnv, list]:
        stack = parse_wrappers(wrappers)
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

    # ------------------------------------------------------------------------- training
    def learn(self, total_timesteps: int, callback: Any = None, progress_bar: bool = False,
              reset_num_timesteps: bool = True,
              resume_from: str | Path | None = None) -> PPOAgent:
        """Train for ``total_timesteps`` env steps (agent tokens on token envs); return self.

        With a ``log_dir``, metrics go to TensorBoard and ``metrics.csv``, checkpoints to
        ``<log_dir>/checkpoints`` (every ``checkpoint_every`` updates, every
        ``checkpoint_minutes`` minutes, at the end and on Ctrl-C/SIGTERM) and the
        reward curve to ``reward_curve.png``.

        Args:
            total_timesteps: env steps to train for. With ``reset_num_timesteps=False`` they
                come on top of ``num_timesteps``; with ``resume_from`` they are the total of the
                whole run, counted from its start (pass the interrupted call's value).
            callback: ``callback(metrics) -> bool | None`` after each update; False stops.
            progress_bar: show a tqdm bar.
            reset_num_timesteps: restart the step counter at 0 (SB3 semantics); pass False to
                continue an agent from :meth:`load`.
            resume_from: a save, a checkpoint or a folder of them to restore first.

        Raises:
            TrainingInterrupted: a signal asked to stop (:func:`~.training.stop_on_signals`);
                the checkpoint was saved after the current update.
        """
        cfg = self.config
        target = learn_target(self, total_timesteps, reset_num_timesteps, resume_from)
        self.stop_reason = None
        metrics_log = MetricsLogger(self.log_dir)
        failures = RewardFailures(max_consecutive=cfg.max_bad_reward_batches)
        bar = tqdm(total=target, initial=self.num_timesteps, disable=not progress_bar,
                   unit="step")
        schedule = CheckpointSchedule(cfg.checkpoint_every, cfg.checkpoint_minutes)
        try:
            with _torch_threads(self._threads), bar:
                while self.num_timesteps < target:
                    before = self.num_timesteps
                    metrics = self._iteration()
                    bar.update(min(self.num_timesteps, target) - before)
                    metrics_log.log(metrics, step=self.num_timesteps)
                    if self._rewards_broken(metrics, failures):
                        break
                    if self.log_dir is not None and schedule.due(self.iteration):
                        self.checkpoint()
                    if callback is not None and callback(metrics) is False:
                        break
                    if stop_requested():
                        break
        finally:
            metrics_log.close()
        saved = None
        if self.log_dir is not None:
            if self.stop_reason is None:  # after a reward failure the last checkpoint stays
                saved = self.checkpoint()
            plot_reward_curve(self.episode_log, self.log_dir / "reward_curve.png",
                              title=f"PPO on {self.env_id}")
        if stop_requested():
            raise TrainingInterrupted(saved, self.num_timesteps)
        return self

    def _rewards_broken(self, metrics: dict[str, float], failures: RewardFailures) -> bool:
        if "reward/dropped" not in metrics:
            return False
        stop = failures.update(int(metrics["reward/dropped"]), int(metrics["rollout/episodes"]))
        if stop:
            self.stop_reason = (f"rewards failed in {failures.consecutive} consecutive rollouts "
                                "(NaN, None or an exception); stopped")
            logger.error("%s: %s", self.stop_reason,
                         {k: v for k, v in metrics.items() if k.startswith("reward/")})
        return stop

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
            env = make_env(self.env_id, env_kwargs=self.env_kwargs, wrappers=self.wrappers)
            with _torch_threads(self._threads):
                return evaluate_agent(self, env, int(num_episodes), deterministic=deterministic,
                                      seed=seed).to_dict()
        return self._evaluate_tokens(int(num_episodes), deterministic, seed)

    def _evaluate_tokens(self, num_episodes: int, deterministic: bool,
                         seed: int) -> dict[str, Any]:
        from llm_gym.agents.evaluation import SUCCESS_THRESHOLDS

        spec = gym.spec(self.env_id) if self.env_id else None
        threshold = spec.reward_threshold if spec and spec.reward_threshold is not None else (
            SUCCESS_THRESHOLDS.get(self.env_id))
        temperature = 0.0 if deterministic else self.config.temperature
        return evaluate_policy(self.policy.net.model, self.envs, num_episodes,
                               temperature=temperature, seed=seed, threshold=threshold)

    # ------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild and resume the agent (what :meth:`save` writes)."""
        return {
            "format": "llm_gym.PPOAgent/1",
            "face": "token" if isinstance(self.policy, TokenPolicy) else "classic",
            "env_id": self.env_id, "env_kwargs": self.env_kwargs, "seed": self.seed,
            "wrappers": portable(self.wrappers), "wrapped": bool(self.wrappers),
            "config": asdict(self.config),
            "tokenizer": _tokenizer_source(self.tokenizer),
            "counters": {"num_timesteps": self.num_timesteps, "iteration": self.iteration,
                         "num_tokens": self.num_tokens},
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self._generators()),
            "episode_log": [r.to_dict() for r in self.episode_log],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` into this agent (same env and architecture)."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], self._generators())
        self.episode_log = [EpisodeRecord(**r) for r in state["episode_log"]]
        counters = state["counters"]
        self.num_timesteps, self.iteration = counters["num_timesteps"], counters["iteration"]
        self.num_tokens = counters["num_tokens"]
        drop_metrics_after(self.log_dir, self.num_timesteps)  # those steps will be logged again

    def _generators(self) -> dict[str, torch.Generator]:
        return {"sample": self.generator, "predict": self._predict_generator}

    def save_pretrained(self, out_dir: str | Path, *, adapter: bool = False,
                        overwrite: bool = False) -> Path:
        """The LLM policy (without the value head) as a transformers model folder.

        Token envs only; LoRA is merged (into a copy) unless ``adapter``. See
        :func:`llm_gym.export.save_pretrained`.
        """
        from llm_gym.export import save_pretrained

        if not isinstance(self.policy, TokenPolicy):
            raise ValueError("save_pretrained writes a language model; this PPO agent acts in a "
                             "classic env with an MLP policy (use save())")
        return save_pretrained(self.policy.net.model, self.tokenizer, out_dir, adapter=adapter,
                               overwrite=overwrite)

    def save(self, path: str | Path) -> None:
        """Write the agent to folder ``path`` (``state.pt``): weights, optimizer, RNG, counters.

        Written atomically (:func:`~llm_gym.agents.training.write_state_dir`): a crash while
        saving leaves the previous save intact.
        """
        write_state_dir(Path(path), self.state_dict())

    def checkpoint(self) -> Path | None:
        """Save a numbered checkpoint under ``<log_dir>/checkpoints`` (None without log_dir)."""
        if self.log_dir is None:
            return None
        return save_checkpoint(self.log_dir / "checkpoints", self.num_timesteps,
                               self.state_dict(), keep=self.config.keep_checkpoints)

    @classmethod
    def load(cls, path: str | Path, env: str | gym.vector.VectorEnv | None = None,
             **kwargs: Any) -> PPOAgent:
        """Rebuild a saved agent; ``learn`` on it resumes the run.

        Args:
            path: a folder written by :meth:`save`, a checkpoint, or a ``log_dir`` / folder of
                checkpoints (the newest complete one is used).
            env: the env to attach (default: the saved env id with the saved ``env_kwargs``).
            **kwargs: constructor keyword arguments to override (``log_dir``, ``device``,
                ``config``, ...).

        Token-env runs resume exactly: weights, optimizer, RNG and the data position are
        restored and rollout ``k`` is seeded from ``k``. Classic runs start fresh episodes.

        Example:
            >>> import tempfile
            >>> agent = PPOAgent("llm_gym/LeftRight-v0", config=PPOConfig(num_steps=4))
            >>> folder = tempfile.mkdtemp() + "/ppo"
            >>> agent.save(folder)
            >>> PPOAgent.load(folder).num_timesteps
            0
        """
        state = load_checkpoint(path)
        if state.get("format") != "llm_gym.PPOAgent/1":
            raise ValueError(f"{path} holds no PPOAgent checkpoint (format {state.get('format')})")
        options: dict[str, Any] = {
            "config": PPOConfig.from_dict(state["config"]), "env_kwargs": state["env_kwargs"],
            "seed": state["seed"], **kwargs,
        }
        options["wrappers"] = saved_stack(state, kwargs.get("wrappers"), path)
        env = env if env is not None else state["env_id"]
        if env is None:
            raise ValueError("the agent was built on an env object; pass env= to load it")
        if state["face"] == "token":
            options.setdefault("tokenizer", load_tokenizer(state["tokenizer"]))
            model = build_model(state["policy"]["model_config"], options.get("device") or
                                _default_device())
            agent = cls(env, model, **options)
        else:
            agent = cls(env, **options)
        agent.load_state(state)
        return agent


def _tokenizer_source(tokenizer: Any) -> str | None:
    """What :func:`~llm_gym.tokenizers.load_tokenizer` needs to load ``tokenizer`` again."""
    if tokenizer is None:
        return None
    return "byte" if isinstance(tokenizer, ByteTokenizer) else tokenizer.name


def _default_device() -> str:
    from llm_gym.models import default_device

    return default_device()


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
