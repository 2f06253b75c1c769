"""``llm-gym train``: train, save, print the table, resume, and fail clearly."""

from __future__ import annotations

import csv
import json

import pytest

from llm_gym.cli import main

WALK = "llm_gym/LeftRight-v0"


def strict_json(path):
    """Parse ``path`` as JSON proper: the non-standard NaN/Infinity words fail."""

    def reject(word):
        raise ValueError(f"{path} holds {word}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=reject)


def test_train_q_learning_saves_everything_and_prints_the_table(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--env", WALK, "--agent", "q-learning", "--timesteps", "2000",
                 "--log-dir", str(run), "--no-progress", "--eval-episodes", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"| {WALK} | q-learning | 1 |" in out and "| untrained_return |" in out
    assert {p.name for p in run.iterdir()} == {"agent.npz", "run.json", "episodes.csv",
                                               "eval.json", "learning_curve.png", "run.lock"}
    evaluation = strict_json(run / "eval.json")
    assert evaluation["mean_return"] == 5.0
    assert evaluation["returns"] == [5.0] * evaluation["episodes"] == [5.0] * 3
    assert "greedy return: untrained " in out  # measured before training, as quickstart does
    assert "-> trained 5 ± 0 over 3 episodes, success rate 1.00" in out
    assert f"learning curve (plot)   {run / 'learning_curve.png'}" in out
    saved = json.loads((run / "run.json").read_text())
    assert saved["agent"] == "q-learning" and saved["num_timesteps"] == 2000
    with (run / "episodes.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and int(rows[-1]["env_steps"]) <= 2000


def test_resume_continues_the_saved_run(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--env", WALK, "--agent", "q-learning", "--timesteps", "1000",
          "--log-dir", str(run), "--no-progress"])
    episodes_before = len((run / "episodes.csv").read_text().splitlines())
    # --timesteps is the run's total, for every agent (issue 14: it used to add on).
    code = main(["train", "--resume", str(run), "--timesteps", "1500", "--no-progress"])
    assert code == 0
    saved = json.loads((run / "run.json").read_text())
    assert saved["num_timesteps"] == 1500 and saved["timesteps"] == 1500
    assert len((run / "episodes.csv").read_text().splitlines()) > episodes_before
    assert main(["train", "--resume", str(run), "--timesteps", "1200", "--no-progress"]) == 2
    assert "already has 1500 steps; pass a larger total" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--agent", "greedy", "--timesteps", "10"]) == 2
    assert "differs from the resumed run" in capsys.readouterr().err


def test_run_json_is_written_before_training(tmp_path, monkeypatch):
    from llm_gym.agents import compare

    run = tmp_path / "run"
    seen = {}

    def interrupted(agent, spec, **kwargs):
        seen["run.json"] = json.loads((run / "run.json").read_text())
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "train_and_evaluate", interrupted)
    code = main(["train", "--env", WALK, "--agent", "q-learning", "--timesteps", "900",
                 "--log-dir", str(run), "--no-progress"])
    assert code == 130
    assert seen["run.json"]["timesteps"] == 900 and seen["run.json"]["num_timesteps"] == 0
    assert (run / "agent.npz").exists()  # saved on the interrupt, so --resume finds it
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--no-progress", "--eval-episodes", "1"]) == 0
    assert json.loads((run / "run.json").read_text())["num_timesteps"] == 900


def test_train_sb3_with_env_kwargs_and_a_json_config(tmp_path, capsys):
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"n_steps": 64, "batch_size": 32}))
    run = tmp_path / "mppo"
    code = main(["train", "--env", "llm_gym/LeftRightText-v0", "--agent", "sb3-maskable-ppo",
                 "--env-kwargs", '{"constrained": true}', "--config", str(config),
                 "--timesteps", "128", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1"])
    assert code == 0, capsys.readouterr().err
    assert (run / "agent.zip").exists()
    assert strict_json(run / "run.json")["env_kwargs"] == {"constrained": True}
    assert len(strict_json(run / "eval.json")["returns"]) == 1
    # SB3 logs TensorBoard events under the run folder; the output says how to open them.
    assert f"tensorboard --logdir {run}" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--env", "CartPole-v1", "--agent", "q-learning"], "needs Discrete observation"),
    (["--env", WALK, "--agent", "q-learning", "--env-kwargs", "{bad"], "not valid JSON"),
    (["--agent", "q-learning"], "needs --env and --agent"),
    (["--env", WALK, "--agent", "q-learning", "--timesteps", "0"], "at least 1"),
])
def test_train_errors_are_clear(argv, message, tmp_path, capsys):
    assert main(["train", *argv, "--log-dir", str(tmp_path / "x"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_resume_without_a_run_folder_says_so(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no run.json" in capsys.readouterr().err


def test_unknown_agent_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--env", WALK, "--agent", "qlearn"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'qlearn'" in capsys.readouterr().err


@pytest.mark.parametrize("agent", ["ppo", "sb3-ppo"])
def test_resume_counts_steps_on_for_agents_that_reset_by_default(agent, tmp_path):
    config = tmp_path / "cfg.json"
    small = ({"num_envs": 2, "num_steps": 64} if agent == "ppo"
             else {"n_steps": 128, "batch_size": 64})
    config.write_text(json.dumps(small))
    run = tmp_path / "run"
    assert main(["train", "--env", WALK, "--agent", agent, "--config", str(config),
                 "--timesteps", "256", "--log-dir", str(run), "--no-progress",
                 "--eval-episodes", "1"]) == 0
    assert main(["train", "--resume", str(run), "--timesteps", "384", "--no-progress",
                 "--eval-episodes", "1"]) == 0
    saved = json.loads((run / "run.json").read_text())
    assert saved["num_timesteps"] == 384
    assert saved["config"] == str(config)  # kept from the first run
