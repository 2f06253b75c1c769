"""llm_gym envs inside TRL: ``environment_factory``, ``reward_function`` and ``dataset``.

The unit tests call the functions the way ``trl.GRPOTrainer`` calls them
(``_generate_and_score_completions``: ``reset(**row)``; ``_calculate_rewards``: ``prompts``,
``completions``, ``completion_ids``, the columns, ``trainer_state`` and ``environments``); the
trainer tests run TRL's own ``GRPOTrainer`` for two steps with a tiny model built from a config
and a byte-level tokenizer, offline, on one CPU thread.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import llm_gym  # noqa: E402,F401 - registers the ids
from llm_gym.integrations.trl import (  # noqa: E402
    LLMGymEnvironment,
    dataset,
    environment_factory,
    environment_reward,
    reward_function,
)

ARITHMETIC = "llm_gym/Arithmetic-v0"
ARITHMETIC_TOOL = "llm_gym/ArithmeticTool-v0"


def call_like_grpo(reward, rows: list[dict[str, Any]], completions: list[Any],
                   environments: list[Any] | None = None) -> list[float | None]:
    """``GRPOTrainer._calculate_rewards`` for one custom reward function (TRL 1.16)."""
    keys = [key for key in rows[0] if key not in ("prompt", "completion", "completion_ids")]
    kwargs = {key: [row[key] for row in rows] for key in keys}
    if environments is not None:
        kwargs["environments"] = environments
    return reward(prompts=[row["prompt"] for row in rows], completions=completions,
                  completion_ids=[[1, 2]] * len(completions), trainer_state=None,
                  log_extra=lambda *a: None, log_metric=lambda *a: None, **kwargs)


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# ----------------------------------------------------------------------------- reward_function
@pytest.mark.parametrize("conversational", [False, True])
def test_reward_function_scores_arithmetic_right_and_wrong(conversational):
    rows = dataset(ARITHMETIC, n=3).to_list()
    replies = [rows[0]["answer"], str(int(rows[1]["answer"]) + 1),
               f"{rows[2]['answer'][:-1]} and then {rows[2]['answer']}"]
    completions = [chat(r) for r in replies] if conversational else replies
    assert call_like_grpo(reward_function(ARITHMETIC), rows, completions) == [1.0, 0.0, 1.0]


def test_reward_function_gives_none_where_a_row_has_no_task():
    rows = dataset(ARITHMETIC, n=2).to_list()
    rows[1]["index"] = None  # a row of another task mixed into the dataset
    reward = reward_function(ARITHMETIC)
    assert call_like_grpo(reward, rows, [rows[0]["answer"], "1"]) == [1.0, None]
    assert reward.__name__ == "arithmetic_v0"  # TRL logs rewards/arithmetic_v0/mean


def test_reward_function_refuses_rows_without_an_index_column():
    reward = reward_function(ARITHMETIC)
    with pytest.raises(ValueError, match="'index' column"):
        reward(prompts=["q"], completions=["1"], answer=["1"])
    with pytest.raises(TypeError, match="int task indices"):
        reward(prompts=["q"], completions=["1"], index=["0"])


def test_rows_of_another_split_are_refused_not_scored_against_the_wrong_gold():
    rows = dataset(ARITHMETIC, split="test", n=2).to_list()
    with pytest.raises(ValueError, match="same env_kwargs"):
        call_like_grpo(reward_function(ARITHMETIC), rows, ["1", "2"])
    with pytest.raises(ValueError, match="same env_kwargs"):
        environment_factory(ARITHMETIC)().reset(**rows[0])
    assert call_like_grpo(reward_function(ARITHMETIC, split="test"), rows,
                          [rows[0]["answer"], "x"]) == [1.0, 0.0]


def test_reward_function_on_fixture_gsm8k(fixture_data):
    kwargs = {"data_files": str(fixture_data["gsm8k"])}
    rows = dataset("llm_gym/GSM8K-v0", **kwargs).to_list()
    assert [row["answer"] for row in rows] == ["7", "42", "750", "9"]
    replies = ["3 + 4 = 7\n#### 7", "#### 41", "So 750 are left.\n#### 750", "#### 10"]
    assert call_like_grpo(reward_function("llm_gym/GSM8K-v0", **kwargs), rows,
                          [chat(r) for r in replies]) == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.shared_data
def test_reward_function_on_real_gsm8k(shared_data):
    path = shared_data / "gsm8k" / "train.jsonl"
    golds = [json.loads(line)["answer"] for line in path.open(encoding="utf-8")][:4]
    rows = dataset("llm_gym/GSM8K-v0", n=4, data_files=str(path)).to_list()
    reward = reward_function("llm_gym/GSM8K-v0", data_files=str(path))
    # The reference solutions score 1 against their own gold; each off by one scores 0.
    assert call_like_grpo(reward, rows, golds) == [1.0] * 4
    wrong = [re.sub(r"#### (\S+)", lambda m: f"#### {float(m[1]) + 1:g}", g) for g in golds]
    assert call_like_grpo(reward, rows, wrong) == [0.0] * 4


@pytest.mark.sandbox
def test_reward_function_on_code_runs_the_reply_in_the_sandbox(fixture_data, tmp_path):
    kwargs = {"data_files": str(fixture_data["mbpp"])}
    rows = dataset("llm_gym/Code-v0", **kwargs).to_list()[:1] * 2
    marker = tmp_path / "escaped"
    solution = "```python\ndef add(a, b):\n    return a + b\n```"
    hostile = (f"```python\nopen({str(marker)!r}, 'w').write('x')\n"
               "def add(a, b):\n    return a + b\n```")
    assert call_like_grpo(reward_function("llm_gym/Code-v0", **kwargs), rows,
                          [solution, "def add(a, b): return 0"])[0] == 1.0
    call_like_grpo(reward_function("llm_gym/Code-v0", **kwargs), rows[:1], [hostile])
    assert not marker.exists()  # model code never writes to the host


def test_reward_function_scores_the_first_turn_of_a_multi_turn_env():
    rows = dataset("llm_gym/LeftRightText-v0", n=2).to_list()
    # From position 0, "right" lands on 1 (-5), "left" on -1 (-1): LeftRightText's own rewards.
    assert call_like_grpo(reward_function("llm_gym/LeftRightText-v0"), rows,
                          ["right", "left"]) == [-5.0, -1.0]


def test_classic_envs_have_no_text_face_for_trl():
    with pytest.raises(ValueError, match="not a token env"):
        reward_function("llm_gym/LeftRight-v0")


# ----------------------------------------------------------------------------- dataset
def test_dataset_rows_are_conversational_prompts_with_index_and_answer():
    rows = dataset(ARITHMETIC_TOOL, n=3)
    assert rows.column_names == ["prompt", "index", "answer"]
    assert rows["index"] == [0, 1, 2]
    prompt = rows[0]["prompt"]
    # The task env's prompt: the tools reach the model through TRL, not llm_gym's system prompt.
    assert [m["role"] for m in prompt] == ["user"]
    assert "calculator" not in prompt[0]["content"]
    left, op, right = re.search(r"(\d+) ([+*]) (\d+)", prompt[0]["content"]).groups()
    assert int(rows[0]["answer"]) == (int(left) + int(right) if op == "+"
                                      else int(left) * int(right))


def test_dataset_checks_n_and_split():
    with pytest.raises(ValueError, match="pass n"):
        dataset(ARITHMETIC)
    with pytest.raises(ValueError, match="outside"):
        dataset("llm_gym/TicTacToeText-v0", n=0)
    with pytest.raises(ValueError, match="no split argument"):
        dataset("llm_gym/LeftRightText-v0", split="test", n=1)
    train = dataset(ARITHMETIC, n=5)["prompt"]
    test = dataset(ARITHMETIC, split="test", n=5)["prompt"]
    assert train != test  # the split reaches the env (Arithmetic partitions its questions)


# ----------------------------------------------------------------------------- environments
def test_plain_env_reset_returns_the_prompt_only_when_the_row_has_none():
    env = environment_factory(ARITHMETIC)()
    public = [name for name in dir(type(env)) if not name.startswith("_")]
    assert public == ["reset"]  # no tools: TRL's tool list stays empty
    row = dataset(ARITHMETIC, n=2)[1]
    question = row["prompt"][-1]["content"]
    assert env.reset(**row) is None  # the dataset row carries the prompt (TRL passes all columns)
    assert env.reset(prompt=[{"role": "user", "content": ""}], index=1) == question
    # TRL's placeholder row when there is no train_dataset: the env draws a task.
    assert "What is" in env.reset(prompt=[{"role": "user", "content": ""}])
    with pytest.raises(ValueError, match="no 'index' column"):
        env.reset(prompt=row["prompt"])


def test_system_messages_are_part_of_the_returned_prompt():
    env = environment_factory("llm_gym/LeftRightText-v0")()
    text = env.reset(prompt=[{"role": "user", "content": ""}], index=0)
    assert text.startswith("You walk on a line") and text.endswith("You are at position 0.")


def test_environment_reward_scores_each_rollout_on_its_own_task():
    make = environment_factory(ARITHMETIC)
    rows = dataset(ARITHMETIC, n=2).to_list()
    envs = [make(), make(), make()]
    for env, row in zip(envs, [rows[0], rows[1], rows[1]], strict=True):
        env.reset(**row)
    completions = [chat(rows[0]["answer"]), chat(rows[0]["answer"]), chat(rows[1]["answer"])]
    assert call_like_grpo(environment_reward, [rows[0], rows[1], rows[1]], completions,
                          environments=envs) == [1.0, 0.0, 1.0]
    # A rollout whose environment is not an llm_gym one, or was never reset, does not apply.
    assert environment_reward(["1", "1"], environments=[object(), make()]) == [None, None]
    with pytest.raises(ValueError, match="environment_factory"):
        environment_reward(["1"])


def test_tool_env_exposes_its_tools_as_methods_with_their_schema():
    from transformers.utils import get_json_schema

    make = environment_factory(ARITHMETIC_TOOL)
    env = make()
    assert type(env).__name__ == "ArithmeticToolV0Environment"
    assert isinstance(env, LLMGymEnvironment)
    tool = env.env.unwrapped.tools["calculator"]
    schema = get_json_schema(env.calculator)["function"]  # what TRL renders for the model
    assert (schema["name"], schema["description"], schema["parameters"]) == (
        tool.name, tool.description, dict(tool.parameters))
    env.reset(index=0)
    assert env.calculator(expression="48213 * 5521") == str(48213 * 5521)
    assert env.calculator(expression="__import__('os')").startswith("error:")
    assert env.calculator(nonsense="1").startswith("error:")  # never raises into TRL
    assert env.calculator(expression="1 + 1") == "2"  # the 4th call: max_calls is 4
    assert env.calculator(expression="1 + 1").startswith("error: no tool calls left")
    env.reset(index=1)
    assert env.calls == 0 and env.calculator(expression="2 * 3") == "6"


def test_final_answer_is_the_last_assistant_turn_of_a_tool_conversation():
    env = environment_factory(ARITHMETIC_TOOL)()
    row = dataset(ARITHMETIC_TOOL, n=1)[0]
    env.reset(**row)
    call = {"type": "function", "function": {"name": "calculator",
                                             "arguments": {"expression": "1"}}}
    conversation = [{"role": "assistant", "content": row["answer"], "tool_calls": [call]},
                    {"role": "tool", "name": "calculator", "content": row["answer"]}]
    answered = [*conversation, {"role": "assistant", "content": row["answer"]}]
    assert environment_reward([answered, conversation], environments=[env, env]) == [1.0, 0.0]


def test_import_pulls_in_no_heavy_library():
    code = ("import sys, llm_gym.integrations.trl; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'trl') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- GRPOTrainer
def byte_tokenizer():
    """A byte-level BPE tokenizer (no merges) with Qwen2.5's chat template, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_chat_template

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"], padding_side="left")
    # A template TRL knows, so it can parse tool calls (trl.chat_template_utils).
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


#: Attention window of the tiny model: with RoPE its output depends only on the last WINDOW
#: tokens, so it can be taught an answer on a prompt's end alone (fast) and give it after the
#: whole prompt.
WINDOW = 32


def tiny_qwen(tokenizer, seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None, tie_word_embeddings=True, use_sliding_window=True,
        sliding_window=WINDOW, max_window_layers=0)
    return Qwen2ForCausalLM(config)


def grpo_config(output_dir: Path, **overrides: Any):
    from trl import GRPOConfig

    settings = {"per_device_train_batch_size": 2, "num_generations": 2,
                "max_completion_length": 8, "max_steps": 2, "logging_steps": 1,
                "report_to": "none", "use_cpu": True, "save_strategy": "no", "seed": 0,
                "learning_rate": 1e-3, "disable_tqdm": True}
    return GRPOConfig(output_dir=str(output_dir), **{**settings, **overrides})


CALL = ('<tool_call>\n{"name": "calculator", "arguments": {"expression": "6 * 7"}}\n'
        "</tool_call><|im_end|>")


def teach_to_call(model, tokenizer, prompts: list[str], steps: int = 600) -> None:
    """Overfit ``model`` to answer every prompt with :data:`CALL`, so TRL's tool loop runs.

    Training stops once every token of the call is the model's most likely one with
    probability over 1/2: near-greedy sampling (``temperature=0.1``) then writes the call.
    Only the prompts' last tokens are needed (see :data:`WINDOW`).
    """
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    call = tokenizer(CALL).input_ids
    ends = {tuple(tokenizer(p).input_ids[-2 * WINDOW:]) for p in prompts}
    batch = [(list(end) + call, len(end)) for end in ends]
    for _ in range(steps):
        losses = []
        for ids, start in batch:
            logits = model(input_ids=torch.tensor([ids])).logits[0, start - 1:-1]
            losses.append(torch.nn.functional.cross_entropy(
                logits, torch.tensor(ids[start:]), reduction="none"))
        nll = torch.cat(losses)
        if nll.max().item() < 0.3:  # p > 0.74 for every token: it is also the argmax
            return
        optimizer.zero_grad()
        nll.mean().backward()
        optimizer.step()
    pytest.fail(f"the tiny model did not learn the tool call (worst token NLL {nll.max():.2f})")


@pytest.mark.usefixtures("one_torch_thread")
def test_grpo_trains_two_steps_through_the_environment_factory_with_tool_calls(
        tmp_path, monkeypatch):
    from trl import GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    tokenizer = byte_tokenizer()
    model = tiny_qwen(tokenizer)
    make = environment_factory(ARITHMETIC_TOOL)
    rows = dataset(ARITHMETIC_TOOL, n=2)
    probe = make()
    teach_to_call(model, tokenizer, [tokenizer.apply_chat_template(
        row["prompt"], tools=[probe.calculator], add_generation_prompt=True, tokenize=False)
        for row in rows])
    seen: list[tuple[int, int, Any, int]] = []

    def record(completions, environments, index, **kwargs):
        for env, i, completion in zip(environments, index, completions, strict=True):
            seen.append((env.env.unwrapped.inner.task.index, i, completion, env.calls))
        return [0.0] * len(completions)

    args = grpo_config(tmp_path, max_completion_length=176, temperature=0.1,
                       max_tool_calling_iterations=1, learning_rate=1e-5)
    trainer = GRPOTrainer(model=model, reward_funcs=[environment_reward, record], args=args,
                          train_dataset=rows, processing_class=tokenizer,
                          environment_factory=make)
    trainer.train()
    assert trainer.state.global_step == 2
    logs = [h for h in trainer.state.log_history if "rewards/environment_reward/mean" in h]
    assert len(logs) == 2
    assert all(h["tools/call_frequency"] > 0 and h["tools/failure_frequency"] == 0
               for h in logs)
    assert len(seen) == 4
    for task_index, row_index, completion, calls in seen:
        assert task_index == row_index  # each rollout's env was reset to its row's task
        tool_turns = [m for m in completion if m["role"] == "tool"]
        if tool_turns:  # the llm_gym calculator ran inside TRL's tool loop
            assert tool_turns[0]["content"] == "42" and calls == 1
    assert any(calls == 1 for *_, calls in seen)


@pytest.mark.usefixtures("one_torch_thread")
def test_grpo_trains_two_steps_on_reward_function_and_dataset(tmp_path):
    from trl import GRPOTrainer

    from llm_gym.envs.arithmetic import extract_integer

    tokenizer = byte_tokenizer()
    reward = reward_function(ARITHMETIC)
    scored: list[tuple[str, str, float]] = []

    def arithmetic_v0(completions, answer, **kwargs):
        rewards = reward(completions=completions, answer=answer, **kwargs)
        scored.extend((c[-1]["content"], a, r)
                      for c, a, r in zip(completions, answer, rewards, strict=True))
        return rewards

    trainer = GRPOTrainer(model=tiny_qwen(tokenizer), reward_funcs=arithmetic_v0,
                          args=grpo_config(tmp_path), train_dataset=dataset(ARITHMETIC, n=4),
                          processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2
    assert sum("rewards/arithmetic_v0/mean" in h for h in trainer.state.log_history) == 2
    assert len(scored) == 4
    for text, gold, value in scored:  # the env's rule: the last integer of the reply
        assert value == float(extract_integer(text) == int(gold))
