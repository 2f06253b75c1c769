"""The shared LLM trainer base (issue 8): one base, one evaluate result, collect returns data,
one agent table, one set of config names."""

from __future__ import annotations

import argparse
import dataclasses

import gymnasium as gym
import pytest

import llm_gym  # noqa: F401  (registers the envs)
from llm_gym.agents.compare import mismatch_reason
from llm_gym.agents.config import TrainerConfig
from llm_gym.agents.dpo import DPOConfig
from llm_gym.agents.evaluation import evaluate_agent
from llm_gym.agents.factory import (
    AGENT_NAMES,
    AGENTS,
    GRPO_FAMILY,
    LLM_AGENTS,
    agent_entry,
    agent_file,
    load_entry_point,
    make_agent,
)
from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
from llm_gym.agents.ppo import PPOAgent, PPOConfig
from llm_gym.agents.trainer import Collected, LLMTrainer
from llm_gym.cli import main
from llm_gym.models import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

TEXT = "llm_gym/LeftRightText-v0"
WALK = "llm_gym/LeftRight-v0"


def _grpo(**config) -> GRPOAgent:
    model, _ = tiny_model(hidden_size=32, num_layers=1)
    return GRPOAgent(TEXT, model, GRPOConfig(group_size=2, prompts_per_batch=1, **config),
                     env_kwargs={"max_new_tokens": 4})


def _ppo_token() -> PPOAgent:
    model, _ = tiny_model(hidden_size=32, num_layers=1)
    return PPOAgent(TEXT, model, PPOConfig(num_envs=2, num_minibatches=1, update_epochs=1),
                    env_kwargs={"max_new_tokens": 4})


def _ppo_classic() -> PPOAgent:
    return PPOAgent(WALK, config=PPOConfig(num_envs=2, num_steps=8))


AGENT_BUILDERS = {"grpo": _grpo, "ppo-token": _ppo_token, "ppo-classic": _ppo_classic}


@pytest.fixture(params=list(AGENT_BUILDERS))
def agent(request) -> LLMTrainer:
    built = AGENT_BUILDERS[request.param]()
    yield built
    built.close()


def test_every_llm_agent_is_an_llm_trainer(agent) -> None:
    assert isinstance(agent, LLMTrainer)


def test_rloo_and_reinforce_pp_are_grpo_on_the_base() -> None:
    for name in ("rloo", "reinforce-pp"):
        built = make_agent(name, TEXT, model="tiny", config={"group_size": 2,
                                                             "prompts_per_batch": 1})
        assert isinstance(built, GRPOAgent) and isinstance(built, LLMTrainer)
        built.close()


def test_evaluate_has_the_same_keys_for_every_agent(agent) -> None:
    from llm_gym.agents.greedy import RandomAgent

    env = gym.make(WALK)
    reference = set(evaluate_agent(RandomAgent(env), env, num_episodes=2).to_dict())
    result = agent.evaluate(num_episodes=2)
    assert set(result) == reference
    assert len(result["returns"]) == len(result["env_returns"]) == result["episodes"] == 2


def test_collect_leaves_the_agent_alone_and_the_base_applies_it(agent) -> None:
    def snapshot() -> tuple:
        return (agent.num_timesteps, agent.num_updates, agent.num_tokens,
                len(agent.episode_log), getattr(agent, "num_rollouts", None))

    before = snapshot()
    collected = agent.collect()
    assert isinstance(collected, Collected) and collected.steps > 0
    assert snapshot() == before
    agent._apply(collected)
    assert agent.num_timesteps == before[0] + collected.steps
    assert len(agent.episode_log) == before[3] + len(collected.episodes)
    if collected.episodes:
        assert agent.episode_log[-1].env_steps <= agent.num_timesteps


def test_checkpoint_without_log_dir_raises_the_same_way(agent) -> None:
    with pytest.raises(ValueError, match="checkpoint\\(\\) needs log_dir"):
        agent.checkpoint()


def test_agent_table_drives_names_cli_choices_and_list(capsys) -> None:
    assert AGENT_NAMES == tuple(AGENTS)
    assert LLM_AGENTS == tuple(n for n, e in AGENTS.items() if e.family == "llm")
    assert set(GRPO_FAMILY) == set(LLM_AGENTS) - {"ppo", "dpo", "sft"}
    from llm_gym.commands import train

    parser = argparse.ArgumentParser()
    train.add_parser(parser.add_subparsers())
    choices = next(a.choices for a in parser._subparsers._group_actions[0].choices["train"]
                   ._actions if a.dest == "agent")
    assert tuple(choices) == AGENT_NAMES
    assert main(["list", "--agents"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == list(AGENT_NAMES)


def test_every_entry_point_of_the_table_resolves_and_names_are_looked_up() -> None:
    for entry in AGENTS.values():
        cls = entry.agent_class()
        assert isinstance(cls, type) and callable(cls.learn), entry.name
        if entry.family == "llm":
            assert issubclass(entry.config_class(), TrainerConfig), entry.name
        else:
            with pytest.raises(ValueError, match="keyword arguments"):
                entry.config_class()
    assert AGENTS["rloo"].agent_class() is GRPOAgent
    assert GRPOAgent.CONFIG_CLASS is AGENTS["grpo"].config_class()
    with pytest.raises(ValueError, match="package.module:Name"):
        load_entry_point("llm_gym.agents.grpo.GRPOAgent")
    with pytest.raises(ValueError, match="unknown agent 'sb3-sac'; choose one of: grpo, rloo"):
        agent_entry("sb3-sac")
    assert agent_file("sb3-ppo", "run").name == "agent.zip"
    assert agent_file("ucb1", "run").name == "agent.json"


def test_mismatch_check_reads_the_table() -> None:
    assert mismatch_reason("grpo", WALK) == f"grpo needs a token env; {WALK} is classic"
    assert mismatch_reason("ppo", WALK) is None and mismatch_reason("ppo", TEXT) is None
    assert "classic" in mismatch_reason("sb3-dqn", TEXT)
    assert "Discrete" in mismatch_reason("q-learning", "CartPole-v1")
    assert "bandit" in mismatch_reason("epsilon-greedy-decay", "FrozenLake-v1")
    assert mismatch_reason("random", "CartPole-v1") is None


def test_configs_share_one_base_with_one_name_per_concept(tmp_path) -> None:
    configs = (GRPOConfig, PPOConfig, DPOConfig)
    assert all(issubclass(cls, TrainerConfig) for cls in configs)
    shared = {f.name for f in dataclasses.fields(TrainerConfig)}
    names = [{f.name for f in dataclasses.fields(cls)} for cls in configs]
    assert set.intersection(*names) == shared
    assert {"update_epochs", "num_minibatches", "clip_coef"} <= names[0] & names[1]
    # The package was never released: an old name is an unknown key, not a renamed one.
    for old, cls in (("num_epochs", GRPOConfig), ("clip_eps_low", GRPOConfig),
                     ("beta", GRPOConfig), ("max_bad_reward_batches", PPOConfig)):
        path = tmp_path / f"{old}.toml"
        path.write_text(f"{old} = 1\n")
        with pytest.raises(ValueError, match=rf"unknown {cls.__name__} keys \['{old}'\]"):
            cls.from_file(path)
    with pytest.raises(ValueError, match="checkpoint_every"):
        DPOConfig(checkpoint_every=-1)  # the shared checks run for every trainer
    with pytest.raises(TypeError):
        GRPOConfig(4)  # keyword-only: a field's position is no part of the API


def test_kl_coef_goes_to_the_loss_or_the_reward_by_estimator() -> None:
    group = GRPOConfig(kl_coef=0.1)
    assert (group.kl_loss_coef, group.kl_reward_coef) == (0.1, 0.0)
    reinforce = GRPOConfig(kl_coef=0.1, advantage="reinforce_pp")
    assert (reinforce.kl_loss_coef, reinforce.kl_reward_coef) == (0.0, 0.1)
    agent = make_agent("reinforce-pp", TEXT, model="tiny",
                       config={"kl_coef": 0.05, "group_size": 2, "prompts_per_batch": 1})
    assert agent.config.kl_coef == 0.05
    agent.close()
