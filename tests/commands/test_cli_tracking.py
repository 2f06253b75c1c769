"""``train``/``compare`` ``--report-to`` and ``--eval-every`` (issue 21)."""

from __future__ import annotations

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
