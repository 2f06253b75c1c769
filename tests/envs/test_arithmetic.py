"""llm_gym/Arithmetic-v0: items, splits, extraction, rewards, vector env."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.envs.arithmetic import ArithmeticEnv, evaluate, extract_integer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def reply(env: gym.Env, text: str, eos: bool = True):
    tok = env.unwrapped.tokenizer
    ids = tok.encode(text) + ([tok.eos_token_id] if eos else [])
    out = None
    for t in ids:
        out = env.step(t)
        if out[2] or out[3]:
            break
    return out


@pytest.mark.parametrize(("text", "expected"), [
    ("7", 7),
    ("3 + 4 = 7.", 7),
    ("The answer is 12", 12),
    ("answer: -5", -5),
    ("\u22125", -5),
    ("5-3=2", 2),
    ("it is 1,024", 1024),
    ("7.5", None),
    ("x2", None),
    ("", None),
    ("no idea", None),
    ("1,2", None),
    ("41 or 42", 42),
    ("9" * 5000, None),  # longer than MAX_ANSWER_DIGITS: ignored, no int() blow-up
    ("\x00\ud800 3", 3),
])
def test_extract_integer_table(text, expected):
    assert extract_integer(text) == expected


def test_extract_integer_never_evaluates():
    # an expression is not its value: only the last literal counts
    assert extract_integer("__import__('os').system('true') or 2*3") == 3


@pytest.mark.parametrize(("operands", "ops", "value"), [
    ([2, 3], ["+"], 5), ([2, 3, 4], ["+", "*"], 14), ([2, 3, 4], ["*", "-"], 2),
    ([9, 9, 9, 9], ["-", "*", "+"], -63), ([1, 2, 3], ["-", "-"], -4),
])
def test_evaluate_precedence(operands, ops, value):
    assert evaluate(operands, ops) == value


def test_items_are_pure_functions_of_index_and_match_their_answer():
    a, b = ArithmeticEnv(operations="+-*", num_terms=3, allow_negative=True), ArithmeticEnv(
        operations="+-*", num_terms=3, allow_negative=True)
    for i in [0, 1, 17, 2**31 - 2]:
        item = a.item(i)
        assert item == b.item(i)
        meta = item["metadata"]
        assert evaluate(meta["operands"], meta["operators"]) == item["answer"]
        assert item["question"] == " ".join(
            [str(meta["operands"][0])]
            + [f"{o} {v}" for o, v in zip(meta["operators"], meta["operands"][1:], strict=True)])
    seeds = [[ArithmeticEnv(dataset_seed=s).item(i)["question"] for i in range(10)] for s in (0, 1)]
    assert seeds[0] != seeds[1]


def test_knobs_shape_the_questions():
    env = ArithmeticEnv(digits=2, operations="*", num_terms=3)
    for i in range(50):
        meta = env.item(i)["metadata"]
        assert all(10 <= v <= 99 for v in meta["operands"])
        assert meta["operators"] == ["*", "*"]
    easy = ArithmeticEnv()
    answers = [easy.item(i)["answer"] for i in range(300)]
    assert min(answers) >= 0  # allow_negative=False by default
    assert all(set(easy.item(i)["metadata"]["operators"]) <= {"+", "-"} for i in range(50))
    neg = ArithmeticEnv(allow_negative=True)
    assert min(neg.item(i)["answer"] for i in range(300)) < 0


def test_train_and_test_splits_are_disjoint_questions():
    train, test = ArithmeticEnv(split="train"), ArithmeticEnv(split="test")
    train_q = {train.item(i)["question"] for i in range(2000)}
    test_q = {test.item(i)["question"] for i in range(500)}
    assert train_q and test_q and not train_q & test_q
    # with 1-digit "+-" questions, the test split holds roughly test_fraction of the questions
    share = len(test_q) / (len(test_q) + len(train_q))
    assert 0.1 < share < 0.3
    everything = {ArithmeticEnv(split="all").item(i)["question"] for i in range(1000)}
    assert everything & test_q and everything & train_q


def test_correct_wrong_and_truncated_replies():
    env = gym.make("llm_gym/Arithmetic-v0")
    env.reset(seed=0, options={"index": 5})
    answer = env.unwrapped.task.answer
    _, r, term, trunc, info = reply(env, f"{answer}")
    assert (r, term, trunc) == (1.0, True, False)
    assert info["correct"] and info["success"] and info["extracted"] == str(answer)
    env.reset(options={"index": 5})
    _, r, term, trunc, info = reply(env, f"{answer + 1}")
    assert (r, info["correct"], info["extracted"], info["answer"]) == (
        0.0, False, str(answer + 1), str(answer))
    env.reset(options={"index": 5})
    assert reply(env, "no idea")[4]["extracted"] == ""
    env.reset(options={"index": 5})
    _, r, term, trunc, info = reply(env, f"{answer}" + " " * 40, eos=False)
    assert (r, term, trunc) == (0.0, False, True)  # cut off at max_new_tokens: no answer


def test_reset_pins_index_and_seed_reproduces_draws():
    env = ArithmeticEnv()
    env.reset(options={"index": 42})
    assert env.task.metadata["question"] == env.item(42)["question"]
    draws = []
    for _ in range(2):
        env.reset(seed=7)
        draws.append([env.task.index] + [env.reset()[1]["task_index"] for _ in range(5)])
    assert draws[0] == draws[1]
    pool = ArithmeticEnv(num_tasks=10)
    pool.reset(seed=0)
    assert all(pool.reset()[1]["task_index"] < 10 for _ in range(50))
    with pytest.raises(ValueError, match="outside"):
        pool.reset(options={"index": 10})


@pytest.mark.parametrize("kwargs", [
    {"digits": 0}, {"operations": "/"}, {"operations": ""}, {"num_terms": 1},
    {"split": "validation"}, {"test_fraction": 1.5}, {"num_tasks": 0},
])
def test_bad_config_raises_naming_the_value(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ArithmeticEnv(**kwargs)


def test_default_max_length_fits_the_longest_question():
    env = ArithmeticEnv(digits=3, operations="*", num_terms=5)
    for i in range(20):
        env.reset(options={"index": i})  # would raise if the prompt did not fit


def test_check_env_and_defaults_are_small():
    env = gym.make("llm_gym/Arithmetic-v0")
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.max_new_tokens == 16
    assert env.unwrapped.max_length <= 96


def test_vector_env_scores_each_row():
    envs = gym.make_vec("llm_gym/Arithmetic-v0", 3, vectorization_mode="vector_entry_point")
    envs.reset(seed=0, options={"index": [0, 1, 2]})
    tok = envs.unwrapped.tokenizer if hasattr(envs, "unwrapped") else envs.tokenizer
    answers = [e.task.answer for e in envs.envs]
    texts = [str(answers[0]), "none", str(answers[2])]  # mixed info values batch cleanly
    width = max(len(t) for t in texts)
    # pad with spaces so every row ends its turn on the same step
    ids = np.array([tok.encode(t.rjust(width)) + [tok.eos_token_id] for t in texts])
    for k in range(ids.shape[1]):
        _, rewards, term, trunc, infos = envs.step(ids[:, k])
    assert rewards.tolist() == [1.0, 0.0, 1.0] and term.all() and not trunc.any()
    assert infos["correct"].tolist() == [True, False, True]
    assert infos["extracted"].tolist() == [str(answers[0]), "", str(answers[2])]


# sha256 (first 16 hex digits) of the JSON of items 0..2999 and three large indices, recorded
# from the implementation that drew each attempt with np.random.default_rng([seed, i, attempt])
# (before issue 24 made item generation cheaper): the items of Arithmetic-v0 must never change.
ITEM_HASHES = [
    ({}, "2911ee94911347e4"),
    ({"split": "test"}, "ec4db70744e57625"),
    ({"split": "all", "dataset_seed": 7}, "ece62e4a273385bf"),
    ({"digits": 3, "operations": "+-*", "num_terms": 3}, "db2c165e0d1d1131"),
    ({"digits": 2, "operations": "-", "num_terms": 4, "allow_negative": True,
      "dataset_seed": 123}, "b283d70306e8bda1"),
    ({"digits": 5, "operations": "+*"}, "e1154a23786df18b"),
    ({"digits": 1, "operations": "-", "num_terms": 5, "split": "test"}, "2de12c75ac3de450"),
    ({"digits": 18, "operations": "*+", "num_terms": 3, "dataset_seed": 2**40},
     "87df4fac7728ccdf"),
]


@pytest.mark.parametrize(("kwargs", "expected"), ITEM_HASHES)
def test_items_are_unchanged(kwargs, expected):
    import hashlib
    import json

    env = ArithmeticEnv(**kwargs)
    digest = hashlib.sha256()
    for i in [*range(3000), 2**31 - 2, 10**9 + 7, 2**40 + 3]:
        digest.update(json.dumps(env.item(i), sort_keys=True).encode())
    assert digest.hexdigest()[:16] == expected


def test_items_match_a_generator_per_attempt():
    """Item i is what np.random.default_rng([dataset_seed, i, attempt]) would draw."""
    env = ArithmeticEnv(digits=4, operations="+-*", num_terms=3, dataset_seed=3)
    for i in range(0, 50_000, 997):
        item = env.item(i)
        rng = np.random.default_rng([3, i, item["metadata"]["attempt"]])
        assert item["metadata"]["operands"] == rng.integers(1000, 10_000, size=3).tolist()
        assert item["metadata"]["operators"] == ["+-*"[k] for k in rng.integers(3, size=2)]


def test_operands_beyond_int64_still_raise():
    with pytest.raises(ValueError):
        ArithmeticEnv(digits=19).item(0)
