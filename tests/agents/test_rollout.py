from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import llm_gym  # noqa: F401
from llm_gym.agents.rollout import RolloutBatch, collect_rollouts, sequence_logprobs
from llm_gym.models import tiny_model
from llm_gym.vector import row_info


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model(hidden_size=32, seed=3)[0]


def make_envs(env_id: str, n: int, **kwargs):
    return gym.make_vec(env_id, n, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", **kwargs)


class WidthRecorder(torch.nn.Module):
    """Wraps a causal LM and records the chunk width of every call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.widths: list[int] = []

    def forward(self, **kwargs):
        self.widths.append(int(kwargs["input_ids"].shape[1]))
        return self.inner(**kwargs)


class EosBias(torch.nn.Module):
    """Adds a constant to the end-of-turn logit, so a random tiny model ends its turns."""

    def __init__(self, inner: torch.nn.Module, eos: int, bias: float = 6.0) -> None:
        super().__init__()
        self.inner, self.eos, self.bias = inner, eos, bias

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        logits = out.logits.clone()
        logits[..., self.eos] += self.bias
        out["logits"] = logits
        return out


def assert_matches_full_forward(model, batch: RolloutBatch) -> None:
    with torch.no_grad():
        full = sequence_logprobs(model, batch.input_ids, batch.attention_mask, vocab_size=260,
                                 action_masks=batch.action_masks)
    agent = batch.agent_mask.bool()
    assert agent.any()
    torch.testing.assert_close(batch.old_logprobs[agent], full[agent], atol=1e-4, rtol=1e-4)


def test_single_turn_incremental_logprobs_equal_full_forward(model) -> None:
    envs = make_envs("llm_gym/Arithmetic-v0", 5, max_new_tokens=6)
    recorder = WidthRecorder(model)
    gen = torch.Generator().manual_seed(0)
    batch = collect_rollouts(recorder, envs, seed=0, indices=[0, 1, 2, 3, 4], generator=gen)
    assert_matches_full_forward(model, batch)
    # O(1) model work per token: after the prompt, every call feeds exactly one token per row.
    assert recorder.widths[0] == int(batch.attention_mask.sum(1).max() - batch.lengths.max()) or \
        recorder.widths[0] > 1
    assert all(w == 1 for w in recorder.widths[1:])
    assert len(recorder.widths) == int(batch.lengths.max())
    assert batch.num_agent_tokens == int(batch.agent_mask.sum())
    assert batch.valid.all()
    assert (batch.terminated | batch.truncated).all()
    assert batch.task_index.tolist() == [0, 1, 2, 3, 4]


def test_multi_turn_with_injected_replies_equals_full_forward(model) -> None:
    envs = make_envs("llm_gym/LeftRightText-v0", 3, max_new_tokens=6, constrained=True,
                     max_length=480)
    model = EosBias(model, envs.tokenizer.eos_token_id)
    recorder = WidthRecorder(model)
    gen = torch.Generator().manual_seed(1)
    batch = collect_rollouts(recorder, envs, seed=0, generator=gen)
    # Replies were injected: some call fed more than one new token in a row, and the
    # conversation holds env tokens after agent tokens.
    assert max(recorder.widths[1:]) > 1
    first_agent = batch.agent_mask.float().argmax(dim=1)
    env_after = [(batch.agent_mask[i, int(first_agent[i]):] == 0)
                 & (batch.attention_mask[i, int(first_agent[i]):] == 1)
                 for i in range(batch.num_rows)]
    assert any(bool(m.any()) for m in env_after)
    assert_matches_full_forward(model, batch)
    # Rewards sit on agent tokens only, and sum to the returns.
    assert torch.all(batch.rewards[batch.agent_mask == 0] == 0)
    torch.testing.assert_close(batch.rewards.sum(1), batch.returns)


def test_rewards_are_token_aligned_on_the_stop_token(model) -> None:
    envs = make_envs("llm_gym/Arithmetic-v0", 3, max_new_tokens=4)
    batch = collect_rollouts(model, envs, seed=0, indices=0, generator=torch.Generator())
    for i in range(batch.num_rows):
        last = int(batch.attention_mask[i].sum()) - 1
        assert batch.agent_mask[i, last] == 1
        assert batch.rewards[i, :last].abs().sum() == 0
        assert batch.rewards[i, last] == batch.returns[i]


def test_same_generator_seed_same_rollout(model) -> None:
    envs = make_envs("llm_gym/Arithmetic-v0", 3, max_new_tokens=5)
    a = collect_rollouts(model, envs, seed=1, generator=torch.Generator().manual_seed(7))
    b = collect_rollouts(model, envs, seed=1, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.input_ids, b.input_ids)
    assert torch.equal(a.old_logprobs, b.old_logprobs)


def test_greedy_and_action_mask_constrain_sampling(model) -> None:
    envs = make_envs("llm_gym/LeftRightText-v0", 3, constrained=True, max_length=600)
    batch = collect_rollouts(model, envs, seed=0, generator=torch.Generator().manual_seed(0))
    tok = envs.tokenizer
    # Constrained decoding: every turn is one of the three words, so no turn was invalid.
    for i in range(batch.num_rows):
        ids = batch.input_ids[i][batch.agent_mask[i].bool()].tolist()
        words = tok.decode(ids).split("<|im_end|>")
        assert all(w in ("left", "stay", "right", "") for w in words), words
    greedy = collect_rollouts(model, make_envs("llm_gym/Arithmetic-v0", 2, max_new_tokens=4),
                              seed=0, indices=0, temperature=0)
    assert torch.equal(greedy.input_ids[0], greedy.input_ids[1])


def test_top_p_tiny_keeps_the_argmax(model) -> None:
    envs = make_envs("llm_gym/Arithmetic-v0", 2, max_new_tokens=4)
    nucleus = collect_rollouts(model, envs, seed=0, indices=0, top_p=1e-6,
                               generator=torch.Generator().manual_seed(0))
    greedy = collect_rollouts(model, envs, seed=0, indices=0, temperature=0)
    assert torch.equal(nucleus.input_ids, greedy.input_ids)


def test_refuses_autoreset_env(model) -> None:
    envs = gym.make_vec("llm_gym/Arithmetic-v0", 2, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match="Disabled"):
        collect_rollouts(model, envs)


def test_select_and_concat_round_trip(model) -> None:
    envs = make_envs("llm_gym/Arithmetic-v0", 4, max_new_tokens=5)
    batch = collect_rollouts(model, envs, seed=0, generator=torch.Generator().manual_seed(0))
    parts = [batch.select([0, 1]), batch.select([2, 3])]
    joined = RolloutBatch.concat(parts, pad_token_id=envs.tokenizer.pad_token_id)
    width = joined.input_ids.shape[1]
    assert torch.equal(joined.input_ids, batch.input_ids[:, :width])
    assert torch.equal(joined.returns, batch.returns)
    assert joined.num_agent_tokens == batch.num_agent_tokens


def test_row_info_honours_masks() -> None:
    infos = {"a": np.array([1, 2]), "_a": np.array([True, False]),
             "sub": {"b": np.array([3, 4]), "_b": np.array([False, True])},
             "_sub": np.array([True, True])}
    assert row_info(infos, 0) == {"a": 1, "sub": {}}
    assert row_info(infos, 1) == {"sub": {"b": 4}}


def test_constrained_old_logprobs_are_those_of_the_masked_distribution(model) -> None:
    envs = make_envs("llm_gym/LeftRightText-v0", 3, constrained=True, max_length=400)
    batch = collect_rollouts(model, envs, seed=0, temperature=0.7,
                             generator=torch.Generator().manual_seed(2))
    masks = batch.action_masks
    assert masks is not None and masks.allowed.dtype == torch.bool
    agent = batch.agent_mask.bool()
    # Stored only at the agent's tokens, each of which the mask allowed.
    assert len(masks) == batch.num_agent_tokens
    assert agent[masks.rows, masks.positions].all()
    assert masks.allowed[torch.arange(len(masks)), batch.input_ids[masks.rows,
                                                                   masks.positions]].all()
    with torch.no_grad():
        masked = sequence_logprobs(model, batch.input_ids, batch.attention_mask, vocab_size=260,
                                   temperature=0.7, action_masks=masks)
        unmasked = sequence_logprobs(model, batch.input_ids, batch.attention_mask,
                                     vocab_size=260, temperature=0.7)
    torch.testing.assert_close(batch.old_logprobs[agent], masked[agent], atol=1e-4, rtol=0)
    # Renormalising over the allowed tokens raises every log-prob, by a lot on a random model.
    assert (masked[agent] > unmasked[agent] + 1e-3).all()
    # Off the agent's tokens the mask changes nothing.
    torch.testing.assert_close(masked[~agent], unmasked[~agent], atol=0, rtol=0)
    # Entropy stays finite with -inf logits.
    _, entropy = sequence_logprobs(model, batch.input_ids, batch.attention_mask, vocab_size=260,
                                   action_masks=masks, return_entropy=True)
    assert torch.isfinite(entropy).all()


def test_masked_logprobs_have_finite_gradients(model) -> None:
    envs = make_envs("llm_gym/LeftRightText-v0", 2, constrained=True, max_length=400)
    batch = collect_rollouts(model, envs, seed=1, generator=torch.Generator().manual_seed(1))
    model.zero_grad()
    logp = sequence_logprobs(model, batch.input_ids, batch.attention_mask, vocab_size=260,
                             action_masks=batch.action_masks)
    logp.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()


def test_unconstrained_rollout_has_no_masks_and_unchanged_logprobs(model) -> None:
    envs = make_envs("llm_gym/Arithmetic-v0", 2, max_new_tokens=4)
    batch = collect_rollouts(model, envs, seed=0, generator=torch.Generator().manual_seed(0))
    assert batch.action_masks is None
    with torch.no_grad():
        a = sequence_logprobs(model, batch.input_ids, batch.attention_mask, vocab_size=260)
        b = sequence_logprobs(model, batch.input_ids, batch.attention_mask, vocab_size=260,
                              action_masks=None)
        # The unmasked path equals the plain log-softmax (logit - logsumexp: within 1e-5).
        ids, att = batch.input_ids, batch.attention_mask
        logits = model(input_ids=ids, attention_mask=att, position_ids=(att.cumsum(1) - 1)
                       .clamp(min=0), use_cache=False).logits[:, :-1, :260].float()
        plain = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    assert torch.equal(a, b)
    assert torch.allclose(a[:, 1:], plain * att[:, 1:], atol=1e-5)


def test_select_and_concat_carry_action_masks(model) -> None:
    envs = make_envs("llm_gym/LeftRightText-v0", 4, constrained=True, max_length=400)
    batch = collect_rollouts(model, envs, seed=0, generator=torch.Generator().manual_seed(0))
    parts = [batch.select([2, 0]), batch.select([3]), batch.select([1])]
    joined = RolloutBatch.concat(parts, pad_token_id=envs.tokenizer.pad_token_id)
    order = [2, 0, 3, 1]
    assert torch.equal(joined.input_ids, batch.select(order).input_ids)
    with torch.no_grad():
        full = sequence_logprobs(model, joined.input_ids, joined.attention_mask, vocab_size=260,
                                 action_masks=joined.action_masks)
    agent = joined.agent_mask.bool()
    torch.testing.assert_close(joined.old_logprobs[agent], full[agent], atol=1e-4, rtol=0)
    assert len(joined.action_masks) == len(batch.action_masks)
    for new, old in enumerate(order):
        mine = joined.action_masks.rows == new
        theirs = batch.action_masks.rows == old
        assert torch.equal(joined.action_masks.positions[mine],
                           batch.action_masks.positions[theirs])
        assert torch.equal(joined.action_masks.allowed[mine], batch.action_masks.allowed[theirs])
