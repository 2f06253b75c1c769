"""Log-probs and entropies of chosen tokens, only where they are trained, in bounded memory.

The straightforward way — run the LM head over every position, upcast the ``(B, T, V)`` logits to
float32, take a full ``log_softmax`` and gather — costs ``B * T * V * 4`` bytes several times
over (logits, log-softmax, their gradients). With Qwen2.5's 151,936-token vocabulary a
micro-batch of 4 x 1,024 tokens peaks at about 7 GB, most of it spent on prompt positions that
are never trained. Here:

* the model body runs once; the LM head runs only on the positions whose next token is scored
  (the agent's tokens), gathered into one ``(N, H)`` block;
* each chunk of positions computes ``logit[label] - logsumexp(logits)`` (and the entropy) in
  float32, and under autograd its logits are recomputed in the backward pass (activation
  checkpointing), so at most one ``(chunk, V)`` block of logits is alive at a time.

Models whose head is more than a linear layer (final-logit soft-capping, logit scaling) take the
full-logits path, which gives the same numbers.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

# Logit elements per LM-head chunk: 2**25 fp32 = 128 MiB per buffer (about 220 positions with
# a 151,936-token vocabulary); a handful of such buffers live at once in the backward pass.
CHUNK_ELEMENTS = 2**25
# Work a shared prefix must save (body parameters x prefix tokens not recomputed) to be worth
# a second body call, whose fixed cost is a few milliseconds on a CPU: the 0.1M-parameter test
# model runs faster without sharing until ~1,000 repeated tokens; SmolLM2's 44-token prompt in
# a group of 4 saves 2e10.
MIN_SHARED_WORK = 10**8


def chosen_logprobs(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
    positions: torch.Tensor | None = None, vocab_size: int | None = None,
    temperature: float = 1.0, return_entropy: bool = False, masks: Any = None,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``(B, T)`` log-prob of token t given tokens < t, at ``positions`` only (elsewhere 0).

    Args:
        model: a causal LM (transformers, optionally wrapped by peft); gradients flow when
            called outside ``torch.no_grad``.
        input_ids: ``(B, T)`` right-padded token ids.
        attention_mask: ``(B, T)`` 1 on real tokens.
        positions: ``(B, T)`` bool, the tokens to score (e.g. the agent's); default every real
            token after the first.
        vocab_size: ignore logits at or beyond it (the env's action space).
        temperature: divide the logits by it, as sampling did (0 is treated as 1).
        return_entropy: also return the ``(B, T)`` entropy of each scored prediction.
        masks: an :class:`~llm_gym.agents.action_masks.ActionMasks`: forbidden tokens get -inf at
            its positions, as in the masked distribution the rollout sampled from.
        chunk_size: positions per LM-head chunk (bounds peak memory); default
            :data:`CHUNK_ELEMENTS` divided by the vocabulary size.

    Example:
        >>> from llm_gym.models import tiny_model
        >>> model, _ = tiny_model()
        >>> ids = torch.tensor([[72, 105, 33, 10]])
        >>> chosen_logprobs(model, ids, torch.ones_like(ids)).shape
        torch.Size([1, 4])
    """
    states = final_states(model, input_ids, attention_mask)
    return states_logprobs(states, input_ids, attention_mask, positions=positions,
                           vocab_size=vocab_size, temperature=temperature,
                           return_entropy=return_entropy, masks=masks, chunk_size=chunk_size)


class FinalStates(NamedTuple):
    """What predicts each next token: the body's last hidden states and the head to apply."""

    states: torch.Tensor        # (B, T, H) hidden states, or (B, T, V) logits without a head
    project: Any                # the LM head (or the identity when ``states`` are logits)
    hidden: torch.Tensor | None  # (B, T, H) last hidden states (for a value head)


def final_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 need_hidden: bool = False) -> FinalStates:
    """Run the model once; the LM head is left for :func:`states_logprobs` to apply sparsely."""
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    head, body = _head_and_body(model)
    if head is None:  # the head is not a plain linear map: full logits, same numbers
        out = model(input_ids=input_ids, attention_mask=attention_mask,
                    position_ids=position_ids, use_cache=False,
                    output_hidden_states=need_hidden)
        return FinalStates(out.logits, _identity, out.hidden_states[-1] if need_hidden else None)
    states = _body_states(body, input_ids, attention_mask, position_ids)
    return FinalStates(states, head, states)


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """Leading columns in which every row holds the same real token (at most width - 1).

    Example:
        >>> ids = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 0]])
        >>> shared_prefix_length(ids, torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
        2
    """
    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0) & attention_mask.bool().all(dim=0)
    differs = (~same).nonzero()
    length = int(differs[0]) if len(differs) else input_ids.shape[1]
    return min(length, input_ids.shape[1] - 1)


def _body_states(body: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 position_ids: torch.Tensor) -> torch.Tensor:
    """The body's last hidden states, running a prefix all rows share once.

    A GRPO group repeats one prompt, and a chat template opens every prompt with the same
    system turn: the rows' common prefix runs once, its keys and values are repeated for every
    row and the rest runs on top of them (the shared-prefix forward of Prefix Grouper, Liu et
    al. 2025). Gradients flow through the repeated keys and values, so the result and its
    gradients are those of the plain forward; on Arithmetic-v0 with SmolLM2 the prompt is
    ~80% of each row (issue 24). Bodies without a key/value cache, and prefixes too short to
    pay for the second call (:data:`MIN_SHARED_WORK`), take the plain forward.
    """
    def plain() -> torch.Tensor:
        return body(input_ids=input_ids, attention_mask=attention_mask,
                    position_ids=position_ids, use_cache=False).last_hidden_state

    rows = input_ids.shape[0]
    prefix = shared_prefix_length(input_ids, attention_mask)
    if (prefix == 0 or not _caches(body) or (rows - 1) * prefix
            * sum(p.numel() for p in body.parameters()) < MIN_SHARED_WORK):
        return plain()
    shared = body(input_ids=input_ids[:1, :prefix], attention_mask=attention_mask[:1, :prefix],
                  position_ids=position_ids[:1, :prefix], use_cache=True)
    name = cache_argument(body)
    cache = getattr(shared, name, None)
    if not hasattr(cache, "batch_repeat_interleave"):  # a legacy tuple cache (old transformers)
        return plain()
    cache.batch_repeat_interleave(rows)
    rest = body(input_ids=input_ids[:, prefix:], attention_mask=attention_mask,
                position_ids=position_ids[:, prefix:], use_cache=True, **{name: cache})
    return torch.cat([shared.last_hidden_state.expand(rows, -1, -1), rest.last_hidden_state],
                     dim=1)


def _caches(body: torch.nn.Module) -> bool:
    """Whether ``body`` takes and returns a key/value cache in this mode."""
    if getattr(body, "gradient_checkpointing", False) and body.training:
        return False  # transformers turns the cache off under gradient checkpointing
    return bool({"cache", "past_key_values"} & _forward_parameters(body))


def _forward_parameters(module: torch.nn.Module) -> set[str]:
    """The keyword names ``module.forward`` takes (none where its signature cannot be read)."""
    try:
        return set(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return set()


def cache_argument(model: torch.nn.Module) -> str:
    """The keyword a causal LM takes its KV cache under: ``cache`` or ``past_key_values``.

    Example:
        >>> from llm_gym.models import tiny_model
        >>> cache_argument(tiny_model()[0]) in ("cache", "past_key_values")
        True
    """
    from transformers import PreTrainedModel

    # The first transformers model inside (peft and user wrappers forward **kwargs to it).
    lm = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), model)
    return "cache" if "cache" in _forward_parameters(lm) else "past_key_values"


def states_logprobs(
    final: FinalStates, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
    positions: torch.Tensor | None = None, vocab_size: int | None = None,
    temperature: float = 1.0, return_entropy: bool = False, masks: Any = None,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`chosen_logprobs` from states already computed by :func:`final_states`."""
    real = attention_mask.bool()
    scored = real.clone() if positions is None else positions.bool() & real
    scored[:, 0] = False  # nothing predicts the first token
    rows, cols = scored.nonzero(as_tuple=True)
    allowed = _allowed_rows(masks, rows, cols, scored.shape) if masks is not None else None
    hidden = final.states[rows, cols - 1]  # (N, H): the state that predicts each scored token
    labels = input_ids[rows, cols]
    scale = temperature if temperature > 0 else 1.0
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ELEMENTS // (vocab_size or _vocab(final)))
    logps, entropies = [], []
    for start in range(0, len(labels), chunk_size):
        part = slice(start, start + chunk_size)
        args = (hidden[part], labels[part], None if allowed is None else allowed[part])
        if torch.is_grad_enabled() and hidden.requires_grad:
            logp, ent = checkpoint(_score_chunk, final.project, *args, vocab_size, scale,
                                   return_entropy, use_reentrant=False)
        else:
            logp, ent = _score_chunk(final.project, *args, vocab_size, scale, return_entropy)
        logps.append(logp)
        entropies.append(ent)
    out = torch.zeros(scored.shape, dtype=torch.float32, device=input_ids.device)
    out = out.index_put((rows, cols), torch.cat(logps) if logps else out.new_zeros(0))
    if not return_entropy:
        return out
    entropy = torch.zeros_like(out).index_put(
        (rows, cols), torch.cat(entropies).detach() if entropies else out.new_zeros(0))
    return out, entropy


def _score_chunk(project: Any, hidden: torch.Tensor, labels: torch.Tensor,
                 allowed: torch.Tensor | None, vocab_size: int | None, scale: float,
                 return_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    logits = project(hidden)  # (n, V)
    if vocab_size is not None:
        logits = logits[:, :vocab_size]
    logits = logits.float()
    if scale != 1.0:
        logits = logits / scale
    if allowed is not None:  # (n, 1 + V_mask): column 0 says whether the position had a mask
        has_mask, allowed = allowed[:, :1], allowed[:, 1:]
        width = min(allowed.shape[1], logits.shape[1])
        forbidden = torch.zeros_like(logits, dtype=torch.bool)
        forbidden[:, :width] = ~allowed[:, :width]
        forbidden[:, width:] = has_mask  # never sampled under a mask narrower than the head
        logits = logits.masked_fill(forbidden, float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(1, labels[:, None]).squeeze(1) - lse
    if not return_entropy:
        return logp, logp.new_zeros(0)
    with torch.no_grad():  # a metric, not a loss term
        probs = torch.softmax(logits, dim=-1)
        entropy = lse - (probs * logits.masked_fill(torch.isneginf(logits), 0.0)).sum(dim=-1)
    return logp, entropy


def _allowed_rows(masks: Any, rows: torch.Tensor, cols: torch.Tensor,
                  shape: torch.Size) -> torch.Tensor:
    """``(N, 1 + V_mask)`` bool: had-a-mask flag, then the mask row (all True where none).

    Built on the scoring device from the masks' allowed ids (a scatter); a mask that allows
    nothing stays all True, as the sampler drew freely there.
    """
    device = rows.device
    entry = torch.full(shape, -1, dtype=torch.long, device=device)
    entry[masks.rows.to(device), masks.positions.to(device)] = torch.arange(
        len(masks), device=device)
    picked = entry[rows, cols]  # (N,) mask of each scored position, -1 where none
    has = picked >= 0
    slot = torch.full((len(masks),), -1, dtype=torch.long, device=device)
    slot[picked[has]] = has.nonzero().squeeze(1)  # scored position of each mask
    pair_slot = slot[masks.entries.to(device)]
    kept = pair_slot >= 0
    full = torch.zeros((len(rows), 1 + masks.vocab_size), dtype=torch.bool, device=device)
    full[pair_slot[kept], 1 + masks.token_ids.to(device)[kept]] = True
    full[~has | ~full.any(dim=1), 1:] = True  # unmasked, or a mask that allowed nothing
    full[:, 0] = has
    return full


def _head_and_body(model: torch.nn.Module) -> tuple[Any, Any]:
    """The LM head and the model body, or ``(None, None)`` when the head is not plain linear."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    config = getattr(lm, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None, None
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    body = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
    if not isinstance(head, torch.nn.Linear) and not hasattr(head, "base_layer"):
        return None, None
    if body is None or body is lm:
        return None, None
    return head, body


def _identity(logits: torch.Tensor) -> torch.Tensor:
    return logits


def _vocab(final: FinalStates) -> int:
    weight = getattr(final.project, "weight", None)
    return int(weight.shape[0] if weight is not None else final.states.shape[-1])
