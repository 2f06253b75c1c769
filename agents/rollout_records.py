"""Stored rollouts: each episode's tokens, text, per-step rewards and info as JSON lines.

``llm-gym train --save-rollouts`` and ``llm-gym eval --save-rollouts`` write one line per
episode (:class:`RolloutWriter`); ``llm-gym rescore`` replays them under other reward wrappers
(:func:`replay_episode`): a token env is a pure function of its reset (seed and item) and the
agent's tokens, so re-stepping the stored tokens through the env with another wrapper stack
gives exactly the return that stack would have given live on those samples, with no model.

A record (one JSON object per line)::

    {"env": id, "env_kwargs": {...}, "tokenizer": "byte" | hub id, "wrappers": [live stack],
     "index": item or null, "seed": reset seed or null, "tokens": [agent token ids],
     "rewards": [reward of each of those steps], "return": live (shaped) return,
     "env_return": the env's own return, "prompt": text, "text": text after the prompt,
     "info": final info, "terminated": bool, "truncated": bool, "valid": bool,
     "source": "train" | "eval", "update": updates done when it was sampled}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from llm_gym.wrappers.stack import WrappersLike, make_env, parse_wrappers


def episode_records(batch: Any, tokenizer: Any, fields: dict[str, Any] | None = None
                    ) -> list[dict[str, Any]]:
    """Every row of a ``RolloutBatch`` as a record (``fields`` added to each).

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> from llm_gym.agents.rollout import collect_rollouts
        >>> from llm_gym.models import tiny_model
        >>> envs = gym.make_vec("llm_gym/Arithmetic-v0", 2, vectorization_mode="vector_entry_point",
        ...                     autoreset_mode="Disabled")
        >>> batch = collect_rollouts(tiny_model()[0], envs, indices=[4, 5], seed=0)
        >>> [r["index"] for r in episode_records(batch, envs.unwrapped.envs[0].tokenizer)]
        [4, 5]
    """
    out = []
    seeds = batch.env_seeds.tolist() if batch.env_seeds is not None else [-1] * batch.num_rows
    for row in range(batch.num_rows):
        length = int(batch.attention_mask[row].sum())
        ids = batch.input_ids[row, :length].tolist()
        agent = batch.agent_mask[row, :length].bool()
        first = int(agent.int().argmax()) if bool(agent.any()) else length
        info = batch.infos[row]
        ret = float(batch.returns[row])
        index, seed = int(batch.task_index[row]), int(seeds[row])
        out.append({
            **(fields or {}), "index": None if index < 0 else index,
            "seed": None if seed < 0 else seed,
            "tokens": batch.input_ids[row, :length][agent].tolist(),
            "rewards": batch.rewards[row, :length][agent].tolist(), "return": ret,
            "env_return": float(info.get("episode_reward_components", {}).get("env", ret)),
            "prompt": tokenizer.decode(ids[:first], skip_special_tokens=True),
            "text": tokenizer.decode(ids[first:], skip_special_tokens=True),
            "info": info, "terminated": bool(batch.terminated[row]),
            "truncated": bool(batch.truncated[row]), "valid": bool(batch.valid[row])})
    return out


class RolloutWriter:
    """Append every episode of the batches it is given to a JSON-lines file.

    Args:
        path: the ``.jsonl`` file (its folder is created).
        env_id: the env's id; with ``env_kwargs`` (a tokenizer object left out) and
            ``wrappers``, what a replay rebuilds.
        tokenizer: the env's tokenizer (decodes the text; its name is recorded).
        source: ``"train"`` or ``"eval"``.
        resume_at: a training run's update count: records of this and later updates (sampled
            after the checkpoint it resumes from, and sampled again now; all of them for a
            fresh run, 0) are dropped first.
    """

    def __init__(self, path: str | Path, env_id: str | None, env_kwargs: dict[str, Any],
                 tokenizer: Any, wrappers: WrappersLike = None, source: str = "train",
                 resume_at: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if env_id is None:
            raise ValueError("saving rollouts needs an env id (a replay rebuilds the env)")
        self.tokenizer = tokenizer
        self.header = {"env": env_id, "tokenizer": getattr(tokenizer, "name", None),
                       "env_kwargs": {k: v for k, v in env_kwargs.items() if k != "tokenizer"},
                       "wrappers": parse_wrappers(wrappers).to_json(), "source": source}
        if resume_at is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("update", 0) < resume_at]
            self.path.write_text("".join(f"{line}\n" for line in kept))

    def write(self, batch: Any, **fields: Any) -> None:
        """Append ``batch``'s episodes (``fields``, e.g. ``update``, go into each record)."""
        records = episode_records(batch, self.tokenizer, {**self.header, **fields})
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, default=_plain) + "\n")


def attach_rollout_writer(agent: Any, path: str | Path) -> RolloutWriter:
    """Record every training episode of a GRPO-family or token-env PPO ``agent`` to ``path``."""
    owner = getattr(agent, "policy", agent)  # PPO: its token face (a classic one has none)
    if not hasattr(owner, "rollout_writer"):
        raise ValueError(f"--save-rollouts records token-env episodes of the LLM trainers "
                         f"(grpo, rloo, reinforce-pp, ppo); {type(agent).__name__} on "
                         f"{getattr(agent, 'env_id', None)} has none")
    # A fresh run (0 updates) starts the file anew; a resumed one drops what it samples again.
    writer = RolloutWriter(path, agent.env_id, dict(agent.env_kwargs), agent.tokenizer,
                           agent.wrappers, resume_at=agent.num_updates)
    owner.rollout_writer = writer
    return writer


def read_rollouts(path: str | Path) -> list[dict[str, Any]]:
    """The records of a rollouts file, in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no rollouts file {path}; write one with llm-gym train or "
                                "eval --save-rollouts")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or not {"env", "tokens", "seed", "index"} <= set(record):
            raise ValueError(f"{path}:{number} is no stored rollout (need env, tokens, seed, "
                             "index); write the file with --save-rollouts")
        records.append(record)
    if not records:
        raise ValueError(f"{path} holds no rollouts")
    return records


def replay_env(record: dict[str, Any], wrappers: WrappersLike, tokenizer: Any = None) -> Any:
    """The single env of ``record``'s env id and kwargs with ``wrappers`` on it."""
    kwargs = {**record.get("env_kwargs", {}),
              "tokenizer": tokenizer if tokenizer is not None else record.get("tokenizer")}
    return make_env(record["env"], env_kwargs=kwargs, wrappers=wrappers)


def replay_episode(env: Any, record: dict[str, Any]) -> tuple[float, list[float], dict[str, Any]]:
    """Step ``record``'s tokens through ``env`` from its reset: ``(return, rewards, info)``.

    Raises:
        ValueError: the episode ends before its tokens do, or not at its last token (the env,
            its kwargs or the tokenizer are not the ones that played it).
    """
    options = None if record["index"] is None else {"index": int(record["index"])}
    env.reset(seed=record["seed"], options=options)
    rewards: list[float] = []
    info: dict[str, Any] = {}
    done = False
    for step, token in enumerate(record["tokens"]):
        if done:
            raise ValueError(f"the replayed episode ended at step {step} of "
                             f"{len(record['tokens'])}: not the env that played it")
        _, reward, terminated, truncated, info = env.step(int(token))
        rewards.append(float(reward))
        done = terminated or truncated
    if record["tokens"] and not done:
        raise ValueError("the replayed episode did not end at its last token: not the env "
                         "that played it")
    return float(math.fsum(rewards)), rewards, info


def _plain(value: Any) -> Any:
    """JSON form of numpy values in an ``info`` (anything else as its text)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


__all__ = ["RolloutWriter", "attach_rollout_writer", "episode_records", "read_rollouts",
           "replay_env", "replay_episode"]
