"""Every ``>>>`` example in the llm_gym package runs (STYLE.md: "Doc examples run").

The modules are found by walking the package, so a new module's examples run without anyone
listing it here; only modules without examples are skipped.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import llm_gym

# llm_gym.envs and llm_gym.agents live in the top-level envs/ and agents/ folders (installed into
# the llm_gym namespace through package-dir), so a walk of llm_gym.__path__ does not reach them.
PACKAGES = ("llm_gym", "llm_gym.envs", "llm_gym.agents")
# Importing llm_gym.__main__ runs the CLI (and exits): it is an entry point, not a module.
NOT_IMPORTABLE = {"llm_gym.__main__"}


def package_modules() -> list[str]:
    """The names of every module of the llm_gym package, its installed subpackages included."""
    names = []
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(path, f"{package}.")]
    return sorted(set(names) - NOT_IMPORTABLE)


MODULES = package_modules()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def test_the_walk_reaches_every_subpackage():
    # A walk that silently misses a folder would skip its examples and still pass.
    for name in ("llm_gym.vector", "llm_gym.wrappers.shaping", "llm_gym.rewards.math",
                 "llm_gym.sandbox.wire", "llm_gym.envs.left_right", "llm_gym.agents.sb3",
                 "llm_gym.agents.sb3_vec_env",
                 "llm_gym.commands.output"):
        assert name in MODULES
    assert llm_gym.__name__ in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    if not any(test.examples for test in finder.find(module)):
        pytest.skip(f"{name} has no examples")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
