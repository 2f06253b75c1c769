"""``--save-rollouts`` in train and eval, and ``llm-gym rescore`` (issue 23): rescored = live."""

from __future__ import annotations

import csv
import json

import pytest

from llm_gym.agents.rollout_records import read_rollouts, replay_env, replay_episode
from llm_gym.cli import main

BANDIT = "llm_gym/BanditText-v0"
BANDIT_KWARGS = '{"horizon": 2, "num_arms": 3, "constrained": true}'
# A dense term (every token) and a per-turn one (a reply naming arm 2): both shape each step.
SHAPED = [{"name": "LengthPenalty", "kwargs": {"coef": 0.02}},
          {"name": "FormatBonus", "kwargs": {"pattern": "2", "whole": True, "bonus": 0.3}}]
OTHER = {"bigger": [{"name": "LengthPenalty", "kwargs": {"coef": 0.2}}]}


def read_csv(path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A GRPO run on the bandit text env, shaped by SHAPED, with its episodes stored."""
    run = tmp_path_factory.mktemp("bandit") / "run"
    config = run.parent / "config.json"
    config.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2}))
    argv = ["train", "--env", BANDIT, "--agent", "grpo", "--model", "tiny", "--env-kwargs",
            BANDIT_KWARGS, "--config", str(config), "--timesteps", "24", "--wrappers",
            json.dumps(SHAPED), "--save-rollouts", "--log-dir", str(run), "--no-progress",
            "--eval-episodes", "1"]
    assert main(argv) == 0
    return run


def test_train_stores_every_episode_with_what_a_replay_needs(trained):
    records = read_rollouts(trained / "rollouts.jsonl")
    assert json.loads((trained / "run.json").read_text())["save_rollouts"] == str(
        trained / "rollouts.jsonl")
    assert len(records) % 4 == 0 and len(records) >= 8  # G x prompts rows per update
    assert [r["update"] for r in records] == sorted(r["update"] for r in records)
    first = records[0]
    assert first["env"] == BANDIT and first["tokenizer"] == "byte"
    assert first["wrappers"] == SHAPED and first["source"] == "train"
    assert len(first["tokens"]) == len(first["rewards"]) > 0
    assert first["return"] == pytest.approx(sum(first["rewards"]), abs=1e-5)
    assert first["index"] == 0 and isinstance(first["seed"], int)
    assert "Reward" in first["text"] and "slot machine" in first["prompt"]


def test_rescored_returns_equal_what_the_same_stack_gave_live(trained, capsys):
    rollouts = trained / "rollouts.jsonl"
    argv = ["rescore", str(rollouts), "--wrappers", json.dumps(SHAPED), "--variants",
            json.dumps(OTHER), "--out", str(trained / "rescored")]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "| env (unshaped) |" in out and "| LengthPenalty+FormatBonus |" in out
    rows = read_csv(trained / "rescored" / "rescore.csv")
    records = read_rollouts(rollouts)
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        live = float(row["live (recorded)"])
        assert float(row["LengthPenalty+FormatBonus"]) == pytest.approx(live, abs=1e-5)
        assert float(row["env (unshaped)"]) == pytest.approx(record["env_return"], abs=1e-6)
        # Another stack scores the same tokens differently: 0.2 per token instead of 0.02.
        expected = record["env_return"] - 0.2 * len(record["tokens"])
        assert float(row["bigger"]) == pytest.approx(expected, abs=1e-5)
    assert (trained / "rescored" / "rescore.png").stat().st_size > 0
    # Step by step too: the replayed per-step rewards are the recorded ones.
    env = replay_env(records[-1], SHAPED)
    _, rewards, _ = replay_episode(env, records[-1])
    assert rewards == pytest.approx(records[-1]["rewards"], abs=1e-6)


def test_a_replay_on_another_env_is_refused(trained):
    record = read_rollouts(trained / "rollouts.jsonl")[0]
    env = replay_env({**record, "env_kwargs": {"horizon": 5, "num_arms": 3,
                                                "constrained": True}}, None)
    with pytest.raises(ValueError, match="did not end"):
        replay_episode(env, record)


def test_eval_stores_its_episodes_and_rescore_reads_them(tmp_path, capsys):
    rollouts = tmp_path / "eval.jsonl"
    argv = ["eval", "--env", "llm_gym/Arithmetic-v0", "--model", "tiny", "--n", "2",
            "--limit", "2", "--max-new-tokens", "4", "--out", str(tmp_path / "eval.json"),
            "--save-rollouts", str(rollouts)]
    assert main(argv) == 0, capsys.readouterr().err
    samples = json.loads((tmp_path / "eval.json").read_text())["samples"]
    records = read_rollouts(rollouts)
    assert [r["index"] for r in records] == [0, 0, 1, 1]
    assert [r["source"] for r in records] == ["eval"] * 4
    assert [r["return"] for r in records] == [s["reward"] for s in samples]
    assert main(["rescore", str(rollouts), "--wrappers",
                 '[{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]']) == 0
    rows = read_csv(tmp_path / "rescore.csv")
    for row, record in zip(rows, records, strict=True):
        assert float(row["LengthPenalty"]) == pytest.approx(
            record["return"] - 0.5 * len(record["tokens"]), abs=1e-6)


@pytest.mark.parametrize(("argv", "message"), [
    ([], "needs --wrappers"),
    (["--variants", "[1]"], "JSON object of named stacks"),
    (["--wrappers", '[{"name": "Nope"}]'], "Nope"),
])
def test_rescore_mistakes_are_one_line_errors(argv, message, tmp_path, capsys):
    missing = tmp_path / "none.jsonl"
    assert main(["rescore", str(missing), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_no_rollouts_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"index": 0}\n')
    assert main(["rescore", str(bad), "--wrappers", "[]"]) == 2
    assert "no stored rollout" in capsys.readouterr().err
    assert main(["eval", "--env", "llm_gym/Arithmetic-v0", "--completions", str(bad),
                 "--save-rollouts"]) == 2
    assert "completions file" in capsys.readouterr().err
