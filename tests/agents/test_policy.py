"""The policy seam between rollout and model (issue 8, point 3), and compact action masks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import llm_gym  # noqa: F401
from llm_gym.agents.policy import HFPolicy, Policy, as_policy
from llm_gym.agents.rollout import collect_rollouts, sequence_logprobs
from llm_gym.models import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BigramPolicy(Policy):
    """A backend that is not a Hugging Face forward call: next-token logits from the last token.

    Its "cache" is just each row's last token, as a remote engine's would be its own state.
    """

    def __init__(self, vocab: int, seed: int = 0) -> None:
        self.table = torch.randn((vocab, vocab), generator=torch.Generator().manual_seed(seed))
        self.calls = 0

    @property
    def device(self) -> torch.device:
        return self.table.device

    def start(self, num_rows: int, vocab_size: int) -> dict:
        return {"vocab": vocab_size}

    def next_token_logits(self, cache, input_ids, fed, lengths, done):
        self.calls += 1
        last = torch.from_numpy(input_ids[np.arange(len(lengths)), lengths - 1])
        return self.table[last, : cache["vocab"]]

    def score(self, input_ids, attention_mask, *, positions=None, vocab_size=None,
              temperature=1.0, return_entropy=False, masks=None):
        if masks is not None:
            raise NotImplementedError("BigramPolicy scores unmasked rollouts only")
        logits = self.table[input_ids[:, :-1], :vocab_size] / (temperature or 1.0)
        logp = torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        scored = attention_mask[:, 1:].bool()
        if positions is not None:
            scored &= positions[:, 1:].bool()
        return torch.nn.functional.pad(logp * scored, (1, 0))


def _envs(env_id="llm_gym/LeftRightText-v0", n=3, **kwargs):
    return gym.make_vec(env_id, n, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", **kwargs)


def test_another_backend_rolls_out_and_scores_through_the_same_entry_points():
    policy = BigramPolicy(260)
    batch = collect_rollouts(policy, _envs(max_length=400), seed=0, temperature=0.8,
                             generator=torch.Generator().manual_seed(0))
    assert policy.calls == int(batch.lengths.max())  # one call per token step
    agent = batch.agent_mask.bool()
    logp = sequence_logprobs(policy, batch.input_ids, batch.attention_mask, vocab_size=260,
                             temperature=0.8, positions=agent)
    torch.testing.assert_close(batch.old_logprobs[agent], logp[agent], atol=1e-5, rtol=0)


def test_a_plain_model_is_wrapped_and_gives_the_same_rollout():
    model, _ = tiny_model()
    envs = _envs(constrained=True, max_length=400)
    a = collect_rollouts(model, envs, seed=1, generator=torch.Generator().manual_seed(1))
    b = collect_rollouts(HFPolicy(model), envs, seed=1,
                         generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.old_logprobs, b.old_logprobs)
    assert torch.equal(a.action_masks.token_ids, b.action_masks.token_ids)
    assert as_policy(b_policy := HFPolicy(model)) is b_policy
    with pytest.raises(TypeError, match="Policy or a torch.nn.Module"):
        as_policy("gpt2")


def test_allowed_tokens_are_the_dense_mask_and_the_observation_contract_holds():
    envs = _envs(n=2, constrained=True, max_length=400)
    base = envs.unwrapped
    obs, _ = envs.reset(seed=0)
    for _ in range(3):
        rows, ids = base.allowed_tokens()
        dense = np.zeros_like(obs["action_mask"], dtype=bool)
        dense[rows, ids] = True
        assert np.array_equal(dense, obs["action_mask"].astype(bool))
        assert np.array_equal(dense, base.action_masks())
        obs, *_ = envs.step(ids[np.searchsorted(rows, [0, 1])])  # first allowed id per row
        assert envs.observation_space.contains(obs)
    with base.compact_action_masks():
        assert "action_mask" not in envs.step(np.zeros(2, dtype=np.int64))[0]
    assert "action_mask" in envs.reset(seed=0)[0]
    assert _envs("llm_gym/Arithmetic-v0", 2).unwrapped.allowed_tokens() is None


def test_action_masks_select_repeats_and_reorders_rows():
    from llm_gym.agents.action_masks import ActionMasks

    allowed = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=torch.bool)
    masks = ActionMasks.from_dense(torch.tensor([0, 1, 1]), torch.tensor([4, 5, 6]), allowed)
    picked = masks.select([1, 0, 1])
    assert picked.rows.tolist() == [0, 0, 1, 2, 2]
    assert picked.positions.tolist() == [5, 6, 4, 5, 6]
    # Row 1's first mask allowed nothing: all True in the dense form, as the sampler drew freely.
    expected = torch.stack([torch.ones(3, dtype=torch.bool), allowed[2], allowed[0],
                            torch.ones(3, dtype=torch.bool), allowed[2]])
    assert torch.equal(picked.allowed, expected)
    assert len(masks.select([])) == 0 and masks.select([]).token_ids.numel() == 0


def test_an_env_that_overrides_only_action_mask_still_constrains_the_rollout():
    from llm_gym.envs.arithmetic import ArithmeticEnv
    from llm_gym.vector import TokenVectorEnv

    class DigitsOnly(ArithmeticEnv):
        constrains_vocabulary = True

        def action_mask(self):
            mask = np.zeros(self.vocab_size, dtype=np.int8)
            mask[[ord(c) for c in "0123456789"]] = 1  # byte tokenizer: id = byte
            return mask

    envs = TokenVectorEnv(DigitsOnly, 2, autoreset_mode="Disabled", max_new_tokens=3)
    envs.reset(seed=0)
    rows, ids = envs.allowed_tokens()
    assert rows.tolist() == [0] * 10 + [1] * 10 and set(ids.tolist()) == set(range(48, 58))
    batch = collect_rollouts(tiny_model()[0], envs, seed=0,
                             generator=torch.Generator().manual_seed(0))
    written = batch.input_ids[batch.agent_mask.bool()]
    assert ((written >= 48) & (written < 58)).all() and len(written) == 6
