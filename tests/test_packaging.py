"""Packaging: the explicit package list matches the folders, and wheels hold only llm_gym."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Top-level folders that install inside the llm_gym namespace (DESIGN.md, Layout).
NAMESPACED = {"llm_gym": "llm_gym", "envs": "llm_gym.envs", "agents": "llm_gym.agents"}


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, dotted in NAMESPACED.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            if "__pycache__" not in parts:
                found.add(".".join([dotted, *parts]))
    return found


def test_package_list_equals_the_package_folders_on_disk():
    setuptools_cfg = _pyproject()["tool"]["setuptools"]
    assert set(setuptools_cfg["packages"]) == _packages_on_disk()
    assert setuptools_cfg["package-dir"] == {"llm_gym.envs": "envs", "llm_gym.agents": "agents"}


def test_no_stray_python_folders_outside_the_package_list():
    # A folder of modules without __init__.py would be silently left out of the wheel.
    listed = {p.replace(".", "/") for p in _packages_on_disk()}
    for folder, dotted in NAMESPACED.items():
        for module in (REPO / folder).rglob("*.py"):
            parent = module.parent.relative_to(REPO / folder).parts
            if "__pycache__" in parent:
                continue
            assert "/".join([dotted.replace(".", "/"), *parent]) in listed, module


@pytest.mark.slow
def test_wheel_holds_only_the_llm_gym_namespace(tmp_path):
    # Build from a copy: an in-tree build writes build/ and *.egg-info into the shared checkout.
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in NAMESPACED:
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("llm_gym-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top <= {"llm_gym", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "llm_gym/envs/left_right.py" in names
    assert "llm_gym/agents/base.py" in names
    assert "llm_gym/py.typed" in names
    assert not any(name.startswith(("envs/", "agents/", "tests/")) for name in names)
