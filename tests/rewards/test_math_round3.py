"""Math grading, round 3 (issue 19): the tables of ``tests/attacks/math_round3.py``.

Markers without an answer earn no format reward (math function, TRL function, ``FormatBonus``
single and vector); hedges inside LaTeX environments and sub/superscripts score 0; honest
values written in words or other notations score 1.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

import llm_gym  # noqa: F401  (registers the envs)
from llm_gym.rewards import math as math_rewards
from llm_gym.rewards import trl as trl_rewards
from llm_gym.rewards.math import format_reward, gsm8k_accuracy, math_accuracy
from llm_gym.vector import row_info
from llm_gym.wrappers import FormatBonus
from llm_gym.wrappers import vector as vector_wrappers
from tests.attacks.math_round3 import (
    FORMAT_ATTACKS,
    FORMAT_HONEST,
    HEDGE_ATTACKS,
    HEDGE_HONEST,
    MISREAD_NOTATIONS,
    VALUE_ATTACKS,
    VALUE_HONEST,
)

ENV_ID = "llm_gym/Arithmetic-v0"


def _bonus(marker: str, think: bool) -> FormatBonus:
    return FormatBonus(gym.make(ENV_ID, max_new_tokens=64), marker=marker, think=think)


# ----------------------------------------------------------------- markers without an answer
@pytest.mark.parametrize(("reply", "marker", "think"), FORMAT_ATTACKS,
                         ids=[repr(row[0])[:40] for row in FORMAT_ATTACKS])
def test_a_marker_without_an_answer_earns_no_format_reward(reply, marker, think):
    result = format_reward(reply, marker=marker, think=think)
    assert result.reward == 0.0, result
    assert not _bonus(marker, think).matches(reply)
    if marker == "any" and not think:  # the TRL function's rule
        assert trl_rewards.format_reward(completions=[reply]) == [0.0]


@pytest.mark.parametrize(("reply", "marker", "think"), FORMAT_HONEST,
                         ids=[repr(row[0])[:40] for row in FORMAT_HONEST])
def test_a_marker_with_an_answer_earns_the_format_reward(reply, marker, think):
    result = format_reward(reply, marker=marker, think=think)
    assert (result.reward, result.verdict) == (1.0, "formatted"), result
    assert _bonus(marker, think).matches(reply)
    if not think:
        assert trl_rewards.format_reward(completions=[reply]) == [1.0]


def test_the_empty_marker_verdict_says_why():
    assert format_reward("#### ").verdict == "no_answer"
    assert format_reward("<think></think> #### 4", think=True).detail == "an empty <think> block"
    assert format_reward("\\boxed{4}").answer == "4"


def _token_reply(env: gym.Env, text: str) -> dict:
    tok = env.unwrapped.tokenizer
    for token in [*tok.encode(text), tok.eos_token_id]:
        *_, terminated, truncated, info = env.step(token)
        if terminated or truncated:
            break
    return info


@pytest.mark.parametrize(("reply", "bonus"), [("#### 4", 0.5), ("#### ", 0.0), ("\\boxed{}", 0.0),
                                              ("<answer>4</answer>", 0.0)])
def test_format_bonus_with_a_marker_pays_on_the_step_that_ends_the_turn(reply, bonus):
    env = FormatBonus(gym.make(ENV_ID, max_new_tokens=32), marker="any", bonus=0.5)
    env.reset(seed=0)
    assert _token_reply(env, reply)["reward_components"]["format_bonus"] == bonus


def test_vector_format_bonus_uses_the_same_rule_per_row():
    envs = vector_wrappers.FormatBonus(
        gym.make_vec(ENV_ID, 2, vectorization_mode="vector_entry_point", max_new_tokens=16),
        marker="####", bonus=0.5)
    tok = gym.make(ENV_ID).unwrapped.tokenizer  # the vector env's rows use the same one
    replies = ["#### 4", "#### $"]  # same length: the rows end on the same step
    rows = [tok.encode(r) + [tok.eos_token_id] for r in replies]
    envs.reset(seed=0)
    for actions in zip(*rows, strict=True):
        *_, info = envs.step(np.array(actions))
    assert [row_info(info, i)["reward_components"]["format_bonus"] for i in range(2)] == [0.5, 0.0]
    assert envs.matches("#### 4") and not envs.matches("####")


@pytest.mark.parametrize(("pattern", "reply", "earns"), [
    (r"<answer>(?P<answer>.*?)</answer>", "<answer>7</answer>", True),
    (r"<answer>(?P<answer>.*?)</answer>", "<answer> </answer>", False),  # an empty tag
    (r"<answer>(?P<answer>.*?)</answer>", "<answer>7</answer><answer>7</answer>", False),
    (r"\d*", "", False),                                                  # an empty match
])
def test_format_bonus_pattern_needs_a_non_blank_answer(pattern, reply, earns):
    env = FormatBonus(gym.make(ENV_ID), pattern, whole=pattern == r"\d*")
    assert env.matches(reply) is earns


def test_format_bonus_takes_a_pattern_or_a_marker():
    base = gym.make(ENV_ID)
    with pytest.raises(ValueError, match="pattern or a marker"):
        FormatBonus(base)
    with pytest.raises(ValueError, match="pattern or a marker"):
        FormatBonus(base, r"\d+", marker="####")
    with pytest.raises(ValueError, match="marker must be one of"):
        FormatBonus(base, marker="boxd")
    with pytest.raises(ValueError, match="think=True needs a marker"):
        FormatBonus(base, r"\d+", think=True)


# ----------------------------------------------------------------- hedges inside LaTeX
def _wrapped(answer: str) -> list[str]:
    return [rf"\boxed{{{answer}}}", f"#### {answer}"]


@pytest.mark.parametrize(("answer", "gold"), HEDGE_ATTACKS,
                         ids=[row[0][:48] for row in HEDGE_ATTACKS])
def test_several_values_in_an_environment_or_a_script_score_zero(answer, gold):
    for reply in _wrapped(answer):
        result = math_accuracy(reply, gold)
        assert (result.reward, result.verdict) == (0.0, "ambiguous"), result


@pytest.mark.parametrize(("answer", "gold"), HEDGE_HONEST,
                         ids=[row[0][:48] for row in HEDGE_HONEST])
def test_one_value_in_an_environment_or_with_a_script_scores_one(answer, gold):
    result = math_accuracy(rf"\boxed{{{answer}}}", gold)
    assert (result.reward, result.verdict) == (1.0, "correct"), result


def test_hedge_details_name_the_signal():
    assert math_accuracy(r"\boxed{\begin{cases} 72 \\ 73 \end{cases}}", "73").detail == (
        r"several values (\\)")
    assert math_accuracy(r"\boxed{72_{73}}", "72").detail == "several values (subscript)"
    assert math_accuracy(r"\boxed{72^{\text{73}}}", "72").detail == "several values (superscript)"


# ----------------------------------------------------------------- honest values read wrong
@pytest.mark.parametrize(("reply", "gold"), VALUE_HONEST, ids=[row[0] for row in VALUE_HONEST])
def test_honest_values_in_words_and_notations_score_one(reply, gold):
    result = gsm8k_accuracy(reply, gold)
    assert (result.reward, result.verdict) == (1.0, "correct"), result


@pytest.mark.parametrize(("reply", "gold", "verdict"), VALUE_ATTACKS,
                         ids=[f"{row[0]} vs {row[1]}" for row in VALUE_ATTACKS])
def test_hedges_and_wrong_values_still_score_zero(reply, gold, verdict):
    result = gsm8k_accuracy(reply, gold)
    assert (result.reward, result.verdict) == (0.0, verdict), result


@pytest.mark.parametrize(("reply", "gold", "reward", "verdict"), MISREAD_NOTATIONS,
                         ids=[f"{row[0]} vs {row[1]}" for row in MISREAD_NOTATIONS])
def test_misread_notations_are_graded_by_their_exact_value(reply, gold, reward, verdict):
    result = math_accuracy(reply, gold)
    assert (result.reward, result.verdict) == (reward, verdict), result


def test_values_are_exact():
    read = math_rewards._read_number
    assert [read(a) for a in ("1.2 million", "72 1/3", "1e3", "5e-1", "1e999", "1" * 2000)] == [
        "1200000", "217/3", "1000", "0.5", None, None]


# ----------------------------------------------------------------- linear time
MB = 1_000_000
ADVERSARIAL = {
    "environments": r"\begin{cases} 72 \\ " * (MB // 19),
    "environment ends": r"\end{x}" * (MB // 7),
    "environment name": r"\begin{" + "a" * MB,
    "begin and spaces": r"\begin" + " " * MB,
    "scripts": "72_{" * (MB // 4),
    "text superscripts": r"72^{\text{" * (MB // 10),
    "mixed numbers": "72 1/" * (MB // 5),
    "or so": " or so" * (MB // 6),
    "exponents": "1e" + "9" * MB,
    "scale words": "1 million " * (MB // 10),
    "lead words": "about " * (MB // 6) + "72",
    "backticks": "`" * MB,
    "display math": "\\[" * (MB // 2),
}
READERS = {  # looked up when called: a missing helper fails its own test, not the module
    "_value_signals": lambda text: math_rewards._value_signals(text),
    "_clean": lambda text: math_rewards._clean(text),
    "_strip_or_so": lambda text: math_rewards._strip_or_so(text),
    "_read_number": lambda text: math_rewards._read_number(text),
    "_choose": lambda text: math_rewards._choose([text], "####", "72"),
    "format_reward": lambda text: format_reward(text[: math_rewards.MAX_RESPONSE_CHARS]),
}


@pytest.mark.parametrize("name", list(READERS))
def test_new_readers_are_linear_on_1_mb_adversarial_input(name):
    # A quadratic scan takes minutes at 1 MB; a linear one well under a second. The limit is
    # generous for a shared 2-core machine.
    for kind, text in ADVERSARIAL.items():
        start = time.perf_counter()
        READERS[name](text)
        elapsed = time.perf_counter() - start
        assert elapsed < 5.0, f"{name} took {elapsed:.1f} s on 1 MB of {kind}"
