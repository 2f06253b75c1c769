"""Where training metrics go: metrics.csv always, TensorBoard and W&B per ``report_to``."""

from __future__ import annotations

import csv

import pytest

from llm_gym.agents.metrics import MetricsLogger, parse_report_to


@pytest.mark.parametrize(("value", "expected"), [
    ("tensorboard", ("tensorboard",)), ("wandb,tensorboard", ("wandb", "tensorboard")),
    (["wandb"], ("wandb",)), ("none", ()), (None, ()),
])
def test_report_to_accepts_transformers_names(value, expected):
    assert parse_report_to(value) == expected


@pytest.mark.parametrize("value", ["tensorbord", "none,wandb", "", "mlflow"])
def test_report_to_rejects_anything_else_in_one_line(value):
    with pytest.raises(ValueError, match="report_to must be one or more of tensorboard, wandb"):
        parse_report_to(value)


def test_none_still_writes_the_csv_but_no_tensorboard(tmp_path):
    log = MetricsLogger(tmp_path, report_to="none")
    log.log({"rollout/ep_rew_mean": 0.5}, step=3)
    log.close()
    assert not (tmp_path / "tb").exists()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert rows == [{"step": "3.0", "rollout/ep_rew_mean": "0.5"}]


def test_wandb_offline_logs_the_metrics_and_the_run_config(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = MetricsLogger(tmp_path / "run", report_to="wandb", config={"agent": "grpo", "lr": 1e-5})
    run = log._wandb
    assert run.config["agent"] == "grpo" and run.config["lr"] == 1e-5
    log.log({"rollout/ep_rew_mean": 0.25}, step=7)
    log.close()
    assert wandb.run is None  # finished
    offline = list((tmp_path / "run" / "wandb").glob("offline-run-*/*.wandb"))
    assert len(offline) == 1 and not (tmp_path / "run" / "tb").exists()
    recorded = offline[0].read_bytes()  # what `wandb sync` would upload
    assert b"rollout/ep_rew_mean" in recorded and b"grpo" in recorded
