"""The agents' config dataclasses' shared base, config files and checks (no torch import here)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
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


def plain_config(value: Any) -> Any:
    """``value`` with every mapping as a ``dict`` and every other sequence as a ``list``.

    Configs come from Hydra/OmegaConf (``DictConfig``, ``ListConfig``), ``MappingProxyType``
    and other mappings as often as from plain dicts; reading one item by item gives plain
    Python values (OmegaConf resolves its interpolations on access). Strings, bytes, tuples
    and everything that is not a container are returned as they are.

    Example:
        >>> from types import MappingProxyType
        >>> plain_config(MappingProxyType({"lora": MappingProxyType({"r": 4})}))
        {'lora': {'r': 4}}
    """
    if isinstance(value, Mapping):
        return {key: plain_config(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, tuple)):
        return [plain_config(item) for item in value]
    return value


def config_from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
    """Build the dataclass ``cls`` from ``data``; unknown keys raise a ValueError naming them.

    ``data`` may be any mapping (a dict, an OmegaConf ``DictConfig``): see :func:`plain_config`.

    Example:
        >>> config_from_dict(TrainerConfig, {"lr": 0.1})
        Traceback (most recent call last):
        ...
        ValueError: unknown TrainerConfig keys ['lr']; valid keys are [...]
    """
    data = plain_config(data)
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
    def from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
        """Build a config from a dict or any mapping; unknown keys raise a ValueError."""
        return config_from_dict(cls, data)


@dataclasses.dataclass(kw_only=True)
class TrainerConfig(FileConfig):
    """The settings every llm_gym trainer (GRPO, PPO, DPO) shares, under one name each.

    The names are the ones TRL and CleanRL users know. The two RL trainers also share
    ``update_epochs`` (CleanRL's passes over each rollout), ``num_minibatches`` and
    ``clip_coef`` (CleanRL's ratio clip ε); :class:`~llm_gym.agents.grpo.GRPOConfig` and
    :class:`~llm_gym.agents.ppo.PPOConfig` declare those, which DPO has no use for. A trainer
    whose default differs (PPO's ``max_grad_norm`` of 0.5, DPO's ``kl_coef`` of 0.1) says so
    in its own config.

    Attributes:
        learning_rate: AdamW step size.
        weight_decay: AdamW weight decay.
        max_grad_norm: global gradient-norm clip.
        kl_coef: weight of the KL to a frozen reference model, the starting policy (0: no
            reference is loaded). GRPO and RLOO add the k3 estimator to the loss, PPO and
            REINFORCE++ put the k1 estimate into each token's reward; DPO's β.
        temperature: sampling temperature of the policy.
        checkpoint_every: with a ``log_dir``, save a checkpoint to ``<log_dir>/checkpoints``
            every this many updates (0: none by count).
        checkpoint_minutes: and every this many minutes of wall-clock (0: none by time); a
            checkpoint is also written at the end of ``learn`` and on Ctrl-C/SIGTERM.
        keep_checkpoints: how many of those checkpoints to keep (the newest is never deleted).
        max_reward_failures: stop (cleanly, after a checkpoint) once this many collects in a
            row had more than half of their rewards broken (NaN, None, an exception).
        lora: ``peft.LoraConfig`` kwargs to train a LoRA adapter instead of all weights; the
            KL reference is then the model with the adapter disabled.
        dtype: model precision, ``"float32"``, ``"bfloat16"`` or ``"float16"``; ``None`` =
            bfloat16 on a GPU, float32 on a CPU.

    Example:
        >>> TrainerConfig(checkpoint_every=-1)
        Traceback (most recent call last):
        ...
        ValueError: checkpoint_every and checkpoint_minutes must be >= 0 (0 turns one off), ...
    """

    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    kl_coef: float = 0.0
    temperature: float = 1.0
    checkpoint_every: int = 50
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 3
    max_reward_failures: int = 3
    lora: dict[str, Any] | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        require_at_least_one(self, ("keep_checkpoints", "max_reward_failures"))
        if self.checkpoint_every < 0 or self.checkpoint_minutes < 0:
            raise ValueError(f"checkpoint_every and checkpoint_minutes must be >= 0 (0 turns "
                             f"one off), got {self.checkpoint_every}, {self.checkpoint_minutes}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0 (0: no KL term), got {self.kl_coef}")


def require_at_least_one(config: Any, names: Iterable[str]) -> None:
    """Raise a ValueError naming the first field of ``names`` that is below 1."""
    for name in names:
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
