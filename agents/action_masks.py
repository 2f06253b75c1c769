"""The env's action masks at a batch's agent tokens, kept as allowed token ids.

A rollout records, at every token the agent wrote under a mask, only the ids the mask allowed,
so a batch's masks cost a few ids per token instead of a vocabulary-wide row
(:class:`ActionMasks`); the trainers rebuild dense rows on the device when they score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ActionMasks:
    """The env's action masks at the agent's tokens of a batch, as allowed token ids.

    Only agent positions are kept (``N`` of them), and each keeps only its allowed ids (``M``
    pairs in all), so memory is a few ids per token rather than ``N * vocab`` bools. Indexing
    with rows (``masks[rows]``) selects and renumbers them, so a dict of batch tensors holding
    one can be sliced like the tensors. A mask that allows nothing means "sample freely", as in
    :func:`~llm_gym.agents.sampling.sample_tokens`.

    Attributes:
        rows: ``(N,)`` batch row of each masked token.
        positions: ``(N,)`` position of the token in its row (the token the mask constrained).
        entries: ``(M,)`` which mask (``0 .. N-1``) each allowed id belongs to.
        token_ids: ``(M,)`` the allowed ids.
        vocab_size: width of the dense form (:attr:`allowed`).

    Example:
        >>> m = ActionMasks.from_dense(torch.tensor([0, 1]), torch.tensor([2, 3]),
        ...                            torch.tensor([[True, False], [False, True]]))
        >>> m.token_ids.tolist(), m[torch.tensor([1])].positions.tolist()
        ([0, 1], [3])
        >>> m[torch.tensor([1])].allowed.tolist()
        [[False, True]]
    """

    rows: torch.Tensor
    positions: torch.Tensor
    entries: torch.Tensor
    token_ids: torch.Tensor
    vocab_size: int

    @classmethod
    def from_dense(cls, rows: torch.Tensor, positions: torch.Tensor,
                   allowed: torch.Tensor) -> ActionMasks:
        """From an ``(N, vocab)`` bool array (True = allowed) at ``(rows, positions)``."""
        entries, token_ids = torch.as_tensor(allowed).bool().nonzero(as_tuple=True)
        return cls(rows, positions, entries, token_ids, int(allowed.shape[1]))

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def allowed(self) -> torch.Tensor:
        """``(N, vocab)`` bool, True where allowed (a mask allowing nothing: all True).

        Materialises the dense form: for inspection and small batches, not per token step.
        """
        dense = torch.zeros((len(self), self.vocab_size), dtype=torch.bool,
                            device=self.rows.device)
        dense[self.entries, self.token_ids] = True
        dense[~dense.any(dim=1)] = True
        return dense

    def select(self, rows: torch.Tensor | np.ndarray | list[int]) -> ActionMasks:
        """The masks of batch rows ``rows``, renumbered ``0 .. len(rows) - 1`` in that order."""
        rows = torch.as_tensor(np.asarray(torch.as_tensor(rows).cpu(), dtype=np.int64))
        new_row, entry = (self.rows.cpu()[None, :] == rows[:, None]).nonzero(as_tuple=True)
        entry = entry.to(self.rows.device)
        new_entries, pairs = self._pairs_of(entry)
        return ActionMasks(new_row.to(self.rows.device), self.positions[entry], new_entries,
                           self.token_ids[pairs], self.vocab_size)

    __getitem__ = select

    def _pairs_of(self, entry: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For masks ``entry`` (repeats allowed): each pair's new mask number and old index."""
        device = self.entries.device
        entry = entry.to(device)
        counts = torch.bincount(self.entries, minlength=len(self))
        order = torch.argsort(self.entries, stable=True)  # pairs grouped by mask
        starts = counts.cumsum(0) - counts
        take = counts[entry]
        new_entries = torch.repeat_interleave(torch.arange(len(entry), device=device), take)
        first = torch.repeat_interleave(take.cumsum(0) - take, take)
        within = torch.arange(len(new_entries), device=device) - first
        return new_entries, order[torch.repeat_interleave(starts[entry], take) + within]

    def to(self, device: torch.device | str) -> ActionMasks:
        """The masks on ``device``."""
        return ActionMasks(self.rows.to(device), self.positions.to(device),
                           self.entries.to(device), self.token_ids.to(device), self.vocab_size)

    @classmethod
    def concat(cls, masks: list[ActionMasks], num_rows: list[int]) -> ActionMasks:
        """The masks of batches stacked row-wise (``num_rows``: each batch's rows)."""
        row_offsets = np.cumsum([0, *num_rows[:-1]])
        entry_offsets = np.cumsum([0] + [len(m) for m in masks[:-1]])
        return cls(
            torch.cat([m.rows + int(o) for m, o in zip(masks, row_offsets, strict=True)]),
            torch.cat([m.positions for m in masks]),
            torch.cat([m.entries + int(o) for m, o in zip(masks, entry_offsets, strict=True)]),
            torch.cat([m.token_ids for m in masks]), max(m.vocab_size for m in masks))


__all__ = ["ActionMasks"]
