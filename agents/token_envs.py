"""The batched token env of an LLM trainer (GRPO, PPO), wrapped, and its evaluation.

Both trainers take an env id plus a wrapper stack, a (wrapped) vector env, or a wrapped single
env, and train on what the wrappers return (DESIGN.md, Wrappers): :func:`build_token_envs` turns
any of those into one DISABLED-autoreset batch through :func:`llm_gym.wrappers.stack.make_env`.
:func:`play_items` plays one episode per given task item on such a batch, in slices of its rows
(the trainers' evaluation and ``llm-gym eval`` both sample through it); :func:`evaluate_policy`
plays greedy episodes with it and reports the shaped return beside the unshaped task metrics (the
``env`` reward term, success, response length), because a shaped return alone hides reward
hacking.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from llm_gym.agents.base import episode_success
from llm_gym.agents.evaluation import EvalResult
from llm_gym.agents.rollout import RolloutBatch, collect_rollouts
from llm_gym.vector import TokenVectorEnv
from llm_gym.wrappers.stack import (
    WrapperStack,
    apply_wrappers,
    make_env,
    vector_wrappers_of,
    wrappers_of,
)


def first_env(envs: VectorEnv) -> Any:
    """The first sub-env (unwrapped) of a possibly wrapped vector env: its task and tokenizer.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> first_env(gym.make_vec("llm_gym/Arithmetic-v0", 2,
        ...                        vectorization_mode="vector_entry_point")).max_new_tokens
        16
    """
    subs = getattr(envs.unwrapped, "envs", None)
    if not subs:
        raise TypeError(f"{envs.unwrapped} has no sub-envs in this process; build the batch "
                        "with gym.make_vec(id, n, vectorization_mode='vector_entry_point')")
    return subs[0].unwrapped


def build_token_envs(
    env: str | gym.Env | VectorEnv, rows: int, env_kwargs: dict[str, Any] | None,
    stack: WrapperStack,
) -> tuple[VectorEnv, str | None, dict[str, Any], WrapperStack]:
    """(batch of ``rows`` envs, env id, env kwargs, wrapper stack) for an LLM trainer.

    Args:
        env: an env id, a wrapped single env or a ``SyncVectorEnv`` of them (the id and the
            stack are rebuilt as the batched token env, wrappers by their vector twins), or a
            batched token env (wrapped or not) with ``autoreset_mode="Disabled"``.
        rows: batch size.
        env_kwargs: kwargs of the env (ids and single envs).
        stack: a checked stack (:func:`~llm_gym.wrappers.stack.parse_wrappers`), applied on top.
    """
    kwargs = dict(env_kwargs or {})
    if isinstance(env, VectorEnv) and not isinstance(env.unwrapped, TokenVectorEnv):
        # A SyncVectorEnv of single envs: rebuild it, wrappers and all, as the batched token
        # env, whose rows are scored in one call and stepped with numpy.
        env_id, made_with, inner = vector_wrappers_of(env)
        return _from_id(env_id, rows, {**made_with, **kwargs}, inner + stack)
    if isinstance(env, VectorEnv):
        if env.num_envs != rows:
            raise ValueError(f"the vector env has {env.num_envs} rows but the trainer needs "
                             f"{rows}; build it with {rows} envs")
        return apply_wrappers(env, stack), getattr(env.spec, "id", None), kwargs, stack
    if isinstance(env, gym.Env):
        env_id, made_with, inner = wrappers_of(env)
        kwargs = {**made_with, **kwargs}
        stack = inner + stack
        env = env_id
    if not isinstance(env, str):
        raise TypeError(f"env must be an env id, an env or a vector env, got "
                        f"{type(env).__name__} {env!r}")
    return _from_id(env, rows, kwargs, stack)


def _from_id(env_id: str, rows: int, kwargs: dict[str, Any], stack: WrapperStack
             ) -> tuple[VectorEnv, str, dict[str, Any], WrapperStack]:
    envs = make_env(env_id, rows, env_kwargs=kwargs, wrappers=stack,
                    autoreset_mode=AutoresetMode.DISABLED)
    return envs, env_id, kwargs, stack


def saved_stack(state: dict[str, Any], given: Any, path: Any) -> Any:
    """The wrapper stack to rebuild a saved agent with: ``given``, else the recorded one."""
    if given is not None:
        return given
    if state.get("wrappers") is None and state.get("wrapped"):
        raise ValueError(f"{path} was trained on wrappers given as Python objects, which a "
                         "checkpoint cannot record; pass wrappers= (or use 'module:function' "
                         "strings) to load it")
    return state.get("wrappers")


def play_items(
    model: torch.nn.Module, envs: VectorEnv, indices: Sequence[int], *,
    temperature: float = 0.0, seed: int = 0,
) -> Iterator[RolloutBatch]:
    """One episode per entry of ``indices`` (task items), ``envs.num_envs`` rows at a time.

    Entry r is reset with seed ``seed + r`` and samples from its own stream of draws (row r of
    one long batch: :func:`~llm_gym.agents.rollout.collect_rollouts`' ``first_row``), so what
    an episode samples does not depend on how many rows the vector env holds. The last batch is
    filled up by repeating its last index; the extra rows are dropped from what is yielded.

    Args:
        model: the causal LM (or a :class:`~llm_gym.agents.policy.Policy`).
        envs: a DISABLED-autoreset batched token env (:func:`build_token_envs`).
        indices: task item of each episode; repeat an item to sample it several times.
        temperature: sampling temperature; ``0`` is greedy.
        seed: reset seed of the first episode and seed of the sampling streams.

    Yields:
        A :class:`~llm_gym.agents.rollout.RolloutBatch` per slice of ``indices``, in order.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> from llm_gym.models import tiny_model
        >>> envs = gym.make_vec("llm_gym/Arithmetic-v0", 2,
        ...     vectorization_mode="vector_entry_point", autoreset_mode="Disabled")
        >>> [b.task_index.tolist() for b in play_items(tiny_model()[0], envs, [3, 3, 5])]
        [[3, 3], [5]]
    """
    rows = envs.num_envs
    for start in range(0, len(indices), rows):
        chunk = [int(i) for i in indices[start:start + rows]]
        real = len(chunk)
        chunk += chunk[-1:] * (rows - real)
        batch = collect_rollouts(model, envs, indices=chunk, seed=seed, temperature=temperature,
                                 generator=torch.Generator().manual_seed(seed), first_row=start)
        yield batch if real == rows else batch.select(list(range(real)))


@torch.no_grad()
def evaluate_policy(
    model: torch.nn.Module, envs: VectorEnv, num_episodes: int, *, temperature: float = 0.0,
    seed: int = 12345, threshold: float | None = None,
) -> EvalResult:
    """Play ``num_episodes`` episodes on items ``0 .. N-1`` (envs with a task pool) in batches.

    Returns:
        An :class:`~llm_gym.agents.evaluation.EvalResult`: ``mean_return`` and ``std_return``
        (the shaped return the agent trains on),
        ``env_return`` (the env's own reward, the ``env`` term; equal without shaping),
        ``success_rate`` (the env's verdict, else the env return against ``threshold``;
        ``None`` when neither says), ``mean_length`` (agent tokens per episode),
        ``episodes``, ``returns`` and ``env_returns``.
    """
    limit = first_env(envs).num_tasks
    indices = [i % limit if limit else i for i in range(num_episodes)]
    returns: list[float] = []
    env_returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool | None] = []
    for batch in play_items(model, envs, indices, temperature=temperature, seed=seed):
        for i in range(batch.num_rows):
            info = batch.infos[i]
            returns.append(float(batch.returns[i]))
            terms = info.get("episode_reward_components", {})
            env_returns.append(float(terms.get("env", returns[-1])))
            lengths.append(int(batch.lengths[i]))
            success = episode_success(info, env_returns[-1], bool(batch.terminated[i]))
            if success is None and threshold is not None:
                success = env_returns[-1] >= threshold - 1e-9
            successes.append(success)
    known = [s for s in successes if s is not None]
    return EvalResult(
        mean_return=float(np.mean(returns)), std_return=float(np.std(returns)),
        success_rate=float(np.mean(known)) if known else None,
        mean_length=float(np.mean(lengths)), episodes=num_episodes, returns=returns,
        env_return=float(np.mean(env_returns)), env_returns=env_returns)
