"""Self-play against a league of past snapshots (issue 9 point 4): draws, frozen snapshots,
a GRPO run with exact resume, the CLI flag and its errors."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from llm_gym.agents.checkpoints import latest_checkpoint, load_checkpoint
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.agents.league import SelfPlayConfig, SelfPlayLeague
from llm_gym.agents.lm_trainer import parameter_hash
from llm_gym.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GAME = "llm_gym/TicTacToeText-v0"
GAME_KWARGS = {"constrained": True, "max_length": 512}


def make_agent(log_dir=None, prompts_per_batch=2, **config) -> GRPOAgent:
    cfg = GRPOConfig(group_size=2, prompts_per_batch=prompts_per_batch, deterministic=True,
                     **config)
    return GRPOAgent(GAME, "tiny", cfg, env_kwargs=GAME_KWARGS, seed=1, log_dir=log_dir)


def add_snapshots(league: SelfPlayLeague, agent: GRPOAgent, updates: range) -> None:
    """Run the league's hook as the trainer would after each of ``updates``."""
    for update in updates:
        agent.num_updates = update
        league.on_update(agent)


def test_league_draws_with_its_weights_from_a_capped_pool_and_is_seeded():
    agent = make_agent()
    league = SelfPlayLeague({"snapshot_every": 2, "pool_size": 3, "latest_prob": 0.4,
                             "seed": 7}).attach(agent)
    assert league.snapshot_ids() == [0]
    add_snapshots(league, agent, range(1, 10))  # snapshots after updates 2, 4, 6, 8
    assert league.snapshot_ids() == [4, 6, 8]  # capped, the oldest left first
    np.testing.assert_allclose(league.weights(), [0.2, 0.2, 0.6])
    draws = [league.draw(u) for u in range(4000)]
    freq = [draws.count(i) / len(draws) for i in (4, 6, 8)]
    np.testing.assert_allclose(freq, [0.2, 0.2, 0.6], atol=0.03)
    assert draws == [league.draw(u) for u in range(4000)]  # stateless: (seed, update)
    other = SelfPlayLeague({"snapshot_every": 2, "pool_size": 3, "latest_prob": 0.4,
                            "seed": 8})
    other.snapshots = league.snapshots
    assert [other.draw(u) for u in range(200)] != draws[:200]
    uniform = SelfPlayLeague({"pool_size": 3})
    uniform.snapshots = league.snapshots
    np.testing.assert_allclose(uniform.weights(), [1 / 3] * 3)


def game_observations(count: int) -> list[dict[str, np.ndarray]]:
    """Opening observations of ``count`` games, cut to their written prefix (as AgentPolicy)."""
    env = gym.make(GAME, **GAME_KWARGS)
    out = []
    for seed in range(count):
        obs, _ = env.reset(seed=seed)
        used = int(obs["attention_mask"].sum())
        out.append({k: v if k == "action_mask" else v[:used] for k, v in obs.items()})
    return out


def opponent_view(league: SelfPlayLeague, observations) -> tuple[torch.Tensor, list[int]]:
    player = league.player
    ids = [torch.as_tensor(o["input_ids"])[None] for o in observations]
    with torch.no_grad():
        logits = torch.cat([player.model(input_ids=i).logits[:, -1] for i in ids])
    return logits, [player.predict(o, deterministic=True)[0] for o in observations]


def test_a_snapshot_stays_frozen_while_the_learner_trains():
    agent = make_agent(learning_rate=5e-2)
    league = SelfPlayLeague({"snapshot_every": 1000, "pool_size": 2}).attach(agent)
    observations = game_observations(6)
    logits_before, moves_before = opponent_view(league, observations)
    learner_before = parameter_hash(agent.model)
    agent.learn(150)  # several updates; every one redraws (and reloads) snapshot 0
    assert agent.num_updates >= 2 and league.snapshot_ids() == [0]
    assert parameter_hash(agent.model) != learner_before  # the learner did train
    assert not any(p.requires_grad for p in league.player.model.parameters())
    logits_after, moves_after = opponent_view(league, observations)
    assert torch.equal(logits_after, logits_before) and moves_after == moves_before
    with torch.no_grad():
        learner = torch.cat([agent.model(input_ids=torch.as_tensor(o["input_ids"])[None])
                             .logits[:, -1] for o in observations])
    assert not torch.allclose(learner, logits_before)


def run(agent: GRPOAgent, total: int, stop_after: int | None = None, **kwargs) -> list[float]:
    drawn: list[float] = []

    def callback(metrics: dict) -> bool:
        drawn.append((metrics["selfplay/opponent_update"], metrics["rollout/ep_rew_mean"]))
        return stop_after is None or len(drawn) < stop_after

    agent.learn(total, callback=callback, **kwargs)
    return drawn


SETTINGS = {"snapshot_every": 1, "pool_size": 2}
TOTAL = 60
RESUME_CONFIG = {"prompts_per_batch": 1, "learning_rate": 1e-2, "checkpoint_every": 1}


def test_grpo_self_play_runs_and_resumes_with_the_same_league(tmp_path):
    full = make_agent(tmp_path / "full", **RESUME_CONFIG)
    full_league = SelfPlayLeague(SETTINGS).attach(full)
    full_drawn = run(full, TOTAL)
    assert full.num_updates >= 4 and full.episode_log
    assert full_league.snapshot_ids() == [full.num_updates - 1, full.num_updates]
    assert {r.success for r in full.episode_log} <= {True, False}

    cut = tmp_path / "cut"
    interrupted = make_agent(cut, **RESUME_CONFIG)
    SelfPlayLeague(SETTINGS).attach(interrupted)
    first = run(interrupted, TOTAL, stop_after=2)
    resumed = GRPOAgent.load(cut / "checkpoints", log_dir=cut)
    league = SelfPlayLeague(SETTINGS).attach(resumed)  # the checkpoint's pool comes back
    assert league.snapshot_ids() == [1, 2] and resumed.num_updates == 2
    rest = run(resumed, TOTAL, resume_from=cut / "checkpoints")
    assert first + rest == full_drawn  # same opponents, same games
    assert parameter_hash(resumed.model) == parameter_hash(full.model)
    assert league.snapshot_ids() == full_league.snapshot_ids()
    for (_, mine), (_, theirs) in zip(league.snapshots, full_league.snapshots, strict=True):
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_ppo_trains_against_the_league_too():
    from llm_gym.agents.ppo import PPOAgent, PPOConfig

    agent = PPOAgent(GAME, "tiny", PPOConfig(num_envs=2), env_kwargs=GAME_KWARGS)
    league = SelfPlayLeague({"snapshot_every": 1, "pool_size": 2}).attach(agent)
    drawn = run(agent, 30)
    assert agent.num_updates >= 2 and len(drawn) == agent.num_updates
    assert league.snapshot_ids() == [agent.num_updates - 1, agent.num_updates]
    assert {opponent for opponent, _ in drawn} <= set(range(agent.num_updates + 1))


def test_resuming_with_other_league_settings_fails(tmp_path):
    agent = make_agent(tmp_path, prompts_per_batch=1)
    SelfPlayLeague(SETTINGS).attach(agent)
    agent.learn(1)
    loaded = GRPOAgent.load(tmp_path / "checkpoints")
    with pytest.raises(ValueError, match="differ from the league's"):
        SelfPlayLeague({"snapshot_every": 1, "pool_size": 3}).attach(loaded)


@pytest.mark.parametrize(("settings", "message"), [
    ('{"pool_size": 0}', "pool_size must be an integer >= 1, got 0"),
    ('{"snapshot_every": 2.5}', "snapshot_every must be an integer >= 1, got 2.5"),
    ('{"latest_prob": 1.5}', "latest_prob must be in [0, 1], got 1.5"),
    ('{"temperature": -1}', "temperature must be a number >= 0, got -1"),
    ('{"pool": 4}', "unknown self-play setting(s) ['pool']"),
    ("[4]", "--self-play must be a JSON object"),
    ("{pool_size: 4}", "--self-play must be a JSON object"),
])
def test_bad_self_play_settings_fail_with_one_line(settings, message, capsys):
    with pytest.raises(ValueError, match="self-play"):
        SelfPlayConfig.from_json(settings)
    assert main(["train", "--env", GAME, "--agent", "grpo", "--self-play", settings]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--env", "llm_gym/TicTacToe-v0", "--agent", "sb3-maskable-ppo"],
     "--self-play trains a language model"),
    (["--env", "llm_gym/Arithmetic-v0", "--agent", "grpo"], "self-play needs a game view"),
    (["--env", GAME, "--agent", "grpo", "--env-kwargs", '{"opponent": "minimax"}'],
     "drop 'opponent' from the env kwargs"),
])
def test_self_play_on_the_wrong_agent_or_env_fails(argv, message, capsys, tmp_path):
    argv = ["train", *argv, "--self-play", "{}", "--log-dir", str(tmp_path), "--no-progress"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_trains_with_self_play_and_resumes_the_league(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--env", GAME, "--agent", "grpo", "--model", "tiny", "--env-kwargs",
            json.dumps(GAME_KWARGS), "--config", str(tmp_path / "cfg.json"), "--log-dir",
            str(run_dir), "--no-progress", "--eval-episodes", "1"]
    (tmp_path / "cfg.json").write_text(json.dumps({"group_size": 2, "prompts_per_batch": 1,
                                                   "checkpoint_every": 1}))
    settings = '{"snapshot_every": 1, "pool_size": 20}'
    assert main([*args, "--timesteps", "25", "--self-play", settings]) == 0
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["self_play"] == {**SelfPlayConfig().to_dict(), "snapshot_every": 1,
                                  "pool_size": 20}
    before = load_checkpoint(latest_checkpoint(run_dir))
    pool_before = [u for u, _ in before["hooks"]["self_play"]["snapshots"]]
    assert pool_before[0] == 0 and len(pool_before) == before["counters"]["num_updates"] + 1
    assert main(["train", "--resume", str(run_dir), "--timesteps", "50", "--no-progress",
                 "--eval-episodes", "1"]) == 0
    after = load_checkpoint(latest_checkpoint(run_dir))
    pool_after = [u for u, _ in after["hooks"]["self_play"]["snapshots"]]
    assert pool_after[: len(pool_before)] == pool_before and len(pool_after) > len(pool_before)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--timesteps", "120",
                 "--self-play", '{"snapshot_every": 2}']) == 2
    assert "--self-play differs from the resumed run's" in capsys.readouterr().err
