"""DPO (and IPO) as an llm_gym agent: trains from preference pairs, is evaluated on an env.

Direct Preference Optimization (Rafailov et al. 2023) needs no env rollouts and no reward model:
on the base of the trainers on a dataset (:class:`~llm_gym.agents.dataset_trainer.DatasetTrainer`,
as SFT) its *collect* draws the next minibatch of preference pairs (seeded shuffled passes over
the data, resumable) and its *train* is one DPO step against a frozen reference — the starting
policy, or with LoRA the base model with the adapter disabled, as GRPO and PPO do. The env is
where the policy is evaluated (``evaluate()`` gives the env's true task metric under the same
keys as every other agent) and what fixes the tokenizer and rendering the pairs are encoded in
(:mod:`.dpo_algorithm`).

``learn(total_timesteps)`` counts preference **pairs** trained on (``num_timesteps``); the
prompt and reply tokens read go to ``num_tokens``. Metrics use TRL's names: ``train/loss``,
``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``, plus
``logps/chosen`` and ``logps/rejected``.
"""

from __future__ import annotations

from typing import Any

import torch

from llm_gym.agents.dataset_trainer import (
    DatasetTrainer,
    examples_hash,
    missing_file,
    without_progress_bars,
)
from llm_gym.agents.dpo_algorithm import (
    DPOConfig,
    EncodedPair,
    dpo_loss,
    encode_preference_pairs,
    pair_batch,
)
from llm_gym.agents.logprobs import chosen_logprobs
from llm_gym.preferences import load_preferences

REWARD_KEYS = ("chosen", "rejected", "margins", "accuracies")
# The public name of DPO's data hash (the encoded pairs', checkpointed as data_hash).
pairs_hash = examples_hash


class DPOAgent(DatasetTrainer):
    """A causal LM trained with DPO on preference pairs, evaluated on a token env.

    Takes :class:`~llm_gym.agents.dataset_trainer.DatasetTrainer`'s arguments: ``config`` is a
    :class:`DPOConfig`, ``data`` (or ``config.data``) preference pairs in TRL's format (prompt,
    chosen, rejected); the env's tokenizer encodes them.

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
    DATA_CHANGED = ("the preference data differs from the data this DPO run trained on (its "
                    "pairs changed); resume with the run's own data")
    config: DPOConfig

    @property
    def pairs(self) -> list[EncodedPair]:
        """The encoded preference pairs trained on."""
        return self.examples

    def _read_rows(self, data: Any, configured: Any) -> Any:
        return _preference_rows(data, configured)

    def _encode(self, rows: Any) -> list[EncodedPair]:
        return encode_preference_pairs(rows, self.tokenizer, self._max_length())

    def _example_tokens(self, pair: EncodedPair) -> int:
        return 2 * len(pair.prompt) + len(pair.chosen) + len(pair.rejected)

    def _reference(self) -> torch.nn.Module | None:
        return self._frozen_reference()

    # -------------------------------------------------------------------------- update
    def _backward(self, pairs: list[EncodedPair]) -> dict[str, float]:
        """One DPO step's backward on the pairs; ``train/``, ``rewards/`` and ``logps/`` metrics."""
        ref = self._sequence_logprobs(pairs, reference=True)
        sums: dict[str, float] = {}
        for start, part in self._micro_batches(pairs):
            stats = self._micro_step(part, ref[:, start:start + len(part)], len(pairs))
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
        return sums

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
        pairs = self._examples(data)
        sums = {"loss": 0.0, **{f"rewards/{k}": 0.0 for k in REWARD_KEYS}}
        for _, part in self._micro_batches(pairs):
            ref, logps = self._sequence_logprobs(part, True), self._sequence_logprobs(part)
            loss, rewards = dpo_loss(logps[0], logps[1], ref[0], ref[1], self.config.kl_coef,
                                     self.config.loss_type)
            sums["loss"] += float(loss) * len(part) / len(pairs)
            for key in REWARD_KEYS:
                sums[f"rewards/{key}"] += float(rewards[key].sum()) / len(pairs)
        return sums

    def curve_title(self) -> str:
        """``DPO (<loss type>)`` on plots."""
        return f"DPO ({self.config.loss_type})"


def _preference_rows(data: Any, configured: Any) -> Any:
    source = data if data is not None else configured
    if source is None:
        raise ValueError("DPO trains on preference pairs: give a file in TRL's format (prompt, "
                         "chosen, rejected), e.g. config data=pairs.jsonl or --data pairs.jsonl")
    missing = missing_file(source)
    if missing is not None:
        raise FileNotFoundError(f"preference file {missing} does not exist; write one with "
                                "llm-gym preferences --out FILE or give another path")
    return without_progress_bars(load_preferences, source)


__all__ = ["DPOAgent", "DPOConfig", "pairs_hash"]
