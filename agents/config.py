"""Config files and checks shared by the agents' config dataclasses (no torch import here)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The dict in a ``.toml`` or ``.json`` config file.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "c.toml"
        >>> _ = p.write_text("lr = 0.1")
        >>> read_config_file(p)
        {'lr': 0.1}
    """
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"config file must end in .toml or .json, got {path.name}")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)


def config_from_dict(cls: type[ConfigT], data: dict[str, Any]) -> ConfigT:
    """Build the dataclass ``cls`` from ``data``; unknown keys raise a ValueError naming them."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(known)}")
    return cls(**data)


def require_at_least_one(config: Any, names: Iterable[str]) -> None:
    """Raise a ValueError naming the first field of ``names`` that is below 1."""
    for name in names:
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
