"""llm_gym/Code-v0: loading, check_env, token-level scoring, attacks through the env."""

from __future__ import annotations

import json
import os
import pickle
import threading
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import llm_gym  # noqa: F401 - registers the ids
from llm_gym.envs.code import CodeEnv, normalize_rows
from llm_gym.sandbox import SandboxPool
from llm_gym.token_env import EndedTurn, score_turns
from tests.attacks.grader_attacks import GRADER_ATTACKS, HONEST, TASKS
from tests.attacks.programs import ADD_TESTS, HONEST_ADD, INTEGRITY_ATTACKS, RESOURCE_ATTACKS

pytestmark = pytest.mark.sandbox
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MBPP_ROW = {"task_id": 1, "prompt": "Write a function add(a, b) that adds two numbers.",
            "code": "def add(a, b):\n    return a + b\n", "test_imports": [],
            "test_list": ADD_TESTS}
HUMANEVAL_ROW = {"task_id": "HumanEval/0", "prompt": "def total(xs):\n    \"\"\"Sum.\"\"\"\n",
                 "test": "def check(candidate):\n    assert candidate([1, 2]) == 3\n",
                 "entry_point": "total"}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("code") / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (MBPP_ROW, HUMANEVAL_ROW)) + "\n")
    return str(path)


def _answer(env, text):
    tok = env.unwrapped.tokenizer
    for token in tok.encode(text) + [tok.eos_token_id]:
        obs, reward, terminated, truncated, info = env.step(token)
        if terminated or truncated:
            return reward, terminated, truncated, info
    raise AssertionError("the turn never ended")


def test_make_with_data_files_and_score_tokens(data_file):
    env = gym.make("llm_gym/Code-v0", data_files=data_file, max_new_tokens=256, timeout=2.0)
    assert env.unwrapped.num_tasks == 2
    env.reset(seed=0, options={"index": 0})
    reward, terminated, truncated, info = _answer(env, HONEST_ADD)
    assert (reward, terminated, truncated, info["verdict"]) == (1.0, True, False, "passed")
    assert info["per_test"] == [True, True, True]
    env.reset(options={"index": 1})
    reward, *_, info = _answer(env, "```python\ndef total(xs):\n    return sum(xs)\n```")
    assert (reward, info["verdict"]) == (1.0, "passed")


@pytest.mark.parametrize("name", ["fork_bomb", "os_exit_0", "always_equal", "fake_verdict_line"])
def test_attack_through_env_then_same_env_scores_honest(data_file, name):
    env = gym.make("llm_gym/Code-v0", data_files=data_file, max_new_tokens=400, timeout=1.0)
    env.reset(options={"index": 0})
    code = {**RESOURCE_ATTACKS, **INTEGRITY_ATTACKS}[name]
    reward, terminated, _, info = _answer(env, f"```python\n{code}```")
    assert reward == 0.0 and terminated and info["verdict"] not in ("passed", None)
    env.reset(options={"index": 0})
    assert _answer(env, HONEST_ADD)[0] == 1.0


def test_humaneval_prompt_helpers_come_from_the_task():
    # HumanEval/38-like: the test calls the prompt's encoder; the env passes the prompt along.
    task = TASKS["shift"]
    row = {"task_id": "Shift/0", "prompt": task["prompt"], "test": task["tests"],
           "entry_point": task["entry_point"]}
    env = CodeEnv(dataset=[row], max_new_tokens=200, timeout=2.0)
    env.reset(seed=0)
    reward, *_, info = _answer(env, GRADER_ATTACKS["helper_identity_38"]["code"])
    assert (reward, info["verdict"]) == (0.0, "failed")
    env.reset(seed=0)
    reward, *_, info = _answer(env, HONEST["shift_body_only_fenced"][1])  # continues the prompt
    assert (reward, info["verdict"]) == (1.0, "passed")


def test_check_env_with_warnings_as_errors():
    env = CodeEnv(dataset=[MBPP_ROW], max_new_tokens=16, timeout=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def test_truncated_reply_scores_zero_without_running():
    env = CodeEnv(dataset=[MBPP_ROW], max_new_tokens=8)
    env.reset(seed=1)
    for token in env.tokenizer.encode("def add(a, b): return a + b")[:8]:
        _, reward, terminated, truncated, info = env.step(token)
    assert (reward, terminated, truncated, info["verdict"]) == (0.0, False, True, "truncated")


def test_vector_env_shares_the_dataset_and_pickles():
    envs = gym.make_vec("llm_gym/Code-v0", 2, vectorization_mode="vector_entry_point",
                        dataset=[MBPP_ROW, HUMANEVAL_ROW], max_new_tokens=32)
    assert envs.envs[1].items is envs.envs[0].items
    obs, _ = envs.reset(seed=0, options={"index": 1})
    clone = pickle.loads(pickle.dumps(envs.envs[0]))
    assert clone.num_tasks == 2 and clone.pool is None


def test_bad_rows_and_offline_hub_fail_clearly():
    with pytest.raises(ValueError, match="row 0"):
        normalize_rows([{"question": "no tests"}])
    with pytest.raises(ValueError, match="dataset must be"):
        CodeEnv(dataset="nope")
    with pytest.raises(ConnectionError, match="data_files="):
        CodeEnv(dataset="mbpp")


@pytest.mark.shared_data
def test_real_mbpp_prompts_fit_byte_tokenizer_defaults():
    root = os.environ.get("LLM_GYM_SHARED_DATA", os.path.join(os.path.dirname(__file__), "..",
                                                                "..", "..", "shared", "data"))
    path = os.path.join(root, "mbpp", "sanitized-mbpp.json")
    if not os.path.exists(path):
        pytest.skip(f"{path} not found")
    env = CodeEnv(data_files=path)
    assert env.num_tasks == 427
    env.reset(options={"index": 426})
    assert env.max_length >= 512 + 1


BATCH_REPLIES = [HONEST_ADD, "```python\ndef add(a, b):\n    return a - b\n```",
                 "```python\ndef add(a, b) return\n```", "no code at all", HONEST_ADD]


def _ended_turns(pool, replies, finished):
    """One CodeEnv per reply (as the sub-envs of a vector env), each on the MBPP add task."""
    turns = []
    for reply, done in zip(replies, finished, strict=True):
        env = CodeEnv(dataset=[MBPP_ROW], max_new_tokens=64, timeout=2.0, pool=pool)
        env.reset(seed=0)
        turns.append(EndedTurn(env, reply, [], done))
    return turns


def test_a_step_batch_scores_as_one_by_one_and_concurrently(monkeypatch):
    finished = [True, True, True, True, False]  # the last one hit its token budget
    with SandboxPool(workers=2) as pool:
        alone = [t.env.end_turn(t.response, t.response_ids, t.finished)
                 for t in _ended_turns(pool, BATCH_REPLIES, finished)]
        threads = []
        original = CodeEnv.end_turn

        def recording(self, *args):
            threads.append(threading.current_thread().name)
            return original(self, *args)

        monkeypatch.setattr(CodeEnv, "end_turn", recording)
        turns = _ended_turns(pool, BATCH_REPLIES, finished)
        batch = turns[0].env.end_turns(turns)
    assert batch == alone
    assert [r.info["verdict"] for r in batch] == [
        "passed", "failed", "syntax_error", "syntax_error", "truncated"]
    assert len(threads) == 5 and all(name.startswith("llm_gym-code-turns") for name in threads)


def test_a_turn_that_raises_in_a_batch_costs_only_its_own_score(monkeypatch):
    original = CodeEnv.end_turn

    def fails_on_prose(self, response, response_ids, finished):
        if response == "no code at all":
            raise RuntimeError("grader down")
        return original(self, response, response_ids, finished)

    monkeypatch.setattr(CodeEnv, "end_turn", fails_on_prose)
    with SandboxPool(workers=2) as pool:
        turns = _ended_turns(pool, BATCH_REPLIES[:4], [True] * 4)
        with pytest.raises(RuntimeError, match="grader down"):
            turns[0].env.end_turns(turns)
        results = score_turns(turns)  # the batch raises, so each turn is scored alone
    assert [r.info.get("verdict") for r in results] == ["passed", "failed", "syntax_error", None]
    assert results[3].info["reward_error"] == "exception:RuntimeError"
