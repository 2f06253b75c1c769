"""The batched TokenVectorEnv against Gymnasium's own vector envs over the single env."""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from llm_gym.testing import assert_same, sample_actions
from llm_gym.vector import TokenVectorEnv

NUM_ENVS = 3


def _batched_actions(env: gym.Env, steps: int, seed: int) -> np.ndarray:
    """``(steps, NUM_ENVS)`` token ids, each column its own mix of replies and noise."""
    return np.stack([sample_actions(env, steps, seed + i) for i in range(NUM_ENVS)], axis=1)


def _make_vec(make_env, env_id: str, **kwargs) -> TokenVectorEnv:
    kwargs = {"vectorization_mode": "vector_entry_point", **kwargs}
    spec_kwargs = make_env(env_id).spec.kwargs  # the fixture data of dataset ids
    return gym.make_vec(env_id, NUM_ENVS, **{**spec_kwargs, **kwargs})


def test_vector_entry_point_gives_the_batched_env(registered_token_env_id, make_env):
    envs = _make_vec(make_env, registered_token_env_id)
    assert isinstance(envs, TokenVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)


def test_next_step_autoreset_matches_sync_vector_env(registered_token_env_id, make_env,
                                                     trace_length):
    env_id = registered_token_env_id
    batched = _make_vec(make_env, env_id)
    sync = SyncVectorEnv([lambda: make_env(env_id)] * NUM_ENVS)
    actions = _batched_actions(sync.envs[0], trace_length(env_id, 150), seed=1)
    assert_same(batched.reset(seed=11), sync.reset(seed=11), "reset")
    ends = 0
    for t, action in enumerate(actions):
        step = batched.step(action)
        assert_same(step, sync.step(action), f"step {t}")
        ends += int(np.sum(step[2] | step[3]))
    assert ends >= NUM_ENVS, "the trace must cover autoresets"


def test_disabled_mode_freezes_finished_rows_until_reset_mask(registered_token_env_id, make_env,
                                                             trace_length):
    env_id = registered_token_env_id
    batched = _make_vec(make_env, env_id, autoreset_mode=AutoresetMode.DISABLED)
    singles = [make_env(env_id) for _ in range(NUM_ENVS)]
    actions = _batched_actions(singles[0], trace_length(env_id, 120), seed=2)
    obs, _ = batched.reset(seed=5)
    single_obs = [env.reset(seed=5 + i)[0] for i, env in enumerate(singles)]
    done = np.zeros(NUM_ENVS, dtype=bool)
    for t, action in enumerate(actions):
        obs, rewards, terminated, truncated, _ = batched.step(action)
        for i, env in enumerate(singles):
            if done[i]:  # frozen: action ignored, reward 0, no flags, same observation
                assert (rewards[i], terminated[i], truncated[i]) == (0.0, False, False)
            else:
                single_obs[i], reward, term, trunc, _ = env.step(action[i])
                assert (rewards[i], terminated[i], truncated[i]) == (reward, term, trunc), t
            assert_same({k: v[i] for k, v in obs.items()}, single_obs[i], f"row {i} step {t}")
        done |= terminated | truncated
        if t % 10 == 9 and done.any():
            obs, _ = batched.reset(seed=100 + t, options={"reset_mask": done})
            for i in np.flatnonzero(done):
                single_obs[i] = singles[i].reset(seed=100 + t + int(i))[0]
            done[:] = False
    with pytest.raises(ValueError, match="reset_mask"):
        batched.reset(options={"reset_mask": np.ones(NUM_ENVS + 1, dtype=bool)})


@pytest.mark.parametrize("vector_class", [SyncVectorEnv, AsyncVectorEnv])
def test_gymnasium_vector_envs_over_the_single_env(registered_token_env_id, make_env,
                                                   vector_class):
    env_id = registered_token_env_id
    envs = vector_class([lambda: make_env(env_id)] * 2)
    try:
        obs, _ = envs.reset(seed=0)
        assert envs.observation_space.contains(obs)
        rng = np.random.default_rng(0)
        for _ in range(30):
            obs, rewards, *_ = envs.step(rng.integers(0, envs.single_action_space.n, size=2))
            assert envs.observation_space.contains(obs)
            assert rewards.shape == (2,)
    finally:
        envs.close()


def test_reset_options_pin_an_item_per_env(registered_token_env_id, make_env):
    batched = _make_vec(make_env, registered_token_env_id)
    single = make_env(registered_token_env_id)
    obs, _ = batched.reset(seed=0, options={"index": [2, 0, 2]})
    for row, index in enumerate([2, 0, 2]):
        expected, _ = single.reset(seed=99, options={"index": index})
        assert_same({k: v[row] for k, v in obs.items()}, expected, f"row {row}")
    with pytest.raises(ValueError, match="index"):
        batched.reset(options={"index": [0, 1]})


def _bad_vector_resets(num_tasks: int | None) -> list[tuple[str, dict]]:
    """``(name, reset kwargs)`` that a vector reset must reject before resetting any row."""
    past_the_end = num_tasks if num_tasks is not None else 2**70  # unbounded: not an int64
    bad = [
        ("last_row_negative", {"options": {"index": [0, 1, -1]}}),
        ("middle_row_bool", {"options": {"index": [0, True, 1]}}),
        ("last_row_float", {"options": {"index": [0, 1, 2.0]}}),
        ("last_row_string", {"options": {"index": [0, 1, "2"]}}),
        ("one_negative_for_all", {"options": {"index": -1}}),
        ("too_few_indices", {"options": {"index": [0, 1]}}),
        ("index_column", {"options": {"index": np.zeros((NUM_ENVS, 1), dtype=np.int64)}}),
        ("index_string", {"options": {"index": "012"}}),
        ("masked_row_bad", {"options": {"reset_mask": np.array([True, False, True]),
                                        "index": [0, 0, -1]}}),
        ("unmasked_row_bad", {"options": {"reset_mask": np.array([True, False, True]),
                                          "index": [0, -1, 0]}}),
        ("mask_too_long", {"options": {"reset_mask": np.ones(NUM_ENVS + 1, dtype=bool)}}),
        ("mask_of_ints", {"options": {"reset_mask": np.array([1, 0, 1])}}),
        ("last_seed_negative", {"seed": [1, 2, -3]}),
        ("last_seed_float", {"seed": [1, 2, 3.5]}),
        ("too_few_seeds", {"seed": [1, 2]}),
        ("seed_string", {"seed": "123"}),
        ("options_not_a_dict", {"options": [("index", 0)]}),
    ]
    if num_tasks is not None:
        bad.append(("last_row_past_the_end", {"options": {"index": [0, 1, past_the_end]}}))
    return bad


def _vector_state(batched: TokenVectorEnv) -> dict:
    """Every row's buffers and episode flags, and each sub-env's task and generator."""
    buf = batched.buffers
    state = {name: getattr(buf, name).copy() for name in
             ("input_ids", "attention_mask", "agent_mask", "length", "turn_tokens")}
    state.update(started=batched._started.copy(), done=batched._done.copy())
    for i, env in enumerate(batched.envs):
        rng = env._np_random
        state[f"env {i}"] = {"task": repr(env.task), "needs_reset": env._needs_reset,
                             "rng": None if rng is None else rng.bit_generator.state}
    return state


def test_rejected_vector_reset_leaves_every_row_unchanged(registered_token_env_id, make_env,
                                                          trace_length):
    env_id = registered_token_env_id
    batched = _make_vec(make_env, env_id)
    bad = _bad_vector_resets(batched.envs[0].num_tasks)
    untouched = _vector_state(batched)
    for name, kwargs in bad:  # before the first reset: still no episode anywhere
        with pytest.raises((TypeError, ValueError)):
            batched.reset(**kwargs)
        assert_same(_vector_state(batched), untouched, f"state after rejected reset {name}")
    with pytest.raises(RuntimeError, match="reset"):
        batched.step(np.zeros(NUM_ENVS, dtype=np.int64))

    actions = _batched_actions(batched.envs[0], trace_length(env_id, 120), seed=3)
    batched.reset(seed=0, options={"index": [0, 1, 0]})
    batched.step(actions[0])
    twin = copy.deepcopy(batched)
    for name, kwargs in bad:
        with pytest.raises((TypeError, ValueError)):
            batched.reset(**kwargs)
        assert_same(_vector_state(batched), _vector_state(twin), f"rejected reset {name}")
    # The rows go on as the twin's do, autoresets included (their generators were untouched).
    for t, action in enumerate(actions[1:]):
        assert_same(batched.step(action), twin.step(action), f"step {t} after the rejections")


BAD_BATCHES = [
    ("floats", np.array([1.0, 2.0, 3.0])),
    ("bools", np.array([True, False, True])),
    ("strings", ["1", "2", "3"]),
    ("none", None),
    ("objects", [1, None, 2]),
    ("too_short", np.array([1, 2])),
    ("too_long", np.array([1, 2, 3, 4])),
    ("column", np.array([[1], [2], [3]])),
    ("scalar", 5),
    ("negative", np.array([1, -1, 2])),
    ("vocab_size", "VOCAB"),
]


@pytest.mark.parametrize("name,actions", BAD_BATCHES, ids=[n for n, _ in BAD_BATCHES])
def test_bad_batched_actions_raise_and_leave_state_unchanged(registered_token_env_id, make_env,
                                                             name, actions):
    batched = _make_vec(make_env, registered_token_env_id)
    obs, _ = batched.reset(seed=0)
    batched.step(np.array(batched.tokenizer.encode("1") * NUM_ENVS))
    twin = copy.deepcopy(batched)
    if isinstance(actions, str):
        actions = np.array([0, batched.single_action_space.n, 0])
    with pytest.raises((TypeError, ValueError)):
        batched.step(actions)
    # Tokens that do not end a turn: the comparison needs no scoring (nor sandbox runs).
    good = np.tile(np.array(batched.tokenizer.encode("1+2"))[:, None], (1, NUM_ENVS))
    for t, action in enumerate(good):
        assert_same(batched.step(action), twin.step(action), f"step {t} after bad batch {name}")


def test_step_before_reset_raises(make_env):
    batched = _make_vec(make_env, "llm_gym/LeftRightText-v0")
    with pytest.raises(RuntimeError, match="reset"):
        batched.step(np.zeros(NUM_ENVS, dtype=np.int64))
    batched.reset(seed=0)
    batched.step(np.zeros(NUM_ENVS, dtype=np.int64))


def test_copy_false_returns_live_buffers_and_render_decodes(make_env):
    batched = _make_vec(make_env, "llm_gym/LeftRightText-v0", copy=False, render_mode="ansi")
    obs, _ = batched.reset(seed=0)
    batched.step(np.array(batched.tokenizer.encode("lef")))
    assert obs["input_ids"] is batched.buffers.input_ids
    texts = batched.render()
    assert len(texts) == NUM_ENVS and texts[0].endswith("<|im_start|>assistant\nl")


def test_pickle_and_deepcopy_of_the_batch_continue_identically(registered_token_env_id, make_env,
                                                               trace_length):
    batched = _make_vec(make_env, registered_token_env_id)
    n = trace_length(registered_token_env_id, 80)
    actions = _batched_actions(batched.envs[0], n, seed=6)
    batched.reset(seed=0)
    for action in actions[: n // 2]:
        batched.step(action)
    clones = [copy.deepcopy(batched), pickle.loads(pickle.dumps(batched))]
    rest = [batched.step(action) for action in actions[n // 2:]]
    for clone in clones:
        assert_same([clone.step(action) for action in actions[n // 2:]], rest, "clone trace")


def test_batched_infos_equal_gymnasiums_row_by_row():
    """TokenVectorEnv._batch_infos builds exactly what VectorEnv._add_info builds row by row."""
    envs = gym.make_vec("llm_gym/Arithmetic-v0", 4, vectorization_mode="vector_entry_point")
    base = envs.unwrapped
    rows = [
        (2, {"a": 1, "b": True, "s": "x", "nested": {"k": 1.5}, "arr": np.arange(3),
             "flag": np.bool_(True), "final_obs": {"o": 1}}),
        (0, {"a": 2.7, "b": 0, "s": "yy", "nested": {"k": 2, "j": "z"}, "arr": np.ones(3),
             "flag": np.bool_(False), "final_obs": np.zeros(2)}),
        (3, {"a": np.int64(5), "s": None, "list": [1, 2]}),
        (1, {"a": True, "list": (3,), "mixed": {"d": 1}}),
        (0, {"mixed": 4, "a": 9}),  # a key both nested and not; row 0 twice (last wins)
    ]
    expected: dict = {}
    for row, info in rows:
        expected = base._add_info(expected, info, row)
    got = base._batch_infos({}, rows)
    _assert_same_infos(got, expected)


def _assert_same_infos(got, expected, where="infos"):
    if isinstance(expected, dict):
        assert list(got) == list(expected), where
        for key in expected:
            _assert_same_infos(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype, where
        assert str(got.tolist()) == str(expected.tolist()), where
    else:
        assert got == expected, where
