"""mkdocs hook: lay out the package as it installs, for the API reference.

``envs/`` and ``agents/`` install as ``llm_gym.envs`` and ``llm_gym.agents`` (setuptools
``package-dir``), a layout that static analysis of the checkout cannot follow. Before the build
this links the three folders into ``build/docs-src/llm_gym`` the way they are installed, and
mkdocstrings reads the sources from there (``paths`` in mkdocs.yml) without importing anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "docs-src" / "llm_gym"


def on_startup(command, dirty):
    """Rebuild the linked tree before any plugin reads its config (a fresh clone has none).

    ``on_startup``, not ``on_config``: mkdocstrings drops search paths that do not exist when
    its own ``on_config`` runs, which is before a hook's.
    """
    shutil.rmtree(TREE.parent, ignore_errors=True)
    TREE.mkdir(parents=True)
    _link_files(ROOT / "llm_gym", TREE)
    _link_files(ROOT / "envs", TREE / "envs")
    _link_files(ROOT / "agents", TREE / "agents")


def _link_files(source: Path, target: Path) -> None:
    # Real folders, linked files: griffe drops a sub-package whose folder resolves elsewhere.
    for path in source.rglob("*.py"):
        if "__pycache__" not in path.parts:
            link = target / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
