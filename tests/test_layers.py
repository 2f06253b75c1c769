"""DESIGN.md's layers, checked: the core never imports agents or envs; no import cycles.

Every import counts — at the top of a module and inside functions (a lazy import hides a
dependency, it does not remove it). The CLI (``cli.py``, ``commands/``, ``__main__.py``) is the
top floor and may use every layer. Registration names envs by entry-point string, which is not
an import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"llm_gym": ROOT / "llm_gym", "llm_gym.envs": ROOT / "envs",
            "llm_gym.agents": ROOT / "agents"}
CLI = ("llm_gym.cli", "llm_gym.commands", "llm_gym.__main__")


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every llm_gym module ``name`` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {_owner(t) for t in targets if t.startswith("llm_gym")} - {None, name}


def _owner(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _layer(module: str) -> str:
    if module.startswith(CLI):
        return "cli"
    for layer in ("llm_gym.agents", "llm_gym.envs"):
        if module == layer or module.startswith(layer + "."):
            return layer.split(".")[1]
    return "core"


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
ALLOWED = {"core": {"core"}, "envs": {"core", "envs"}, "agents": {"core", "envs", "agents"},
           "cli": {"core", "envs", "agents", "cli"}}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) != "cli"))
def test_module_imports_only_its_own_layer_and_below(module):
    wrong = sorted(t for t in GRAPH[module] if _layer(t) not in ALLOWED[_layer(module)])
    assert not wrong, f"{module} ({_layer(module)}) imports {wrong}"


def test_no_import_cycles_among_modules():
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])
