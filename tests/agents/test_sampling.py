"""The one sampler (issue 8, point 2): masks, temperature, top-k/top-p, log-probs, devices."""

from __future__ import annotations

import pytest
import torch

from llm_gym.agents.sampling import device_generator, sample_tokens

LOGITS = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]] * 4)


def _draws(n=400, **kwargs):
    generator = torch.Generator().manual_seed(0)
    ids = [sample_tokens(LOGITS, generator=generator, **kwargs)[0] for _ in range(n // 4)]
    return torch.cat(ids)


def test_logprob_is_of_the_tempered_masked_distribution_before_truncation():
    allowed = torch.tensor([[True, True, True, False, True]] * 4)
    ids, logp = sample_tokens(LOGITS, temperature=0.5, top_p=0.6, top_k=2, allowed=allowed,
                              generator=torch.Generator().manual_seed(3))
    expected = torch.log_softmax((LOGITS / 0.5).masked_fill(~allowed, float("-inf")), dim=-1)
    assert torch.allclose(logp, expected.gather(1, ids[:, None]).squeeze(1))


def test_masks_top_k_and_top_p_limit_what_is_drawn():
    assert set(_draws(allowed=torch.tensor([[False, True, False, True, False]] * 4)).tolist()) \
        <= {1, 3}
    assert set(_draws(top_k=2).tolist()) == {0, 1}
    probs = torch.softmax(LOGITS[0], dim=0)  # 0.61, 0.22, ...: the nucleus at 0.7 is {0, 1}
    assert probs[0] < 0.7 <= probs[:2].sum()
    assert set(_draws(top_p=0.7).tolist()) == {0, 1}
    assert len(set(_draws().tolist())) >= 4  # untruncated: the tail is drawn too


def test_greedy_reproducible_and_free_rows():
    assert sample_tokens(LOGITS, temperature=0)[0].tolist() == [0, 0, 0, 0]
    assert torch.equal(_draws(), _draws())  # same generator seed, same tokens
    nothing = torch.zeros((4, 5), dtype=torch.bool)
    ids, logp = sample_tokens(LOGITS, temperature=0, allowed=nothing)
    assert ids.tolist() == [0, 0, 0, 0] and torch.isfinite(logp).all()


def test_bad_arguments_and_generators():
    for kwargs in ({"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -1}):
        with pytest.raises(ValueError, match="temperature"):
            sample_tokens(LOGITS, **kwargs)
    cpu = torch.Generator().manual_seed(1)
    assert device_generator(cpu, torch.device("cpu")) is cpu
    assert device_generator(None, torch.device("cpu")) is None


def test_no_vocabulary_sized_tensor_goes_to_the_host_in_the_token_loop(monkeypatch):
    # On a GPU, .cpu()/.numpy()/.tolist() are the device -> host copies; on this CPU they are
    # still the calls that would be. Record every tensor they see during a rollout.
    import gymnasium as gym

    from llm_gym.agents.rollout import collect_rollouts
    from llm_gym.models import tiny_model

    model, tokenizer = tiny_model()
    vocab = tokenizer.vocab_size
    seen: list[tuple[int, ...]] = []
    for name in ("cpu", "numpy", "tolist", "item"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, **kwargs):
            seen.append(tuple(self.shape))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    envs = gym.make_vec("llm_gym/LeftRightText-v0", 4, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", constrained=True, max_length=400)
    batch = collect_rollouts(model, envs, seed=0, generator=torch.Generator().manual_seed(0))
    assert batch.num_rows == 4 and seen  # the loop did copy its ids and log-probs
    assert all(vocab not in shape for shape in seen), sorted(set(seen))


def test_no_dense_action_mask_is_built_on_the_host_in_the_token_loop(monkeypatch):
    # The constrained env hands over allowed token ids; the (batch, vocab) mask is built on the
    # model's device. Record the shape of every numpy array made from scratch (and every
    # torch.from_numpy) while the rollout runs.
    import gymnasium as gym
    import numpy as np

    from llm_gym.agents.rollout import collect_rollouts
    from llm_gym.models import tiny_model

    model, tokenizer = tiny_model()
    vocab = tokenizer.vocab_size
    envs = gym.make_vec("llm_gym/LeftRightText-v0", 4, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", constrained=True, max_length=400)
    seen: list[tuple[int, ...]] = []

    def spy_on(module, name):
        original = getattr(module, name)

        def spy(*args, **kwargs):
            out = original(*args, **kwargs)
            seen.extend(tuple(np.shape(o)) for o in (out if isinstance(out, tuple) else (out,)))
            return out

        monkeypatch.setattr(module, name, spy)

    for name in ("zeros", "ones", "empty", "full", "array", "asarray", "stack", "concatenate",
                 "nonzero", "flatnonzero"):
        spy_on(np, name)
    spy_on(torch, "from_numpy")
    batch = collect_rollouts(model, envs, seed=0, generator=torch.Generator().manual_seed(0))
    assert batch.action_masks is not None and len(batch.action_masks) == batch.num_agent_tokens
    assert seen and all(vocab not in shape for shape in seen), sorted(set(seen))
    # The spy does see the dense mask where one is built: the observation outside the rollout,
    # whose contract (obs["action_mask"], (batch, vocab)) the rollout left as it was.
    obs, _ = envs.reset(seed=0)
    assert obs["action_mask"].shape == (4, vocab) and (4, vocab) in seen
