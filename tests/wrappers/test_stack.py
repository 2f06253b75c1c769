"""The stack is checked once into a frozen spec; one is_token_env; one make_env (issue 20)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import gymnasium as gym
import pytest

import llm_gym  # noqa: F401
from llm_gym.wrappers import LengthPenalty, TextInterface
from llm_gym.wrappers import stack as stack_module
from llm_gym.wrappers.stack import (
    WrapperSpec,
    WrapperStack,
    is_token_env,
    make_env,
    parse_wrappers,
)

ARITH = "llm_gym/Arithmetic-v0"
LENGTH = [{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]
SMALL = {"max_new_tokens": 4}


@pytest.fixture
def checks(monkeypatch):
    """How many wrappers parse_wrappers has checked (each check is one call)."""
    calls = []
    check = stack_module._check_arguments
    monkeypatch.setattr(stack_module, "_check_arguments",
                        lambda *args: calls.append(args[1]) or check(*args))
    return calls


def test_json_text_and_a_list_give_the_same_frozen_stack():
    stack = parse_wrappers('[{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]')
    assert isinstance(stack, WrapperStack) and stack == parse_wrappers(LENGTH)
    assert stack[0] == WrapperSpec("LengthPenalty", {"coef": 0.5})
    assert stack.to_json() == LENGTH and parse_wrappers(None) == WrapperStack() == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stack[0].name = "ClipReward"
    with pytest.raises(TypeError):
        stack[0].kwargs["coef"] = 1.0


def test_the_spec_does_not_share_the_callers_dicts():
    given = [{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]
    stack = parse_wrappers(given)
    given[0]["kwargs"]["coef"] = 9.0
    out = stack.to_json()
    out[0]["kwargs"]["coef"] = 7.0
    assert stack[0].kwargs["coef"] == 0.5


def test_a_stack_is_returned_as_it_is_without_a_second_check(checks):
    stack = parse_wrappers(LENGTH + [{"name": "ClipReward", "kwargs": {"max_reward": 1.0}}])
    assert checks == ["LengthPenalty", "ClipReward"]
    assert parse_wrappers(stack) is stack and checks == ["LengthPenalty", "ClipReward"]


def test_stacks_pickle_copy_and_add():
    stack = parse_wrappers(LENGTH)
    for clone in (pickle.loads(pickle.dumps(stack)), copy.deepcopy(stack)):
        assert type(clone) is WrapperStack and clone == stack
    both = stack + parse_wrappers([{"name": "ClipReward", "kwargs": {"max_reward": 1.0}}])
    assert type(both) is WrapperStack and [s.name for s in both] == ["LengthPenalty",
                                                                      "ClipReward"]
    with pytest.raises(TypeError):
        stack + LENGTH  # noqa: B018 - a list of dicts is parsed, not added
    with pytest.raises(TypeError, match="parse_wrappers"):
        WrapperStack(LENGTH)


def test_portable_is_the_json_form_or_none_for_python_functions():
    assert parse_wrappers(LENGTH).portable() == LENGTH
    assert parse_wrappers([{"name": "TransformReward", "kwargs": {"func": abs}}]
                          ).portable() is None
    assert parse_wrappers([{"name": "TransformReward", "kwargs": {"func": "math:fabs"}}]
                          ).portable() == [{"name": "TransformReward",
                                            "kwargs": {"func": "math:fabs"}}]


def test_errors_name_the_flag_as_before():
    with pytest.raises(ValueError, match="^--variants 'a': unknown wrapper 'Nope'"):
        parse_wrappers([{"name": "Nope"}], "--variants 'a'")
    with pytest.raises(ValueError, match="--wrappers is not valid JSON"):
        parse_wrappers("[{")
    with pytest.raises(ValueError, match="--wrappers must be a list"):
        parse_wrappers({"name": "LengthPenalty"})


def test_is_token_env_takes_ids_envs_and_vector_envs_wrapped_or_not():
    assert is_token_env("llm_gym/LeftRightText-v0")
    assert not is_token_env("llm_gym/LeftRight-v0") and not is_token_env("CartPole-v1")
    token = gym.make(ARITH, **SMALL)
    assert is_token_env(token) and is_token_env(LengthPenalty(token, 0.5))
    assert is_token_env(TextInterface(token))  # the text face of a token env
    assert is_token_env(make_env(ARITH, 2, env_kwargs=SMALL, wrappers=LENGTH))
    assert not is_token_env(gym.make("CartPole-v1"))
    assert not is_token_env(make_env("CartPole-v1", 2, wrappers=LENGTH))
    assert not is_token_env(3)


def test_make_env_wraps_an_env_instance_and_refuses_id_options_for_it():
    env = make_env(gym.make(ARITH, **SMALL), wrappers=LENGTH)
    assert type(env).__name__ == "LengthPenalty" and env.unwrapped.max_new_tokens == 4
    envs = make_env(gym.make_vec("CartPole-v1", 2), wrappers=LENGTH)
    assert type(envs).__module__ == "llm_gym.wrappers.vector"
    with pytest.raises(ValueError, match="env_kwargs only apply to an env id"):
        make_env(gym.make("CartPole-v1"), env_kwargs={"render_mode": "ansi"})
    with pytest.raises(ValueError, match="num_envs and autoreset_mode only apply"):
        make_env(gym.make("CartPole-v1"), 2)


@pytest.mark.parametrize(("agent", "env_id", "config"), [
    ("grpo", ARITH, {"group_size": 2, "prompts_per_batch": 1}),
    ("ppo", "CartPole-v1", {"num_envs": 2, "num_steps": 8}),
    ("sb3-ppo", "CartPole-v1", {"n_steps": 16, "batch_size": 16}),
    ("random", "CartPole-v1", None),
])
def test_make_agent_checks_the_stack_once_all_the_way_down(checks, agent, env_id, config):
    from llm_gym.agents.factory import make_agent

    env_kwargs = SMALL if env_id == ARITH else None
    built = make_agent(agent, env_id, config=config, env_kwargs=env_kwargs,
                       wrappers='[{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]')
    assert checks == ["LengthPenalty"]
    if hasattr(built, "wrappers"):
        assert built.wrappers.to_json() == LENGTH
    if hasattr(built, "evaluate"):
        built.evaluate(num_episodes=1)
    assert checks == ["LengthPenalty"]


def test_a_comparison_run_checks_its_stack_once_and_reports_it_as_json(checks):
    from llm_gym.agents.compare import RunSpec, run_one

    spec = RunSpec("CartPole-v1", "random", 20, wrappers=LENGTH)
    result = run_one(spec, eval_episodes=1)
    assert checks == ["LengthPenalty"] and isinstance(spec.wrappers, WrapperStack)
    assert result.to_dict()["spec"]["wrappers"] == LENGTH
