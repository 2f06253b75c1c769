"""TRL reward functions, called the way ``trl.GRPOTrainer._calculate_rewards`` calls them."""

from __future__ import annotations

import functools
import importlib.util
import math
from typing import Any

import pytest
import torch

from llm_gym.rewards import trl as rewards


class FakeTrainerState:
    """Stands in for ``transformers.TrainerState`` (TRL passes it as ``trainer_state=``)."""

    global_step = 3


def call_like_grpo_trainer(reward_func, inputs: list[dict[str, Any]], prompts, completions,
                           completion_ids) -> list[float]:
    """Mirror of TRL's ``GRPOTrainer._calculate_rewards`` for one custom reward function."""
    keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]
    reward_kwargs = {key: [example[key] for example in inputs] for key in keys}
    reward_kwargs["trainer_state"] = FakeTrainerState()
    output = reward_func(prompts=prompts, completions=completions,
                         completion_ids=completion_ids, **reward_kwargs)
    output = [reward if reward is not None else torch.nan for reward in output]
    return torch.tensor(output, dtype=torch.float32).tolist()


GSM8K_ROW = {"prompt": [{"role": "user", "content": "Tom has 3 apples and buys 4. How many?"}],
             "question": "Tom has 3 apples and buys 4. How many?",
             "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}
COMPLETIONS = ["3 + 4 = 7\n#### 7", "#### 8", "The answer is 7.", "#### 7\n#### 7",
               "\\boxed{6} \\boxed{7}"]


def _batch(completions: list[Any]):
    inputs = [dict(GSM8K_ROW) for _ in completions]  # one row repeated per generation
    prompts = [row["prompt"] for row in inputs]
    ids = [[1, 2, 3] for _ in completions]
    return inputs, prompts, ids


@pytest.mark.parametrize("conversational", [False, True])
def test_accuracy_and_format_through_the_grpo_call(conversational):
    completions = ([[{"role": "assistant", "content": c}] for c in COMPLETIONS]
                   if conversational else COMPLETIONS)
    inputs, prompts, ids = _batch(completions)
    assert call_like_grpo_trainer(rewards.gsm8k_accuracy, inputs, prompts, completions, ids) == [
        1.0, 0.0, 1.0, 1.0, 0.0]
    assert call_like_grpo_trainer(rewards.math_accuracy, inputs, prompts, completions, ids) == [
        1.0, 0.0, 1.0, 1.0, 0.0]
    assert call_like_grpo_trainer(rewards.format_reward, inputs, prompts, completions, ids) == [
        1.0, 1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("conversational", [False, True])
def test_format_reward_needs_an_answer_inside_the_marker(conversational):
    # Issue 19: a bare marker was paid as a format.
    texts = ["####", "#### ", "\\boxed{}", "<think></think>####", "#### 7", "\\boxed{7}"]
    completions = ([[{"role": "assistant", "content": c}] for c in texts]
                   if conversational else texts)
    inputs, prompts, ids = _batch(completions)
    assert call_like_grpo_trainer(rewards.format_reward, inputs, prompts, completions, ids) == [
        0.0, 0.0, 0.0, 0.0, 1.0, 1.0]


def test_names_read_as_metrics():
    assert [f.__name__ for f in (rewards.gsm8k_accuracy, rewards.math_accuracy,
                                 rewards.format_reward, rewards.code_pass_rate)] == [
        "gsm8k_accuracy", "math_accuracy", "format_reward", "code_pass_rate"]


def test_rows_without_gold_give_none_which_trl_turns_into_nan():
    inputs, prompts, ids = _batch(["#### 7", "#### 7"])
    inputs[1]["answer"] = None
    out = call_like_grpo_trainer(rewards.gsm8k_accuracy, inputs, prompts, ["#### 7", "#### 7"],
                                 ids)
    assert out[0] == 1.0 and math.isnan(out[1])


def test_math_accuracy_reads_a_solution_column():
    inputs = [{"prompt": "Simplify 6/8.", "solution": "It is $\\boxed{\\frac{3}{4}}$."}] * 2
    out = call_like_grpo_trainer(rewards.math_accuracy, inputs, ["Simplify 6/8."] * 2,
                                 ["\\boxed{0.75}", "\\boxed{0.7}"], [[1], [1]])
    assert out == [1.0, 0.0]


def test_echoed_prompt_earns_nothing():
    prompt = "Example: \\boxed{7}. Tom has 3 apples and buys 4. How many?"
    inputs = [{"prompt": prompt, "answer": "#### 7"}]
    assert call_like_grpo_trainer(rewards.math_accuracy, inputs, [prompt], [prompt], [[1]]) == [
        0.0]


def test_missing_gold_column_is_a_clear_error():
    with pytest.raises(ValueError, match="no gold column"):
        rewards.gsm8k_accuracy(completions=["#### 7"], prompts=["q"])
    with pytest.raises(TypeError, match="completion must be"):
        rewards.format_reward(completions=[42])


CODE_MODULE = importlib.util.find_spec("llm_gym.rewards.code")


@pytest.mark.skipif(CODE_MODULE is None, reason="llm_gym.rewards.code (sandbox) not built yet")
@pytest.mark.sandbox
def test_code_pass_rate_through_the_grpo_call():
    row = {"prompt": "Write add(a, b).", "test_list": ["assert add(1, 2) == 3",
                                                      "assert add(2, 2) == 4"],
           "test_imports": []}
    completions = ["```python\ndef add(a, b):\n    return a + b\n```",
                   "```python\ndef add(a, b):\n    return 3\n```",
                   "no code at all"]
    inputs = [dict(row) for _ in completions]
    out = call_like_grpo_trainer(rewards.code_pass_rate, inputs, [row["prompt"]] * 3,
                                 completions, [[1]] * 3)
    assert out == [1.0, 0.0, 0.0]  # all tests must pass
    partial = functools.partial(rewards.code_pass_rate, partial=True)
    out = call_like_grpo_trainer(partial, inputs, [row["prompt"]] * 3, completions, [[1]] * 3)
    assert out == [1.0, 0.5, 0.0]
    inputs[0]["test_list"] = []
    out = call_like_grpo_trainer(rewards.code_pass_rate, inputs[:1], [row["prompt"]],
                                 completions[:1], [[1]])
    assert math.isnan(out[0])


@pytest.mark.skipif(CODE_MODULE is None, reason="llm_gym.rewards.code (sandbox) not built yet")
@pytest.mark.sandbox
def test_humaneval_helpers_come_from_the_prompt_through_the_grpo_call():
    from tests.attacks.grader_attacks import HELPERS, TASKS

    task = TASKS["shift"]  # HumanEval/38-like: check() calls the prompt's encode_shift
    row = {"prompt": task["prompt"], "test": task["tests"], "entry_point": task["entry_point"]}
    completions = [task["honest"], HELPERS["helper_identity_38"]["code"],
                   HELPERS["helper_body_only_38"]["code"]]
    inputs = [dict(row) for _ in completions]
    out = call_like_grpo_trainer(rewards.code_pass_rate, inputs, [row["prompt"]] * 3,
                                 completions, [[1]] * 3)
    assert out == [1.0, 0.0, 0.0]  # the forgeries redefine encode_shift as identity
