"""SFT: the encoding is the env's own conversation, the loss learns, bad rows, resume, the CLI."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.agents.factory import make_agent
from llm_gym.agents.lm_trainer import parameter_hash
from llm_gym.agents.sft import SFTAgent, SFTConfig, sft_rows
from llm_gym.agents.sft_algorithm import encode_sft_rows, sft_loss, trace_batch
from llm_gym.cli import main
from llm_gym.tools.calculator import calculator

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

ENV, TOOL_ENV = "llm_gym/Arithmetic-v0", "llm_gym/ArithmeticTool-v0"


def sum_rows(count: int = 8) -> list[dict]:
    """Conversational rows whose reply is the sum, alternating TRL's two forms."""
    rows = []
    for i in range(count):
        user = [{"role": "user", "content": f"{i} + {i % 3} = ?"}]
        reply = [{"role": "assistant", "content": str(i + i % 3)}]
        rows.append({"messages": user + reply} if i % 2 else {"prompt": user,
                                                             "completion": reply})
    return rows


def write_rows(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def play_tool_episode(seed: int = 3):
    """Step ArithmeticTool-v0 (byte tokenizer): a calculator call, the env's tool turn, the
    answer. Returns the final observation and the same conversation as messages."""
    env = gym.make(TOOL_ENV)
    env.reset(seed=seed)
    tool_env = env.unwrapped
    task, tok = tool_env.task, tool_env.tokenizer
    question = task.metadata["question"]
    call = tool_env.format_tool_call("calculator", {"expression": question})
    answer = str(task.answer)
    for text in (call, answer):
        for token in tok.encode(text) + [tok.eos_token_id]:
            obs, reward, terminated, truncated, info = env.step(token)
    assert terminated and reward == 1.0 and info["tools"]["calls"] == 1
    messages = [*task.messages, {"role": "assistant", "content": call},
                {"role": "tool", "content": calculator(question)},
                {"role": "assistant", "content": answer}]
    return obs, messages, tool_env


def test_encoding_is_the_conversation_a_tool_env_holds() -> None:
    obs, messages, tool_env = play_tool_episode()
    length = int(obs["attention_mask"].sum())
    env_ids, env_mask = obs["input_ids"][:length].tolist(), obs["agent_mask"][:length].tolist()
    first = [m["role"] for m in messages].index("assistant")
    rows = [{"messages": messages},
            {"prompt": messages[:first], "completion": messages[first:]}]
    for trace in encode_sft_rows(rows, tool_env.tokenizer, tool_env.max_length,
                                 tool_env.max_new_tokens):
        assert trace.ids == env_ids
        assert trace.trained == env_mask  # the agent's own tokens, and only those
    # Assistant messages in a prompt are context: encoded the same, not trained.
    late = encode_sft_rows([{"prompt": messages[:-1], "completion": messages[-1:]}],
                           tool_env.tokenizer, tool_env.max_length)[0]
    assert late.ids == env_ids
    last_turn = len(tool_env.tokenizer.encode(messages[-1]["content"])) + 1
    assert late.trained == [0] * (length - last_turn) + [1] * last_turn
    # The agent encodes with the env it is given (its tokenizer and prompt rendering).
    agent = SFTAgent(TOOL_ENV, "tiny", data=rows[:1])
    assert agent.traces[0].ids == env_ids and agent.traces[0].trained == env_mask


def test_loss_and_accuracy_match_full_logits_and_the_loss_falls() -> None:
    config = SFTConfig(batch_size=4, micro_batch_size=3, learning_rate=3e-3)
    agent = SFTAgent(ENV, "tiny", config, data=sum_rows(4), seed=1)
    ids, mask, trained = trace_batch(agent.traces, agent.tokenizer.pad_token_id)
    with torch.no_grad():  # the reference: full logits and torch's cross-entropy
        logits = agent.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    labels = ids[:, 1:].masked_fill(trained[:, 1:] == 0, -100)
    expected = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100)
    hits = (logits.argmax(-1) == ids[:, 1:]) & (trained[:, 1:] == 1)
    before = agent.sft_metrics()
    assert before["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert before["mean_token_accuracy"] == pytest.approx(float(hits.sum() / trained.sum()))
    logged: list[dict] = []
    agent.learn(40, callback=logged.append)  # the same 4 examples, 10 times
    after = agent.sft_metrics()
    assert agent.num_timesteps == 40 and agent.num_updates == 10
    assert logged[0]["train/loss"] == pytest.approx(before["loss"], rel=1e-5)  # micro-batched
    assert after["loss"] < 0.5 * before["loss"]
    assert logged[-1]["train/loss"] < logged[0]["train/loss"]
    assert logged[-1]["train/num_tokens"] == agent.num_tokens == 10 * sum(
        len(t.ids) for t in agent.traces)
    assert 0.0 <= logged[-1]["train/mean_token_accuracy"] <= 1.0
    result = agent.evaluate(num_episodes=2)  # the env's metric, the keys of every agent
    assert {"mean_return", "success_rate", "episodes"} <= set(result)


def test_sft_loss_is_the_mean_over_trained_tokens_of_the_whole_batch() -> None:
    logps = torch.tensor([[-1.0, -2.0, -4.0], [-8.0, -1.0, 0.0]])
    trained = torch.tensor([[0, 1, 1], [1, 0, 0]])
    assert float(sft_loss(logps, trained)) == pytest.approx(14 / 3)
    halves = sft_loss(logps[:1], trained[:1], 3) + sft_loss(logps[1:], trained[1:], 3)
    assert float(halves) == pytest.approx(14 / 3)


USER = [{"role": "user", "content": "1+1"}]
ANSWER = [{"role": "assistant", "content": "2"}]


@pytest.mark.parametrize(("row", "message"), [
    ({"messages": USER}, "SFT row 1: no assistant message to train on"),
    ({"prompt": USER + ANSWER, "completion": [{"role": "user", "content": "ok"}]},
     "SFT row 1: no assistant message in its completion"),
    ({"messages": [{"role": "robot", "content": "x"}, *ANSWER]},
     "SFT row 1: messages\\[0\\] has role 'robot'"),
    ({"messages": [{"role": "user", "content": None}, *ANSWER]},
     "SFT row 1: messages\\[0\\] is .* not a"),
    ({"prompt": "1+1=", "completion": ANSWER}, "must both be strings or both lists"),
    ({"messages": ANSWER}, "SFT row 1 opens with an assistant message"),
    ({"messages": USER + ANSWER + ANSWER}, "SFT row 1: message 2 \\(assistant\\) follows a"),
    ({"messages": USER + ANSWER + USER + USER + ANSWER}, "message 3 \\(user\\) follows a user"),
    ({"text": "1+1=2"}, "SFT row 1 has neither messages .*language-modeling"),
    ({"messages": USER + ANSWER, "prompt": "x", "completion": "y"}, "SFT row 1 has both"),
])
def test_bad_rows_are_named(row, message) -> None:
    with pytest.raises(ValueError, match=message):
        sft_rows([{"messages": USER + ANSWER}, row], None)


def test_too_long_rows_are_refused_not_cut() -> None:
    agent = SFTAgent(ENV, "tiny", SFTConfig(max_length=48), data=sum_rows(1))
    with pytest.raises(ValueError, match="SFT row 1 is .* tokens long, more than max_length=48"):
        agent.sft_metrics([*sum_rows(1), {"prompt": "x" * 60, "completion": "y"}])
    long_turn = [*USER, {"role": "assistant", "content": "9" * 40}]  # Arithmetic: 16 per turn
    with pytest.raises(ValueError, match="message 1 is 41 tokens .* max_new_tokens=16"):
        agent.sft_metrics([{"messages": long_turn}])
    with pytest.raises(ValueError, match="SFT trains on conversations"):
        SFTAgent(ENV, "tiny")
    with pytest.raises(ValueError, match="kl_coef must be 0"):
        SFTConfig(kl_coef=0.1)


RESUME = SFTConfig(batch_size=3, learning_rate=1e-3, checkpoint_every=1, deterministic=True)


def test_save_load_resume_matches_an_uninterrupted_run(tmp_path) -> None:
    data = write_rows(tmp_path / "traces.jsonl", sum_rows(5))
    config = SFTConfig(**{**RESUME.__dict__, "data": data})
    full = SFTAgent(ENV, "tiny", config, seed=2, log_dir=tmp_path / "full")
    full_rows: list[dict] = []
    full.learn(12, callback=full_rows.append)  # 4 updates, over two shuffled passes
    cut = SFTAgent(ENV, "tiny", config, seed=2, log_dir=tmp_path / "cut")
    cut.learn(12, callback=lambda metrics: False)  # stops after the first update
    cut.save(tmp_path / "saved")
    resumed = SFTAgent.load(tmp_path / "saved", log_dir=tmp_path / "cut")
    assert resumed.num_timesteps == 3 and resumed.config.data == data
    rest: list[dict] = []
    resumed.learn(12, resume_from=tmp_path / "cut" / "checkpoints", callback=rest.append)
    assert [r["train/loss"] for r in rest] == [r["train/loss"] for r in full_rows[1:]]
    assert parameter_hash(resumed.model) == parameter_hash(full.model)
    write_rows(tmp_path / "traces.jsonl", sum_rows(4))  # the data changed under the run
    with pytest.raises(ValueError, match="SFT data differs"):
        SFTAgent.load(tmp_path / "saved")


def test_make_agent_and_cli_train_sft_end_to_end(tmp_path, capsys) -> None:
    obs, messages, _ = play_tool_episode()
    data = write_rows(tmp_path / "traces.jsonl", [{"messages": messages}] * 4)
    agent = make_agent("sft", TOOL_ENV, model="tiny", config={"data": data, "batch_size": 2})
    assert isinstance(agent, SFTAgent) and agent.learn(2).num_updates == 1
    run = tmp_path / "run"
    assert main(["train", "--agent", "sft", "--env", TOOL_ENV, "--model", "tiny", "--data", data,
                 "--timesteps", "64", "--log-dir", str(run), "--eval-episodes", "1",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "took 64 env steps" in out, out
    assert json.loads((run / "run.json").read_text())["data"] == data
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/mean_token_accuracy", "train/num_tokens"} <= set(header)
    assert main(["train", "--resume", str(run), "--timesteps", "72", "--eval-episodes", "1",
                 "--no-progress"]) == 0
    assert "took 72 env steps" in capsys.readouterr().out


@pytest.mark.parametrize(("rows", "extra", "message"), [
    (None, [], "SFT data file .*missing.jsonl does not exist"),
    ([{"messages": USER + ANSWER}, {"messages": USER}], [], "SFT row 1: no assistant message"),
    ([{"messages": USER + ANSWER}], ["--agent", "grpo"], "--data is the .* SFT data of sft"),
])
def test_bad_data_is_one_line_before_training(tmp_path, capsys, rows, extra, message) -> None:
    path = tmp_path / "missing.jsonl"
    if rows is not None:
        write_rows(path, rows)
    args = ["train", "--agent", "sft", "--env", ENV, "--model", "tiny", "--data", str(path),
            "--log-dir", str(tmp_path / "run"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "run").exists()  # nothing was trained or written


def test_in_memory_dataset_is_read_like_a_list() -> None:
    import datasets

    rows = sum_rows(3)
    messages_only = [r for r in rows if "messages" in r]
    table = datasets.Dataset.from_list(messages_only)
    assert len(sft_rows(table, None)) == len(messages_only)
    agent = SFTAgent(ENV, "tiny", data=table)
    assert np.array_equal(agent.traces[0].ids, encode_sft_rows(
        messages_only, agent.tokenizer, 512)[0].ids)
