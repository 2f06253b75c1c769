"""The token-env contract on every token id: bad input, order, UTF-8, budget, clones, options."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from llm_gym.envs.left_right_text import LeftRightTextEnv
from llm_gym.testing import (
    assert_same,
    bad_actions,
    check_bad_actions,
    check_clone,
    check_determinism,
    check_scalar_actions,
    check_step_order,
    check_token_env,
    integer_scalar_actions,
    sample_actions,
)

BAD_NAMES = [name for name, _ in bad_actions(260)]


@pytest.mark.parametrize("bad_name", BAD_NAMES)
def test_bad_action_raises_and_leaves_state_unchanged(registered_token_env_id, make_env,
                                                      bad_name):
    env = make_env(registered_token_env_id)
    obs, _ = env.reset(seed=3)
    for action in env.unwrapped.tokenizer.encode("12"):  # mid-turn, not just after reset
        obs, *_ = env.step(action)
    twin = copy.deepcopy(env)
    action = dict(bad_actions(env.action_space.n))[bad_name]
    with pytest.raises((TypeError, ValueError)) as err:
        env.step(action)
    assert str(err.value), "the error must say what was wrong"
    assert_same(env.unwrapped._observation(), obs, "observation after the bad action")
    for token in sample_actions(env, 12, seed=4):
        step = env.step(token)
        assert_same(step, twin.step(token), "step after the bad action")
        if step[2] or step[3]:
            break


def test_check_bad_actions_from_a_fresh_reset(registered_token_env_id, make_env):
    check_bad_actions(make_env(registered_token_env_id), seed=1)


def test_numpy_integer_scalars_are_accepted(registered_token_env_id, make_env):
    check_scalar_actions(make_env(registered_token_env_id), seed=2)


def test_step_before_reset_and_after_the_end_raise(registered_token_env_id, make_env):
    check_step_order(lambda: make_env(registered_token_env_id), seed=0)
    # The unwrapped env raises by itself (not only Gymnasium's OrderEnforcing wrapper).
    check_step_order(lambda: make_env(registered_token_env_id).unwrapped, seed=0)


def test_pickle_and_deepcopy_mid_episode_continue_identically(registered_token_env_id, make_env,
                                                              trace_length):
    n = trace_length(registered_token_env_id, 120)
    check_clone(lambda: make_env(registered_token_env_id), seed=5, n=n)


def test_check_token_env_passes(registered_token_env_id, make_env, trace_length):
    n = trace_length(registered_token_env_id, 200)
    check_token_env(make_env(registered_token_env_id), n=n)


def test_response_at_the_token_budget_is_truncated(registered_token_env_id, make_env):
    env = make_env(registered_token_env_id)
    env.reset(seed=0)
    budget = env.unwrapped.max_new_tokens
    token = env.unwrapped.tokenizer.encode("a")[0]
    for i in range(budget - 1):
        _, _, terminated, truncated, _ = env.step(token)
        assert not (terminated or truncated), f"episode ended at token {i + 1} of {budget}"
    _, _, _, truncated, _ = env.step(token)
    assert truncated


def test_tokens_ending_inside_a_utf8_character_decode(registered_token_env_id, make_env):
    env = make_env(registered_token_env_id, render_mode="ansi")
    env.reset(seed=0)
    base = env.unwrapped
    seen: list[str] = []
    original = base.end_turn

    def spy(response, response_ids, finished):
        seen.append(response)
        return original(response, response_ids, finished)

    base.end_turn = spy
    partial = base.tokenizer.encode("€")[:-1]  # first bytes of a 3-byte character
    assert partial, "the tokenizer must split '€' for this test to mean anything"
    for token in partial:
        env.step(token)
    assert "\ufffd" in env.render()
    env.step(base.tokenizer.eos_token_id)
    assert seen and "\ufffd" in seen[0]


def test_observation_marks_exactly_the_agent_tokens(registered_token_env_id, make_env):
    env = make_env(registered_token_env_id)
    obs, info = env.reset(seed=0)
    prompt = int(obs["attention_mask"].sum())
    assert obs["agent_mask"].sum() == 0
    tokens = sample_actions(env, 4, seed=9)
    tokens = tokens[tokens != env.unwrapped.tokenizer.eos_token_id][:2]
    for token in tokens:
        obs, *_ = env.step(token)
        assert env.observation_space.contains(obs)
    agent = np.flatnonzero(obs["agent_mask"])
    assert agent.tolist() == list(range(prompt, prompt + len(tokens)))
    assert obs["input_ids"][agent].tolist() == tokens.tolist()


def test_pinned_index_gives_the_same_prompt_whatever_the_seed(registered_token_env_id,
                                                              make_env):
    env = make_env(registered_token_env_id)
    first, _ = env.reset(seed=0, options={"index": 1})
    second, _ = env.reset(seed=123, options={"index": 1})
    assert_same(first, second, "observation of pinned item 1")
    with pytest.raises(ValueError, match="index"):
        env.reset(options={"index": -1})
    with pytest.raises(TypeError, match="index"):
        env.reset(options={"index": True})
    limit = env.unwrapped.num_tasks
    if limit is not None:
        with pytest.raises(ValueError, match="index"):
            env.reset(options={"index": limit})


def test_integer_scalar_spellings_cover_numpy_types():
    names = [name for name, _ in integer_scalar_actions(5)]
    assert {"numpy_int64", "numpy_int32", "array_0d"} <= set(names)


# The checks themselves must be able to fail: each broken env below breaks one contract.
class _AcceptsBools(LeftRightTextEnv):
    def validate_action(self, action):
        return int(action)


class _LeaksAcrossEpisodes(LeftRightTextEnv):
    episodes = 0

    def end_turn(self, response, response_ids, finished):
        result = super().end_turn(response, response_ids, finished)
        self.episodes += 1
        result.reward += self.episodes
        return result


class _SilentAfterEnd(LeftRightTextEnv):
    def _check_can_step(self):
        if self.task is None:
            raise RuntimeError("step() before reset()")
        self._needs_reset = False


def test_check_bad_actions_catches_an_env_that_accepts_bools():
    with pytest.raises(AssertionError, match="bad action"):
        check_bad_actions(_AcceptsBools())


def test_check_determinism_catches_state_leaking_across_resets():
    with pytest.raises(AssertionError, match="differs"):
        check_determinism(_LeaksAcrossEpisodes, seed=0, n=60)


def test_check_step_order_catches_silent_progress():
    with pytest.raises(AssertionError, match="did not raise"):
        check_step_order(_SilentAfterEnd)
