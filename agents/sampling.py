"""The one next-token sampler: temperature, top-k, top-p and action masks, where the logits are.

It runs on the logits' device and returns only ``(B,)`` token ids and their log-probs, so per
token step nothing with a vocabulary dimension crosses between device and host (moving a
``(256, 151936)`` float32 block to the host and sampling there costs ~156 MB and ~2 s of CPU per
step, against a few ms of GPU forward pass).

The log-prob is that of the distribution sampled from *before* top-k/top-p truncation
(tempered, with the action mask applied): it is what the trainers recompute from the model
(:func:`llm_gym.agents.logprobs.chosen_logprobs`), so importance ratios start at exactly 1.
"""

from __future__ import annotations

import numpy as np
import torch


def sample_tokens(
    logits: torch.Tensor, *, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
    allowed: torch.Tensor | None = None, generator: torch.Generator | None = None,
    uniforms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row; ``(ids, logprobs)``, both ``(B,)`` on ``logits.device``.

    Args:
        logits: ``(B, V)`` next-token logits.
        temperature: divide the logits by it; ``0`` means greedy (argmax).
        top_p: nucleus threshold (1 disables it).
        top_k: keep the k most likely tokens (0 disables it).
        allowed: ``(B, V)`` bool action mask on any device; a row with nothing allowed
            samples freely.
        generator: a ``torch.Generator`` on ``logits.device`` (for reproducible sampling).
        uniforms: ``(B,)`` draws in ``(0, 1]``, one per row, instead of ``generator``: row i
            takes the token where the cumulative probability first reaches ``uniforms[i]``
            (inverse-CDF sampling). A row's token then depends on its own draw only, not on
            which other rows share the batch, which is what lets rollout workers sample their
            slice of a batch exactly as one process samples the whole
            (:func:`row_uniforms`).

    Example:
        >>> logits = torch.tensor([[0.0, 5.0, 0.0], [3.0, 0.0, 0.0]])
        >>> ids, logp = sample_tokens(logits, temperature=0)
        >>> ids.tolist()
        [1, 0]
        >>> ids, _ = sample_tokens(logits, allowed=torch.tensor([[True, False, True]] * 2),
        ...                        temperature=0)
        >>> ids.tolist()
        [0, 0]
    """
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"need temperature >= 0, 0 < top_p <= 1 and top_k >= 0, got "
                         f"{temperature}, {top_p}, {top_k}")
    scores = logits.float()
    if temperature > 0:
        scores = scores / temperature
    if allowed is not None:
        allowed = allowed.to(scores.device, non_blocking=True)
        allowed = allowed | ~allowed.any(dim=1, keepdim=True)  # nothing allowed: sample freely
        scores = scores.masked_fill(~allowed, float("-inf"))
    logprobs = torch.log_softmax(scores, dim=-1)
    if temperature == 0:
        ids = scores.argmax(dim=-1)
    else:
        truncated = _top_k(_top_p(scores, logprobs, top_p), top_k)
        probs = torch.softmax(truncated, dim=-1)
        if uniforms is None:
            uniforms = 1.0 - torch.rand(len(probs), generator=generator, device=probs.device)
        cdf = probs.cumsum(dim=-1)
        # The first token whose cumulative mass reaches u (scaled: the sum may round below 1).
        # u > 0, so a zero-probability token (a flat step of the CDF) is never the first.
        target = uniforms.to(cdf.device, cdf.dtype)[:, None] * cdf[:, -1:]
        ids = (cdf < target).sum(dim=-1).clamp(max=probs.shape[-1] - 1)
    return ids, logprobs.gather(1, ids[:, None]).squeeze(1)


def row_uniforms(seed: int, rows: range, steps: int) -> torch.Tensor:
    """``(len(rows), steps)`` float32 draws in ``(0, 1]``: row r's depend on ``(seed, r)`` only.

    Each batch row has its own stream (as vLLM gives each request its own seeded generator),
    so rows ``a..b`` of a batch draw the same numbers whether one process samples the whole
    batch or a rollout worker samples only that slice.

    Example:
        >>> whole, part = row_uniforms(7, range(0, 4), 3), row_uniforms(7, range(2, 4), 3)
        >>> bool((whole[2:] == part).all()), bool((whole > 0).all() and (whole <= 1).all())
        (True, True)
    """
    table = np.empty((len(rows), steps), dtype=np.float32)
    for i, row in enumerate(rows):
        table[i] = np.random.default_rng([int(seed), int(row)]).random(steps, dtype=np.float32)
    return torch.from_numpy(1.0 - table)


def mask_from_token_ids(rows: torch.Tensor, token_ids: torch.Tensor, num_rows: int,
                        vocab_size: int, device: torch.device | str) -> torch.Tensor:
    """``(num_rows, vocab_size)`` bool mask on ``device``, True at each ``(rows[k], token_ids[k])``.

    Only the ``(M,)`` index pairs travel to ``device``; the vocabulary-wide mask is built there
    (a scatter, no host sync). Every id must be below ``vocab_size``.

    Example:
        >>> mask_from_token_ids(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 0]), 2, 3, "cpu")
        tensor([[False,  True,  True],
                [ True, False, False]])
    """
    rows = rows.to(device, non_blocking=True)
    token_ids = token_ids.to(device, non_blocking=True)
    mask = torch.zeros((num_rows, vocab_size), dtype=torch.bool, device=device)
    mask[rows, token_ids] = True
    return mask


def _top_p(scores: torch.Tensor, logprobs: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1:
        return scores
    sorted_logp, order = logprobs.sort(dim=-1, descending=True)
    sorted_probs = sorted_logp.exp()
    # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
    drop = torch.zeros_like(outside).scatter(1, order, outside)
    return scores.masked_fill(drop, float("-inf"))


def _top_k(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    if top_k <= 0 or top_k >= scores.shape[-1]:
        return scores
    kth = scores.topk(top_k, dim=-1).values[:, -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


def device_generator(generator: torch.Generator | None,
                     device: torch.device) -> torch.Generator | None:
    """A generator on ``device`` seeded from ``generator`` (a CPU one), or ``generator`` itself.

    ``torch.multinomial`` needs a generator on the device of its input; drawing the seed from
    the caller's CPU generator keeps runs reproducible and checkpointable (only the CPU state
    is saved).
    """
    if generator is None or torch.device(device).type == generator.device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)
