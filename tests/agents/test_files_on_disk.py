"""Files on disk are input (issue 19): saves that cannot run code, runs that own their folder.

Checkpoints: a planted save with a pickle payload (the old one-file format, or the current
format's ``tensors.pt``) never runs on ``--resume``, ``GRPOAgent.load``, ``llm-gym export`` or
``tournament --agents grpo:PATH``; the honest save is used, or the user gets one line. A save is
chosen by its recorded update count and run id, not its name or file time.

Run folders: the same ``llm-gym train`` twice leaves both runs; an explicit ``--log-dir`` that
holds a run is refused in one line (``--overwrite`` replaces it); a second writer is refused while
the first holds the lock; retention deletes only the run's own older checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from attacks.files_on_disk import (
    plant_foreign_run,
    plant_legacy_checkpoint,
    plant_legacy_save,
    plant_pickle_in_tensors,
    plant_sb3_payload,
    run_id_of,
)

from llm_gym.agents.checkpoints import (
    convert_legacy_save,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from llm_gym.agents.grpo import GRPOAgent
from llm_gym.agents.lm_trainer import parameter_hash
from llm_gym.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

CONFIG = {"group_size": 2, "prompts_per_batch": 2, "checkpoint_every": 1,
          "checkpoint_minutes": 0, "keep_checkpoints": 2}


def train_argv(config: Path, *extra: str) -> list[str]:
    """A tiny GRPO run of ``llm-gym train``: one update of 16 tokens."""
    return ["train", "--env", "llm_gym/Arithmetic-v0", "--agent", "grpo", "--model", "tiny",
            "--env-kwargs", '{"max_new_tokens": 4}', "--config", str(config),
            "--timesteps", "16", "--no-progress", "--eval-episodes", "1", *extra]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "grpo.json"
    path.write_text(json.dumps(CONFIG))
    return path


@pytest.fixture(scope="module")
def honest_run(tmp_path_factory, config) -> Path:
    """A finished run of ``llm-gym train``; tests copy it before planting anything."""
    run = tmp_path_factory.mktemp("honest") / "run"
    assert main(train_argv(config, "--log-dir", str(run))) == 0
    return run


@pytest.fixture()
def run(honest_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(honest_run, copy)
    return copy


def honest_hash(run: Path) -> str:
    return parameter_hash(GRPOAgent.load(run / "agent").model)


# ---------------------------------------------------------------------- checkpoints that run code
def test_load_skips_a_planted_legacy_checkpoint(run, tmp_path, caplog) -> None:
    marker = tmp_path / "ran"
    plant_legacy_checkpoint(run, marker)
    with caplog.at_level(logging.WARNING):
        agent = GRPOAgent.load(run)
    assert not marker.exists()
    assert parameter_hash(agent.model) == honest_hash(run)
    assert "old format" in caplog.text


def test_export_skips_a_planted_legacy_checkpoint(run, tmp_path, capsys) -> None:
    marker = tmp_path / "ran"
    plant_legacy_checkpoint(run, marker)
    assert main(["export", str(run), str(tmp_path / "hf")]) == 0, capsys.readouterr().err
    assert not marker.exists()


def test_resume_skips_a_planted_legacy_checkpoint(run, tmp_path, capsys) -> None:
    marker = tmp_path / "ran"
    plant_legacy_checkpoint(run, marker)
    code = main(["train", "--resume", str(run), "--timesteps", "24", "--no-progress",
                 "--eval-episodes", "1"])
    assert code == 0, capsys.readouterr().err
    assert not marker.exists()
    assert load_checkpoint(run)["counters"]["num_timesteps"] == 32  # went on from 16


def test_tournament_refuses_a_shared_legacy_agent_in_one_line(tmp_path, capsys) -> None:
    marker = tmp_path / "ran"
    shared = plant_legacy_save(tmp_path / "shared-agent", marker)
    assert main(["tournament", "--game", "tictactoe", "--agents",
                 f"grpo:{shared},random"]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert len(err.splitlines()) == 1 and "old format" in err and str(shared) in err


def test_a_legacy_save_alone_is_refused_with_what_to_do(tmp_path) -> None:
    marker = tmp_path / "ran"
    plant_legacy_checkpoint(tmp_path / "run", marker)
    with pytest.raises(ValueError, match="old format.*convert_legacy_save"):
        load_checkpoint(tmp_path / "run")
    assert not marker.exists()


def test_pickle_in_a_current_save_is_never_unpickled(run, tmp_path, caplog) -> None:
    marker = tmp_path / "ran"
    planted = plant_pickle_in_tensors(run, marker, run_id_of(run))
    with caplog.at_level(logging.WARNING):
        agent = GRPOAgent.load(run)
    assert not marker.exists()
    assert parameter_hash(agent.model) == honest_hash(run)
    assert f"skipping corrupt checkpoint {planted}" in caplog.text


def test_a_save_of_another_run_is_not_chosen(run) -> None:
    state = load_checkpoint(run / "agent")
    state["counters"]["num_timesteps"] = 10**9  # would show if this save were chosen
    plant_foreign_run(run, state)
    assert load_checkpoint(run)["counters"]["num_timesteps"] == 16
    assert GRPOAgent.load(run).num_timesteps == 16


# ---------------------------------------------------------------------- runs that own their folder
def test_the_same_command_twice_keeps_both_runs(tmp_path, config, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(train_argv(config)) == 0
    assert main(train_argv(config)) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    assert all(r.name.startswith("grpo-Arithmetic-v0-s0-2") for r in runs)
    ids = [json.loads((r / "run.json").read_text())["run_id"] for r in runs]
    assert ids[0] != ids[1]
    for folder, run_id in zip(runs, ids, strict=True):
        assert [p.name for p in list_checkpoints(folder / "checkpoints")] == [
            "checkpoint-000000001"]
        assert GRPOAgent.load(folder).run_id == run_id
        assert load_checkpoint(folder)["counters"]["num_timesteps"] == 16


def test_an_explicit_log_dir_with_a_run_is_refused_in_one_line(run, config, capsys) -> None:
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert main(train_argv(config, "--log-dir", str(run))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert all(fix in err for fix in ("--resume", "--overwrite", "--log-dir"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    old_id = run_id_of(run)
    assert main(train_argv(config, "--log-dir", str(run), "--overwrite")) == 0
    assert run_id_of(run) != old_id
    assert {load_checkpoint(p)["run_id"] for p in list_checkpoints(run / "checkpoints")} == {
        run_id_of(run)}


HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_writer_is_refused_while_the_lock_is_held(run, config, capsys) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run / "run.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = load_checkpoint(run)["counters"]["num_timesteps"]
        assert main(["train", "--resume", str(run), "--timesteps", "24", "--no-progress",
                     "--eval-episodes", "1"]) == 2
        assert main(train_argv(config, "--log-dir", str(run), "--overwrite")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and all("in use" in line for line in err)
        with pytest.raises(OSError, match="in use"):
            GRPOAgent.load(run, log_dir=run).learn(24, reset_num_timesteps=False)
        assert load_checkpoint(run)["counters"]["num_timesteps"] == before
        assert (run / "run.json").is_file()
    finally:
        holder.kill()
        holder.wait()


def test_a_fresh_agent_refuses_a_log_dir_of_another_run(run) -> None:
    agent = GRPOAgent.load(run / "agent", log_dir=run)
    agent.run_id = "a-new-run"  # as a fresh GRPOAgent(..., log_dir=run) would have
    with pytest.raises(FileExistsError, match="another run.*resume_from"):
        agent.learn(24, reset_num_timesteps=False)


def test_retention_deletes_only_the_runs_own_older_checkpoints(tmp_path) -> None:
    folder = tmp_path / "checkpoints"
    foreign = save_checkpoint(folder, 1, {"who": "other"}, run_id="other")
    unreadable = folder / "checkpoint-000000000"
    unreadable.mkdir()
    (unreadable / "checkpoint.json").write_text("{not json")
    for step in range(2, 7):
        save_checkpoint(folder, step, {"who": "mine"}, keep=2, run_id="mine")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["checkpoint-000000000", "checkpoint-000000001", "checkpoint-000000005",
                     "checkpoint-000000006"]
    assert load_checkpoint(foreign)["who"] == "other"
    # The newest of a run is kept even when an older run numbered past it.
    save_checkpoint(folder, 99, {"who": "other"}, run_id="other")
    save_checkpoint(folder, 7, {"who": "mine"}, keep=1, run_id="mine")
    assert (folder / "checkpoint-000000007").is_dir()
    assert load_checkpoint(folder, run_id="mine")["who"] == "mine"
    assert not os.path.exists(folder / "checkpoint-000000006")
    with pytest.raises(FileExistsError, match="checkpoint of run other"):
        save_checkpoint(folder, 99, {"who": "mine"}, run_id="mine")  # same name, another run
    assert load_checkpoint(folder / "checkpoint-000000099")["who"] == "other"


def test_a_legacy_save_of_your_own_converts_once_and_then_loads(run, tmp_path) -> None:
    state = load_checkpoint(run / "agent")
    legacy = tmp_path / "old-agent"
    legacy.mkdir()
    torch.save(state, legacy / "state.pt")  # what llm_gym wrote before issue 19
    with pytest.raises(ValueError, match="old format"):
        GRPOAgent.load(legacy)
    convert_legacy_save(legacy)
    assert not (legacy / "state.pt").exists()
    assert parameter_hash(GRPOAgent.load(legacy).model) == honest_hash(run)


def test_a_planted_device_file_is_skipped_not_read(run, caplog) -> None:
    state = load_checkpoint(run / "agent")
    planted = save_checkpoint(run / "checkpoints", 10**6, state, keep=99, run_id=run_id_of(run))
    (planted / "model.safetensors").unlink()
    (planted / "model.safetensors").symlink_to("/dev/zero")  # would read forever
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(run)["counters"]["num_timesteps"] == 16
    assert f"skipping corrupt checkpoint {planted}" in caplog.text


# ---------------------------------------------------------------------- SB3 model files
def test_a_planted_sb3_model_never_runs_code(tmp_path, capsys) -> None:
    from stable_baselines3 import PPO

    from llm_gym.agents.sb3 import load_sb3_agent, make_sb3_agent

    honest = tmp_path / "agent.zip"
    make_sb3_agent(PPO, "llm_gym/LeftRight-v0", seed=0, n_steps=16, batch_size=16).save(honest)
    assert load_sb3_agent(PPO, honest, "llm_gym/LeftRight-v0").num_timesteps == 0
    marker = tmp_path / "ran"
    planted = plant_sb3_payload(honest, tmp_path / "shared.zip", marker)
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        load_sb3_agent(PPO, planted, "llm_gym/LeftRight-v0")
    assert main(["tournament", "--game", "tictactoe", "--agents",
                 f"sb3-ppo:{planted},random"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be loaded safely" in err
    assert not marker.exists()
