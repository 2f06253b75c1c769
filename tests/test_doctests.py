"""The ``>>>`` examples of the wrapper, vector-env and trainer-plumbing modules run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "llm_gym.token_env", "llm_gym.vector", "llm_gym.wrappers.response",
    "llm_gym.wrappers.shaping", "llm_gym.wrappers.vector", "llm_gym.wrappers.stack",
    "llm_gym.wrappers.text", "llm_gym.agents.training", "llm_gym.agents.token_envs",
    "llm_gym.agents.compare", "llm_gym.agents.factory", "llm_gym.agents.evaluation",
    "llm_gym.commands.compare", "llm_gym.commands.arguments", "llm_gym.commands.output",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
