"""DPO (and IPO) as an llm_gym agent: trains from preference pairs, is evaluated on an env.

Direct Preference Optimization (Rafailov et al. 2023) needs no env rollouts and no reward model:
on the shared trainer base (:class:`~llm_gym.agents.trainer.LLMTrainer`) its *collect* draws the
next minibatch of preference pairs (seeded shuffled passes over the data, resumable) and its
*train* is one DPO step against a frozen reference — the starting policy, or with LoRA the base
model with the adapter disabled, as GRPO and PPO do. The env is where the policy is evaluated
(``evaluate()`` gives the env's true task metric under the same keys as every other agent) and
what fixes the tokenizer and rendering the pairs are encoded in (:mod:`.dpo_algorithm`).

``learn(total_timesteps)`` counts preference **pairs** trained on (``num_timesteps``); the
prompt and reply tokens read go to ``num_tokens``. Metrics use TRL's names: ``train/loss``,
``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``, plus
``logps/chosen`` and ``logps/rejected``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from llm_gym.agents.dpo_algorithm import (
    DPOConfig,
    EncodedPair,
    dpo_loss,
    encode_preference_pairs,
    pair_batch,
)
from llm_gym.agents.lm_trainer import CausalLMTrainer
from llm_gym.agents.logprobs import chosen_logprobs
from llm_gym.agents.trainer import Collected
from llm_gym.agents.training import TaskSampler
from llm_gym.preferences import load_preferences

logger = logging.getLogger(__name__)
REWARD_KEYS = ("chosen", "rejected", "margins", "accuracies")


class DPOAgent(CausalLMTrainer):
    """A causal LM trained with DPO on preference pairs, evaluated on a token env.

    Args:
        env: the token env the policy acts in (an id, or a wrapped single or vector token env);
            its tokenizer encodes the pairs and ``evaluate`` plays it.
        model: anything :func:`llm_gym.models.load_model` takes, or an ``nn.Module`` (then pass
            ``tokenizer`` when the env is an id).
        config: :class:`DPOConfig`; ``config.data`` names the preference file.
        data: preference rows in memory (a list of dicts or a ``datasets.Dataset``) instead of
            ``config.data``; :meth:`load` then needs the same ``data=`` again.
        env_kwargs: extra kwargs for the env.
        tokenizer: tokenizer of a module ``model``.
        seed: seeds torch, numpy, python and the order of the pairs.
        log_dir: TensorBoard, ``metrics.csv`` and ``checkpoints/`` go here.
        device: torch device (default: GPU when present).
        wrappers: a wrapper stack of the evaluation env.

    Raises:
        ValueError: no data, or a bad preference file (named row), before the model loads.

    Example:
        >>> rows = [{"prompt": [{"role": "user", "content": "1+1"}],
        ...          "chosen": [{"role": "assistant", "content": "2"}],
        ...          "rejected": [{"role": "assistant", "content": "3"}]}]
        >>> agent = DPOAgent("llm_gym/Arithmetic-v0", "tiny", DPOConfig(batch_size=1), data=rows)
        >>> agent.learn(total_timesteps=2).num_timesteps
        2
    """

    STATE_FORMAT = "llm_gym.dpo/1"
    CONFIG_CLASS = DPOConfig
    EVAL_SEED = 12345  # GRPO's: DPO and GRPO runs are evaluated on the same episodes

    def __init__(
        self, env: str | Any, model: str | torch.nn.Module = "tiny",
        config: DPOConfig | None = None, *, data: Any = None,
        env_kwargs: dict[str, Any] | None = None, tokenizer: Any = None, seed: int = 0,
        log_dir: str | Path | None = None, device: str | None = None, wrappers: Any = None,
    ) -> None:
        if config is not None and not isinstance(config, DPOConfig):
            raise TypeError(f"config must be a DPOConfig, got {type(config).__name__}")
        self.config = config or DPOConfig()
        rows = _preference_rows(data, self.config.data)  # bad data fails before any model loads
        self._setup_policy(env, model, 1, env_kwargs=env_kwargs, tokenizer=tokenizer, seed=seed,
                           device=device, wrappers=wrappers)
        self.model.eval()  # no dropout: TRL's DPOTrainer disables it (disable_dropout)
        self.pairs = encode_preference_pairs(rows, self.tokenizer, self._max_length())
        self.sampler = TaskSampler(len(self.pairs), seed=self.seed)
        self.ref_model = self._frozen_reference()
        self._target: int | None = None
        self._init_run_state(log_dir)

    def _max_length(self) -> int:
        context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        limits = [n for n in (context, self.config.max_length) if n]
        return min(limits) if limits else 2**31

    def default_timesteps(self) -> int:
        """Pairs in ``num_train_epochs`` passes over the data (``llm-gym train``'s default)."""
        return self.config.num_train_epochs * len(self.pairs)

    # -------------------------------------------------------------------------- collect
    def _learn_loop(self, target: int, *args: Any) -> None:
        self._target = target  # so the last batch takes only the pairs left to the target
        try:
            super()._learn_loop(target, *args)
        finally:
            self._target = None

    def collect(self) -> Collected:
        """The next minibatch of pairs (no env rollouts); counts pairs as steps.

        Example:
            >>> rows = [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}]
            >>> DPOAgent("llm_gym/Arithmetic-v0", "tiny", data=rows).collect().steps
            8
        """
        count = self.config.batch_size
        if self._target is not None:
            count = max(1, min(count, self._target - self.num_timesteps))
        pairs = [self.pairs[i] for i in self.sampler.take(count)]
        tokens = sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)
        return Collected(batch=pairs, metrics={}, steps=len(pairs), tokens=tokens)

    # -------------------------------------------------------------------------- update
    def train_on(self, collected: Collected) -> dict[str, float]:
        """One DPO step on the collected pairs; ``train/``, ``rewards/`` and ``logps/`` metrics."""
        pairs: list[EncodedPair] = collected.batch
        start_s = time.perf_counter()
        ref = self._sequence_logprobs(pairs, reference=True)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for start in range(0, len(pairs), self.config.micro_batch_size):
            part = pairs[start:start + self.config.micro_batch_size]
            stats = self._micro_step(part, ref[:, start:start + len(part)], len(pairs))
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:  # never let a non-finite gradient into the weights
            logger.warning("non-finite gradient norm %s: optimizer step skipped", grad_norm)
            sums["train/skipped_steps"] = 1.0
        # DPO's throughput is the update's (the base would divide by the instant collect).
        tokens_per_s = collected.tokens / max(time.perf_counter() - start_s, 1e-9)
        return {**sums, "train/grad_norm": float(grad_norm), "time/tokens_per_s": tokens_per_s,
                "train/lr": self.optimizer.param_groups[0]["lr"]}

    def _micro_step(self, pairs: list[EncodedPair], ref: torch.Tensor, total: int
                    ) -> dict[str, float]:
        """Backward of this part's share of the batch loss; its share of the batch metrics."""
        logps = self._sequence_logprobs(pairs)
        loss, rewards = dpo_loss(logps[0], logps[1], ref[0], ref[1], self.config.kl_coef,
                                 self.config.loss_type)
        share = len(pairs) / total  # the batch loss is the mean over all its pairs
        (loss * share).backward()
        out = {"train/loss": float(loss.detach()) * share}
        out.update({f"rewards/{k}": float(rewards[k].sum()) / total for k in REWARD_KEYS})
        out["logps/chosen"] = float(logps[0].detach().sum()) / total
        out["logps/rejected"] = float(logps[1].detach().sum()) / total
        return out

    def _sequence_logprobs(self, pairs: list[EncodedPair], reference: bool = False
                           ) -> torch.Tensor:
        """``(2, B)`` reply log-probs (chosen, rejected); mean per token for IPO, as TRL."""
        ids, mask, reply = (t.to(self.device) for t in pair_batch(
            pairs, self.tokenizer.pad_token_id))
        if not reference:
            logps = self._reply_logprobs(self.model, ids, mask, reply)
        else:
            with torch.no_grad():
                if self.ref_model is not None:
                    logps = self._reply_logprobs(self.ref_model, ids, mask, reply)
                else:
                    with self.model.disable_adapter():
                        logps = self._reply_logprobs(self.model, ids, mask, reply)
        if self.config.loss_type == "ipo":
            logps = logps / reply.sum(dim=1).clamp(min=1)
        return logps.reshape(2, len(pairs))

    def _reply_logprobs(self, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                        reply: torch.Tensor) -> torch.Tensor:
        # Log-probs only at the reply's positions, never a full-vocabulary log_softmax.
        token_logps = chosen_logprobs(model, ids, mask, positions=reply.bool(),
                                      vocab_size=self.vocab_size)
        return token_logps.sum(dim=1)

    @torch.no_grad()
    def preference_metrics(self, data: Any = None) -> dict[str, float]:
        """``rewards/`` metrics and the loss on ``data`` (default: the training pairs).

        Held-out pairs (a file or rows in TRL's format) say whether the implicit reward
        generalises; before any update every reward is 0 (the policy is the reference).

        Example:
            >>> rows = [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}]
            >>> metrics = DPOAgent("llm_gym/Arithmetic-v0", "tiny", data=rows).preference_metrics()
            >>> round(metrics["loss"], 4), metrics["rewards/margins"]
            (0.6931, 0.0)
        """
        pairs = self.pairs if data is None else encode_preference_pairs(
            _preference_rows(data, None), self.tokenizer, self._max_length())
        sums = {"loss": 0.0, **{f"rewards/{k}": 0.0 for k in REWARD_KEYS}}
        for start in range(0, len(pairs), self.config.micro_batch_size):
            part = pairs[start:start + self.config.micro_batch_size]
            ref, logps = self._sequence_logprobs(part, True), self._sequence_logprobs(part)
            loss, rewards = dpo_loss(logps[0], logps[1], ref[0], ref[1], self.config.kl_coef,
                                     self.config.loss_type)
            sums["loss"] += float(loss) * len(part) / len(pairs)
            for key in REWARD_KEYS:
                sums[f"rewards/{key}"] += float(rewards[key].sum()) / len(pairs)
        return sums

    # -------------------------------------------------------------------------- state
    def _model_state(self) -> dict[str, Any]:
        return {**super()._model_state(), "data_hash": pairs_hash(self.pairs)}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        if state.get("data_hash") != pairs_hash(self.pairs):
            raise ValueError("the preference data differs from the data this DPO run trained "
                             "on (its pairs changed); resume with the run's own data")
        super()._load_model_state(state)

    def curve_title(self) -> str:
        """``DPO (<loss type>)`` on plots."""
        return f"DPO ({self.config.loss_type})"


def _preference_rows(data: Any, configured: Any) -> Any:
    source = data if data is not None else configured
    if source is None:
        raise ValueError("DPO trains on preference pairs: give a file in TRL's format (prompt, "
                         "chosen, rejected), e.g. config data=pairs.jsonl or --data pairs.jsonl")
    if isinstance(source, (str, Path)) and not Path(source).exists() and Path(
            source).suffix.lower() in (".jsonl", ".json", ".csv", ".parquet"):
        raise FileNotFoundError(f"preference file {source} does not exist; write one with "
                                "llm-gym preferences --out FILE or give another path")
    import datasets

    # A small file loads in a blink: datasets' "Generating train split" bar would only bury
    # a bad row's one-line error.
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        return load_preferences(source)
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def pairs_hash(pairs: list[EncodedPair]) -> str:
    """SHA-256 of the encoded pairs (a resumed run must train on the same data).

    Example:
        >>> len(pairs_hash([EncodedPair([1], [2], [3])]))
        64
    """
    text = json.dumps([[p.prompt, p.chosen, p.rejected] for p in pairs])
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["DPOAgent", "DPOConfig", "pairs_hash"]
