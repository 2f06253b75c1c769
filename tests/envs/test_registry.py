"""Registry-wide conformance: every id checks clean, builds, and is deterministic."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import llm_gym
from llm_gym.registration import (
    CLASSIC_ENVS,
    DATASET_ENVS,
    NAMESPACE,
    TOKEN_ENVS,
    server_env_ids,
)
from llm_gym.testing import (
    assert_same,
    bad_actions,
    check_determinism,
    integer_scalar_actions,
)

# check_env on a gym.make'd env always warns that it is wrapped; that one warning is expected.
WRAPPED_WARNING = ".*is different from the unwrapped version.*"


def test_env_ids_are_all_registered_with_their_entry_points():
    ids = llm_gym.env_ids()
    assert len(ids) == len(set(ids)) > 0
    for env_id in ids:
        assert env_id.startswith(f"{NAMESPACE}/"), env_id
        spec = gym.spec(env_id)
        name = env_id.split("/", 1)[1]
        if name in TOKEN_ENVS:
            assert spec.entry_point == TOKEN_ENVS[name]
            assert spec.vector_entry_point == TOKEN_ENVS[name].split(":")[0] + ":make_vec"
    llm_gym.register_envs()  # idempotent: a second call neither raises nor duplicates
    registered = [i for i in gym.registry if i.startswith(f"{NAMESPACE}/")]
    assert registered == ids + server_env_ids()  # import llm_gym registers the server ids too


def test_server_ids_need_a_server_and_say_so():
    assert server_env_ids() == [f"{NAMESPACE}/OpenEnv-v0"]
    assert not set(server_env_ids()) & set(llm_gym.env_ids())
    pytest.importorskip("openenv")
    with pytest.raises(ValueError, match="base_url"):  # one line that names the fix
        gym.make("llm_gym/OpenEnv-v0")


def test_dataset_envs_are_registered_ids():
    assert {f"{NAMESPACE}/{name}" for name in DATASET_ENVS} <= set(llm_gym.env_ids())


@pytest.mark.parametrize("render_mode", [None, "ansi"])
def test_gymnasium_check_env_unwrapped(registered_env_id, make_env, render_mode):
    env = make_env(registered_env_id, render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


def test_gymnasium_check_env_made(registered_env_id, make_env):
    env = make_env(registered_env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=WRAPPED_WARNING)
        check_env(env)


def test_sb3_check_env(registered_env_id, make_env):
    env = make_env(registered_env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env, warn=True)


def test_builds_with_no_arguments(registered_env_id):
    if registered_env_id.split("/", 1)[1] in DATASET_ENVS:
        pytest.skip("needs a dataset; built from fixture files in the other tests")
    env = gym.make(registered_env_id)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()


@pytest.mark.parametrize("seed", [0, 7])
def test_same_seed_and_actions_give_the_same_trace(registered_env_id, make_env, trace_length,
                                                   seed):
    n = trace_length(registered_env_id, 150)
    check_determinism(lambda: make_env(registered_env_id), seed=seed, n=n)


def _run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)


def test_import_llm_gym_imports_nothing_heavy():
    code = (
        "import sys, llm_gym\n"
        "heavy = sorted({'torch', 'transformers', 'datasets'} & set(sys.modules))\n"
        "print(','.join(heavy))\n"
    )
    result = _run_fresh(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import llm_gym imported {result.stdout.strip()}"


def test_make_with_module_prefix_in_a_fresh_interpreter():
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'llm_gym' not in sys.modules\n"
        "env = gym.make('llm_gym:llm_gym/LeftRight-v0')\n"
        "env.reset(seed=0)\n"
        "print(env.step(2)[1], env.step(2)[1])\n"
    )
    result = _run_fresh(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["-5.0", "10.0"]


@pytest.mark.parametrize("name", sorted(CLASSIC_ENVS))
def test_classic_env_refuses_bad_actions_and_out_of_order_steps(name):
    env = gym.make(f"{NAMESPACE}/{name}").unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    for bad_name, action in bad_actions(env.action_space.n):
        env.reset(seed=0)  # a fresh episode each time: the walk stops after 20 steps
        env.step(0)
        twin = copy.deepcopy(env)
        with pytest.raises((TypeError, ValueError)):
            env.step(action)
        # assert_same: observations may be arrays (the bandit's), which == cannot compare.
        assert_same(env.step(1), twin.step(1), f"state changed by bad action {bad_name}")
    env.reset(seed=0)
    for action in integer_scalar_actions(1):
        env.step(action[1])
    env.reset(seed=0)
    terminated = False
    while not terminated:  # right until the goal (a game view: its first legal move)
        masks = getattr(env, "action_masks", None)
        terminated = env.step(2 if masks is None else int(np.flatnonzero(masks())[0]))[2]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    env.step(1)


REAL_DATA = {"GSM8K-v0": "gsm8k/train.jsonl", "Code-v0": "mbpp/sanitized-mbpp.json"}


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_DATA))
def test_dataset_env_on_the_real_data_checks_clean(shared_data, name):
    env = gym.make(f"{NAMESPACE}/{name}", data_files=str(shared_data / REAL_DATA[name]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    num_tasks = env.unwrapped.num_tasks
    assert num_tasks is not None and num_tasks > 100
    last, _ = env.reset(seed=0, options={"index": num_tasks - 1})
    assert env.observation_space.contains(last)
