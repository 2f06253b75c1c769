"""``--device`` on train, eval and compare (issue 21): checked before anything loads."""

from __future__ import annotations

import json

import pytest
import torch

import llm_gym.models
from llm_gym.cli import main
from llm_gym.commands.arguments import resolve_device

NO_CUDA = not torch.cuda.is_available()
COMMANDS = {
    "train": ["train", "--env", "llm_gym/Arithmetic-v0", "--agent", "grpo", "--model", "tiny"],
    "eval": ["eval", "--env", "llm_gym/Arithmetic-v0", "--model", "tiny"],
    "compare": ["compare", "--envs", "llm_gym/LeftRight-v0", "--agents", "sb3-a2c",
                "--timesteps", "16"],
}


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "cpu:0", "mps"])
def test_a_bad_device_name_is_one_line(text):
    with pytest.raises(ValueError, match="--device must be cpu, cuda, cuda:N or auto"):
        resolve_device(text)


@pytest.mark.skipif(not NO_CUDA, reason="checks the message of a machine without CUDA")
@pytest.mark.parametrize("command", list(COMMANDS))
def test_cuda_asked_for_and_absent_fails_before_any_model_loads(command, tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)

    def load_model(*args, **kwargs):
        raise AssertionError("a model was loaded before --device was checked")

    monkeypatch.setattr(llm_gym.models, "load_model", load_model)
    assert main([*COMMANDS[command], "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"llm-gym {command}: error: --device cuda: ")
    assert "no CUDA device is visible" in err[0] and "--device cpu or auto" in err[0]
    assert not (tmp_path / "runs").exists()


def test_device_cpu_places_the_sb3_policy_and_the_eval_model(tmp_path, capsys, monkeypatch):
    import llm_gym.agents.sb3 as sb3

    built = []
    make_sb3_agent = sb3.make_sb3_agent

    def spy(*args, **kwargs):
        built.append(kwargs.get("device"))
        return make_sb3_agent(*args, **kwargs)

    monkeypatch.setattr(sb3, "make_sb3_agent", spy)
    run = tmp_path / "run"
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "sb3-a2c", "--device",
                 "cpu", "--timesteps", "16", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1"]) == 0
    assert built == ["cpu"]
    assert json.loads((run / "run.json").read_text())["device"] == "cpu"
    loaded = []
    real = llm_gym.models.load_model

    def load_model(name, **kwargs):
        loaded.append(kwargs.get("device"))
        return real(name, **kwargs)

    monkeypatch.setattr(llm_gym.models, "load_model", load_model)
    assert main(["eval", "--env", "llm_gym/Arithmetic-v0", "--model", "tiny", "--limit", "2",
                 "--device", "cpu"]) == 0
    assert loaded == ["cpu"]


def test_device_cpu_reaches_the_llm_trainer_and_its_resume(tmp_path, capsys, monkeypatch):
    from llm_gym.agents.grpo import GRPOAgent
    from llm_gym.agents.trainer import LLMTrainer

    devices = []
    init, load = GRPOAgent.__init__, LLMTrainer.load.__func__

    def spy_init(self, *args, **kwargs):
        devices.append(("make", kwargs.get("device")))
        init(self, *args, **kwargs)

    def spy_load(cls, path, env=None, **kwargs):
        devices.append(("load", kwargs.get("device")))
        return load(cls, path, env, **kwargs)

    monkeypatch.setattr(GRPOAgent, "__init__", spy_init)
    monkeypatch.setattr(LLMTrainer, "load", classmethod(spy_load))
    run = tmp_path / "run"
    config = tmp_path / "grpo.json"
    config.write_text(json.dumps({"group_size": 2, "prompts_per_batch": 2}))
    base = ["--device", "cpu", "--no-progress", "--eval-episodes", "1"]
    assert main(["train", "--env", "llm_gym/Arithmetic-v0", "--agent", "grpo", "--config",
                 str(config), "--env-kwargs", '{"max_new_tokens": 4}', "--timesteps", "16",
                 "--log-dir", str(run), *base]) == 0, capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--timesteps", "32", *base]) == 0
    assert devices[0] == ("make", "cpu") and ("load", "cpu") in devices
