"""The seam between the rollout and a model: next-token logits with a cache, sequence scoring.

The rollout (:func:`llm_gym.agents.rollout.collect_rollouts`) and the trainers' log-probs
(:func:`llm_gym.agents.rollout.sequence_logprobs`) reach the model only through a
:class:`Policy`, so a generation backend other than Hugging Face's forward call can be put behind
it without touching the trainers. :class:`HFPolicy` is the one implementation here: a causal LM
(transformers, optionally peft-wrapped) with a :class:`transformers.DynamicCache`. How a vLLM
backend would plug in is written down in the README ("How a vLLM backend would plug in").

Every entry point that takes a policy also takes a plain ``torch.nn.Module`` and wraps it with
:func:`as_policy`, so trainers keep passing their model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from llm_gym.agents.logprobs import cache_argument, chosen_logprobs


class Policy(ABC):
    """What the rollout and the trainers need from a model (a causal LM over token ids).

    Decoding is incremental: :meth:`start` opens an empty cache for a batch of conversations,
    and each :meth:`next_token_logits` call feeds every row the tokens that are new in its
    conversation since the last call (the agent's token plus any reply the env appended) and
    returns the logits of the next token. :meth:`score` gives log-probs of tokens already written.
    """

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the logits live (the sampler runs there)."""

    @abstractmethod
    def start(self, num_rows: int, vocab_size: int) -> Any:
        """An empty decoding cache for ``num_rows`` conversations; logits cut at ``vocab_size``."""

    @abstractmethod
    def next_token_logits(self, cache: Any, input_ids: np.ndarray, fed: np.ndarray,
                          lengths: np.ndarray, done: np.ndarray) -> torch.Tensor:
        """``(num_rows, vocab_size)`` float32 next-token logits on :attr:`device`.

        Args:
            cache: what :meth:`start` returned (updated in place).
            input_ids: ``(num_rows, max_length)`` conversations, left-aligned (the env's).
            fed: ``(num_rows,)`` tokens of each row already in the cache.
            lengths: ``(num_rows,)`` real tokens of each row now; ``fed:lengths`` is new.
            done: ``(num_rows,)`` rows whose episode ended: they may be dropped from the cache
                and their logits are garbage.
        """

    @abstractmethod
    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any
              ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(B, T)`` log-prob of each token given the ones before it, with gradients.

        Keyword arguments are those of :func:`llm_gym.agents.logprobs.chosen_logprobs`
        (``positions``, ``vocab_size``, ``temperature``, ``return_entropy``, ``masks``).
        """


@dataclass
class _KVCache:
    """The decoding state of :class:`HFPolicy`: one KV cache row per unfinished conversation."""

    cache: Any                 # transformers.DynamicCache
    rows: np.ndarray           # (R,) batch row held by each cache row
    attention: torch.Tensor    # (R, S) 1 on cached real tokens, 0 on left padding
    positions: np.ndarray      # (R,) real tokens in each cache row
    vocab_size: int


class HFPolicy(Policy):
    """A Hugging Face causal LM behind :class:`Policy`, with a ``DynamicCache``.

    Each step the rows' new tokens are left-padded into one ``(rows, chunk)`` tensor with
    per-row ``position_ids`` and a 2-D attention mask over cache + chunk, so a step costs O(1)
    model work per token and the prefix is never re-run. Rows whose episode ended are dropped
    from the cache, so a batch with uneven lengths does not pay for finished rows.

    Args:
        model: called as ``model(input_ids=, attention_mask=, position_ids=, cache=,
            use_cache=True, logits_to_keep=1)`` (``past_key_values=`` before transformers 5).

    Example:
        >>> import numpy as np
        >>> from llm_gym.models import tiny_model
        >>> policy = HFPolicy(tiny_model()[0])
        >>> cache = policy.start(num_rows=2, vocab_size=260)
        >>> ids = np.array([[72, 105, 0], [72, 0, 0]])
        >>> policy.next_token_logits(cache, ids, fed=np.zeros(2, int), lengths=np.array([2, 1]),
        ...                          done=np.zeros(2, bool)).shape
        torch.Size([2, 260])
    """

    def __init__(self, model: torch.nn.Module) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"HFPolicy needs a torch.nn.Module causal LM, got "
                            f"{type(model).__name__}")
        self.model = model
        # transformers 5 renamed past_key_values to cache (the old name warns on every call).
        self.cache_arg = cache_argument(model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def start(self, num_rows: int, vocab_size: int) -> _KVCache:
        from transformers import DynamicCache

        return _KVCache(DynamicCache(), np.arange(num_rows),
                        torch.zeros((num_rows, 0), dtype=torch.long, device=self.device),
                        np.zeros(num_rows, dtype=np.int64), int(vocab_size))

    @torch.no_grad()
    def next_token_logits(self, cache: _KVCache, input_ids: np.ndarray, fed: np.ndarray,
                          lengths: np.ndarray, done: np.ndarray) -> torch.Tensor:
        device = self.device
        self._drop_finished(cache, done)
        rows = cache.rows
        new = lengths[rows] - fed[rows]
        width = max(int(new.max()), 1)
        # Left-pad: column j of row k holds token lengths-width+j, real when it is not yet fed.
        cols = lengths[rows, None] - width + np.arange(width)
        real = cols >= fed[rows, None]
        chunk = np.where(real, input_ids[rows[:, None], np.clip(cols, 0, None)], 0)
        mask = torch.from_numpy(real.astype(np.int64)).to(device)
        position_ids = (torch.from_numpy(cache.positions).to(device)[:, None]
                        + mask.cumsum(dim=1) - 1).clamp(min=0)
        cache.attention = torch.cat([cache.attention, mask], dim=1)
        out = self.model(
            input_ids=torch.from_numpy(chunk).to(device), attention_mask=cache.attention,
            position_ids=position_ids, use_cache=True, logits_to_keep=1,
            **{self.cache_arg: cache.cache},
        )
        cache.cache = getattr(out, self.cache_arg)
        cache.positions += new
        # Stays on the model's device: only the sampled ids and log-probs go to the host.
        logits = torch.zeros((len(done), cache.vocab_size), dtype=torch.float32, device=device)
        logits[torch.from_numpy(rows).to(device)] = out.logits[:, -1, : cache.vocab_size].float()
        return logits

    @staticmethod
    def _drop_finished(cache: _KVCache, done: np.ndarray) -> None:
        keep = np.flatnonzero(~done[cache.rows])
        if len(keep) == len(cache.rows):
            return
        index = torch.from_numpy(keep).to(cache.attention.device)
        cache.cache.batch_select_indices(index)
        cache.attention = cache.attention[index]
        cache.rows, cache.positions = cache.rows[keep], cache.positions[keep]

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any
              ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return chosen_logprobs(self.model, input_ids, attention_mask, **kwargs)


def as_policy(policy: Policy | torch.nn.Module) -> Policy:
    """``policy`` itself, or a plain model wrapped in :class:`HFPolicy`.

    Example:
        >>> from llm_gym.models import tiny_model
        >>> type(as_policy(tiny_model()[0])).__name__
        'HFPolicy'
    """
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, torch.nn.Module):
        return HFPolicy(policy)
    raise TypeError(f"expected a Policy or a torch.nn.Module causal LM, got "
                    f"{type(policy).__name__}; wrap other backends in a Policy subclass")
