"""llm_gym/GSM8K-v0 and llm_gym/Math-v0: data sources, prompts, rewards, vector env, real data."""

from __future__ import annotations

import json

import datasets
import gymnasium as gym
import pytest
from conftest import GSM8K_ROWS, MATH_ROWS

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.data import shared_data_dir
from llm_gym.envs.gsm8k import GSM8KEnv
from llm_gym.envs.math import MathDataset, MathEnv
from llm_gym.testing import check_token_env


def reply(env: gym.Env, text: str, eos: bool = True):
    tok = env.unwrapped.tokenizer
    out = None
    for token in tok.encode(text) + ([tok.eos_token_id] if eos else []):
        out = env.step(token)
        if out[2] or out[3]:
            break
    return out


@pytest.fixture
def gsm8k(fixture_data):
    return gym.make("llm_gym/GSM8K-v0", data_files=str(fixture_data["gsm8k"]))


def test_sources_give_the_same_items(fixture_data):
    from_file = GSM8KEnv(data_files=str(fixture_data["gsm8k"]))
    from_list = GSM8KEnv(dataset=GSM8K_ROWS)
    from_dataset = GSM8KEnv(dataset=datasets.Dataset.from_list(GSM8K_ROWS))
    assert from_file.data.golds == from_list.data.golds == from_dataset.data.golds
    assert from_file.data.golds == ("7", "42", "750", "9")
    assert from_file.num_tasks == 4


def test_offline_hub_load_says_to_pass_data_files(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="data_files="):
        GSM8KEnv()


@pytest.mark.parametrize(("gold", "reason"), [("", "empty gold answer"),
                                              ("\\", "cannot parse gold")])
def test_bad_gold_fails_at_load_naming_the_row(gold, reason):
    rows = [*GSM8K_ROWS, {"question": "Broken?", "answer": f"#### {gold}"}]
    with pytest.raises(ValueError, match=f"row 4: .*{reason}"):
        GSM8KEnv(dataset=rows)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="reward_mode"):
        GSM8KEnv(dataset=GSM8K_ROWS, reward_mode="loose")
    with pytest.raises(ValueError, match="no answer column"):
        MathEnv(dataset=[{"question": "q", "gold": "1"}])
    with pytest.raises(ValueError, match="row 0: question"):
        MathEnv(dataset=[{"question": "", "answer": "1"}])
    with pytest.raises(ValueError, match="either data_files= or dataset="):
        MathEnv(dataset=MATH_ROWS, data_files="x.jsonl")


def test_prompt_uses_chat_template_system_prompt_and_instruction():
    env = GSM8KEnv(dataset=GSM8K_ROWS, system_prompt="SYS", instruction="END WITH ####")
    obs, info = env.reset(seed=0, options={"index": 1})
    text = env.tokenizer.decode(obs["input_ids"][: info["prompt_tokens"]].tolist())
    assert text == ("<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n"
                    f"{GSM8K_ROWS[1]['question']}\n\nEND WITH ####<|im_end|>\n"
                    "<|im_start|>assistant\n")
    bare = GSM8KEnv(dataset=GSM8K_ROWS, system_prompt=None, instruction="")
    assert bare.messages("Q") == [{"role": "user", "content": "Q"}]


@pytest.mark.parametrize(("text", "mode", "reward", "verdict", "extracted"), [
    ("7 * 6 = 42\n#### 42", "strict", 1.0, "correct", "42"),
    ("#### 42.0", "strict", 1.0, "correct", "42.0"),
    ("#### 41", "strict", 0.0, "wrong", "41"),
    ("The answer is 42.", "strict", 0.0, "no_answer", ""),
    ("The answer is 42.", "lenient", 1.0, "correct", "42"),
    ("\\boxed{41} or \\boxed{42}", "lenient", 0.0, "ambiguous", "42"),
    ("", "strict", 0.0, "no_answer", ""),
])
def test_rewards_and_info(text, mode, reward, verdict, extracted):
    env = gym.make("llm_gym/GSM8K-v0", dataset=GSM8K_ROWS, reward_mode=mode)
    env.reset(seed=0, options={"index": 1})
    _, r, terminated, truncated, info = reply(env, text)
    assert (r, terminated, truncated) == (reward, True, False)
    assert info["verdict"] == verdict and info["gold"] == "42"
    assert info["correct"] is (verdict == "correct")
    assert info["extracted"] == extracted


def test_echo_of_the_question_scores_zero():
    env = GSM8KEnv(dataset=GSM8K_ROWS, reward_mode="lenient")
    env.reset(seed=0, options={"index": 0})
    _, reward, _, _, info = reply(env, GSM8K_ROWS[0]["question"])
    assert (reward, info["verdict"]) == (0.0, "echo")


def test_reply_at_the_budget_is_truncated_and_scores_zero():
    env = GSM8KEnv(dataset=GSM8K_ROWS, max_new_tokens=8)
    env.reset(seed=0, options={"index": 0})
    _, reward, terminated, truncated, info = reply(env, "#### 7 and more text", eos=False)
    assert (reward, terminated, truncated, info["verdict"]) == (0.0, False, True, "truncated")


def test_reset_index_pins_the_item_and_seed_draws_reproducibly(gsm8k):
    for index in range(4):
        gsm8k.reset(options={"index": index})
        assert gsm8k.unwrapped.task.metadata["question"] == GSM8K_ROWS[index]["question"]
    with pytest.raises(ValueError, match="outside"):
        gsm8k.reset(options={"index": 4})
    first = [gsm8k.reset(seed=s)[1]["task_index"] for s in range(6)]
    assert first == [gsm8k.reset(seed=s)[1]["task_index"] for s in range(6)]
    assert len(set(first)) > 1


def test_conformance(gsm8k, fixture_data):
    check_token_env(gsm8k)
    check_token_env(gym.make("llm_gym/Math-v0", data_files=str(fixture_data["math"])))


def test_vector_env_shares_the_loaded_dataset(fixture_data):
    envs = gym.make_vec("llm_gym/GSM8K-v0", 3, vectorization_mode="vector_entry_point",
                        data_files=str(fixture_data["gsm8k"]))
    datas = [e.data for e in envs.envs]
    assert isinstance(datas[0], MathDataset)
    assert all(d is datas[0] for d in datas)
    obs, _ = envs.reset(seed=0, options={"index": [0, 1, 2]})
    assert obs["input_ids"].shape == (3, envs.envs[0].max_length)
    assert envs.envs[0].shared_kwargs()["dataset"] is datas[0]


def test_math_env_with_math_style_columns():
    rows = [{"problem": "Simplify $\\frac{6}{8}$.",
             "solution": "Divide by 2: $\\boxed{\\frac{3}{4}}$."},
            {"problem": "What is $2^{10}$?", "solution": "$2^{10} = \\boxed{1024}$"}]
    env = MathEnv(dataset=rows)
    assert env.data.golds == ("\\frac{3}{4}", "1024")
    env.reset(seed=0, options={"index": 0})
    _, reward, _, _, info = reply(env, "So it is $\\boxed{0.75}$.")
    assert (reward, info["verdict"]) == (1.0, "correct")
    named = MathEnv(dataset=[{"q": "1+1?", "a": "2", "problem": "x", "answer": "9"}],
                    question_column="q", answer_column="a")
    assert named.data.golds == ("2",)


def test_math_env_fixture_rows_score(fixture_data):
    env = gym.make("llm_gym/Math-v0", data_files=str(fixture_data["math"]))
    env.reset(options={"index": 1})
    assert reply(env, "\\boxed{\\frac{6}{8}}")[1] == 1.0
    env.reset(options={"index": 3})
    assert reply(env, "\\boxed{5}")[1] == 0.0


@pytest.mark.shared_data
def test_real_gsm8k_prompts_fit_the_byte_tokenizer_defaults():
    root = shared_data_dir()
    if root is None or not (root / "gsm8k" / "train.jsonl").exists():
        pytest.skip("shared data (../shared/data/gsm8k) not present")
    path = root / "gsm8k" / "train.jsonl"
    env = GSM8KEnv(data_files=str(path))
    assert env.num_tasks == 7473
    questions = [json.loads(line)["question"] for line in path.open()]
    longest = max(range(len(questions)), key=lambda i: len(questions[i].encode()))
    _, info = env.reset(options={"index": longest})  # raises if the prompt did not fit
    assert info["prompt_tokens"] + env.max_new_tokens <= env.max_length
    reference = json.loads(path.open().readline())["answer"]
    env.reset(options={"index": 0})
    assert reply(env, reference)[1] == 1.0
