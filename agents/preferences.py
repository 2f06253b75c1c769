"""Preference pairs built from an llm_gym env whose reward is verifiable.

:func:`build_preferences` samples several replies per task item with the bundled rollout
machinery (:func:`~llm_gym.agents.rollout.collect_rollouts`) and pairs a higher-scored reply
with a lower-scored one (ties dropped and counted), as rows in TRL's format
(:mod:`llm_gym.preferences`). This is how RLHF pipelines are taught on tasks where the true
reward is known, so a learned reward can be checked against it (Gao et al. 2022).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llm_gym.agents.rollout import collect_rollouts
from llm_gym.agents.token_envs import first_env


def pair_by_reward(replies: Sequence[tuple[str, float]]) -> tuple[list[tuple[int, int]], int]:
    """Pair higher-scored replies with lower-scored ones; ties are dropped and counted.

    The replies are ranked by reward (stable in sample order) and the top half is paired with
    the bottom half, rank ``i`` with rank ``i + k // 2``, so each reply is used at most once and
    pairs from one prompt stay few and independent. A pair whose rewards are equal, or whose
    texts are identical, is a tie.

    Returns:
        ``[(chosen index, rejected index), ...]`` and the number of ties dropped.

    Example:
        >>> pair_by_reward([("7", 1.0), ("8", 0.0), ("6", 0.0), ("7.", 1.0)])
        ([(0, 1), (3, 2)], 0)
        >>> pair_by_reward([("7", 1.0), ("7", 1.0)])
        ([], 1)
    """
    order = sorted(range(len(replies)), key=lambda i: -replies[i][1])
    half = len(order) // 2
    pairs, ties = [], 0
    for high, low in zip(order[:half], order[half:2 * half], strict=True):
        if replies[high][1] > replies[low][1] and replies[high][0] != replies[low][0]:
            pairs.append((high, low))
        else:
            ties += 1
    return pairs, ties


@dataclass
class PreferenceCounts:
    """What :func:`build_preferences` sampled and kept.

    Attributes:
        items: task items sampled.
        replies: replies sampled (``items * n``).
        dropped_replies: replies whose reward failed (``info["reward_error"]``), not paired.
        pairs: preference rows written.
        ties: candidate pairs dropped because both replies scored the same, read the same, or
            one of them is empty.
        items_all_equal: items whose replies all scored the same (no pair from them).
        mean_reward: mean verifiable reward of the scored replies.
    """

    items: int = 0
    replies: int = 0
    dropped_replies: int = 0
    pairs: int = 0
    ties: int = 0
    items_all_equal: int = 0
    mean_reward: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The counts as a plain dict."""
        return asdict(self)


def build_preferences(
    env_id: str, model: str | Any = "tiny", *, items: int = 64, n: int = 4,
    env_kwargs: dict[str, Any] | None = None, temperature: float = 1.0, seed: int = 0,
    batch_rows: int = 32, device: str | None = None, tokenizer: Any = None,
    progress_bar: bool = False,
) -> tuple[list[dict[str, Any]], PreferenceCounts]:
    """Sample ``n`` replies to each of ``items`` task items and pair them by the env's reward.

    Args:
        env_id: a single-turn llm_gym token env with a verifiable reward (Arithmetic-v0,
            GSM8K-v0, Math-v0, Code-v0).
        model: a name for :func:`llm_gym.models.load_model` (``"tiny"``, ``"smollm2"``, a hub
            id or path) or a causal LM module (then pass ``tokenizer``).
        items: task items ``0 .. items-1`` to sample.
        n: replies sampled per item (at least 2).
        env_kwargs: keyword arguments of the env (e.g. ``{"data_files": "train.jsonl"}``).
        temperature: sampling temperature (above 0: greedy replies would all be equal).
        seed: seeds the sampling.
        batch_rows: episodes per rollout batch (rounded down to a multiple of ``n``).
        device: torch device of the model (default: GPU when present).
        tokenizer: the tokenizer of a ``model`` given as a module.
        progress_bar: show a tqdm bar over the task items.

    Returns:
        Conversational TRL rows (``prompt``, ``chosen``, ``rejected``, plus ``chosen_score``,
        ``rejected_score`` and ``task_index``) and the counts.

    Example:
        >>> rows, counts = build_preferences("llm_gym/Arithmetic-v0", "tiny", items=2, n=2)
        >>> counts.replies
        4
    """
    import torch
    from tqdm.auto import tqdm

    _check_build_args(items, n, temperature, batch_rows)
    lm, tokenizer = _policy(model, tokenizer, device)
    per_batch = max(1, batch_rows // n)
    envs = _sampling_envs(env_id, per_batch * n, {**(env_kwargs or {}), "tokenizer": tokenizer})
    _check_items(envs, env_id, items)
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []
    counts = PreferenceCounts()
    rewards: list[float] = []
    bar = tqdm(total=items, unit="item", disable=not progress_bar)
    try:
        for start in range(0, items, per_batch):
            chunk = list(range(start, min(items, start + per_batch)))
            indices = [i for i in chunk for _ in range(n)]
            indices += [chunk[-1]] * (envs.num_envs - len(indices))  # pad the last batch
            batch = collect_rollouts(lm, envs, indices=indices, seed=seed + start,
                                     temperature=temperature, generator=generator)
            for k, item in enumerate(chunk):
                prompt = _task_messages(envs, k * n)
                replies = _replies(batch, range(k * n, (k + 1) * n), tokenizer, counts)
                rewards += [r for _, r in replies]
                rows += _rows(prompt, replies, item, counts)
            bar.update(len(chunk))
    finally:
        bar.close()
        envs.close()
    counts.items, counts.replies = items, items * n
    counts.mean_reward = float(sum(rewards) / len(rewards)) if rewards else 0.0
    return rows, counts


def _check_build_args(items: int, n: int, temperature: float, batch_rows: int) -> None:
    if items < 1:
        raise ValueError(f"items must be at least 1, got {items}")
    if n < 2:
        raise ValueError(f"n (replies per item) must be at least 2 to make a pair, got {n}")
    if temperature <= 0:
        raise ValueError(f"temperature must be above 0 (greedy replies to one prompt are all the "
                         f"same, so every pair would be a tie), got {temperature}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")


def _policy(model: Any, tokenizer: Any, device: str | None) -> tuple[Any, Any]:
    from llm_gym.models import load_model
    from llm_gym.tokenizers import load_tokenizer

    if isinstance(model, str):
        return load_model(model, device=device)
    if tokenizer is None:
        raise TypeError("a model given as a module needs its tokenizer= (the env's tokenizer)")
    return model, load_tokenizer(tokenizer)


def _sampling_envs(env_id: str, rows: int, env_kwargs: dict[str, Any]) -> Any:
    from llm_gym.wrappers.stack import is_token_env, make_env

    if not is_token_env(env_id):
        raise ValueError(f"{env_id} is not an llm_gym token env; preferences are built from "
                         "token envs with a verifiable reward, e.g. llm_gym/Arithmetic-v0")
    return make_env(env_id, rows, env_kwargs=env_kwargs, autoreset_mode="Disabled")


def _check_items(envs: Any, env_id: str, items: int) -> None:
    available = first_env(envs).num_tasks
    if available is not None and items > available:
        raise ValueError(f"items={items} but {env_id} has {available} task items; pass "
                         f"--items {available} or fewer")


def _task_messages(envs: Any, row: int) -> list[dict[str, str]]:
    task = envs.unwrapped.envs[row].unwrapped.task
    return [dict(m) for m in task.messages]


def _replies(batch: Any, rows: range, tokenizer: Any, counts: PreferenceCounts
             ) -> list[tuple[str, float]]:
    """(text, reward) of each row's reply; rows whose reward failed are counted and left out."""
    from llm_gym.wrappers.response import last_response

    out = []
    for i in rows:
        agent = batch.agent_mask[i].numpy()
        if int(((agent[1:] == 1) & (agent[:-1] == 0)).sum()) + int(agent[0] == 1) > 1:
            raise ValueError("preferences pairs single replies, but this env let the agent take "
                             "several turns; use a single-turn env (Arithmetic-v0, GSM8K-v0)")
        if not bool(batch.valid[i]):
            counts.dropped_replies += 1
            continue
        obs = {"input_ids": batch.input_ids[i].numpy(), "agent_mask": agent,
               "attention_mask": batch.attention_mask[i].numpy()}
        response = last_response(obs, tokenizer)
        out.append(("" if response is None else response.text, float(batch.returns[i])))
    return out


def _rows(prompt: list[dict[str, str]], replies: list[tuple[str, float]], item: int,
          counts: PreferenceCounts) -> list[dict[str, Any]]:
    if len({r for _, r in replies}) <= 1:
        counts.items_all_equal += 1
    pairs, ties = pair_by_reward(replies)
    counts.ties += ties
    rows = []
    for high, low in pairs:
        chosen, rejected = replies[high], replies[low]
        if not chosen[0].strip() or not rejected[0].strip():
            counts.ties += 1  # an empty reply is no preference TRL can train on
            continue
        rows.append({"prompt": prompt,
                     "chosen": [{"role": "assistant", "content": chosen[0]}],
                     "rejected": [{"role": "assistant", "content": rejected[0]}],
                     "chosen_score": chosen[1], "rejected_score": rejected[1],
                     "task_index": item})
    counts.pairs += len(rows)
    return rows


def summary_line(counts: PreferenceCounts) -> str:
    """One line of counts for the CLI and logs."""
    return json.dumps(counts.to_dict())
