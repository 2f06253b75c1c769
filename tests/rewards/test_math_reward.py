"""Math grading: extraction rules, pathological answers, thread/process consistency, real data."""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from llm_gym.data import shared_data_dir
from llm_gym.rewards._grading_pool import GradingPool, get_pool
from llm_gym.rewards.math import (
    MathResult,
    check_golds,
    extract_answer,
    format_reward,
    grade_batch,
    gsm8k_accuracy,
    math_accuracy,
)

# (response, gold, strict, expected verdict, expected extracted answer)
EXTRACTION_TABLE = [
    ("48 + 24 = 72\n#### 72", "72", True, "correct", "72"),
    ("#### 41\nwait, no\n#### 72", "72", True, "correct", "72"),         # last #### counts
    ("#### 72\nhmm\n#### 41", "72", True, "wrong", "41"),
    (r"so the total is \boxed{72}.", "72", True, "correct", "72"),
    (r"\boxed{72} ... again \boxed{72}", "72", True, "correct", "72"),   # same answer twice
    (r"\boxed{41} \boxed{42}", "42", True, "ambiguous", "42"),
    ("The answer is 41 or 42.", "42", False, "ambiguous", "41 or 42"),
    (r"#### 42 \pm 1", "42", True, "ambiguous", r"42 \pm 1"),
    ("#### 41 and 42", "42", True, "ambiguous", "41 and 42"),
    ("The answer is 72 dollars.", "72", False, "correct", "72"),
    ("The answer is 72.", "72", True, "no_answer", None),                # strict needs a marker
    ("I think it is 72", "72", False, "no_answer", None),
    ("", "72", False, "no_answer", None),
    (r"\boxed{}", "72", False, "no_answer", None),
    ("####   \n", "72", False, "no_answer", None),
    ("#### $1,080", "1080", True, "correct", "1,080"),
    ("#### **18**", "18", True, "correct", "18"),
    (r"#### \boxed{18}", "18", True, "correct", "18"),
    (r"the area is $\boxed{\frac{1}{2}}$", "0.5", True, "correct", r"\frac{1}{2}"),
    (r"#### 1 \pm \sqrt{2}", r"1 \pm \sqrt{2}", True, "correct", r"1 \pm \sqrt{2}"),  # gold hedge
    ("#### 72.0", "#### 72", True, "correct", "72.0"),
    ("#### seventy-two", "72", True, "wrong", "seventy-two"),
]


@pytest.mark.parametrize(("response", "gold", "strict", "verdict", "answer"), EXTRACTION_TABLE)
def test_extraction_table(response, gold, strict, verdict, answer):
    result = math_accuracy(response, gold, strict=strict)
    assert (result.verdict, result.answer) == (verdict, answer)
    assert result.reward == (1.0 if verdict == "correct" else 0.0)


def test_echo_of_prompt_scores_zero_and_prompt_examples_never_score():
    prompt = r"Example: 1+1 gives \boxed{2}. Question: what is 2+2?"
    assert math_accuracy(prompt, "2", prompt=prompt).verdict == "echo"
    # A copied prompt holding a \boxed example earns nothing; the model's own answer still counts.
    assert math_accuracy(prompt + " The answer is 3.", "2", prompt=prompt).reward == 0.0
    assert math_accuracy(prompt + r" \boxed{4}", "4", prompt=prompt).verdict == "correct"


def test_format_reward_rules():
    assert format_reward("work\n#### 4").reward == 1.0
    assert format_reward(r"#### \boxed{4}").reward == 1.0
    assert format_reward("#### 4\n#### 4").verdict == "duplicate_tags"
    assert format_reward(r"\boxed{4} \boxed{4}", marker="boxed").verdict == "duplicate_tags"
    assert format_reward("4", marker="####").verdict == "format_error"
    assert format_reward("<think>a</think> #### 4", think=True).reward == 1.0
    assert format_reward("<think>a</think><think>b</think> #### 4", think=True).reward == 0.0
    assert format_reward("#### 4 <think>a</think>", think=True).reward == 0.0
    with pytest.raises(ValueError, match="marker"):
        format_reward("#### 4", marker="boxd")


def test_type_errors_name_the_bad_value():
    with pytest.raises(TypeError, match="response must be a str"):
        extract_answer(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 responses but 1 golds"):
        grade_batch(["a", "b"], ["1"])


PATHOLOGICAL = {
    "power tower": r"\boxed{10^{10^{10}}}",
    "9^9^9": r"\boxed{9^{9^{9}}}",
    "factorial": r"\boxed{(10^7)!}",
    "binomial": r"\boxed{\binom{10^9}{5\cdot 10^8}}",
    "nested braces": r"\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "deep short braces": "#### " + "{" * 40 + "72" + "}" * 40,
    "nested frac": r"\boxed{" + r"\frac{1}{" * 3000 + "2" + "}" * 3000 + "}",
    "20k boxed": r"\boxed{72}" * 20000,
    "1 MB answer": "#### " + "7" * 1_000_000,
    "NUL byte": "#### 7\x002",
    "lone surrogate": "#### 72\ud800",
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_answers_score_zero_fast(name):
    start = time.monotonic()
    result = gsm8k_accuracy(PATHOLOGICAL[name], "72")
    assert result.reward == 0.0
    assert result.verdict in {"timeout", "rejected", "wrong", "ambiguous"}
    assert time.monotonic() - start < 3.0


def test_hard_deadline_kills_worker_and_pool_recovers():
    pool = GradingPool(num_workers=1, timeout=0.3)
    try:
        pool.verify_many([("1", "1")])  # start the worker outside the timed part
        start = time.monotonic()
        # math-verify's own alarm fires after 1 s; the 0.3 s hard deadline kills first.
        [(verdict, _)] = pool.verify_many([("72", "10^{10^{10}}")])
        assert verdict == "timeout" and pool.kills == 1
        assert time.monotonic() - start < 1.0
        pool.timeout = 30.0  # the replacement worker needs to start; then it grades honestly
        assert pool.verify_many([("72", "72"), ("72", "71")]) == [("correct", ""), ("wrong", "")]
    finally:
        pool.close()


# Answers that need math-verify (no plain-number shortcut), graded the same everywhere.
CONSISTENCY = [(r"\boxed{\frac{1}{2}}", "0.5"), (r"\boxed{0.5}", r"\frac{1}{2}"),
               (r"\boxed{\sqrt{8}}", r"2\sqrt{2}"), (r"\boxed{3}", r"\frac{7}{2}"),
               (r"\boxed{x^2+2x+1}", "(x+1)^2"), (r"\boxed{\pi}", "3.14")] * 3


def _grade_one(pair: tuple[str, str]) -> tuple[float, str]:
    result = math_accuracy(*pair)
    return result.reward, result.verdict


def test_same_answers_from_main_thread_threads_and_processes():
    main = [_grade_one(p) for p in CONSISTENCY]
    assert [v for _, v in main[:6]] == ["correct", "correct", "correct", "wrong", "correct",
                                        "wrong"]
    with ThreadPoolExecutor(4) as threads:
        assert list(threads.map(_grade_one, CONSISTENCY)) == main
    with ProcessPoolExecutor(2) as processes:
        assert list(processes.map(_grade_one, CONSISTENCY)) == main
    batch = grade_batch([r for r, _ in CONSISTENCY], [g for _, g in CONSISTENCY])
    assert [(r.reward, r.verdict) for r in batch] == main


def test_check_golds_names_bad_rows():
    problems = check_golds(["72", "#### 1,080", "", r"\frac{1}{2}"])
    assert problems[0] is None and problems[1] is None and problems[3] is None
    assert problems[2] == "empty gold answer"


def test_result_is_plain_data():
    result = gsm8k_accuracy("#### 4", "4")
    assert result == MathResult(1.0, "4", "correct", "4", "")


@pytest.mark.shared_data
def test_every_gsm8k_reference_answer_scores_one():
    root = shared_data_dir()
    if root is None or not (root / "gsm8k" / "train.jsonl").exists():
        pytest.skip("shared data (../shared/data/gsm8k) not present")
    rows = [json.loads(line) for line in (root / "gsm8k" / "train.jsonl").open()]
    assert len(rows) == 7473
    answers = [row["answer"] for row in rows]
    start = time.monotonic()
    results = grade_batch(answers, answers, strict=True)
    elapsed = time.monotonic() - start
    assert [r.verdict for r in results].count("correct") == len(rows)
    assert elapsed < 60, f"grading 7,473 answers took {elapsed:.1f} s"
    # One off in the final answer must fail.
    perturbed = [a[: a.rindex("####")] + f"#### {r.answer}1"
                 for a, r in zip(answers[:50], results[:50], strict=True)]
    assert not any(r.reward for r in grade_batch(perturbed, answers[:50], strict=True))
    assert get_pool().kills == 0
