"""The two faces of PPO: how a policy rolls out, scores its steps and acts.

:class:`TokenPolicy` (token envs) plays one whole conversation per env row with the shared
KV-cached rollout, then scores it in one forward pass (log-probs, values, reference log-probs).
:class:`ClassicPolicy` (classic envs) steps a Gymnasium vector env CleanRL-style. Both return a
:class:`~llm_gym.agents.ppo_algorithm.PPOBatch` for the same update.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from llm_gym.agents.action_masks import ActionMasks
from llm_gym.agents.base import episode_success
from llm_gym.agents.curriculum import task_sampler
from llm_gym.agents.metrics import reward_counters
from llm_gym.agents.ppo_algorithm import (
    PPOBatch,
    PPOConfig,
    compute_gae,
    kl_penalized_rewards,
    token_gae,
)
from llm_gym.agents.rollout import collect_rollouts, sequence_logprobs
from llm_gym.agents.sampling import device_generator, sample_tokens
from llm_gym.agents.token_envs import first_env
from llm_gym.agents.trainer import Collected, FinishedEpisode
from llm_gym.agents.value_head import (
    CausalLMWithValueHead,
    MLPActorCritic,
    encode_observations,
    observation_size,
)
from llm_gym.vector import TokenVectorEnv, row_info

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- classic face


class ClassicPolicy:
    """The classic face: an MLP actor-critic rolled out through a Gymnasium vector env.

    The vector env must use ``AutoresetMode.SAME_STEP`` (the final observation of a truncated
    episode is then in ``info["final_obs"]``, to bootstrap from). Episodes run on across
    rollouts, as in CleanRL.
    """

    def __init__(self, envs: gym.vector.VectorEnv, config: PPOConfig, seed: int) -> None:
        if not isinstance(envs.single_action_space, gym.spaces.Discrete):
            raise TypeError(
                f"PPOAgent's MLP policy needs a Discrete action space, got "
                f"{envs.single_action_space!r}"
            )
        if envs.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("the classic vector env must use autoreset_mode=SAME_STEP")
        self.envs, self.config = envs, config
        self.space = envs.single_observation_space
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = MLPActorCritic(self.space, int(envs.single_action_space.n),
                                      config.hidden_size)
        self.obs: np.ndarray | None = None
        self.seed = seed
        self._returns = np.zeros(envs.num_envs)
        self._lengths = np.zeros(envs.num_envs, dtype=np.int64)

    def parameters(self) -> Any:
        """The trainable parameters."""
        return self.net.parameters()

    def state_dict(self) -> dict[str, Any]:
        """The network's weights (for checkpoints)."""
        return {"net": self.net.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore weights; the envs start fresh episodes at the next rollout."""
        self.net.load_state_dict(state["net"])
        self.obs = None

    def evaluate(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``(logprobs, entropy, values)`` of the stored actions, each ``(u, 1)``."""
        logits, values = self.net(inputs["obs"])
        dist = torch.distributions.Categorical(logits=logits)
        return (dist.log_prob(inputs["actions"])[:, None], dist.entropy()[:, None],
                values[:, None])

    def act(self, obs: np.ndarray, deterministic: bool,
            generator: torch.Generator | None = None) -> np.ndarray:
        """Actions for a batch of raw observations."""
        with torch.no_grad():
            logits, _ = self.net(encode_observations(self.space, obs))
        ids, _ = sample_tokens(logits, temperature=0.0 if deterministic else 1.0,
                               generator=generator)
        return ids.numpy()

    def collect(self, iteration: int, generator: torch.Generator) -> Collected:
        """Roll ``num_steps`` steps in every env and compute the advantages.

        ``iteration`` (the agent's update count) seeds the first reset; the agent's counters and
        episode log are left to the caller, which applies the returned :class:`Collected`.
        """
        cfg, envs = self.config, self.envs
        if self.obs is None:  # first rollout (or first after a load): fresh, seeded episodes
            self.obs, _ = envs.reset(seed=self.seed + iteration * envs.num_envs)
            self._returns[:], self._lengths[:] = 0.0, 0
        steps, n = cfg.num_steps, envs.num_envs
        obs_buf = torch.zeros(steps, n, observation_size(self.space))
        actions = torch.zeros(steps, n, dtype=torch.long)
        logprobs, values, rewards = (torch.zeros(steps, n) for _ in range(3))
        next_values, dones = torch.zeros(steps, n), torch.zeros(steps, n)
        episodes: list[FinishedEpisode] = []
        for t in range(steps):
            x = encode_observations(self.space, self.obs)
            with torch.no_grad():
                logits, value = self.net(x)
            action, logprobs[t] = sample_tokens(logits, generator=generator)
            self.obs, reward, term, trunc, info = envs.step(action.numpy())
            obs_buf[t], actions[t], values[t] = x, action, value
            rewards[t] = torch.as_tensor(reward, dtype=torch.float32)
            dones[t] = torch.as_tensor(term | trunc, dtype=torch.float32)
            next_values[t] = self._final_values(term, trunc, info)
            episodes += self._finished(reward, term, trunc, info, (t + 1) * n)
        with torch.no_grad():
            _, last = self.net(encode_observations(self.space, self.obs))
        following = torch.cat([values[1:], last[None]], 0)
        # Inside an episode the next state's value is the next step's; where an episode ended,
        # _final_values already holds 0 (terminated) or V(final observation) (truncated).
        next_values = torch.where(dones.bool(), next_values, following)
        adv, ret = compute_gae(rewards.T, values.T, next_values.T, dones.T,
                               cfg.gamma, cfg.gae_lambda)
        flat = steps * n
        batch = PPOBatch(
            inputs={"obs": obs_buf.transpose(0, 1).reshape(flat, -1),
                    "actions": actions.T.reshape(flat)},
            old_logprobs=logprobs.T.reshape(flat, 1), old_values=values.T.reshape(flat, 1),
            advantages=adv.reshape(flat, 1), returns=ret.reshape(flat, 1),
            mask=torch.ones(flat, 1),
        )
        return Collected(batch, {"rollout/steps": float(flat)}, steps=flat, episodes=episodes)

    def _final_values(self, term: np.ndarray, trunc: np.ndarray,
                      info: dict[str, Any]) -> torch.Tensor:
        out = torch.zeros(len(term))
        rows = np.flatnonzero(trunc & ~term)
        if len(rows):
            final = np.stack([info["final_obs"][i] for i in rows])
            with torch.no_grad():
                _, value = self.net(encode_observations(self.space, final))
            out[torch.as_tensor(rows)] = value
        return out

    def _finished(self, reward: np.ndarray, term: np.ndarray, trunc: np.ndarray,
                  info: dict[str, Any], steps: int) -> list[FinishedEpisode]:
        self._returns += reward
        self._lengths += 1
        out = []
        for i in np.flatnonzero(term | trunc):
            final_info = row_info(info.get("final_info", {}), int(i))
            ret = float(self._returns[i])
            out.append(FinishedEpisode(
                steps=steps, tokens=0, episode_return=ret, length=int(self._lengths[i]),
                success=episode_success(final_info, ret, True), finished_at=time.perf_counter()))
            self._returns[i], self._lengths[i] = 0.0, 0
        return out


# ----------------------------------------------------------------------------- token face


class TokenPolicy:
    """The RLHF face: a causal LM with a value head, rolled out one episode per env row.

    Args:
        envs: a :class:`~llm_gym.vector.TokenVectorEnv` with ``autoreset_mode=DISABLED``.
        model: the causal LM (trained in place).
        config: the PPO config (``temperature``, ``kl_coef``, ``num_minibatches``).
        seed: rollout ``k`` resets the envs with seed ``seed + k * num_envs``, so a resumed run
            sees the same episodes as an uninterrupted one.
    """

    def __init__(self, envs: TokenVectorEnv, model: torch.nn.Module, config: PPOConfig,
                 seed: int) -> None:
        self.envs, self.config, self.seed = envs, config, seed
        # A finite task pool is walked in seeded shuffled epochs (no prompt replayed or skipped
        # on resume), or drawn by a curriculum (issue 23); unbounded procedural envs draw from
        # the per-rollout reset seed unless a curriculum gives them a pool.
        num_tasks = first_env(envs).num_tasks
        self.sampler = None
        if num_tasks is not None or config.curriculum is not None:
            self.sampler = task_sampler(num_tasks, seed, config.curriculum)
        self.rollout_writer: Any = None  # stores every episode (rollout_records.py) when set
        self.net = CausalLMWithValueHead(model, int(envs.single_action_space.n),
                                         config.temperature)
        self.device = next(model.parameters()).device
        # Frozen copy of the starting policy for the KL penalty (none when kl_coef == 0; with
        # LoRA the reference is the same model with its adapter disabled, no copy).
        self.ref: torch.nn.Module | None = None
        if config.kl_coef > 0 and not hasattr(model, "disable_adapter"):
            self.ref = copy.deepcopy(model).requires_grad_(False).eval()

    def parameters(self) -> Any:
        """The trainable parameters (LM and value head)."""
        return self.net.parameters()

    def state_dict(self) -> dict[str, Any]:
        """Weights of the LM, value head and reference, the LM's config, the data position."""
        return {
            "model_config": self.net.model.config.to_dict(),
            "model": self.net.model.state_dict(),
            "value_head": self.net.value_head.state_dict(),
            "reference": None if self.ref is None else self.ref.state_dict(),
            "sampler": None if self.sampler is None else self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.net.model.load_state_dict(state["model"])
        self.net.value_head.load_state_dict(state["value_head"])
        if self.ref is not None and state["reference"] is not None:
            self.ref.load_state_dict(state["reference"])
        if self.sampler is not None and state["sampler"] is not None:
            self.sampler.load_state_dict(state["sampler"])

    def evaluate(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """``(logprobs, entropy, values)`` of every token of the conversations, each ``(u, T)``."""
        return self.net(inputs["input_ids"], inputs["attention_mask"],
                        action_masks=inputs.get("action_masks"))

    def score(self, ids: torch.Tensor, attention: torch.Tensor,
              action_masks: ActionMasks | None = None) -> tuple[torch.Tensor, ...]:
        """Log-probs, values and reference log-probs of a rollout, chunked, without grad.

        Policy and reference are both scored under the rollout's action masks, so the per-token
        KL compares the distributions that were sampled from.
        """
        size = -(-len(ids) // self.config.num_minibatches)
        parts: list[tuple[torch.Tensor, ...]] = []
        with torch.no_grad():
            for start in range(0, len(ids), size):
                rows = torch.arange(start, min(start + size, len(ids)))
                chunk, mask = ids[start:start + size], attention[start:start + size]
                masks = None if action_masks is None else action_masks.select(rows)
                logprobs, _, values = self.net(chunk, mask, action_masks=masks)
                parts.append((logprobs, values, self._reference(logprobs, chunk, mask, masks)))
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))

    def _reference(self, logprobs: torch.Tensor, ids: torch.Tensor, attention: torch.Tensor,
                   masks: ActionMasks | None) -> torch.Tensor:
        """The reference's log-probs (the policy's own when there is no KL penalty)."""
        if self.config.kl_coef == 0:
            return logprobs
        kwargs = {"vocab_size": self.net.num_actions, "temperature": self.config.temperature,
                  "action_masks": masks}
        if self.ref is not None:
            return sequence_logprobs(self.ref, ids, attention, **kwargs)
        with self.net.model.disable_adapter():  # LoRA: the base model is the reference
            return sequence_logprobs(self.net.model, ids, attention, **kwargs)

    def collect(self, iteration: int, generator: torch.Generator) -> Collected:
        """Play one episode per env row, then score it and compute the token advantages.

        Rollout ``iteration`` resets the envs with seed ``seed + iteration * num_envs``; the
        agent's counters and episode log are left to the caller (:class:`Collected`).
        """
        cfg = self.config
        n = self.envs.num_envs
        rollout = collect_rollouts(
            self.net.model, self.envs, seed=self.seed + iteration * n,
            indices=None if self.sampler is None else self.sampler.take(n),
            temperature=cfg.temperature, generator=generator,
        )
        if self.sampler is not None:
            self.sampler.observe_rollout(rollout)
        if self.rollout_writer is not None:
            self.rollout_writer.write(rollout, update=iteration)
        ids = rollout.input_ids.to(self.device)
        attention = rollout.attention_mask.to(self.device)
        # A row whose reward was NaN/inf is dropped from training, not zeroed (RELIABILITY.md).
        valid = rollout.valid.to(self.device)
        agent_mask = rollout.agent_mask.to(self.device).float() * valid[:, None]
        masks = None if rollout.action_masks is None else rollout.action_masks.to(self.device)
        old_logprobs, old_values, ref_logprobs = self.score(ids, attention, masks)
        rewards = torch.nan_to_num(rollout.rewards.to(self.device).float(), 0.0, 0.0, 0.0)
        rewards, kl = kl_penalized_rewards(rewards, old_logprobs, ref_logprobs, agent_mask,
                                           cfg.kl_coef)
        advantages, returns = token_gae(rewards, old_values, agent_mask, cfg.gamma,
                                        cfg.gae_lambda)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": attention}
        if masks is not None:  # PPOBatch.select slices it by rows like the tensors
            inputs["action_masks"] = masks
        batch = PPOBatch(inputs, old_logprobs,
                         old_values, advantages, returns, agent_mask)
        drift = (old_logprobs - rollout.old_logprobs.to(self.device)).abs() * agent_mask
        metrics = {
            "train/kl": float(kl.sum() / agent_mask.sum().clamp(min=1)),
            "rollout/tokens": float(attention.sum()),
            "rollout/logprob_drift": float(drift.max()),
            **reward_counters(rollout.infos, rollout.valid.tolist()),
            **({} if self.sampler is None else self.sampler.metrics()),
        }
        episodes = _finished_rows(rollout)
        return Collected(batch, metrics, steps=episodes[-1].steps if episodes else 0,
                         tokens=episodes[-1].tokens if episodes else 0, episodes=episodes,
                         samples=n)

    def act(self, obs: dict[str, np.ndarray], deterministic: bool,
            generator: torch.Generator | None = None) -> np.ndarray:
        """Next tokens for a batch of token-env observations (``action_mask`` respected)."""
        ids = torch.as_tensor(obs["input_ids"], device=self.device)
        attention = torch.as_tensor(obs["attention_mask"], device=self.device)
        with torch.no_grad():
            logits = self.net.next_token_logits(ids, attention)
        allowed = None
        if "action_mask" in obs:
            allowed = torch.as_tensor(obs["action_mask"]).bool()
        ids, _ = sample_tokens(logits, temperature=0.0 if deterministic else 1.0,
                               allowed=allowed,
                               generator=device_generator(generator, logits.device))
        return ids.cpu().numpy()


def _finished_rows(rollout: Any) -> list[FinishedEpisode]:
    """Every row of a token rollout as a finished episode (broken rewards included)."""
    lengths = rollout.agent_mask.sum(1).tolist()
    tokens = rollout.attention_mask.sum(1).tolist()
    out: list[FinishedEpisode] = []
    steps = seen = 0
    for i, info in enumerate(rollout.infos):
        steps, seen = steps + int(lengths[i]), seen + int(tokens[i])
        ret = float(rollout.returns[i])
        # The unshaped return of a shaped episode (as GRPO's rollout records it), else None.
        env_return = info.get("episode_reward_components", {}).get("env")
        out.append(FinishedEpisode(
            steps=steps, tokens=seen, episode_return=ret, length=int(lengths[i]),
            success=episode_success(info, ret, True), finished_at=time.perf_counter(),
            env_return=None if env_return is None else float(env_return)))
    return out


def build_model(model_config: dict[str, Any], device: str | torch.device | None = None,
                dtype: torch.dtype | None = None) -> torch.nn.Module:
    """An untrained causal LM with the architecture of a saved ``config.to_dict()``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**model_config)
    model = AutoModelForCausalLM.from_config(config)
    return model.to(device=device, dtype=dtype).eval()
