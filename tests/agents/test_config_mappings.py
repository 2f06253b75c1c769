"""Configs from Hydra/OmegaConf reach every agent (issue 21: any mapping stands for a dict)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from llm_gym.agents.config import config_from_dict, plain_config
from llm_gym.agents.factory import make_agent
from llm_gym.agents.grpo import GRPOConfig

omegaconf = pytest.importorskip("omegaconf")


def test_plain_config_turns_nested_omegaconf_containers_into_dicts_and_lists():
    cfg = omegaconf.OmegaConf.create(
        {"lr": 0.5, "copy": "${lr}", "lora": {"r": 4, "target_modules": ["q", "v"]}})
    plain = plain_config(cfg)
    assert plain == {"lr": 0.5, "copy": 0.5, "lora": {"r": 4, "target_modules": ["q", "v"]}}
    assert type(plain["lora"]) is dict and type(plain["lora"]["target_modules"]) is list


def test_an_llm_agent_config_from_a_dictconfig_builds_the_dataclass():
    cfg = omegaconf.OmegaConf.create({"group_size": 3, "lora": {"r": 2}})
    config = config_from_dict(GRPOConfig, cfg)
    assert config.group_size == 3 and config.lora == {"r": 2} and type(config.lora) is dict
    with pytest.raises(ValueError, match="unknown GRPOConfig keys"):
        config_from_dict(GRPOConfig, omegaconf.OmegaConf.create({"nope": 1}))


def test_make_agent_takes_a_dictconfig_for_a_classic_agent():
    cfg = omegaconf.OmegaConf.create({"learning_rate": 0.25, "gamma": 0.5})
    agent = make_agent("q-learning", "llm_gym/LeftRight-v0", config=cfg)
    assert (agent.learning_rate, agent.gamma) == (0.25, 0.5)


def test_make_agent_takes_a_dictconfig_and_a_mapping_proxy_for_grpo():
    for cfg in (omegaconf.OmegaConf.create({"group_size": 2, "prompts_per_batch": 1}),
                MappingProxyType({"group_size": 2, "prompts_per_batch": 1})):
        agent = make_agent("grpo", "llm_gym/LeftRightText-v0", model="tiny", config=cfg)
        assert (agent.config.group_size, agent.config.prompts_per_batch) == (2, 1)


def test_a_config_that_is_no_mapping_still_fails_with_a_clear_type_error():
    with pytest.raises(TypeError, match="config of q-learning must be a dict"):
        make_agent("q-learning", "llm_gym/LeftRight-v0", config=[("gamma", 0.5)])
