"""``llm-gym train --config run.toml``: a whole command in one file; flags override (issue 21)."""

from __future__ import annotations

import json

from llm_gym.cli import main

EXPERIMENT = """
env = "llm_gym/LeftRight-v0"
agent = "q-learning"
timesteps = 200
seed = 3
eval-episodes = 1
no_progress = true
env_kwargs = {max_steps = 8}
wrappers = [{name = "LengthPenalty", kwargs = {coef = 0.5}}]
"""


def run_json(folder):
    return json.loads((folder / "run.json").read_text())


def test_an_experiment_file_sets_the_whole_command(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(EXPERIMENT)
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--log-dir", str(run)]) == 0
    saved = run_json(run)
    assert (saved["env"], saved["agent"], saved["timesteps"], saved["seed"]) == (
        "llm_gym/LeftRight-v0", "q-learning", 200, 3)
    assert saved["env_kwargs"] == {"max_steps": 8}
    assert saved["wrappers"] == [{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]
    assert saved["config"] is None and saved["experiment"] == str(path)


def test_flags_given_override_the_file_even_at_their_default(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(EXPERIMENT)
    run = tmp_path / "run"
    # --seed 0 is the flag's default: given explicitly, it still wins over the file's 3.
    assert main(["train", "--config", str(path), "--log-dir", str(run), "--timesteps", "300",
                 "--seed", "0", "--env-kwargs", '{"max_steps": 6}']) == 0
    saved = run_json(run)
    assert (saved["timesteps"], saved["seed"], saved["env_kwargs"]) == (300, 0, {"max_steps": 6})


def test_the_agent_config_goes_in_a_config_table_or_a_file_beside_it(tmp_path):
    grpo = """
env = "llm_gym/Arithmetic-v0"
agent = "grpo"
timesteps = 8
eval_episodes = 1
no_progress = true
report_to = ["none"]
[env_kwargs]
max_new_tokens = 4
[config]
group_size = 2
prompts_per_batch = 2
"""
    (tmp_path / "run.toml").write_text(grpo)
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--log-dir",
                 str(tmp_path / "a")]) == 0
    saved = run_json(tmp_path / "a")
    assert saved["config"] == {"group_size": 2, "prompts_per_batch": 2}
    assert saved["report_to"] == "none" and saved["model"] == "tiny"
    # The same as JSON, naming an agent config file beside it.
    (tmp_path / "grpo.toml").write_text("group_size = 2\nprompts_per_batch = 2\n")
    (tmp_path / "run.json").write_text(json.dumps({
        "env": "llm_gym/Arithmetic-v0", "agent": "grpo", "timesteps": 8, "eval_episodes": 1,
        "no_progress": True, "env_kwargs": {"max_new_tokens": 4}, "config": "grpo.toml"}))
    assert main(["train", "--config", str(tmp_path / "run.json"), "--log-dir",
                 str(tmp_path / "b")]) == 0
    assert run_json(tmp_path / "b")["config"] == str(tmp_path / "grpo.toml")


def test_an_agent_config_file_is_still_an_agent_config(tmp_path):
    (tmp_path / "sb3.json").write_text(json.dumps({"n_steps": 16}))
    run = tmp_path / "run"
    assert main(["train", "--env", "llm_gym/LeftRight-v0", "--agent", "sb3-a2c", "--config",
                 str(tmp_path / "sb3.json"), "--timesteps", "32", "--log-dir", str(run),
                 "--no-progress", "--eval-episodes", "1"]) == 0
    saved = run_json(run)
    assert saved["config"] == str(tmp_path / "sb3.json") and saved["experiment"] is None


def test_an_unknown_key_in_an_experiment_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('env = "llm_gym/LeftRight-v0"\nagent = "random"\ntimestep = 5\n')
    assert main(["train", "--config", str(path), "--log-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'timestep' is not an option of llm-gym train" in err[0] and "timesteps" in err[0]
    assert not (tmp_path / "run").exists()
