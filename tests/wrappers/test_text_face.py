"""TextInterface: any token env as a text env (whole-reply actions)."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.wrappers import AnyText, TextInterface


def make(env_id: str = "llm_gym/Arithmetic-v0", **kwargs) -> TextInterface:
    return TextInterface(gym.make(env_id, **kwargs))


def test_correct_and_wrong_arithmetic_replies():
    env = make()
    text, info = env.reset(seed=0, options={"index": 4})
    answer = env.unwrapped.task.answer
    question = env.unwrapped.task.metadata["question"]
    assert info["new_text"] == text and f"What is {question}?" in text
    text2, reward, terminated, truncated, info = env.step(f"It is {answer}.")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["correct"] and info["response_tokens"] == len(f"It is {answer}.") + 1
    assert text2.startswith(text) and text2.endswith(f"It is {answer}.<|im_end|>")
    env.reset(options={"index": 4})
    assert env.step(str(answer + 1))[1] == 0.0


def test_same_return_as_the_token_level_agent_on_left_right():
    env = make("llm_gym/LeftRightText-v0")
    env.reset(seed=0)
    _, r1, term1, _, info1 = env.step("right")
    _, r2, term2, _, _ = env.step("right")
    assert (r1, term1, r2, term2) == (-5.0, False, 10.0, True)
    assert info1["new_text"] == (
        "\n<|im_start|>user\nYou are at position 1.<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("action", [5, b"right", None, ["right"], 3.0])
def test_non_string_actions_raise_and_leave_the_env_usable(action):
    env = make("llm_gym/LeftRightText-v0")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="reply string"):
        env.step(action)
    assert env.step("right")[1] == -5.0  # nothing was fed by the bad call


def test_long_reply_is_cut_at_the_token_budget():
    env = make(max_new_tokens=8)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step("1234567890123")
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info["response_tokens"] == 8 and info["dropped_tokens"] == 14 - 8


def test_end_of_turn_string_inside_a_reply_ends_the_turn_there():
    env = make()
    env.reset(seed=0, options={"index": 0})
    answer = env.unwrapped.task.answer
    _, reward, terminated, _, info = env.step(f"{answer}<|im_end|>{answer + 1}")
    assert (reward, terminated) == (1.0, True)
    assert info["dropped_tokens"] == len(str(answer + 1)) + 1


def test_step_before_reset_raises():
    with pytest.raises(gym.error.ResetNeeded):  # from gym.make's OrderEnforcing
        make().step("1")
    from llm_gym.envs.arithmetic import ArithmeticEnv

    with pytest.raises(RuntimeError, match="reset"):  # from the bare token env
        TextInterface(ArithmeticEnv()).step("1")


def test_spaces_and_spec():
    env = make()
    assert isinstance(env.action_space, AnyText) and env.action_space.contains("héllo ∑")
    assert not env.action_space.contains(5)
    assert env.observation_space.contains(env.reset(seed=0)[0])
    assert env.spec.additional_wrappers[-1].name == "TextInterface"


def test_check_env_passes():
    check_env(make(), skip_render_check=True)


def test_refuses_classic_envs():
    with pytest.raises(TypeError, match="token observation"):
        TextInterface(gym.make("CartPole-v1"))
