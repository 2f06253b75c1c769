"""What ``llm-gym train`` says up front: the model it uses, where whole batches end (issue 21)."""

from __future__ import annotations

import json

from llm_gym.cli import main


def test_train_records_and_prints_the_default_model(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "grpo.json"
    config.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2}))
    assert main(["train", "--env", "llm_gym/Arithmetic-v0", "--agent", "grpo",
                 "--env-kwargs", '{"max_new_tokens": 4}', "--config", str(config),
                 "--timesteps", "8", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "training grpo with model tiny on llm_gym/Arithmetic-v0 to 8 steps" in out
    assert "within half a batch" in out
    assert json.loads((run / "run.json").read_text())["model"] == "tiny"


def test_train_says_up_front_where_the_last_whole_batch_ends(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"num_envs": 2, "num_steps": 16}))  # 32 steps a batch
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "ppo", "--config",
                 str(config), "--timesteps", "40", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "to 40 steps (last batch completes: 64)" in out
    assert "took 64 env steps" in out
    saved = json.loads((run / "run.json").read_text())
    assert saved["model"] is None  # an MLP policy: no language model to name
    assert saved["num_timesteps"] == 64


def test_sb3_rollouts_are_named_too_and_whole_batches_need_no_note(tmp_path, capsys):
    config = tmp_path / "sb3.json"
    config.write_text(json.dumps({"n_steps": 16, "batch_size": 16}))
    argv = ["train", "--env", "llm_gym/LeftRight-v0", "--agent", "sb3-ppo", "--config",
            str(config), "--no-progress", "--eval-episodes", "1"]
    assert main([*argv, "--timesteps", "40", "--log-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "to 40 steps (last batch completes: 48)" in out and "took 48 env steps" in out
    assert main([*argv, "--timesteps", "32", "--log-dir", str(tmp_path / "b")]) == 0
    assert "to 32 steps -> " in capsys.readouterr().out
