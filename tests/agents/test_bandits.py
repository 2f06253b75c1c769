"""Bandit baselines learn within an episode; regret reaches compare's table, PNG and the CLI."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.agents.bandits import EpsilonGreedyAgent, ThompsonAgent, UCB1Agent
from llm_gym.agents.base import AgentEnvMismatch
from llm_gym.agents.compare import plan_runs, run_comparison
from llm_gym.agents.factory import load_agent, make_agent
from llm_gym.agents.greedy import RandomAgent
from llm_gym.agents.regret import RegretRecorder
from llm_gym.cli import main

BANDIT, TEXT = "llm_gym/Bandit-v0", "llm_gym/BanditText-v0"
SEEDS = range(5)


def regrets(make, horizon: int = 500, **env_kwargs) -> np.ndarray:
    """Per-pull regret of one training episode per seed, shape (seeds, horizon)."""
    rows = []
    for seed in SEEDS:
        env = RegretRecorder(gym.make(BANDIT, horizon=horizon, **env_kwargs))
        make(env, seed).learn(horizon)
        rows.append(env.regrets)
    return np.array(rows)


def test_every_baseline_beats_random_and_ucb_and_thompson_flatten_out():
    random = regrets(lambda env, seed: RandomAgent(env, seed=seed)).sum(axis=1).mean()
    for name in ("epsilon-greedy", "epsilon-greedy-decay", "ucb1", "thompson"):
        per_pull = regrets(lambda env, seed, name=name: make_agent(name, env, seed=seed))
        total = per_pull.sum(axis=1).mean()
        assert total < random / 2, f"{name}: regret {total:.1f} vs random {random:.1f}"
        if name in ("ucb1", "thompson"):  # logarithmic: the second half costs far less
            first, second = per_pull[:, :250].sum(), per_pull[:, 250:].sum()
            assert second < 0.6 * first, f"{name}: {first:.1f} then {second:.1f}"


def test_decaying_epsilon_stops_paying_for_exploration_and_fixed_epsilon_does_not():
    fixed = regrets(lambda env, seed: EpsilonGreedyAgent(env, epsilon=0.1, seed=seed), 2000)
    decaying = regrets(lambda env, seed: EpsilonGreedyAgent(env, decay_c=1.0, seed=seed), 2000)
    assert decaying[:, 1000:].sum() < 0.5 * fixed[:, 1000:].sum()
    assert fixed[:, 1000:].sum() > 0.02 * 1000 * len(SEEDS)  # ε = 0.1 keeps pulling bad arms


def test_thompson_on_gaussian_arms_uses_the_gaussian_posterior_and_learns():
    env = gym.make(BANDIT, arm_type="gaussian")
    assert ThompsonAgent(env).arm_type == "gaussian"
    thompson = regrets(lambda env, seed: ThompsonAgent(env, seed=seed), arm_type="gaussian")
    random = regrets(lambda env, seed: RandomAgent(env, seed=seed), arm_type="gaussian")
    assert thompson.sum() < 0.25 * random.sum()


def test_predict_is_the_algorithm_on_single_and_batched_observations():
    agent = UCB1Agent(gym.make(BANDIT, num_arms=3))
    counts_means = np.array([[2, 2, 2, 0.5, 0.5, 0.9], [1, 0, 1, 1.0, 0.0, 1.0]])
    actions, _ = agent.predict(counts_means)
    assert actions.tolist() == [2, 1]  # the best mean at equal counts; the untried arm
    assert int(agent.predict(counts_means[0], deterministic=True)[0]) == 2
    # The exploration bonus: the least pulled arm wins despite the lowest mean.
    assert int(agent.predict([100, 2, 1, 0.6, 0.5, 0.1])[0]) == 2


def test_save_load_continues_exactly(tmp_path):
    agent = make_agent("thompson", BANDIT, seed=3, env_kwargs={"horizon": 100}).learn(300)
    agent.save(tmp_path / "agent.json")
    loaded = load_agent("thompson", tmp_path / "agent.json", BANDIT,
                        env_kwargs={"horizon": 100})
    assert loaded.num_timesteps == 300 and len(loaded.episode_log) == 3
    agent.learn(200)
    loaded.learn(200)
    assert [r.episode_return for r in loaded.episode_log] == [
        r.episode_return for r in agent.episode_log]
    with pytest.raises(ValueError, match="UCB1Agent"):
        UCB1Agent.load(tmp_path / "agent.json", env=gym.make(BANDIT))


@pytest.mark.parametrize(("env_id", "name"), [
    ("llm_gym/LeftRight-v0", "ucb1"), (TEXT, "thompson"),
    ("CartPole-v1", "epsilon-greedy"),  # Box(4,) and Discrete(2): the right shapes, no bandit
])
def test_baselines_refuse_envs_that_are_no_bandit(env_id, name):
    with pytest.raises(AgentEnvMismatch, match="Bandit-v0"):
        make_agent(name, env_id)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epsilon": 1.5}, "epsilon"), ({"decay_c": 0.0}, "decay_c"),
])
def test_bad_hyperparameters_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EpsilonGreedyAgent(gym.make(BANDIT), **kwargs)
    with pytest.raises(ValueError, match="exploration"):
        UCB1Agent(gym.make(BANDIT), exploration=-1.0)
    with pytest.raises(ValueError, match="arm_type"):
        ThompsonAgent(gym.make(BANDIT), arm_type="poisson")


def test_compare_shows_regret_columns_and_writes_the_regret_png(tmp_path):
    agents = ["random", "ucb1", "thompson", "q-learning"]
    runs, skipped = plan_runs([BANDIT], agents, 200, seeds=[0, 1],
                              env_kwargs={BANDIT: {"horizon": 200}})
    assert [s.split(" on ")[0] for s in skipped] == ["q-learning"]
    report = run_comparison(runs, out_dir=tmp_path, skipped=skipped, eval_episodes=1)
    rows = {row["agent"]: row for row in report.rows}
    assert all(len(run.regret) == 200 for run in report.runs)
    assert rows["thompson"]["regret"] < rows["random"]["regret"]
    assert rows["random"]["regret_std"] > 0
    assert "| regret | regret_std |" in report.markdown()
    png = report.files["regret_png"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert len(data["runs"][0]["regret"]) == 200


def test_compare_on_the_text_face_records_regret_per_pull(tmp_path):
    runs, _ = plan_runs([TEXT], ["random"], 300, env_kwargs={TEXT: {"constrained": True}})
    report = run_comparison(runs, eval_episodes=1)
    (run,) = report.runs
    # Constrained random play: every turn is an arm name and the end of turn, 2 tokens a pull.
    assert len(run.regret) == 150
    assert report.rows[0]["regret"] == pytest.approx(sum(run.regret))


def test_compare_without_bandits_has_no_regret(tmp_path):
    runs, _ = plan_runs(["llm_gym/LeftRight-v0"], ["random"], 100)
    report = run_comparison(runs, out_dir=tmp_path, eval_episodes=1)
    assert report.runs[0].regret is None and "regret" not in report.markdown()
    assert "regret_png" not in report.files


def test_cli_train_and_compare_run_the_baselines(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--env", BANDIT, "--agent", "ucb1", "--timesteps", "500",
                 "--log-dir", str(run), "--no-progress", "--eval-episodes", "1"]) == 0
    assert (run / "agent.json").is_file()
    assert main(["train", "--resume", str(run), "--timesteps", "1000", "--no-progress",
                 "--eval-episodes", "1"]) == 0
    assert json.loads((run / "run.json").read_text())["num_timesteps"] == 1000
    out_dir = tmp_path / "cmp"
    assert main(["compare", "--envs", BANDIT, "--agents", "epsilon-greedy-decay,random",
                 "--timesteps", "500", "--seeds", "0,1", "--out", str(out_dir),
                 "--eval-episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "| llm_gym/Bandit-v0 | epsilon-greedy-decay | 2 |" in out
    assert (out_dir / "regret_curves.png").is_file()
