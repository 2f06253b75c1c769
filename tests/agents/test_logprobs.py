"""Memory-lean chosen-token log-probs equal the full log_softmax ones (issue 8, point 4)."""

from __future__ import annotations

import pytest
import torch

from llm_gym.agents.action_masks import ActionMasks
from llm_gym.agents.logprobs import chosen_logprobs
from llm_gym.models import tiny_model


def sequence_logprobs(model, input_ids, attention_mask, *, vocab_size=None, temperature=1.0,
                      return_entropy=False, action_masks=None):
    """The straightforward reference: full fp32 logits, full log_softmax, gather."""
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids, use_cache=False).logits[:, :-1]
    logits = logits[..., :vocab_size].float() / (temperature or 1.0)
    if action_masks is not None:  # -inf where the mask forbade a token; entry t predicts t + 1
        allowed = torch.nn.functional.pad(action_masks.allowed,
                                          (0, logits.shape[-1] - action_masks.allowed.shape[1]))
        index = (action_masks.rows, action_masks.positions - 1)
        logits = logits.index_put(index, logits[index].masked_fill(~allowed, float("-inf")))
    logp_all = torch.log_softmax(logits, dim=-1)
    chosen = logp_all.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    mask = attention_mask[:, 1:].to(chosen.dtype)
    logprobs = torch.nn.functional.pad(chosen * mask, (1, 0))
    if not return_entropy:
        return logprobs
    entropy = -(logp_all.exp() * logp_all.masked_fill(torch.isneginf(logp_all), 0.0)).sum(-1)
    entropy = entropy.detach() * mask
    return logprobs, torch.nn.functional.pad(entropy, (1, 0))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model, _ = tiny_model()
    return model


def _batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 256, (3, 12), generator=generator)
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0  # right padding
    agent = torch.zeros_like(ids, dtype=torch.bool)
    agent[:, 6:] = True
    return ids, attention, agent


@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_same_logprobs_and_entropy_as_the_full_softmax(model, chunk_size, temperature):
    ids, attention, agent = _batch()
    full, full_entropy = sequence_logprobs(model, ids, attention, vocab_size=260,
                                           temperature=temperature, return_entropy=True)
    lean, entropy = chosen_logprobs(model, ids, attention, positions=agent, vocab_size=260,
                                    temperature=temperature, return_entropy=True,
                                    chunk_size=chunk_size)
    scored = agent & attention.bool()
    assert torch.allclose(lean[scored], full[scored], atol=1e-5)
    assert torch.allclose(entropy[scored], full_entropy[scored], atol=1e-5)
    assert (lean[~scored] == 0).all() and (entropy[~scored] == 0).all()


def test_same_gradients_as_the_full_softmax(model):
    ids, attention, agent = _batch()
    scored = (agent & attention.bool()).float()
    grads = []
    for fn in (sequence_logprobs, chosen_logprobs):
        model.zero_grad()
        kwargs = {"positions": agent, "chunk_size": 5} if fn is chosen_logprobs else {}
        (fn(model, ids, attention, vocab_size=260, **kwargs) * scored).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()
                                if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_action_masks_apply_where_they_were_recorded(model):
    ids, attention, agent = _batch()
    allowed = torch.zeros((4, 260), dtype=torch.bool)
    allowed[:2, [ids[0, 7], ids[2, 8], 5]] = True
    allowed[3, 9] = True
    # Row 1's mask allowed nothing (the sampler drew freely there); row 0's at position 3 is
    # not scored (not the agent's).
    masks = ActionMasks.from_dense(torch.tensor([0, 2, 1, 0]), torch.tensor([7, 8, 6, 3]),
                                   allowed)
    assert masks.token_ids.shape == (7,)  # stored as allowed ids, not (4, 260) bools
    full = sequence_logprobs(model, ids, attention, vocab_size=260, action_masks=masks)
    lean = chosen_logprobs(model, ids, attention, positions=agent, vocab_size=260, masks=masks,
                           chunk_size=3)
    scored = agent & attention.bool()
    assert torch.allclose(lean[scored], full[scored], atol=1e-5)
    assert lean[0, 7] > full.new_tensor(-2.0)  # 1 of 3 allowed tokens: far above unmasked
    unmasked = chosen_logprobs(model, ids, attention, positions=agent, vocab_size=260)
    assert lean[1, 6] == unmasked[1, 6] and lean[0, 8] == unmasked[0, 8]


def test_a_shared_prompt_runs_once_with_the_plain_forwards_numbers(model, monkeypatch):
    # A GRPO group: one 20-token prompt, then different replies (one right-padded). The shared
    # prefix must run once (two body calls: the prefix for one row, the rest for all rows), and
    # the log-probs and gradients must be those of the full softmax over the plain forward.
    generator = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, 256, (1, 20), generator=generator).expand(4, 20)
    ids = torch.cat([prompt, torch.randint(0, 256, (4, 7), generator=generator)], dim=1)
    attention = torch.ones_like(ids)
    attention[2, 24:] = 0
    agent = torch.zeros_like(ids, dtype=torch.bool)
    agent[:, 20:] = True
    scored = (agent & attention.bool()).float()
    # 3 repeated prompts x 20 tokens saves too little on this 0.1M-parameter model to share by
    # default; lower the bar so the shared path runs.
    import llm_gym.agents.logprobs as logprobs

    monkeypatch.setattr(logprobs, "MIN_SHARED_WORK", 1)
    shapes = []
    hook = model.model.register_forward_hook(
        lambda module, args, out: shapes.append(tuple(out.last_hidden_state.shape)))
    try:
        results = []
        for fn in (sequence_logprobs, chosen_logprobs):
            model.zero_grad()
            kwargs = {"positions": agent} if fn is chosen_logprobs else {}
            logprobs = fn(model, ids, attention, vocab_size=260, **kwargs)
            (logprobs * scored).sum().backward()
            results.append((logprobs.detach() * scored, torch.cat(
                [p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    finally:
        hook.remove()
    assert shapes[-2:] == [(1, 20, 64), (4, 7, 64)]  # the prefix once, then the replies
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-5, rtol=1e-4)


def test_the_prefix_is_shared_only_where_it_saves_real_work(model):
    import llm_gym.agents.logprobs as logprobs

    shapes = []
    hook = model.model.register_forward_hook(
        lambda module, args, out: shapes.append(tuple(out.last_hidden_state.shape)))
    try:
        for rows, prompt in ((4, 20), (16, 120)):
            ids = torch.randint(0, 256, (1, prompt)).expand(rows, prompt)
            ids = torch.cat([ids, torch.randint(0, 256, (rows, 5))], dim=1)
            logprobs.chosen_logprobs(model, ids, torch.ones_like(ids))
    finally:
        hook.remove()
    # 60 repeated tokens: one plain call; 1,800 (x 0.1M parameters > MIN_SHARED_WORK): shared.
    assert shapes == [(4, 25, 64), (1, 120, 64), (16, 5, 64)]
