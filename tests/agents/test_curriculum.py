"""The curriculum sampler: pools by pass rate, retests, metrics, checkpoints and exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llm_gym.agents.checkpoints import latest_checkpoint
from llm_gym.agents.curriculum import Curriculum, CurriculumConfig, rollout_passes, task_sampler
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.agents.lm_trainer import parameter_hash
from llm_gym.agents.ppo import PPOAgent, PPOConfig
from llm_gym.agents.rollout_records import attach_rollout_writer, read_rollouts
from llm_gym.agents.training import TaskSampler
from llm_gym.token_env import Task, TokenEnv, TurnResult
from llm_gym.vector import TokenVectorEnv


def simulate(cur: Curriculum, solve_prob: np.ndarray, batches: int, group: int = 4,
             seed: int = 0) -> list[list[int]]:
    """Draw ``batches`` batches of 4 items, each played ``group`` times; the items drawn."""
    rng = np.random.default_rng(seed)
    drawn = []
    for _ in range(batches):
        items = cur.take(4)
        rows = np.repeat(items, group)
        cur.observe(rows, rng.random(len(rows)) < solve_prob[rows])
        drawn.append(items)
    return drawn


# Items 0-9 always solved, 10-19 never, 20-29 half the time.
SOLVE = np.array([1.0] * 10 + [0.0] * 10 + [0.5] * 10)


def test_known_all_equal_items_are_skipped_and_retested_at_a_low_rate():
    cur = Curriculum(30, seed=0, config={"retest_rate": 0.1, "min_tries": 4})
    drawn = np.array(simulate(cur, SOLVE, 60))
    late = drawn[20:].ravel()
    assert (late >= 20).mean() > 0.85  # after the first pass: mostly the learnable items
    assert (late < 20).any()  # ... but solved and hopeless ones are re-tested now and then
    rates = cur.rates()
    assert (rates[:10] == 1).all() and (rates[10:20] == 0).all()
    pools = cur.pools()  # a coin item can come back all-equal in a window: few do
    assert pools["solved"] + pools["unsolved"] <= 23 and pools["band"] >= 7
    baseline = TaskSampler(30, seed=0)
    plain = np.array([baseline.take(4) for _ in range(60)])[20:].ravel()
    assert (plain >= 20).mean() < 0.5  # the plain walk keeps paying for all-equal groups


def test_metrics_report_pools_draws_and_the_share_of_all_equal_groups_avoided():
    cur = Curriculum(30, seed=0, config={"min_tries": 4})
    simulate(cur, SOLVE, 20)
    cur.metrics()
    simulate(cur, SOLVE, 1, seed=1)
    metrics = cur.metrics()
    assert {f"curriculum/{k}" for k in ("band", "solved", "unsolved", "unseen", "from_band",
                                        "retests", "skipped")} <= set(metrics)
    assert metrics["curriculum/band"] + metrics["curriculum/solved"] + metrics[
        "curriculum/unsolved"] + metrics["curriculum/unseen"] == 30
    assert metrics["curriculum/from_band"] == 2  # band_share 0.5 of 4
    assert 0 <= metrics["curriculum/equal_share"] <= 1
    if metrics["curriculum/skipped"]:
        assert metrics["curriculum/avoided_share"] > 0
    assert cur.metrics()["curriculum/skipped"] == 0  # per call: nothing drawn since


def test_draws_are_a_function_of_seed_and_state_and_the_state_is_json_exact():
    a, b = Curriculum(30, seed=5), Curriculum(30, seed=5)
    assert simulate(a, SOLVE, 12) == simulate(b, SOLVE, 12)
    state = a.state_dict()
    assert json.loads(json.dumps(state)) == state  # checkpoint.json holds it as is
    c = Curriculum(30, seed=99)
    c.load_state_dict(json.loads(json.dumps(state)))
    assert c.state_dict() == state
    assert simulate(a, SOLVE, 8, seed=3) == simulate(c, SOLVE, 8, seed=3)
    assert simulate(Curriculum(30, seed=6), SOLVE, 12) != simulate(Curriculum(30, seed=5),
                                                                   SOLVE, 12)


def test_a_pool_smaller_than_the_batch_and_a_pool_all_solved_still_fill_batches():
    cur = Curriculum(3, seed=0, config={"min_tries": 1, "retest_rate": 0.0})
    assert sorted(cur.take(3)) == [0, 1, 2]
    assert len(cur.take(5)) == 5
    cur.observe([0, 1, 2], [1, 1, 1])  # everything solved, retests off: still 3 items
    assert sorted(cur.take(3)) == [0, 1, 2]


@pytest.mark.parametrize(("config", "match"), [
    ({"band": [0.8, 0.2]}, "band"), ({"window": 0}, "window"), ({"retest_rate": 2}, "retest"),
    ({"min_tries": 9}, "min_tries"), ({"bands": [0, 1]}, "unknown"), ("{oops", "JSON object"),
])
def test_bad_settings_name_themselves(config, match):
    with pytest.raises(ValueError, match=match):
        CurriculumConfig.parse(config)


def test_an_unbounded_env_needs_a_pool_and_a_plain_run_is_unchanged():
    with pytest.raises(ValueError, match="num_tasks"):
        Curriculum(None)
    assert Curriculum(None, config={"num_tasks": 7}).num_tasks == 7
    assert isinstance(task_sampler(5, 0), TaskSampler)
    plain = TaskSampler(5, 0)
    with pytest.raises(ValueError, match="curriculum"):
        plain.load_state_dict(Curriculum(5).state_dict())


def test_passes_use_the_verdict_then_the_unshaped_return():
    infos = [{"episode_reward_components": {"env": 1.0, "length": -0.9}}, {"is_success": False},
             {}]
    assert rollout_passes([0.1, 5.0, 0.7], infos, 0.5).tolist() == [True, False, True]


# ----------------------------------------------------------------------------- trainers
class ParityEnv(TokenEnv):
    """One token; items 0-3 always pay 1, 4-7 never, 8-11 pay for an even first token."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_new_tokens=1, max_length=24, **kwargs)

    @property
    def num_tasks(self) -> int:
        return 12

    def sample_task(self, index: int | None) -> Task:
        index = int(self.np_random.integers(12)) if index is None else index
        return Task(messages=[{"role": "user", "content": f"q{index}"}], index=index)

    def end_turn(self, response, response_ids, finished) -> TurnResult:
        index = self.task.index
        reward = 1.0 if index < 4 else 0.0 if index < 8 else float(response_ids[0] % 2 == 0)
        return TurnResult(reward=reward)


CURRICULUM = {"min_tries": 2, "retest_rate": 0.2}


def grpo(log_dir=None, advantage: str = "group") -> GRPOAgent:
    config = GRPOConfig(group_size=4, prompts_per_batch=2, learning_rate=1e-2,
                        checkpoint_every=0, checkpoint_minutes=0, deterministic=True,
                        curriculum=CURRICULUM, advantage=advantage)
    return GRPOAgent(TokenVectorEnv(ParityEnv, 8, autoreset_mode="Disabled"), "tiny", config,
                     seed=1, log_dir=log_dir)


def learn(agent, total: int, **kwargs) -> tuple[list[int], list[dict]]:
    prompts: list[int] = []
    rows: list[dict] = []
    sampler = agent.policy.sampler if isinstance(agent, PPOAgent) else agent.sampler
    take = sampler.take
    sampler.take = lambda count: prompts.extend(out := take(count)) or out
    agent.learn(total, callback=rows.append, **kwargs)
    return prompts, rows


@pytest.fixture
def single_thread():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


TOTAL = 12 * 8  # one token per row: 8 steps a batch, 12 updates


def test_grpo_resumed_run_draws_the_same_items_as_an_uninterrupted_one(tmp_path, single_thread):
    full = grpo()
    full_prompts, full_rows = learn(full, TOTAL)
    assert len(full_rows) == 12
    late = full_prompts[12:]
    assert sum(i >= 8 for i in late) / len(late) > 0.6  # the curriculum found the signal
    assert any(row["curriculum/skipped"] for row in full_rows)
    cut = grpo(tmp_path / "cut")
    first, _ = learn(cut, 5 * 8)  # its end-of-learn checkpoint is where it resumes from
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name.endswith("5")
    resumed = GRPOAgent.load(tmp_path / "cut" / "checkpoints",
                             env=TokenVectorEnv(ParityEnv, 8, autoreset_mode="Disabled"),
                             log_dir=tmp_path / "cut")
    assert resumed.config.curriculum == full.config.curriculum
    rest, rest_rows = learn(resumed, TOTAL, resume_from=tmp_path / "cut" / "checkpoints")
    assert first + rest == full_prompts
    assert rest_rows[-1]["curriculum/band"] == full_rows[-1]["curriculum/band"]
    assert resumed.sampler.state_dict() == full.sampler.state_dict()
    assert parameter_hash(resumed.model) == parameter_hash(full.model)


@pytest.mark.parametrize("advantage", ["rloo", "reinforce_pp"])
def test_rloo_and_reinforce_pp_draw_through_the_curriculum(advantage, single_thread):
    agent = grpo(advantage=advantage)
    prompts, rows = learn(agent, 6 * 8)
    assert len(prompts) == 12 and "curriculum/band" in rows[-1]
    assert agent.sampler.pools()["unseen"] < 12


def test_ppo_on_a_token_env_draws_through_the_curriculum(single_thread):
    config = PPOConfig(num_envs=4, update_epochs=1, num_minibatches=1,
                       curriculum={**CURRICULUM, "min_tries": 1})
    agent = PPOAgent(TokenVectorEnv(ParityEnv, 4, autoreset_mode="Disabled"), "tiny", config,
                     tokenizer="byte")
    prompts, rows = learn(agent, 8 * 4)
    assert len(prompts) == 32 and rows[-1]["curriculum/unseen"] < 12
    assert sum(rows[-1][f"curriculum/{k}"] for k in ("band", "solved", "unsolved",
                                                     "unseen")) == 12
    with pytest.raises(ValueError, match="classic"):
        PPOAgent("llm_gym/LeftRight-v0", config=PPOConfig(curriculum={}))


def test_ppo_stores_the_episodes_it_trains_on(single_thread, tmp_path):
    config = PPOConfig(num_envs=2, update_epochs=1, num_minibatches=1, curriculum={})
    agent = PPOAgent("llm_gym/Arithmetic-v0", "tiny", config,
                     env_kwargs={"num_tasks": 5, "max_new_tokens": 2})
    writer = attach_rollout_writer(agent, tmp_path / "rollouts.jsonl")
    prompts, _ = learn(agent, 3 * 2 * 2)
    records = read_rollouts(writer.path)  # what --save-rollouts writes for ppo
    assert [r["index"] for r in records] == prompts
    assert len(records) >= 6
    assert [r["update"] for r in records] == [u for u in range(len(records) // 2) for _ in "ab"]
    assert all(len(r["tokens"]) == len(r["rewards"]) for r in records)
