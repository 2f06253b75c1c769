"""DPO: the loss on hand-computed cases, learning on written pairs, exact resume, the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llm_gym.agents.dpo import DPOAgent, DPOConfig
from llm_gym.agents.dpo_algorithm import dpo_loss, encode_preference_pairs
from llm_gym.agents.factory import make_agent
from llm_gym.agents.lm_trainer import parameter_hash
from llm_gym.cli import main
from llm_gym.tokenizers import ByteTokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

ENV = "llm_gym/Arithmetic-v0"


def pair_rows(count: int = 8) -> list[dict]:
    """Conversational pairs whose chosen reply is the sum (llm-gym preferences' format)."""
    return [{"prompt": [{"role": "user", "content": f"{i} + {i % 3} = ?"}],
             "chosen": [{"role": "assistant", "content": str(i + i % 3)}],
             "rejected": [{"role": "assistant", "content": f"{i + 5}!"}]}
            for i in range(count)]


def write_pairs(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_sigmoid_and_ipo_losses_match_hand_computed_values() -> None:
    chosen, rejected = torch.tensor([-1.0]), torch.tensor([-2.0])
    ref = torch.tensor([-1.5])
    # Log-ratios +0.5 (chosen) and -0.5 (rejected): h = 1.
    loss, rewards = dpo_loss(chosen, rejected, ref, ref, beta=0.5)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-0.5)))  # -log sigmoid(0.5 * 1)
    assert float(rewards["chosen"]) == pytest.approx(0.25)
    assert float(rewards["rejected"]) == pytest.approx(-0.25)
    assert float(rewards["margins"]) == pytest.approx(0.5)
    assert float(rewards["accuracies"]) == 1.0
    loss, _ = dpo_loss(chosen, rejected, ref, ref, beta=0.25, loss_type="ipo")
    assert float(loss) == pytest.approx((1 - 1 / (2 * 0.25)) ** 2)  # (h - 1/(2 beta))^2 = 1
    loss, _ = dpo_loss(chosen, rejected, ref, ref, beta=0.5, loss_type="ipo")
    assert float(loss) == pytest.approx(0.0)  # h already equals 1/(2 beta)


def test_pairs_are_encoded_as_the_env_renders_them() -> None:
    tok = ByteTokenizer()
    pair = encode_preference_pairs(pair_rows(1), tok, 512)[0]
    assert pair.prompt == tok.prompt_tokens(pair_rows(1)[0]["prompt"])
    assert pair.chosen == tok.encode("0") + [tok.eos_token_id]  # the agent ends its turn
    implicit = {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                              "content": "a"}],
                "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                                "content": "b"}]}
    assert encode_preference_pairs([implicit], tok, 512)[0].prompt == tok.prompt_tokens(
        [{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="preference row 1 is .* tokens long"):
        encode_preference_pairs([*pair_rows(1), {"prompt": "x" * 80, "chosen": "a",
                                                 "rejected": "b"}], tok, 64)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_raises_margin_and_accuracy_on_its_pairs(loss_type) -> None:
    config = DPOConfig(batch_size=4, learning_rate=2e-3, kl_coef=0.5, loss_type=loss_type)
    agent = DPOAgent(ENV, "tiny", config, data=pair_rows(), seed=1)
    before = agent.preference_metrics()
    assert before["rewards/margins"] == 0.0  # the policy starts as the reference
    logged: list[dict] = []
    agent.learn(48, callback=logged.append)
    after = agent.preference_metrics()
    assert agent.num_timesteps == 48 and agent.num_updates == 12
    assert after["rewards/margins"] > 0.2  # IPO aims at beta * 1/(2 beta) = 0.5
    assert after["rewards/accuracies"] >= 0.75
    assert after["loss"] < before["loss"]
    assert {"train/loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
            "rewards/accuracies"} <= set(logged[-1])
    result = agent.evaluate(num_episodes=2)  # the env's metric, the keys of every agent
    assert {"mean_return", "success_rate", "episodes"} <= set(result)


def test_last_batch_stops_at_the_target_and_no_data_is_one_clear_error() -> None:
    agent = DPOAgent(ENV, "tiny", DPOConfig(batch_size=4), data=pair_rows())
    assert agent.learn(6).num_timesteps == 6  # 4 + 2 pairs, not 8
    assert agent.default_timesteps() == 8
    with pytest.raises(ValueError, match="DPO trains on preference pairs"):
        DPOAgent(ENV, "tiny")
    with pytest.raises(ValueError, match="loss_type must be one of"):
        DPOConfig(loss_type="hinge")


RESUME = DPOConfig(batch_size=3, learning_rate=1e-3, checkpoint_every=1, deterministic=True)


def test_save_load_resume_matches_an_uninterrupted_run(tmp_path) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", pair_rows(5))
    config = DPOConfig(**{**RESUME.__dict__, "data": data})
    full = DPOAgent(ENV, "tiny", config, seed=2, log_dir=tmp_path / "full")
    full_rows: list[dict] = []
    full.learn(12, callback=full_rows.append)  # 4 updates, two passes over shuffled pairs
    cut = DPOAgent(ENV, "tiny", config, seed=2, log_dir=tmp_path / "cut")
    cut.learn(12, callback=lambda metrics: False)  # stops after the first update
    cut.save(tmp_path / "saved")
    resumed = DPOAgent.load(tmp_path / "saved", log_dir=tmp_path / "cut")
    assert resumed.num_timesteps == 3 and resumed.config.data == data
    rest: list[dict] = []
    resumed.learn(12, resume_from=tmp_path / "cut" / "checkpoints", callback=rest.append)
    assert [r["train/loss"] for r in rest] == [r["train/loss"] for r in full_rows[1:]]
    assert parameter_hash(resumed.model) == parameter_hash(full.model)
    write_pairs(tmp_path / "pairs.jsonl", pair_rows(4))  # the data changed under the run
    with pytest.raises(ValueError, match="preference data differs"):
        DPOAgent.load(tmp_path / "saved")


def test_make_agent_and_cli_train_dpo_end_to_end(tmp_path, capsys) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", pair_rows(4))
    agent = make_agent("dpo", ENV, model="tiny", config={"data": data, "batch_size": 2})
    assert isinstance(agent, DPOAgent) and agent.learn(2).num_updates == 1
    run = tmp_path / "run"
    assert main(["train", "--agent", "dpo", "--env", ENV, "--model", "tiny", "--data", data,
                 "--log-dir", str(run), "--eval-episodes", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "took 4 env steps" in out  # one pass over the 4 pairs by default
    assert json.loads((run / "run.json").read_text())["data"] == data
    assert "rewards/margins" in (run / "metrics.csv").read_text().splitlines()[0]
    assert main(["train", "--resume", str(run), "--timesteps", "8", "--eval-episodes", "1",
                 "--no-progress"]) == 0
    assert "to 8 steps (from 4)" in (out := capsys.readouterr().out)
    assert "took 8 env steps" in out, out


@pytest.mark.parametrize(("rows", "extra", "message"), [
    (None, [], "preference file .*missing.jsonl does not exist"),
    ([{"prompt": "1+1=", "chosen": "2"}], [], r"no column\(s\) \['rejected'\]"),
    ([{"prompt": "1+1=", "chosen": "2", "rejected": "2"}], [], "row 0: chosen and rejected"),
    ([{"prompt": "1+1=", "chosen": "2", "rejected": "3"}], ["--agent", "grpo"],
     "--data is the preference file of dpo"),
])
def test_bad_data_is_one_line_before_training(tmp_path, capsys, rows, extra, message) -> None:
    path = tmp_path / "missing.jsonl"
    if rows is not None:
        write_pairs(path, rows)
    args = ["train", "--agent", "dpo", "--env", ENV, "--model", "tiny", "--data", str(path),
            "--log-dir", str(tmp_path / "run"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and __import__("re").search(message, err[0])
    assert not (tmp_path / "run").exists()  # nothing was trained or written


def test_a_missing_file_in_a_list_of_files_is_named(tmp_path) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", pair_rows(2))
    with pytest.raises(FileNotFoundError, match="preference file .*gone.jsonl does not exist"):
        DPOAgent(ENV, "tiny", data=[data, str(tmp_path / "gone.jsonl")])
