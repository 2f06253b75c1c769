"""``--wrappers`` in ``llm-gym train`` and ``--variants`` in ``llm-gym compare`` (issue 7)."""

from __future__ import annotations

import csv
import json

import pytest

from llm_gym.cli import main

ARITH = "llm_gym/Arithmetic-v0"
LENGTH = '[{"name": "LengthPenalty", "kwargs": {"coef": 0.05}}]'


@pytest.mark.parametrize("agent", ["grpo", "ppo"])
def test_train_an_llm_agent_on_a_shaped_reward_and_resume_it(agent, tmp_path, capsys):
    run = tmp_path / agent
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2} if agent == "grpo"
                                 else {"num_envs": 2, "num_steps": 8}))
    argv = ["train", "--env", ARITH, "--agent", agent, "--env-kwargs", '{"max_new_tokens": 4}',
            "--config", str(config), "--timesteps", "16", "--wrappers", LENGTH,
            "--log-dir", str(run), "--no-progress", "--eval-episodes", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "env_return" in out and "mean_length" in out  # the unshaped metrics are shown
    saved = json.loads((run / "run.json").read_text())
    assert saved["wrappers"] == json.loads(LENGTH)
    with (run / "metrics.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert float(row["reward/length_penalty"]) < 0  # the term reaches the metrics
    assert main(["train", "--resume", str(run), "--timesteps", "32", "--no-progress",
                 "--eval-episodes", "1"]) == 0
    assert json.loads((run / "run.json").read_text())["wrappers"] == json.loads(LENGTH)
    assert main(["train", "--resume", str(run), "--timesteps", "40", "--wrappers", "[]"]) == 2
    assert "--wrappers differs" in capsys.readouterr().err


def test_the_same_list_trains_sb3_on_a_classic_env(tmp_path, capsys):
    run = tmp_path / "sb3"
    assert main(["train", "--env", "CartPole-v1", "--agent", "sb3-ppo", "--timesteps", "256",
                 "--wrappers", LENGTH, "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "2"]) == 0, capsys.readouterr().err
    evaluation = json.loads((run / "eval.json").read_text())
    # CartPole pays 1 per step; the shaped return is 0.95 per step, the unshaped one 1.
    assert evaluation["mean_return"] == pytest.approx(0.95 * evaluation["mean_length"])
    assert evaluation["env_return"] == pytest.approx(evaluation["mean_length"])


@pytest.mark.parametrize(("wrappers", "message"), [
    ('[{"name": "LengthPenalti"}]', "unknown wrapper 'LengthPenalti'"),
    ('[{"name": "LengthPenalty", "kwargs": {"coeff": 1}}]', "does not take"),
    ('{"name": "LengthPenalty"}', "must be a list"),
    ('[{"name": "FormatBonus", "kwargs": {"pattern": "x"}}]', "FormatBonus.*CartPole"),
    ('[{"name": "PotentialShaping", "kwargs": {"potential": "math:nope"}}]', "cannot be imp"),
])
def test_a_bad_stack_is_a_clear_error_before_training(wrappers, message, tmp_path, capsys):
    code = main(["train", "--env", "CartPole-v1", "--agent", "sb3-ppo", "--timesteps", "64",
                 "--wrappers", wrappers, "--log-dir", str(tmp_path / "r"), "--no-progress"])
    assert code == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_compare_variants_prints_shaped_and_unshaped_metrics(tmp_path, capsys):
    variants = json.dumps({"unshaped": {}, "short": json.loads(LENGTH)})
    code = main(["compare", "--envs", "llm_gym/LeftRight-v0", "--agents", "q-learning",
                 "--timesteps", "500", "--seeds", "0,1", "--variants", variants,
                 "--eval-episodes", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    rows = json.loads((tmp_path / "comparison.json").read_text())["rows"]
    by_variant = {row["variant"]: row for row in rows}
    assert set(by_variant) == {"unshaped", "short"} and all(r["seeds"] == 2 for r in rows)
    short = by_variant["short"]
    # Same optimal policy (right, right: +5 in 2 steps); the shaped return pays 0.05 a step.
    assert short["env_return"] == pytest.approx(5.0)
    assert short["return_mean"] == pytest.approx(5.0 - 0.05 * short["mean_length"])
    assert by_variant["unshaped"]["return_mean"] == by_variant["unshaped"]["env_return"]
    assert "| variant |" in out and "| short |" in out and "env_return" in out
    assert (tmp_path / "learning_curves.png").stat().st_size > 0


def test_compare_rejects_a_variant_that_does_not_fit(tmp_path, capsys):
    variants = '{"fmt": [{"name": "OverlongPenalty"}]}'
    assert main(["compare", "--envs", "CartPole-v1", "--agents", "random", "--timesteps", "10",
                 "--variants", variants, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "variant 'fmt'" in err and "OverlongPenalty" in err


def test_compare_warns_when_a_run_makes_too_few_updates(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2}))
    code = main(["compare", "--envs", ARITH, "--agents", "grpo,q-learning", "--timesteps", "16",
                 "--env-kwargs", json.dumps({ARITH: {"max_new_tokens": 4}}),
                 "--config", str(config), "--eval-episodes", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("q-learning on llm_gym/Arithmetic-v0") == 1  # the skip list, once
    row = json.loads((tmp_path / "comparison.json").read_text())["rows"][0]
    assert 1 <= row["updates"] < 3 and "| updates |" in out
    assert f"warning: {row['updates']} update(s) in 16 steps" in out
    assert "q-learning" in (tmp_path / "comparison.md").read_text()  # the file keeps it
