"""Agent factory errors, the comparison table/CSV/JSON/PNG, and the compare/quickstart CLIs."""

from __future__ import annotations

import csv
import json

import pytest

from llm_gym.agents.base import AgentEnvMismatch
from llm_gym.agents.compare import RunSpec, plan_runs, run_comparison, run_one
from llm_gym.agents.factory import AGENT_NAMES, make_agent
from llm_gym.cli import main

WALK, TEXT = "llm_gym/LeftRight-v0", "llm_gym/LeftRightText-v0"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def test_unknown_agent_name_lists_every_name():
    with pytest.raises(ValueError, match="unknown agent 'qlearning'") as err:
        make_agent("qlearning", WALK)
    for name in AGENT_NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize(("name", "env_id", "reason"), [
    ("q-learning", TEXT, "Discrete observation"),
    ("greedy", "CartPole-v1", "Discrete observation"),
    ("sb3-dqn", TEXT, "replay buffer"),
    ("sb3-maskable-ppo", WALK, "action_masks"),
    ("grpo", WALK, "needs a token env"),
])
def test_agent_that_cannot_act_in_env_says_why(name, env_id, reason):
    with pytest.raises(AgentEnvMismatch, match=reason):
        make_agent(name, env_id)


def test_factory_rejects_misplaced_model_and_config(tmp_path):
    with pytest.raises(ValueError, match="model= only applies"):
        make_agent("q-learning", WALK, model="tiny")
    with pytest.raises(TypeError, match="learning_rat"):
        make_agent("q-learning", WALK, config={"learning_rat": 0.1})
    bad = tmp_path / "cfg.yaml"
    bad.write_text("x: 1")
    with pytest.raises(ValueError, match=".toml or .json"):
        make_agent("q-learning", WALK, config=bad)


def test_factory_reads_a_toml_config(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text("learning_rate = 0.25\ngamma = 0.9\n")
    agent = make_agent("q-learning", WALK, config=path)
    assert agent.learning_rate == 0.25 and agent.gamma == 0.9


def test_plan_skips_pairs_with_a_note():
    runs, skipped = plan_runs([WALK, TEXT], ["q-learning", "sb3-ppo"], 100, seeds=[0, 1])
    assert {(r.env_id, r.agent) for r in runs} == {(WALK, "q-learning"), (WALK, "sb3-ppo"),
                                                   (TEXT, "sb3-ppo")}
    assert len(runs) == 6
    assert len(skipped) == 1 and skipped[0].startswith(f"q-learning on {TEXT}")


def test_compare_two_envs_two_agents_writes_table_csv_json_png(tmp_path):
    runs, skipped = plan_runs([WALK, "FrozenLake-v1"], ["q-learning", "greedy"], 600)
    report = run_comparison(runs, out_dir=tmp_path, skipped=skipped, eval_episodes=3,
                            eval_every=200)
    assert len(report.rows) == 4
    by_pair = {(r["env"], r["agent"]): r for r in report.rows}
    assert by_pair[(WALK, "q-learning")]["return_mean"] == 5.0
    assert by_pair[(WALK, "q-learning")]["steps_to_solve"] is not None
    assert by_pair[(WALK, "greedy")]["success_rate"] == 0.0
    assert by_pair[(WALK, "greedy")]["steps_to_solve"] is None
    for row in report.rows:
        assert row["env_steps"] == 600 and row["tokens"] == 0 and row["wall_clock_s"] > 0
    md = (tmp_path / "comparison.md").read_text()
    assert "| env | agent |" in md and "greedy" in md
    with (tmp_path / "comparison.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert len(data["runs"]) == 4 and data["runs"][0]["episodes"]
    png = (tmp_path / "learning_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_learning_curve_figure_says_what_it_shows_and_keeps_curves_clear():
    from llm_gym.agents.compare_plot import learning_curve_figure

    runs, _ = plan_runs([WALK, "FrozenLake-v1"], ["q-learning", "greedy"], 300)
    fig = learning_curve_figure(run_comparison(runs, eval_episodes=1).runs)
    fig.canvas.draw()
    title = fig.get_suptitle()
    assert "training episodes" in title and "greedy evaluation" in title
    assert all("training-episode return" in ax.get_ylabel() for ax in fig.axes)
    # One colour per agent in every panel.
    colours = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith(("optimum", "success threshold")):
                colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert set(colours) == {"q-learning", "greedy"}
    assert all(len(c) == 1 for c in colours.values()) and len(set.union(*colours.values())) == 2
    # The reference lines are named, and the legend lies outside every panel.
    (legend,) = fig.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == ["q-learning", "greedy", "optimum (5)", "success threshold (0.7)"]
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)


def test_token_env_runs_count_tokens():
    result = run_one(RunSpec(TEXT, "random", 200, env_kwargs={"constrained": True}),
                     eval_episodes=1)
    assert result.env_steps == 200
    assert result.tokens > result.episodes[-1].env_steps  # prompts and replies count too


def test_grpo_runs_through_the_comparison():
    pytest.importorskip("llm_gym.agents.grpo")
    spec = RunSpec(TEXT, "grpo", 24, env_kwargs={"constrained": True, "max_length": 512},
                   config={"group_size": 2, "prompts_per_batch": 1}, model="tiny")
    result = run_one(spec, eval_episodes=1)
    assert result.env_steps >= 24 and result.tokens > result.env_steps
    assert result.evaluation.success_rate in (0.0, 1.0)  # measured, even though the env is silent


def test_compare_cli_prints_table_and_skips(tmp_path, capsys):
    code = main(["compare", "--envs", f"{WALK},CartPole-v1", "--agents", "q-learning,random",
                 "--timesteps", "300", "--out", str(tmp_path), "--eval-episodes", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "skip: q-learning on CartPole-v1" in out
    assert "| CartPole-v1 | random |" in out
    assert (tmp_path / "learning_curves.png").exists()


def test_compare_cli_rejects_bad_lists(tmp_path, capsys):
    assert main(["compare", "--envs", WALK, "--agents", "q-learning", "--timesteps", "10",
                 "--seeds", "a,b", "--out", str(tmp_path)]) == 2
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err
    assert main(["compare", "--envs", WALK, "--agents", "nope", "--timesteps", "10",
                 "--out", str(tmp_path)]) == 2
    assert "unknown agent 'nope'" in capsys.readouterr().err


def test_quickstart_classic_part_runs_end_to_end(tmp_path, capsys, monkeypatch):
    from llm_gym.commands import quickstart

    monkeypatch.setitem(quickstart.BUDGETS, "small", (2_000, 128, (0,)))
    code = main(["quickstart", "--skip-llm", "--out", str(tmp_path), "--eval-episodes", "2"])
    out = capsys.readouterr().out
    assert code == 0
    rows = json.loads((tmp_path / "comparison.json").read_text())["rows"]
    returns = {(r["env"], r["agent"]): r["return_mean"] for r in rows}
    assert returns[(WALK, "q-learning")] == 5.0
    assert returns[(WALK, "greedy")] < 5.0
    assert (TEXT, "sb3-maskable-ppo") in returns
    assert "learning_curves.png" in out
    # The quickstart shows what was learned: the untrained greedy policy beside the trained one.
    untrained = {(r["env"], r["agent"]): r["untrained_return"] for r in rows}
    assert untrained[(WALK, "q-learning")] < 5.0  # an all-zero Q-table never reaches the goal
    assert "untrained_return" in out and "untrained" in out.splitlines()[1]
