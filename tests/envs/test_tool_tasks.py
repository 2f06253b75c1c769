"""GSM8KTool-v0 and CodeTool-v0: scripted tool calls, the visible/hidden split, batches."""

from __future__ import annotations

import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import llm_gym  # noqa: F401 - registers the ids
from llm_gym.envs.code import normalize_rows
from llm_gym.envs.tool_tasks import CodeToolEnv, GSM8KToolEnv, split_tests

pytestmark = pytest.mark.sandbox

ADD = "def add(a, b):\n    return a + b\n"
REVERSE = "def reverse(s):\n    return s[::-1]\n"
CODE_ROWS = [
    {"task_id": 1, "prompt": "Write a function to add two numbers.", "test_imports": [],
     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(10, 5) == 15"]},
    {"task_id": 2, "prompt": "Write a function to reverse a string.", "test_imports": [],
     "test_list": ["assert reverse('abc') == 'cba'", "assert reverse('') == ''"]},
    {"task_id": 3, "prompt": "Write a function that returns the largest of a list.",
     "test_imports": [], "test_list": ["assert largest([1, 5, 2]) == 5"]},
]


@pytest.fixture(scope="module")
def code_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("code_tool") / "mbpp.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in CODE_ROWS))
    return str(path)


@pytest.fixture(scope="module")
def gsm8k_file(fixture_data):
    return str(fixture_data["gsm8k"])


def _write(env, text: str):
    """Step the tokens of ``text`` and the end-of-turn token; the last step's result."""
    tok = env.unwrapped.tokenizer
    for token in tok.encode(text) + [tok.eos_token_id]:
        out = env.step(token)
    return out


def _tool_reply(text: str) -> str:
    """The last tool turn of a rendered conversation."""
    return text.rsplit("tool\n", 1)[1]


def _call(env, name: str, code: str):
    return _write(env, env.unwrapped.format_tool_call(name, {"code": code}))


# ----------------------------------------------------------------- GSM8KTool-v0
def test_gsm8k_tool_a_python_call_then_the_right_answer_scores_1(gsm8k_file):
    env = gym.make("llm_gym/GSM8KTool-v0", data_files=gsm8k_file, render_mode="ansi")
    env.reset(seed=0, options={"index": 1})  # 7 boxes of 6 eggs
    assert isinstance(env.unwrapped, GSM8KToolEnv)
    assert '"name": "python"' in env.unwrapped.task.messages[0]["content"]
    obs, reward, terminated, truncated, info = _call(env, "python", "print(7 * 6)")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool_call"]["name"] == "python" and info["tool_call"]["ok"]
    tok = env.unwrapped.tokenizer
    expected = tok.reply_tokens("42\n", role="tool")
    length = int(obs["attention_mask"].sum())
    assert obs["input_ids"][length - len(expected):length].tolist() == expected
    assert obs["agent_mask"][length - len(expected):length].sum() == 0
    _, reward, terminated, _, info = _write(env, "7 * 6 = 42\n#### 42")
    assert (reward, terminated, info["verdict"]) == (1.0, True, "correct")
    assert info["tools"]["calls"] == 1 and info["tools"]["errors"] == 0


def test_gsm8k_tool_an_error_in_the_code_comes_back_and_a_wrong_answer_scores_0(gsm8k_file):
    env = gym.make("llm_gym/GSM8KTool-v0", data_files=gsm8k_file, render_mode="ansi")
    env.reset(seed=0, options={"index": 0})
    _, _, terminated, _, info = _call(env, "python", "print(3 + 4)\nprint(1 / 0)")
    assert not terminated and info["tool_call"]["ok"]
    assert "7\nTraceback" in env.render() and "ZeroDivisionError" in env.render()
    _, reward, terminated, _, info = _write(env, "#### 8")
    assert (reward, terminated) == (0.0, True)


def test_gsm8k_tool_takes_the_dataset_like_gsm8k(gsm8k_file):
    rows = [{"question": "What is 3 + 4?", "answer": "3 + 4 = 7\n#### 7"}]
    assert gym.make("llm_gym/GSM8KTool-v0", dataset=rows).unwrapped.num_tasks == 1
    assert gym.make("llm_gym/GSM8KTool-v0", data_files=gsm8k_file).unwrapped.num_tasks == 4


# ----------------------------------------------------------------- CodeTool-v0
def test_the_first_test_is_visible_the_rest_hidden_and_a_single_test_is_both():
    visible, graded = split_tests(normalize_rows(CODE_ROWS))
    assert visible == [["assert add(1, 2) == 3"], ["assert reverse('abc') == 'cba'"],
                       ["assert largest([1, 5, 2]) == 5"]]
    assert [row["test_list"] for row in graded] == [
        ["assert add(-1, 1) == 0", "assert add(10, 5) == 15"], ["assert reverse('') == ''"],
        ["assert largest([1, 5, 2]) == 5"]]


def test_the_prompt_shows_the_visible_test_only(code_file):
    env = gym.make("llm_gym/CodeTool-v0", data_files=code_file)
    obs, _ = env.reset(seed=0, options={"index": 0})
    prompt = env.unwrapped.tokenizer.decode(obs["input_ids"][obs["attention_mask"] == 1].tolist())
    assert "assert add(1, 2) == 3" in prompt and '"name": "run_tests"' in prompt
    assert "add(-1, 1)" not in prompt and "add(10, 5)" not in prompt


def test_run_tests_shows_the_failure_and_the_answer_is_graded_on_the_hidden_tests(code_file):
    env = gym.make("llm_gym/CodeTool-v0", data_files=code_file, render_mode="ansi")
    env.reset(seed=0, options={"index": 0})
    _, reward, terminated, _, info = _call(env, "run_tests", "def add(a, b):\n    return a - b")
    assert (reward, terminated) == (0.0, False) and info["tool_call"]["ok"]
    report = _tool_reply(env.render())
    assert "failed 1 of 1 visible tests" in report
    assert "FAILED assert add(1, 2) == 3" in report and "AssertionError" in report
    assert "add(-1, 1)" not in report  # hidden tests never reach the model
    _, reward, terminated, _, info = _call(env, "run_tests", ADD)
    assert "passed the visible tests (1 of 1)" in _tool_reply(env.render())
    _, reward, terminated, _, info = _write(env, f"```python\n{ADD}```")
    assert (reward, terminated, info["verdict"]) == (1.0, True, "passed")
    assert info["per_test"] == [True, True]  # the two hidden tests
    assert info["tools"]["calls"] == 2


def test_passing_the_visible_test_alone_scores_0(code_file):
    env = gym.make("llm_gym/CodeTool-v0", data_files=code_file, render_mode="ansi")
    env.reset(seed=0, options={"index": 0})
    cheat = "def add(a, b):\n    return 3\n"
    _call(env, "run_tests", cheat)
    assert "passed the visible tests" in _tool_reply(env.render())
    _, reward, terminated, _, info = _write(env, f"```python\n{cheat}```")
    assert (reward, terminated, info["verdict"], info["per_test"]) == (0.0, True, "failed",
                                                                      [False, False])


def test_run_tests_reports_code_that_does_not_run(code_file):
    env = gym.make("llm_gym/CodeTool-v0", data_files=code_file, render_mode="ansi",
                   env_kwargs={"timeout": 1.0})
    env.reset(seed=0, options={"index": 0})
    _call(env, "run_tests", "def add(a, b) return a")
    assert "error: the code does not parse: SyntaxError" in _tool_reply(env.render())
    _call(env, "run_tests", "def add(a, b):\n    while True:\n        pass")
    assert "error: timed out after 1 s" in _tool_reply(env.render())
    _call(env, "run_tests", "def add(a, b):\n    print('debug', a)\n    raise KeyError(a)")
    report = _tool_reply(env.render())
    assert "KeyError" in report and "your code printed: debug 1" in report


def test_humaneval_rows_are_refused():
    row = {"task_id": "HumanEval/0", "prompt": "def f():\n    pass\n",
           "test": "def check(candidate):\n    assert candidate() is None\n", "entry_point": "f"}
    with pytest.raises(ValueError, match="MBPP rows"):
        CodeToolEnv(dataset=[row])


def test_a_pickled_copy_runs_its_own_tests(code_file):
    env = CodeToolEnv(data_files=code_file, render_mode="ansi")
    env.reset(seed=0, options={"index": 1})
    copy = pickle.loads(pickle.dumps(env))
    assert copy.tools["run_tests"].function.__self__ is copy
    _call(copy, "run_tests", REVERSE)
    assert "passed the visible tests" in _tool_reply(copy.render())


# ----------------------------------------------------------------- both
@pytest.mark.parametrize("env_id", ["llm_gym/GSM8KTool-v0", "llm_gym/CodeTool-v0"])
def test_check_env(env_id, code_file, gsm8k_file):
    files = code_file if "Code" in env_id else gsm8k_file
    for render_mode in (None, "ansi"):
        env = gym.make(env_id, data_files=files, render_mode=render_mode)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped, skip_render_check=render_mode is None)


def _step_all(envs, texts: list[str]):
    """Step every row through its own text (same length) and end the turn; the last result."""
    tok = envs.tokenizer
    rows = [tok.encode(text) + [tok.eos_token_id] for text in texts]
    assert len({len(r) for r in rows}) == 1
    for tokens in zip(*rows, strict=True):
        out = envs.step(np.array(tokens))
    return out


def test_vector_rows_run_tests_on_their_own_items(code_file):
    envs = gym.make_vec("llm_gym/CodeTool-v0", 2, vectorization_mode="vector_entry_point",
                        data_files=code_file, render_mode="ansi")
    assert all(isinstance(env, CodeToolEnv) for env in envs.envs)
    assert envs.envs[1].rows is envs.envs[0].rows  # loaded once, shared
    for env in envs.envs:
        assert env.tools["run_tests"].function.__self__ is env
    envs.reset(seed=0, options={"index": [0, 1]})
    call = envs.envs[0].format_tool_call("run_tests", {"code": ADD})
    _, rewards, terminated, _, infos = _step_all(envs, [call, call])
    assert not terminated.any() and infos["tool_call"]["ok"].all()
    first, second = map(_tool_reply, envs.render())
    assert "passed the visible tests" in first
    assert "FAILED assert reverse('abc') == 'cba'" in second
    answers = [f"```python\n{ADD}```", f"```python\n{REVERSE}```"]
    answers[0] += " " * (len(answers[1]) - len(answers[0]))
    _, rewards, terminated, _, infos = _step_all(envs, answers)
    assert terminated.all() and rewards.tolist() == [1.0, 1.0]
    envs.close()


def test_vector_gsm8k_tool_rows(gsm8k_file):
    envs = gym.make_vec("llm_gym/GSM8KTool-v0", 2, vectorization_mode="vector_entry_point",
                        data_files=gsm8k_file)
    assert all(isinstance(env, GSM8KToolEnv) for env in envs.envs)
    envs.reset(seed=0, options={"index": [0, 1]})
    calls = [envs.envs[0].format_tool_call("python", {"code": code})
             for code in ("print(3 + 4)", "print(7 * 6)")]
    _, rewards, terminated, _, infos = _step_all(envs, calls)
    assert not terminated.any() and infos["tool_call"]["ok"].all()
    _, rewards, terminated, _, _ = _step_all(envs, ["The answer:\n#### 7", "The answer\n#### 42"])
    assert terminated.all() and rewards.tolist() == [1.0, 1.0]
    envs.close()


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_mbpp_reference_solution_passes_visible_and_hidden_tests(shared_data):
    path = shared_data / "mbpp" / "sanitized-mbpp.json"
    env = gym.make("llm_gym/CodeTool-v0", data_files=str(path), render_mode="ansi")
    u = env.unwrapped
    assert u.num_tasks > 100
    assert all(len(item["test_list"]) >= 1 for item in u.inner.items)
    reference = json.loads(path.read_text())[0]["code"]
    env.reset(seed=0, options={"index": 0})
    _call(env, "run_tests", reference)
    assert "passed the visible tests" in _tool_reply(env.render())
    _, reward, terminated, _, info = _write(env, f"```python\n{reference}\n```")
    assert (reward, terminated) == (1.0, True)
    assert len(info["per_test"]) == len(u.rows[0]["test_list"]) - 1


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_gsm8k_builds(shared_data):
    env = gym.make("llm_gym/GSM8KTool-v0", data_files=str(shared_data / "gsm8k" / "train.jsonl"))
    assert env.unwrapped.num_tasks > 1000
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
