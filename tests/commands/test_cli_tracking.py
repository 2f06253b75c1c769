"""``train``/``compare`` ``--report-to`` and ``--eval-every`` (issue 21)."""

from __future__ import annotations

import csv
import json

import pytest

from llm_gym.cli import main

ARITHMETIC = ["--env", "llm_gym/Arithmetic-v0", "--env-kwargs", '{"max_new_tokens": 4}']


@pytest.fixture
def grpo_config(tmp_path):
    path = tmp_path / "grpo.json"
    path.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2}))
    return str(path)


def events(folder):
    return list(folder.rglob("events.out.tfevents*"))


def test_report_to_wandb_offline_logs_metrics_and_the_run_config(tmp_path, grpo_config,
                                                                 monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    assert main(["train", *ARITHMETIC, "--agent", "grpo", "--config", grpo_config,
                 "--timesteps", "16", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1", "--report-to", "wandb"]) == 0
    assert not events(run)  # wandb only: no TensorBoard
    offline = list((run / "wandb").glob("offline-run-*/*.wandb"))
    assert len(offline) == 1
    recorded = offline[0].read_bytes()
    assert b"rollout/ep_rew_mean" in recorded
    assert b"llm_gym/Arithmetic-v0" in recorded and b"run_id" in recorded  # run.json's content
    assert json.loads((run / "run.json").read_text())["report_to"] == "wandb"


def test_report_to_none_keeps_the_csv_and_writes_no_tensorboard(tmp_path, grpo_config):
    run = tmp_path / "run"
    assert main(["train", *ARITHMETIC, "--agent", "grpo", "--config", grpo_config,
                 "--timesteps", "8", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1", "--report-to", "none"]) == 0
    assert (run / "metrics.csv").is_file() and not events(run)
    sb3 = tmp_path / "sb3"
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "sb3-a2c", "--timesteps",
                 "20", "--log-dir", str(sb3), "--no-progress", "--eval-episodes", "1",
                 "--report-to", "none"]) == 0
    assert not events(sb3)
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "sb3-a2c", "--timesteps",
                 "20", "--log-dir", str(tmp_path / "tb"), "--no-progress",
                 "--eval-episodes", "1"]) == 0
    assert events(tmp_path / "tb")  # the default still writes TensorBoard


@pytest.mark.parametrize(("flags", "says"), [
    (["--report-to", "tensorbord"], "--report-to takes tensorboard, wandb"),
    (["--eval-every", "0"], "--eval-every must be at least 1"),
])
def test_bad_tracking_flags_are_one_line(flags, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "random", *flags]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_wandb_for_an_agent_without_it_says_so(tmp_path, capsys):
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "q-learning",
                 "--log-dir", str(tmp_path / "run"), "--report-to", "wandb"]) == 2
    assert "only the LLM trainers" in capsys.readouterr().err


def test_eval_every_logs_eval_metrics_and_draws_the_eval_curve(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"num_envs": 2, "num_steps": 8}))  # 16 steps an update
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "ppo", "--config",
                 str(config), "--timesteps", "64", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "2", "--eval-every", "32"]) == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    evaluated = [float(r["step"]) for r in rows if r.get("eval/mean_return")]
    assert evaluated == [32.0, 64.0]  # in the rows of the updates they followed
    assert all(r["eval/success_rate"] for r in rows if r.get("eval/mean_return"))
    curve = list(csv.DictReader((run / "eval_curve.csv").open()))
    assert [int(r["env_steps"]) for r in curve] == [0, 32, 64]  # before, during, after (once)
    assert (run / "eval_curve.png").stat().st_size > 0
    assert "eval curve (plot)" in capsys.readouterr().out


def test_eval_every_works_for_a_table_agent_too(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "q-learning",
                 "--timesteps", "300", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1", "--eval-every", "100"]) == 0
    curve = list(csv.DictReader((run / "eval_curve.csv").open()))
    assert len(curve) >= 4 and int(curve[0]["env_steps"]) == 0
    assert int(curve[-1]["env_steps"]) == 300


def test_compare_prints_progress_inside_each_run(tmp_path, capsys):
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"num_envs": 2, "num_steps": 8}))
    assert main(["compare", "--envs", "llm_gym/LeftRight-v0", "--agents", "ppo,q-learning",
                 "--timesteps", "160", "--config", str(config), "--eval-episodes", "1",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    ends = [i for i, line in enumerate(out) if line.startswith("[1/2]")]
    inside = [line for line in out[:ends[0]] if line.startswith("  [1/2] ppo on")]
    assert len(inside) == 10  # a line each tenth of the budget, before the run's own line
    assert "16/160 steps (10%), training return " in inside[0] and ", 1 updates" in inside[0]
    assert "160/160 steps (100%)" in inside[-1]
    assert any(line.startswith("  [2/2] q-learning on") for line in out)
    capsys.readouterr()
    assert main(["compare", "--envs", "llm_gym/LeftRight-v0", "--agents", "q-learning",
                 "--timesteps", "100", "--eval-episodes", "1", "--no-progress",
                 "--out", str(tmp_path / "quiet")]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("  [")]


def test_compare_report_to_tensorboard_keeps_each_runs_logs(tmp_path):
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"num_envs": 2, "num_steps": 8}))
    out = tmp_path / "out"
    assert main(["compare", "--envs", "llm_gym/LeftRight-v0", "--agents", "ppo,sb3-a2c",
                 "--timesteps", "32", "--config", str(config), "--eval-episodes", "1",
                 "--out", str(out), "--report-to", "tensorboard", "--no-progress"]) == 0
    ppo, a2c = out / "runs" / "01-ppo-LeftRight-v0-s0", out / "runs" / "02-sb3-a2c-LeftRight-v0-s0"
    assert (ppo / "metrics.csv").is_file() and events(ppo)
    assert events(a2c)
    assert not list(out.glob("runs/*/checkpoints"))  # logs only: compare keeps no saves
