"""Vector shaping wrappers: the same rewards as the single-env wrappers, step by step."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import llm_gym  # noqa: F401
from llm_gym import wrappers as single
from llm_gym.vector import row_info
from llm_gym.wrappers import vector

NUM_ENVS, STEPS = 3, 60


def token_potential(obs):
    return float(np.count_nonzero(obs["agent_mask"])) / 10


def letters(text):
    return float(sum(c.isalpha() for c in text))


# (name, [(wrapper name, kwargs), ...]) — every shaping wrapper, and a stack of two.
TOKEN_STACKS = {
    "length": [("LengthPenalty", {"coef": 0.01})],
    "format": [("FormatBonus", {"pattern": r"\d+", "whole": True, "bonus": 0.5})],
    "overlong": [("OverlongPenalty", {"max_tokens": 4, "cache_tokens": 2})],
    "potential": [("PotentialShaping", {"potential": token_potential, "gamma": 0.9})],
    "terms": [("RewardTerms", {"terms": {"step": lambda o, a, *_: 0.001 * int(a)},
                               "response_terms": {"letters": letters},
                               "weights": {"env": 2.0, "letters": -0.1}})],
    "stack": [("FormatBonus", {"pattern": r"\d+", "whole": True}),
              ("LengthPenalty", {"coef": 0.01})],
}


def _single_stack(stack):
    return [functools.partial(getattr(single, name), **kwargs) for name, kwargs in stack]


def _vector_stack(envs, stack):
    for name, kwargs in stack:
        envs = getattr(vector, name)(envs, **kwargs)
    return envs


def _token_actions(seed: int = 0) -> np.ndarray:
    env = gym.make("llm_gym/Arithmetic-v0")
    tok = env.unwrapped.tokenizer
    choices = tok.encode("12 a") + [tok.eos_token_id] * 2
    return np.random.default_rng(seed).choice(choices, size=(STEPS, NUM_ENVS))


def _rollout(envs, actions):
    out = []
    envs.reset(seed=5)
    for action in actions:
        _, reward, term, trunc, info = envs.step(action)
        comps = [row_info(info, i).get("reward_components") for i in range(NUM_ENVS)]
        out.append((np.asarray(reward, dtype=float), term.copy(), trunc.copy(), comps))
    envs.close()
    return out


def _single_rewards(make, actions, row):
    """Row ``row`` played by one single env, with NEXT_STEP autoreset like SyncVectorEnv."""
    env = make()
    env.reset(seed=5 + row)
    rewards, done = [], False
    for action in actions[:, row]:
        if done:
            env.reset()
            rewards.append(0.0)
            done = False
            continue
        _, reward, term, trunc, _ = env.step(action)
        rewards.append(float(reward))
        done = term or trunc
    return np.array(rewards)


def _assert_same(a, b):
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_allclose(x[0], y[0], err_msg=f"rewards differ at step {t}")
        assert (x[1] == y[1]).all() and (x[2] == y[2]).all(), f"flags differ at step {t}"
        for i in range(NUM_ENVS):
            cx, cy = x[3][i] or {}, y[3][i] or {}
            assert cx.keys() == cy.keys(), f"components differ at step {t}, row {i}"
            for name in cx:
                assert cx[name] == pytest.approx(cy[name]), (t, i, name)


@pytest.mark.parametrize("stack", TOKEN_STACKS.values(), ids=TOKEN_STACKS.keys())
def test_token_wrappers_give_the_same_rewards_on_all_three_vector_envs(stack):
    env_id, kwargs = "llm_gym/Arithmetic-v0", {"max_new_tokens": 5}
    actions = _token_actions()
    batched = _rollout(_vector_stack(gym.make_vec(
        env_id, NUM_ENVS, vectorization_mode="vector_entry_point", **kwargs), stack), actions)
    sync_of_wrapped = _rollout(gym.make_vec(
        env_id, NUM_ENVS, vectorization_mode="sync", wrappers=_single_stack(stack),
        **kwargs), actions)
    wrapped_sync = _rollout(_vector_stack(gym.make_vec(
        env_id, NUM_ENVS, vectorization_mode="sync", **kwargs), stack), actions)
    _assert_same(batched, sync_of_wrapped)
    _assert_same(wrapped_sync, sync_of_wrapped)
    assert any(r[0].any() for r in batched), "no reward at all: the test would be vacuous"

    def make():
        env = gym.make(env_id, **kwargs)
        for wrap in _single_stack(stack):
            env = wrap(env)
        return env

    for row in range(NUM_ENVS):
        np.testing.assert_allclose(_single_rewards(make, actions, row),
                                   [r[0][row] for r in batched])


def test_wrappers_work_on_async_vector_envs():
    stack = TOKEN_STACKS["stack"]
    actions = _token_actions(1)
    kwargs = {"max_new_tokens": 5}
    async_envs = gym.make_vec("llm_gym/Arithmetic-v0", NUM_ENVS, vectorization_mode="async",
                              **kwargs)
    batched = gym.make_vec("llm_gym/Arithmetic-v0", NUM_ENVS,
                           vectorization_mode="vector_entry_point", **kwargs)
    _assert_same(_rollout(_vector_stack(async_envs, stack), actions),
                 _rollout(_vector_stack(batched, stack), actions))


CLASSIC = {
    "CartPole-v1": [("PotentialShaping", {"potential": lambda o: -abs(float(o[2]))}),
                    ("LengthPenalty", {"coef": 0.1})],
    "LunarLander-v3": [("PotentialShaping", {"potential": lambda o: -float(np.hypot(*o[:2]))})],
    "llm_gym/LeftRight-v0": [("LengthPenalty", {"coef": 0.1}),
                             ("RewardTerms", {"terms": {"go": lambda o, a, *_: float(a)}})],
}


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("env_id", CLASSIC)
def test_classic_envs_keep_working_with_the_same_wrappers(env_id, mode):
    stack = CLASSIC[env_id]
    n = gym.make(env_id).action_space.n
    actions = np.random.default_rng(0).integers(0, n, size=(STEPS, NUM_ENVS))
    options = {"vectorization_mode": "sync", "vector_kwargs": {"autoreset_mode": mode}}
    wrapped = _rollout(_vector_stack(gym.make_vec(env_id, NUM_ENVS, **options), stack), actions)
    inner = _rollout(gym.make_vec(env_id, NUM_ENVS, wrappers=_single_stack(stack), **options),
                     actions)
    _assert_same(wrapped, inner)


def test_disabled_rows_get_no_term_after_their_episode():
    envs = vector.LengthPenalty(gym.make_vec("llm_gym/Arithmetic-v0", 2,
                                             vectorization_mode="vector_entry_point",
                                             autoreset_mode="Disabled"), coef=0.5)
    envs.reset(seed=0)
    eos = envs.unwrapped.tokenizer.eos_token_id
    _, reward, term, _, _ = envs.step(np.array([eos, 49]))
    assert term.tolist() == [True, False] and reward[1] == -0.5
    _, reward, _, _, info = envs.step(np.array([49, 49]))
    assert reward[0] == 0.0 and reward[1] == -0.5
    assert info["reward_components"]["_length_penalty"].tolist() == [False, True]


def test_a_failing_term_ends_only_its_row_and_is_counted():
    def flaky(obs, action, *_):
        if int(action) == 50:
            raise ZeroDivisionError("bad row")
        return 0.0

    envs = vector.RewardTerms(gym.make_vec(
        "llm_gym/Arithmetic-v0", 2, vectorization_mode="vector_entry_point",
        autoreset_mode="Disabled", max_new_tokens=6), terms={"flaky": flaky})
    envs.reset(seed=0)
    _, reward, term, _, info = envs.step(np.array([50, 49]))
    assert term.tolist() == [True, False] and np.isfinite(reward).all()
    assert row_info(info, 0)["reward_error"] == "wrapper:RewardTerms:ZeroDivisionError"
    assert "reward_error" not in row_info(info, 1)
    for _ in range(5):  # row 0 stays silent while row 1 plays on to its budget
        _, reward, term, trunc, info = envs.step(np.array([49, 49]))
        assert reward[0] == 0.0 and not term[0] and not trunc[0]
    assert trunc[1]
    envs.reset(seed=1)
    assert envs.step(np.array([49, 49]))[1].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name, kwargs", [("FormatBonus", {"pattern": "x"}),
                                          ("OverlongPenalty", {})])
def test_reply_wrappers_on_a_classic_env_name_both(name, kwargs):
    with pytest.raises(TypeError, match=f"{name}.*CartPole"):
        getattr(single, name)(gym.make("CartPole-v1"), **kwargs)
    with pytest.raises(TypeError, match=f"{name}.*CartPole"):
        getattr(vector, name)(gym.make_vec("CartPole-v1", 2), **kwargs)


def test_a_potential_that_fails_on_token_observations_names_both():
    def height(obs):
        return float(obs[1])  # a LunarLander potential: a dict observation has no index 1

    with pytest.raises(TypeError, match="PotentialShaping.*height.*Arithmetic"):
        single.PotentialShaping(gym.make("llm_gym/Arithmetic-v0"), height)
    with pytest.raises(TypeError, match="PotentialShaping.*height.*Arithmetic"):
        vector.PotentialShaping(gym.make_vec("llm_gym/Arithmetic-v0", 2,
                                             vectorization_mode="vector_entry_point"), height)
