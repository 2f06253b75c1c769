r"""Answer tables for GSM8K and MATH grading (issue 13), and linear-time extraction on 1 MB.

Each row: the model's reply, the gold, the expected reward and verdict. Honest replies score 1;
wrong, hedged (several final values) and forged replies score 0.
"""

from __future__ import annotations

import time

import pytest

from llm_gym.rewards import math as math_rewards
from llm_gym.rewards.math import (
    MAX_RESPONSE_CHARS,
    extract_answer,
    format_reward,
    grade_batch,
    gsm8k_accuracy,
    math_accuracy,
)

OK, AMB, WRONG = "correct", "ambiguous", "wrong"

# (reply, gold, reward, verdict)
GSM8K_TABLE = [
    # honest: one number, with units, currency, remarks, separators, other digit forms
    ("#### 72", "72", 1, OK),
    ("#### 72 km/h", "72", 1, OK),
    ("#### 72 cm^2", "72", 1, OK),
    ("#### 72 cm²", "72", 1, OK),
    (r"#### 72 \text{ m}^2", "72", 1, OK),
    ("#### 72 dollars", "72", 1, OK),
    ("#### 72 (six dozen)", "72", 1, OK),
    ("#### 72 (72 dollars)", "72", 1, OK),         # one value, said twice
    ("#### $72", "72", 1, OK),
    (r"#### \$72", "72", 1, OK),
    ("#### €72", "72", 1, OK),
    ("#### 72€", "72", 1, OK),
    ("#### -$5", "-5", 1, OK),
    ("#### 72.", "72", 1, OK),
    ("#### 72.00", "72", 1, OK),
    ("#### **72**", "72", 1, OK),
    (r"#### \boxed{72}", "72", 1, OK),
    ("#### 1,000", "1000", 1, OK),
    ("#### 1 000", "1000", 1, OK),
    ("#### 1\u2009000", "1000", 1, OK),           # thin space
    ("#### 1\u202f000", "1000", 1, OK),           # narrow no-break space
    ("#### 1\u00a0000", "1000", 1, OK),           # no-break space
    (r"#### 1\,000", "1000", 1, OK),              # LaTeX thin space
    (r"#### 1{,}000", "1000", 1, OK),
    ("#### 1 000 000 people", "1000000", 1, OK),
    ("#### 1,080", "#### 1,080", 1, OK),
    ("#### ７２", "72", 1, OK),                   # full-width digits
    ("#### ７２ 元", "72", 1, OK),
    ("#### ٧٢", "72", 1, OK),                     # Arabic-Indic digits
    ("#### −72", "-72", 1, OK),                   # U+2212 minus sign
    ("#### 10%", "10", 1, OK),                    # a percent sign is no factor of 100
    (r"#### 10\%", "10", 1, OK),
    ("#### 10 percent", "10", 1, OK),
    ("#### 144/2", "72", 1, OK),                  # arithmetic goes to math-verify
    ("#### 72 or so", "72", 1, OK),               # "or so" rounds, it adds no second value
    ("The answer is 72 dollars.", "72", 1, OK),
    ("The answer is 72. That is my final answer:", "72", 1, OK),
    # wrong
    ("#### 10%", "0.1", 0, WRONG),
    ("#### 73", "72", 0, WRONG),
    ("#### 72 730", "72", 0, WRONG),              # a thousands group: 72730
    ("#### 1,0000", "10000", 0, AMB),             # not a thousands group: 1 and 0000
    ("#### 72²", "72", 0, WRONG),                 # 72 squared
    ("#### seventy-two", "72", 0, WRONG),
    # hedges: several final values
    ("#### 72 73", "72", 0, AMB),
    ("#### 72 73", "73", 0, AMB),
    ("#### 41 or 42", "42", 0, AMB),
    ("#### 41, 42", "42", 0, AMB),
    ("#### 41,42", "42", 0, AMB),
    ("#### 41; 42", "42", 0, AMB),
    ("#### 72 (73)", "72", 0, AMB),
    ("#### 72 (or 73)", "72", 0, AMB),
    ("#### 72 dollars or 73 dollars", "72", 0, AMB),
    ("#### 72 or seventy three", "72", 0, AMB),
    ("#### 72 to 73", "73", 0, AMB),
    ("#### 72 \u2009 73", "73", 0, AMB),
    ("#### 42 \u00b1 1", "42", 0, AMB),
    ("#### 30 = 72", "72", 0, AMB),
    (r"\boxed{41} \boxed{42}", "42", 0, AMB),
    ("#### 1 000\n" + r"\boxed{1000}", "1000", 1, OK),  # one value written two ways
    ("#### 1000\n" + r"\boxed{1001}", "1001", 0, AMB),
    # no answer
    ("####", "72", 0, "no_answer"),
    ("#### $", "72", 0, "no_answer"),
]


@pytest.mark.parametrize(("response", "gold", "reward", "verdict"), GSM8K_TABLE,
                         ids=[repr(row[0])[:40] for row in GSM8K_TABLE])
def test_gsm8k_answers(response, gold, reward, verdict):
    result = gsm8k_accuracy(response, gold)
    assert (result.reward, result.verdict) == (reward, verdict), result


PMATRIX = r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"

# (reply, gold, reward, verdict): MATH-style answers
MATH_TABLE = [
    # hedges that math-verify would grade by their last term
    (r"\boxed{5 \vee 6}", "6", 0, AMB),
    (r"\boxed{5 \lor 6}", "6", 0, AMB),
    (r"\boxed{5 \wedge 6}", "6", 0, AMB),
    (r"\boxed{5 \\ 6}", "6", 0, AMB),
    (r"\boxed{30 = 72}", "72", 0, AMB),
    (r"\boxed{x = 5 = 6}", "6", 0, AMB),
    (r"\boxed{x = 5 \text{ or } 6}", "6", 0, AMB),
    (r"\boxed{5; 6}", "6", 0, AMB),
    (r"\boxed{5 \quad 6}", "6", 0, AMB),
    (r"\boxed{5 \to 6}", "6", 0, AMB),
    (r"\boxed{5 \Rightarrow 6}", "6", 0, AMB),
    (r"\boxed{5 \mid 6}", "6", 0, AMB),
    (r"\boxed{5 \approx 6}", "5", 0, AMB),
    (r"\boxed{5 := 6}", "6", 0, AMB),
    (r"\boxed{5 & 6}", "6", 0, AMB),
    (r"\boxed{5 \hspace{1cm} 6}", "6", 0, AMB),
    (r"\boxed{\text{5} \quad \text{6}}", "6", 0, AMB),
    (r"\boxed{5 \unknowncommand 6}", "6", 0, AMB),
    (r"\boxed{\frac{144}{2} = 72}", "72", 0, AMB),
    (r"\boxed{5\text{ cm} = 0.05\text{ m}}", "0.05", 0, AMB),
    (r"\boxed{\frac{1}{2} \vee \frac{1}{3}}", r"\frac{1}{3}", 0, AMB),
    # honest: one value, however written
    (r"\boxed{x = 6}", "6", 1, OK),
    (r"\boxed{f(2) = 6}", "6", 1, OK),
    (r"\boxed{\frac{1}{2}}", "0.5", 1, OK),
    (r"\boxed{\dfrac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}", 1, OK),
    (r"\boxed{3\sqrt{2}}", r"\sqrt{18}", 1, OK),
    (r"\boxed{\log_2 8}", "3", 1, OK),
    (r"\boxed{10,\!000}", "10000", 1, OK),
    (r"\boxed{30^\circ}", "30", 1, OK),
    (r"\boxed{2 \cdot 3}", "6", 1, OK),
    (r"\boxed{" + PMATRIX + "}", PMATRIX, 1, OK),
    (r"\boxed{(-\infty, 2) \cup (3, \infty)}", r"(-\infty, 2) \cup (3, \infty)", 1, OK),
    (r"\boxed{1 \pm \sqrt{2}}", r"1 \pm \sqrt{2}", 1, OK),  # the gold's own hedge token
    (r"\boxed{5, 6}", "5, 6", 1, OK),                       # a gold with two values
    (r"\boxed{\text{(C)}}", r"\text{(C)}", 1, OK),
    (r"\boxed{10\%}", "10", 1, OK),
]


@pytest.mark.parametrize(("response", "gold", "reward", "verdict"), MATH_TABLE,
                         ids=[row[0][7:47] for row in MATH_TABLE])
def test_math_answers(response, gold, reward, verdict):
    result = math_accuracy(response, gold, strict=True)
    assert (result.reward, result.verdict) == (reward, verdict), result


def test_ambiguous_answers_say_why():
    assert math_accuracy(r"\boxed{5 \vee 6}", "6").detail == r"several values (\vee)"
    assert gsm8k_accuracy("#### 72 73", "72").detail == "several values (juxtaposed)"
    assert gsm8k_accuracy("#### 41, 42", "42").detail == "several numbers"


def test_numeric_gold_grades_the_number_but_reports_what_was_written():
    found = extract_answer("#### $1 000.50 (about)", gold="1000.5")
    assert (found.answer, found.value, found.verdict) == ("1 000.50 (about)", "1000.5", None)
    assert extract_answer("#### 1 000", gold=r"\frac{1}{2}").value is None  # not a number gold
    assert gsm8k_accuracy("#### 1 000 km/h", "1000").answer == "1 000 km/h"


def test_rewards_only_on_the_response_and_echoes_score_zero():
    prompt = "Q: 70 + 2? Example: 1 + 1 gives #### 2"
    assert gsm8k_accuracy(prompt, "72", prompt=prompt).verdict == "echo"
    assert gsm8k_accuracy(prompt + "\n#### 72 apples", "72", prompt=prompt).reward == 1.0
    # the prompt's example is no answer of the model's
    assert gsm8k_accuracy(prompt, "2", prompt=prompt).reward == 0.0
    results = grade_batch(["#### 72 km", "#### 72 73"], ["72", "72"], prompts=[prompt, prompt])
    assert [r.reward for r in results] == [1.0, 0.0]


# ----------------------------------------------------------------- linear time on 1 MB
MB = 1_000_000
ADVERSARIAL = {
    "spaces": " " * MB,
    "newlines": "\n" * MB,
    "hashes": "####" * (MB // 4),
    "hash lines": "#### 1 2\n" * (MB // 9),
    "boxed open": r"\boxed{" * (MB // 7),
    "boxed nested": r"\boxed{" * (MB // 14) + "}" * (MB // 14),
    "brace nesting": "{" * (MB // 2) + "}" * (MB // 2),
    "digits": "7" * MB,
    "digit groups": "1" + " 000" * (MB // 4) + "0",
    "answer is": "answer is " * (MB // 10),
    "answer is, newlines": "answer is" + "\n" * MB,
    "fence and spaces": "```" + " " * MB + "x",
    "unit words": "1" + " ab" * (MB // 3) + " 5",
    "numbers and spaces": "7 " * (MB // 2),
    "backslashes": "\\" * MB,
    "equations": "1 = x^{2} " * (MB // 10),
    "text groups": r"\text{" * (MB // 6),
    "full-width digits": "７" * MB,
}
LOW_LEVEL = {
    "boxed_contents": math_rewards.boxed_contents,
    "_clean": math_rewards._clean,
    "_strip_trailing_words": math_rewards._strip_trailing_words,
    "_precheck": math_rewards._precheck,
    "_brace_depth": math_rewards._brace_depth,
    "_last_hash_line": math_rewards._last_hash_line,
    "_stated_answer": math_rewards._stated_answer,
    "_candidates": lambda text: math_rewards._candidates(text, False),
    "_read_number": math_rewards._read_number,
    "_value_signals": math_rewards._value_signals,
    "_choose": lambda text: math_rewards._choose([text, text], "####", "72"),
    "extract_answer": extract_answer,
    "format_reward": format_reward,
    "gold_answer": math_rewards.gold_answer,
}


@pytest.mark.parametrize("name", list(LOW_LEVEL))
def test_extraction_is_linear_on_1_mb_adversarial_input(name):
    # A quadratic scan takes minutes at 1 MB; a linear one about a second on a loaded 2-core
    # machine (load 11: 1.5-2.3 s for _value_signals, before and after issue 19). 10 s is generous.
    for kind, text in ADVERSARIAL.items():
        start = time.perf_counter()
        LOW_LEVEL[name](text)
        elapsed = time.perf_counter() - start
        assert elapsed < 10.0, f"{name} took {elapsed:.1f} s on 1 MB of {kind}"


def test_long_responses_are_rejected_before_any_scan(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("scanned a response longer than MAX_RESPONSE_CHARS")

    for name in ("_candidates", "boxed_contents", "_value_signals", "_read_number",
                 "_stated_answer"):
        monkeypatch.setattr(math_rewards, name, never)
    monkeypatch.setattr(math_rewards, "_BOXED_RE", None)  # any regex use would raise
    text = r"\boxed{1}" + "#### 1 " * MAX_RESPONSE_CHARS
    assert extract_answer(text).verdict == "rejected"
    assert format_reward(text).verdict == "rejected"
