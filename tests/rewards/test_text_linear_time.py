"""Model-written text is read in linear time: every reader gets 1 MB of adversarial input.

A reply is whatever the policy writes, and it is read in the trainer's process. A regular
expression that backtracks (``\\s*x`` searched over a run of spaces, nested quantifiers, a tag
that never closes) turns one long reply into minutes of CPU there. Each reader below gets 1 MB
of the inputs that trip such expressions and must answer within ``LIMIT_S``: a generous bound,
since linear work on 1 MB takes milliseconds and quadratic work takes minutes. A call still
running at the limit is interrupted (the regex engine notices within seconds), so a regression
fails instead of hanging the suite.
"""

from __future__ import annotations

import functools
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import llm_gym  # noqa: F401 - registers the ids gym.make uses below
from llm_gym.envs.arithmetic import ArithmeticEnv, extract_integer
from llm_gym.envs.frozen_lake_text import FrozenLakeTextEnv
from llm_gym.envs.left_right_text import LeftRightTextEnv
from llm_gym.token_env import TokenEnv
from llm_gym.tokenizers import ByteTokenizer
from llm_gym.wrappers.response import last_response, turn_ended
from llm_gym.wrappers.shaping import FormatBonus, LengthPenalty, OverlongPenalty, RewardTerms

SIZE = 2**20  # characters of each adversarial text
LIMIT_S = 2.0


def _repeat(unit: str, tail: str = "") -> str:
    """``unit`` repeated to ``SIZE`` characters, the last ones replaced by ``tail``."""
    body = unit * (SIZE // len(unit) + 1)
    return body[: SIZE - len(tail)] + tail


ADVERSARIAL = {
    "spaces": _repeat(" "),
    "newlines": _repeat("\n"),
    "whitespace_mix": _repeat(" \t\r\n"),
    "digits": _repeat("9"),
    "digits_then_letter": _repeat("1", "x"),
    "commas": _repeat(","),
    "digit_commas": _repeat("1,"),
    "thousands_then_digit": _repeat(",000", "0").replace(",", "1", 1),  # near-miss of 1,000,...
    "decimal_points": _repeat("1."),
    "minus_signs": _repeat("-"),
    "unicode_minus_signs": _repeat("\u2212"),
    "dots": _repeat("."),
    "bangs": _repeat("!"),
    "action_words": _repeat("left "),
    "padded_action_word": " " * (SIZE // 2) + "LEFT" + "." * (SIZE // 4) + _repeat(" ")[
        SIZE // 2 + 4 + SIZE // 4:],
    "unclosed_answer_tags": _repeat("<answer>"),
    "answer_tag_then_digits": "<answer>" + _repeat("7")[8:],
    "unclosed_code_fences": _repeat("```python\n"),
    "unclosed_boxed": _repeat("\\boxed{"),
    "hash_markers": _repeat("#### "),
    "mixed": _repeat("  \n1,2 <answer>-3 ```py\n####  left. \\boxed{7 \u2212"),
}
# The token paths decode before they parse: a few inputs cover them (decoding is linear in the
# token count whatever the text); the text readers get every input.
TOKEN_INPUTS = ["mixed", "spaces", "digits_then_letter", "answer_tag_then_digits"]

# FormatBonus runs the caller's pattern; these are the ones the docs, examples and tests use.
FORMAT_PATTERNS = {
    "answer_tag": (r"<answer>-?\d+</answer>", False),
    "answer_tag_whole": (r"<answer>-?\d+</answer>", True),
    "action_word": ("^(left|stay|right)$", False),
    "integer_whole": (r"-?\d+", True),
}


class _TooSlow(Exception):
    pass


def _check_fast(what: str, call: Callable[[], Any], limit: float = LIMIT_S) -> None:
    """Fail unless ``call()`` returns within ``limit`` seconds (interrupted at the limit)."""

    def expire(signum: int, frame: Any) -> None:
        raise _TooSlow

    alarm = hasattr(signal, "setitimer")  # POSIX: interrupt; elsewhere only measure
    if alarm:
        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit)
    start = time.perf_counter()
    try:
        call()
    except _TooSlow:
        pass
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    if elapsed >= limit:
        pytest.fail(f"{what} took {elapsed:.1f} s or more on 1 MB (limit {limit} s): super-linear")


def test_the_limit_catches_quadratic_work():
    quadratic = re.compile(r"\s*<")  # searched from every space, each try runs to the end
    # 100 kB: the regex engine notices the alarm only now and then, later on longer texts.
    spaces = ADVERSARIAL["spaces"][:100_000]
    with pytest.raises(pytest.fail.Exception, match="super-linear"):
        _check_fast("a quadratic search", lambda: quadratic.search(spaces), limit=0.2)


def test_adversarial_inputs_are_1_mb():
    assert {len(text) for text in ADVERSARIAL.values()} == {SIZE}


# ---------------------------------------------------------------- text readers
@functools.cache
def _text_readers() -> dict[str, Callable[[str], Any]]:
    readers: dict[str, Callable[[str], Any]] = {
        "LeftRightText.parse_action": LeftRightTextEnv().parse_action,
        "FrozenLakeText.parse_action": FrozenLakeTextEnv().parse_action,
        "extract_integer": extract_integer,
    }
    for name, (pattern, whole) in FORMAT_PATTERNS.items():
        bonus = FormatBonus(gym.make("llm_gym/Arithmetic-v0"), pattern, whole=whole)
        readers[f"FormatBonus[{name}].matches"] = bonus.matches
    return readers


TEXT_READERS = ["LeftRightText.parse_action", "FrozenLakeText.parse_action", "extract_integer",
                *(f"FormatBonus[{name}].matches" for name in FORMAT_PATTERNS)]


@pytest.mark.parametrize("text_name", list(ADVERSARIAL))
@pytest.mark.parametrize("reader", TEXT_READERS)
def test_text_reader_is_linear(reader, text_name):
    read = _text_readers()[reader]
    _check_fast(f"{reader} on {text_name}", lambda: read(ADVERSARIAL[text_name]))


def test_text_readers_still_read_what_is_there():
    # The 1 MB inputs are parsed, not skipped: the answers are the ones the text holds.
    readers = _text_readers()
    assert readers["LeftRightText.parse_action"](ADVERSARIAL["padded_action_word"]) == 0
    assert extract_integer(ADVERSARIAL["mixed"] + " 42") == 42
    assert extract_integer(ADVERSARIAL["digit_commas"]) is None  # a list, not a number
    assert extract_integer(ADVERSARIAL["digits"]) is None  # longer than MAX_ANSWER_DIGITS
    assert readers["FormatBonus[answer_tag].matches"]("x" * SIZE + "<answer>12</answer>")


# ---------------------------------------------------------------- token paths
@functools.cache
def _tokens(text_name: str) -> list[int]:
    return ByteTokenizer().encode(ADVERSARIAL[text_name])


def _write_turn(env: TokenEnv, tokens: list[int]) -> None:
    """Put a whole agent turn in the env's row at once (stepping 1M tokens takes too long)."""
    env.reset(seed=0)
    env._buf.append(env._row, tokens, by_agent=True)
    env._buf.turn_tokens[env._row] = len(tokens)


def _room(tokens: int) -> dict[str, int]:
    """Buffer sizes that hold a prompt, the turn and the env's reply after it."""
    return {"max_length": tokens + 8192, "max_new_tokens": tokens + 1}


@functools.cache
def _token_envs() -> dict[str, TokenEnv]:
    longest = max(len(_tokens(name)) for name in TOKEN_INPUTS) + 1
    return {
        "arithmetic": ArithmeticEnv(**_room(longest)),
        "left_right": LeftRightTextEnv(render_mode="ansi", **_room(longest)),
        "left_right_constrained": LeftRightTextEnv(constrained=True, **_room(longest)),
    }


def _observation(tokens: list[int]) -> dict[str, np.ndarray]:
    """A token observation whose last agent turn is ``tokens`` plus the end-of-turn token."""
    tokenizer = ByteTokenizer()
    prompt = tokenizer.prompt_tokens([{"role": "user", "content": "What is 3 + 4?"}])
    turn = [*tokens, tokenizer.eos_token_id]
    return {"input_ids": np.array(prompt + turn, dtype=np.int64),
            "attention_mask": np.ones(len(prompt) + len(turn), dtype=np.int8),
            "agent_mask": np.array([0] * len(prompt) + [1] * len(turn), dtype=np.int8)}


@functools.cache
def _shaping_wrappers() -> dict[str, gym.Wrapper]:
    def base() -> gym.Env:
        return gym.make("llm_gym/Arithmetic-v0")

    return {
        "FormatBonus": FormatBonus(base(), r"<answer>-?\d+</answer>"),
        "OverlongPenalty": OverlongPenalty(base()),
        "LengthPenalty": LengthPenalty(base()),
        "RewardTerms": RewardTerms(base(), response_terms={"chars": len}),
    }


@pytest.mark.parametrize("text_name", TOKEN_INPUTS)
@pytest.mark.parametrize("env_name", ["arithmetic", "left_right"])
def test_finish_turn_decodes_and_scores_in_linear_time(env_name, text_name):
    env = _token_envs()[env_name]
    tokens = [*_tokens(text_name), env.tokenizer.eos_token_id]
    _write_turn(env, tokens)
    _check_fast(f"{env_name} finish_turn on {text_name}", lambda: env.finish_turn(True))


@pytest.mark.parametrize("text_name", TOKEN_INPUTS)
def test_action_mask_and_render_decode_in_linear_time(text_name):
    constrained, plain = _token_envs()["left_right_constrained"], _token_envs()["left_right"]
    _write_turn(constrained, _tokens(text_name))
    _check_fast(f"action_mask on {text_name}", constrained.action_mask)
    _write_turn(plain, _tokens(text_name))
    _check_fast(f"render on {text_name}", plain.render)


@pytest.mark.parametrize("text_name", TOKEN_INPUTS)
@pytest.mark.parametrize("wrapper", ["FormatBonus", "OverlongPenalty", "LengthPenalty",
                                     "RewardTerms"])
def test_shaping_reads_the_reply_in_linear_time(wrapper, text_name):
    shaping = _shaping_wrappers()[wrapper]
    obs = _observation(_tokens(text_name))
    _check_fast(f"{wrapper} on {text_name}",
                lambda: shaping.terms(obs, 0, 0.0, True, False, {}))


@pytest.mark.parametrize("text_name", TOKEN_INPUTS)
def test_response_helpers_are_linear(text_name):
    obs, tokenizer = _observation(_tokens(text_name)), ByteTokenizer()
    _check_fast(f"turn_ended on {text_name}", lambda: turn_ended(obs, False, False))
    _check_fast(f"last_response on {text_name}", lambda: last_response(obs, tokenizer))
