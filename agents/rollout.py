"""Batched rollouts of a policy through a token vector env, with a KV cache.

One env step is one token. The rollout asks the :class:`~llm_gym.agents.policy.Policy` (a plain
causal LM is wrapped in :class:`~llm_gym.agents.policy.HFPolicy`, whose KV cache makes a step
O(1) model work per token) for the next-token logits of every unfinished row, feeding it only
the tokens that are new in each row's conversation: the token the agent just wrote plus any
tokens a multi-turn env appended (its reply, with the chat template's delimiters). The one
sampler (:mod:`llm_gym.agents.sampling`) draws on the model's device, with the env's action mask
built there from allowed token ids.

The result is a :class:`RolloutBatch` of dense, token-aligned tensors that both the GRPO and the
PPO trainer consume; :func:`sequence_logprobs` recomputes the same log-probs in the update.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from llm_gym.agents.action_masks import ActionMasks
from llm_gym.agents.policy import Policy, as_policy
from llm_gym.agents.sampling import mask_from_token_ids, row_uniforms, sample_tokens
from llm_gym.vector import row_info

__all__ = ["RolloutBatch", "collect_rollouts", "sequence_logprobs", "stream_seed"]


@dataclass
class RolloutBatch:
    """One episode per row, as right-padded ``(B, T)`` tensors (T = longest conversation).

    Attributes:
        input_ids: conversation token ids (prompt, agent tokens, env-injected tokens).
        attention_mask: 1 on real tokens.
        agent_mask: 1 on tokens the agent wrote (the only tokens trained on).
        old_logprobs: log-prob of token t under the distribution sampled from (temperature and
            the env's action mask applied, so it equals :func:`sequence_logprobs` given
            ``action_masks``), 0 off agent tokens.
        rewards: env reward on the token whose step returned it (dense, token-aligned).
        returns: ``(B,)`` episode return (sum of rewards).
        task_index: ``(B,)`` task item of each row (-1 when the env does not say).
        terminated: ``(B,)`` bool.
        truncated: ``(B,)`` bool.
        valid: ``(B,)`` bool, False when the reward failed (``info["reward_error"]``) or was
            NaN/inf: the sample must be dropped.
        num_agent_tokens: agent tokens in the batch (= env steps taken).
        infos: final ``info`` of each row.
        rollout_s: wall time of the rollout; model_s and env_s split it.
        action_masks: the env's ``action_mask`` at every agent token (:class:`ActionMasks`), or
            None when the env has none.
        env_seeds: ``(B,)`` the ``reset`` seed of each row (-1 when it was reset unseeded).
        weight_version: the policy's version (updates applied) that sampled the batch; rollout
            workers on Ray say which weights they held, so a stale batch would show.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    agent_mask: torch.Tensor
    old_logprobs: torch.Tensor
    rewards: torch.Tensor
    returns: torch.Tensor
    task_index: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    valid: torch.Tensor
    num_agent_tokens: int
    infos: list[dict[str, Any]] = field(default_factory=list)
    rollout_s: float = 0.0
    model_s: float = 0.0
    env_s: float = 0.0
    action_masks: ActionMasks | None = None
    env_seeds: torch.Tensor | None = None
    weight_version: int = 0

    @property
    def num_rows(self) -> int:
        """Number of episodes (B)."""
        return int(self.input_ids.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` agent tokens per episode."""
        return self.agent_mask.sum(dim=1)

    def select(self, rows: torch.Tensor | np.ndarray | list[int]) -> RolloutBatch:
        """A batch of the given rows only, trimmed to their longest conversation."""
        rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        kept = {f.name: getattr(self, f.name)[rows] for f in fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}
        width = int(kept["attention_mask"].sum(dim=1).max()) if len(rows) else 0
        for name in _TOKEN_FIELDS:
            kept[name] = kept[name][:, :width]
        masks = None if self.action_masks is None else self.action_masks.select(rows)
        return RolloutBatch(
            **kept, num_agent_tokens=int(kept["agent_mask"].sum()),
            infos=[self.infos[int(i)] for i in rows], rollout_s=self.rollout_s,
            model_s=self.model_s, env_s=self.env_s, action_masks=masks,
            weight_version=self.weight_version,
        )

    @classmethod
    def concat(cls, batches: list[RolloutBatch], pad_token_id: int) -> RolloutBatch:
        """Stack batches row-wise, right-padding the token tensors to the widest one."""
        if not batches:
            raise ValueError("concat needs at least one RolloutBatch")
        width = max(b.input_ids.shape[1] for b in batches)
        out: dict[str, Any] = {}
        for f in fields(cls):
            first = getattr(batches[0], f.name)
            if not isinstance(first, torch.Tensor):
                continue
            parts = [getattr(b, f.name) for b in batches]
            if f.name in _TOKEN_FIELDS:
                fill = pad_token_id if f.name == "input_ids" else 0
                parts = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=fill)
                         for p in parts]
            out[f.name] = torch.cat(parts)
        return cls(
            **out, num_agent_tokens=sum(b.num_agent_tokens for b in batches),
            infos=[info for b in batches for info in b.infos],
            rollout_s=sum(b.rollout_s for b in batches), model_s=sum(b.model_s for b in batches),
            env_s=sum(b.env_s for b in batches), action_masks=_concat_masks(batches),
            weight_version=min(b.weight_version for b in batches),  # the oldest weights in it
        )

    def to(self, device: torch.device | str) -> RolloutBatch:
        """The batch with every tensor (action masks included) on ``device``."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        masks = None if self.action_masks is None else self.action_masks.to(device)
        return replace(self, **moved, action_masks=masks)


def _concat_masks(batches: list[RolloutBatch]) -> ActionMasks | None:
    if all(b.action_masks is None for b in batches):
        return None
    if any(b.action_masks is None for b in batches):
        raise ValueError("concat got batches with and without action_masks; concatenate "
                         "rollouts of the same env only")
    return ActionMasks.concat([b.action_masks for b in batches], [b.num_rows for b in batches])


_TOKEN_FIELDS = ("input_ids", "attention_mask", "agent_mask", "old_logprobs", "rewards")


class _Recorder:
    """Numpy buffers filled during a rollout (per-step work stays in numpy)."""

    def __init__(self, num_envs: int, max_length: int, vocab_size: int) -> None:
        self.old_logprobs = np.zeros((num_envs, max_length), dtype=np.float32)
        self.rewards = np.zeros((num_envs, max_length), dtype=np.float32)
        self.terminated = np.zeros(num_envs, dtype=bool)
        self.truncated = np.zeros(num_envs, dtype=bool)
        self.infos: list[dict[str, Any]] = [{} for _ in range(num_envs)]
        self.task_index = np.full(num_envs, -1, dtype=np.int64)
        # Each episode's sum of every named reward term (shaping wrappers' reward_components).
        self.components: dict[str, np.ndarray] = {}
        # Action masks at the agent's tokens, per step: (rows, positions, entries, token_ids).
        self.masks: list[tuple[np.ndarray, ...]] = []
        self.num_masks = 0
        self.vocab_size = vocab_size

    def add_masks(self, active: np.ndarray, positions: np.ndarray,
                  pairs: tuple[np.ndarray, np.ndarray]) -> None:
        """Record this step's allowed ``(row, token_id)`` pairs of the ``active`` rows."""
        entry_of_row = np.full(len(self.terminated), -1, dtype=np.int64)
        entry_of_row[active] = self.num_masks + np.arange(len(active))
        entries = entry_of_row[pairs[0]]
        kept = entries >= 0
        self.masks.append((active, positions, entries[kept], pairs[1][kept]))
        self.num_masks += len(active)

    def action_masks(self) -> ActionMasks | None:
        if not self.masks:
            return None
        parts = (torch.from_numpy(np.concatenate(p).astype(np.int64, copy=False))
                 for p in zip(*self.masks, strict=True))
        return ActionMasks(*parts, vocab_size=self.vocab_size)


def collect_rollouts(
    policy: Policy | torch.nn.Module, envs: Any, *, indices: Any = None, seed: Any = None,
    temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
    first_row: int = 0,
) -> RolloutBatch:
    """Play exactly one episode in every row of a DISABLED-autoreset token vector env.

    Args:
        policy: a :class:`~llm_gym.agents.policy.Policy`, or a causal LM (``torch.nn.Module``),
            which is wrapped in :class:`~llm_gym.agents.policy.HFPolicy`.
        envs: a :class:`llm_gym.vector.TokenVectorEnv` built with ``autoreset_mode="Disabled"``.
        indices: task item per row (or one for all), passed as ``reset(options={"index": ...})``;
            GRPO repeats each prompt's index G times.
        seed: ``reset`` seed (int: row i gets ``seed + i``).
        temperature: sampling temperature; ``0`` means greedy (argmax).
        top_p: nucleus sampling threshold (1 disables it).
        generator: torch generator for sampling (reproducible rollouts): one number is drawn
            from it per rollout, the seed of every row's own stream of draws
            (:func:`~llm_gym.agents.sampling.row_uniforms`).
        first_row: these rows are rows ``first_row, first_row + 1, ...`` of a larger batch (a
            rollout worker's slice): an int ``seed`` and the sampling streams continue from
            there, so with the same ``generator`` state a slice samples exactly what those rows
            of the whole batch sample.

    Logits beyond ``envs.single_action_space.n`` are never sampled, and the env's action mask
    restricts sampling (constrained decoding). A :class:`~llm_gym.vector.TokenVectorEnv` hands
    its masks over as allowed token ids (:meth:`~llm_gym.vector.TokenVectorEnv.allowed_tokens`),
    scattered into a mask on the model's device, and leaves ``action_mask`` out of the
    observations while the rollout steps it; another vector env's ``obs["action_mask"]`` is used
    as it comes.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> from llm_gym.models import tiny_model
        >>> envs = gym.make_vec("llm_gym/LeftRightText-v0", 2,
        ...     vectorization_mode="vector_entry_point", autoreset_mode="Disabled")
        >>> batch = collect_rollouts(tiny_model()[0], envs, seed=0)
        >>> batch.num_rows
        2
    """
    _check_envs(envs)
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    policy = as_policy(policy)
    compact = _compact_masks(envs)
    seeds = _row_seeds(seed, envs.num_envs, first_row)
    streams = stream_seed(generator)
    with compact or nullcontext():
        batch = _play(policy, envs, indices, seeds, temperature, top_p,
                      range(first_row, first_row + envs.num_envs), streams, compact is not None)
    batch.env_seeds = torch.tensor([-1 if s is None else s for s in seeds], dtype=torch.int64)
    return batch


def stream_seed(generator: torch.Generator | None) -> int:
    """The seed of a rollout's per-row sampling streams: one draw from ``generator``.

    One draw per rollout, whatever the batch's length or split, so a rollout worker's slice and
    the whole batch leave the caller's generator in the same state.
    """
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def _row_seeds(seed: Any, num_rows: int, first_row: int) -> list[int | None]:
    """Each row's ``reset`` seed: ``seed + first_row + i`` for an int, else as given."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be an int or one per row, got {seed!r}")
    if seed is None or isinstance(seed, (int, np.integer)):
        return [None if seed is None else int(seed) + first_row + i for i in range(num_rows)]
    seeds = [None if s is None else int(s) for s in seed]
    if len(seeds) != num_rows:
        raise ValueError(f"got {len(seeds)} seeds for {num_rows} rows; pass one per row")
    return seeds


def _play(policy: Policy, envs: Any, indices: Any, seeds: list[int | None], temperature: float,
          top_p: float, rows: range, stream_seed: int, compact: bool) -> RolloutBatch:
    start = time.perf_counter()
    options = None if indices is None else {"index": _as_index_option(indices)}
    obs, info = envs.reset(seed=seeds, options=options)
    vocab = int(envs.single_action_space.n)
    rec = _Recorder(envs.num_envs, obs["input_ids"].shape[1], vocab)
    if "task_index" in info:
        rec.task_index[:] = [-1 if v is None else int(v) for v in info["task_index"]]
    cache = policy.start(envs.num_envs, vocab)
    # A row takes at most one step per token of room, so this table covers every step.
    draws = None if temperature == 0 else row_uniforms(
        stream_seed, rows, obs["input_ids"].shape[1]).to(policy.device)
    model_s = env_s = 0.0
    step = 0
    fed = np.zeros(envs.num_envs, dtype=np.int64)  # tokens of each row already in the cache
    done = np.zeros(envs.num_envs, dtype=bool)
    while not done.all():
        t0 = time.perf_counter()
        lengths = obs["attention_mask"].sum(axis=1).astype(np.int64)
        logits = policy.next_token_logits(cache, obs["input_ids"], fed, lengths, done)
        fed = lengths
        pairs = envs.unwrapped.allowed_tokens() if compact else _dense_pairs(obs)
        actions, logprobs = _sample(logits, pairs, done, temperature, top_p,
                                    None if draws is None else draws[:, step])
        step += 1
        t1 = time.perf_counter()
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        t2 = time.perf_counter()
        active = np.flatnonzero(~done)
        rec.old_logprobs[active, lengths[active]] = logprobs[active]
        rec.rewards[active, lengths[active]] = rewards[active]
        if pairs is not None:
            rec.add_masks(active, lengths[active], pairs)
        if "reward_components" in infos:
            _add_components(rec, infos["reward_components"], ~done)
        done = _finish_rows(rec, done, terminated, truncated, infos)
        model_s, env_s = model_s + t1 - t0, env_s + t2 - t1
    return _to_batch(obs, rec, time.perf_counter() - start, model_s, env_s)


def _compact_masks(envs: Any) -> AbstractContextManager | None:
    """The env's ``compact_action_masks()`` block when it constrains the vocabulary."""
    base = envs.unwrapped
    if not getattr(base, "constrains_vocabulary", False) or not hasattr(
            base, "compact_action_masks"):
        return None
    return base.compact_action_masks()


def _dense_pairs(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, token_ids)`` of a vector env that only gives a dense ``obs["action_mask"]``."""
    mask = obs.get("action_mask")
    return None if mask is None else np.nonzero(np.asarray(mask))


def _check_envs(envs: Any) -> None:
    mode = getattr(envs, "metadata", {}).get("autoreset_mode")
    if mode is None or AutoresetMode(mode) != AutoresetMode.DISABLED:
        raise ValueError(
            f"collect_rollouts needs a vector env with autoreset_mode='Disabled', got {mode!r}; "
            "build it with gym.make_vec(id, n, vectorization_mode='vector_entry_point', "
            "autoreset_mode='Disabled')"
        )


def _as_index_option(indices: Any) -> Any:
    if isinstance(indices, (int, np.integer)):
        return int(indices)
    return [None if i is None else int(i) for i in indices]


def _sample(
    logits: torch.Tensor, pairs: tuple[np.ndarray, np.ndarray] | None, done: np.ndarray,
    temperature: float, top_p: float, uniforms: torch.Tensor | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Actions and their log-probs as sampled (the env's mask applied).

    Sampling runs on the logits' device (:func:`~llm_gym.agents.sampling.sample_tokens`); the
    mask is built there from the allowed ``(row, token_id)`` pairs, and only the ``(B,)`` ids
    and log-probs come back. Done rows get token 0, which the env ignores.
    """
    allowed = None
    if pairs is not None:
        allowed = mask_from_token_ids(torch.from_numpy(pairs[0]), torch.from_numpy(pairs[1]),
                                      logits.shape[0], logits.shape[1], logits.device)
    ids, logprobs = sample_tokens(logits, temperature=temperature, top_p=top_p,
                                  uniforms=uniforms, allowed=allowed)
    actions = ids.cpu().numpy().astype(np.int64)
    actions[done] = 0
    return actions, logprobs.cpu().numpy()


def _add_components(rec: _Recorder, components: dict[str, Any], active: np.ndarray) -> None:
    for name, values in components.items():
        if name.startswith("_"):
            continue
        rows = active & components.get(f"_{name}", np.ones(len(active), dtype=bool))
        total = rec.components.setdefault(name, np.zeros(len(active)))
        total[rows] += np.asarray(values, dtype=np.float64)[rows]


def _finish_rows(rec: _Recorder, done: np.ndarray, terminated: np.ndarray,
                 truncated: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
    finished = (terminated | truncated) & ~done
    for i in np.flatnonzero(finished):
        rec.terminated[i], rec.truncated[i] = bool(terminated[i]), bool(truncated[i])
        rec.infos[i] = row_info(infos, int(i))
        if rec.components:
            rec.infos[i]["episode_reward_components"] = {
                name: float(total[i]) for name, total in rec.components.items()}
    return done | finished


def _to_batch(obs: dict[str, np.ndarray], rec: _Recorder, rollout_s: float, model_s: float,
              env_s: float) -> RolloutBatch:
    width = int(obs["attention_mask"].sum(axis=1).max())
    agent_mask = torch.from_numpy(obs["agent_mask"][:, :width].astype(np.int64))
    rewards = torch.from_numpy(rec.rewards[:, :width].copy())
    return RolloutBatch(
        input_ids=torch.from_numpy(obs["input_ids"][:, :width].copy()),
        attention_mask=torch.from_numpy(obs["attention_mask"][:, :width].astype(np.int64)),
        agent_mask=agent_mask,
        old_logprobs=torch.from_numpy(rec.old_logprobs[:, :width].copy()) * agent_mask,
        rewards=rewards,
        returns=rewards.double().sum(dim=1).float(),
        task_index=torch.from_numpy(rec.task_index),
        terminated=torch.from_numpy(rec.terminated),
        truncated=torch.from_numpy(rec.truncated),
        valid=torch.isfinite(rewards).all(dim=1) & torch.tensor(
            ["reward_error" not in info for info in rec.infos], dtype=torch.bool),
        num_agent_tokens=int(agent_mask.sum()),
        infos=rec.infos, rollout_s=rollout_s, model_s=model_s, env_s=env_s,
        action_masks=rec.action_masks(),
    )


def sequence_logprobs(
    model: Policy | torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
    vocab_size: int | None = None, temperature: float = 1.0, return_entropy: bool = False,
    action_masks: ActionMasks | None = None, positions: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``(B, T)`` log-prob of token t given tokens < t (position 0 and padding get 0).

    Computed at ``positions`` only, without a full-vocabulary ``log_softmax`` (see
    :func:`llm_gym.agents.logprobs.chosen_logprobs`).

    Args:
        model: the causal LM, or a :class:`~llm_gym.agents.policy.Policy` (it scores);
            gradients flow when called outside ``torch.no_grad``.
        input_ids: ``(B, T)`` right-padded token ids.
        attention_mask: ``(B, T)`` 1 on real tokens.
        vocab_size: drop logits at or beyond it (the env's action space), as the rollout does.
        temperature: divide logits by it, as the rollout's sampling did (0 is treated as 1).
        return_entropy: also return the ``(B, T)`` entropy of the predicting distribution.
        action_masks: the rollout's :attr:`RolloutBatch.action_masks` (rows matching
            ``input_ids``): forbidden tokens get logit -inf at those positions, so the log-probs
            are those of the masked distribution the rollout sampled from.
        positions: ``(B, T)`` bool, the tokens to score (the agent's); default every real one.
            Elsewhere the result is 0.

    Example:
        >>> from llm_gym.models import tiny_model
        >>> model, _ = tiny_model()
        >>> ids = torch.tensor([[72, 105, 33]])
        >>> sequence_logprobs(model, ids, torch.ones_like(ids)).shape
        torch.Size([1, 3])
    """
    return as_policy(model).score(input_ids, attention_mask, positions=positions,
                                  vocab_size=vocab_size, temperature=temperature,
                                  return_entropy=return_entropy, masks=action_masks)
