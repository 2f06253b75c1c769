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
    run_to_episode_end,
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


def _bad_reset_options(env) -> list[tuple[str, object]]:
    """``(name, options)`` that ``env.reset`` must reject, for its number of task items."""
    bad: list[tuple[str, object]] = [
        ("negative", {"index": -1}), ("numpy_negative", {"index": np.int64(-2)}),
        ("bool", {"index": True}), ("float", {"index": 1.0}), ("string", {"index": "1"}),
        ("list", {"index": [1]}), ("array", {"index": np.array([1])}),
        ("options_not_a_dict", [("index", 1)]),
    ]
    limit = env.unwrapped.num_tasks
    if limit is not None:
        bad += [("past_the_end", {"index": limit}),
                ("numpy_past_the_end", {"index": np.int64(limit)})]
    return bad


def _env_state(env) -> dict:
    """What a rejected reset must not change: the env's row, episode flags and generator."""
    base = env.unwrapped
    buf, row = base._buf, base._row
    rng = base._np_random
    return {
        "input_ids": buf.input_ids[row].copy(), "attention_mask": buf.attention_mask[row].copy(),
        "agent_mask": buf.agent_mask[row].copy(), "length": int(buf.length[row]),
        "turn_tokens": int(buf.turn_tokens[row]), "task": repr(base.task),
        "needs_reset": base._needs_reset, "turn_start": int(buf.turn_start[row]),
        "rng": None if rng is None else rng.bit_generator.state, "rng_seed": base._np_random_seed,
    }


def _same_steps(env, twin, actions, where: str) -> None:
    """``env`` and ``twin`` answer ``actions`` alike, to the end of the episode."""
    for t, token in enumerate(actions):
        step = env.step(token)
        assert_same(step, twin.step(token), f"{where}, step {t}")
        if step[2] or step[3]:
            return


def test_rejected_first_reset_changes_nothing(registered_token_env_id, make_env):
    env = make_env(registered_token_env_id)  # through gym.make: Gymnasium's wrappers included
    token = int(sample_actions(env, 1, seed=0)[0])
    fresh = _env_state(env)
    for name, options in _bad_reset_options(env):
        with pytest.raises((TypeError, ValueError), match="options"):
            env.reset(seed=7, options=options)
        assert_same(_env_state(env), fresh, f"state after the rejected reset ({name})")
        with pytest.raises(RuntimeError, match=r"reset\(\) first"):
            env.step(token)
        assert_same(_env_state(env), fresh, f"state after a step that followed it ({name})")


# Registered token ids run without Gymnasium's PassiveEnvChecker (see registration.py): it
# cannot recover from a first reset that raised.
@pytest.mark.parametrize("stack", ["gym_make", "gym_make_without_checker", "unwrapped"])
def test_reset_after_a_rejected_first_reset_runs_like_a_fresh_env(registered_token_env_id,
                                                                  make_env, trace_length,
                                                                  stack):
    def make():
        if stack == "gym_make":
            return make_env(registered_token_env_id)
        env = make_env(registered_token_env_id, disable_env_checker=True)
        return env if stack == "gym_make_without_checker" else env.unwrapped

    env, fresh = make(), make()
    with pytest.raises(ValueError, match="options"):
        env.reset(seed=7, options={"index": -1})
    assert_same(env.reset(seed=7), fresh.reset(seed=7), "reset after the rejected one")
    actions = sample_actions(env, trace_length(registered_token_env_id, 40), seed=8)
    _same_steps(env, fresh, actions, "the episode after the rejected reset")


@pytest.mark.parametrize("moment", ["mid_turn", "after_the_end"])
def test_rejected_later_reset_leaves_the_episode_as_it_was(registered_token_env_id, make_env,
                                                           trace_length, moment):
    env = make_env(registered_token_env_id)
    tokenizer = env.unwrapped.tokenizer
    env.reset(seed=3)
    for token in tokenizer.encode("12"):
        env.step(token)
    if moment == "after_the_end":
        run_to_episode_end(env, tokenizer.eos_token_id)
    twin = copy.deepcopy(env)
    for name, options in _bad_reset_options(env):
        with pytest.raises((TypeError, ValueError), match="options"):
            env.reset(seed=11, options=options)
        assert_same(_env_state(env), _env_state(twin), f"state after the rejected reset ({name})")
    actions = sample_actions(env, trace_length(registered_token_env_id, 80), seed=4)
    if moment == "mid_turn":
        _same_steps(env, twin, actions, "the episode after the rejected resets")
    else:
        errors = []
        for clone in (env, twin):
            with pytest.raises(RuntimeError, match="ended") as err:
                clone.step(int(actions[0]))
            errors.append(str(err.value))
        assert errors[0] == errors[1]
        assert_same(_env_state(env), _env_state(twin), "state after the step that raised")
    # The generator is untouched: an unseeded reset draws the same task as the twin's.
    assert_same(env.reset(), twin.reset(), "unseeded reset after the rejected resets")
    _same_steps(env, twin, actions, "the next episode")


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
