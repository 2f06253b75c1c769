"""Config files and checks shared by the agents' config dataclasses (no torch import here)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")

# Old names of settings the agents share, still accepted (with a DeprecationWarning) and mapped
# onto the one name every agent now uses (issue 8).
DEPRECATED_NAMES = {"beta": "kl_coef", "max_bad_reward_batches": "max_reward_failures"}


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


def config_from_dict(cls: type[ConfigT], data: dict[str, Any], warn: bool = True) -> ConfigT:
    """Build the dataclass ``cls`` from ``data``; unknown keys raise a ValueError naming them.

    Deprecated names (:data:`DEPRECATED_NAMES`) are mapped onto the current ones, with a
    DeprecationWarning unless ``warn`` is False (a checkpoint written before the rename).
    """
    data = rename_deprecated(cls.__name__, data, warn)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(known)}")
    return cls(**data)


class FileConfig:
    """Base of the agents' config dataclasses: build one from a TOML/JSON file or a dict.

    Example:
        >>> import tempfile
        >>> @dataclasses.dataclass
        ... class Demo(FileConfig):
        ...     lr: float = 0.1
        >>> p = Path(tempfile.mkdtemp()) / "demo.toml"
        >>> _ = p.write_text("lr = 0.5")
        >>> Demo.from_file(p).lr
        0.5
    """

    @classmethod
    def from_file(cls: type[ConfigT], path: str | Path) -> ConfigT:
        """Read a ``.toml`` or ``.json`` file whose keys are field names."""
        return config_from_dict(cls, read_config_file(path))

    @classmethod
    def from_dict(cls: type[ConfigT], data: dict[str, Any], warn: bool = True) -> ConfigT:
        """Build a config from a dict; unknown keys raise a ValueError naming them.

        Deprecated names are mapped, with a DeprecationWarning unless ``warn`` is False.
        """
        return config_from_dict(cls, data, warn)


def require_at_least_one(config: Any, names: Iterable[str]) -> None:
    """Raise a ValueError naming the first field of ``names`` that is below 1."""
    for name in names:
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")


def rename_deprecated(owner: str, data: dict[str, Any], warn: bool = True) -> dict[str, Any]:
    """``data`` with every deprecated key renamed (see :data:`DEPRECATED_NAMES`).

    When the old and the new name are both given, one of them must be 0 or equal to the other.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     rename_deprecated("GRPOConfig", {"beta": 0.1})
        {'kl_coef': 0.1}
    """
    out = dict(data)
    for old, new in DEPRECATED_NAMES.items():
        if old not in out:
            continue
        value = out.pop(old)
        if warn:
            warnings.warn(f"{owner}: {old!r} is deprecated, use {new!r} (same meaning)",
                          DeprecationWarning, stacklevel=3)
        current = out.get(new)
        if current not in (None, 0, value) and value not in (None, 0):
            raise ValueError(f"{owner}: {old}={value!r} and {new}={current!r} both given; "
                             f"give only {new} ({old} is its deprecated name)")
        if value not in (None, 0) or current is None:
            out[new] = value
    return out
