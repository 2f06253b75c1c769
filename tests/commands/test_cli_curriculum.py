"""``llm-gym train --curriculum JSON`` (issue 23): recorded, checkpointed, resumed, checked."""

from __future__ import annotations

import csv
import json

from llm_gym.agents.checkpoints import load_checkpoint
from llm_gym.cli import main

ARITH = "llm_gym/Arithmetic-v0"


def test_a_curriculum_run_records_its_settings_logs_its_pools_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2}))
    argv = ["train", "--env", ARITH, "--agent", "rloo", "--model", "tiny", "--env-kwargs",
            '{"num_tasks": 6, "max_new_tokens": 4}', "--config", str(config), "--curriculum",
            '{"min_tries": 2, "retest_rate": 0.25}', "--save-rollouts", "--timesteps", "32",
            "--log-dir", str(run), "--no-progress", "--eval-episodes", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    saved = json.loads((run / "run.json").read_text())
    assert saved["curriculum"]["retest_rate"] == 0.25 and saved["curriculum"]["window"] == 8
    state = load_checkpoint(run)
    assert state["sampler"]["kind"] == "llm_gym.curriculum/1"
    assert state["config"]["curriculum"] == saved["curriculum"]
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sum(float(rows[-1][f"curriculum/{k}"]) for k in
               ("band", "solved", "unsolved", "unseen")) == 6
    # Episodes sampled after the last checkpoint (a killed run) are dropped on resume.
    rollouts = run / "rollouts.jsonl"
    done = state["counters"]["num_updates"]
    with rollouts.open("a") as handle:
        handle.write(json.dumps({"update": done, "env": ARITH, "tokens": [], "seed": None,
                                 "index": None, "stale": True}) + "\n")
    assert main(["train", "--resume", str(run), "--timesteps", "64", "--no-progress",
                 "--eval-episodes", "1"]) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in rollouts.read_text().splitlines()]
    assert not any(r.get("stale") for r in records)
    updates = [r["update"] for r in records]
    assert updates == sorted(updates) and max(updates) > done
    assert all(updates.count(u) == 4 for u in set(updates))  # G x prompts, none twice
    assert json.loads((run / "run.json").read_text())["curriculum"] == saved["curriculum"]
    assert main(["train", "--resume", str(run), "--timesteps", "96", "--curriculum", "{}"]) == 2
    assert "--curriculum differs" in capsys.readouterr().err


def test_curriculum_mistakes_fail_before_training(tmp_path, capsys):
    base = ["train", "--env", "llm_gym/LeftRight-v0", "--timesteps", "8", "--no-progress"]
    assert main([*base, "--agent", "q-learning", "--curriculum", "{}",
                 "--log-dir", str(tmp_path / "a")]) == 2
    assert "--agent grpo or" in capsys.readouterr().err
    assert main([*base, "--agent", "grpo", "--curriculum", '{"band": [1, 0]}',
                 "--log-dir", str(tmp_path / "b")]) == 2
    assert "band must be" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
