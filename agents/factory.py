"""Build any llm_gym agent by name: ``make_agent("sb3-ppo", "CartPole-v1")``.

Every name is a row of :data:`AGENTS` (name → family, env kinds, the ``"module:Class"`` entry
points of its class and config, preset, saved file), from which :data:`AGENT_NAMES`,
:data:`LLM_AGENTS`, the CLI's ``--agent`` choices, ``llm-gym list --agents`` and ``llm-gym
compare``'s mismatch check are derived; :func:`make_agent` and :func:`load_agent` look a name
up and import its class only then (Gymnasium's ``register(entry_point=...)`` style). Names:
``grpo``, ``rloo``, ``reinforce-pp``, ``ppo`` and ``dpo`` (llm_gym's own trainers; ``ppo`` also
runs classic envs with an MLP; ``dpo`` trains from a preference file, ``config={"data":
FILE}``), ``sb3-ppo``, ``sb3-a2c``, ``sb3-dqn``, ``sb3-maskable-ppo`` (Stable-Baselines3 /
sb3-contrib), ``q-learning``, ``greedy`` (one-step, γ = 0), ``random``, and the bandit
baselines ``epsilon-greedy``, ``epsilon-greedy-decay``, ``ucb1`` and ``thompson``. Every agent
has SB3's interface plus ``episode_log`` (the training curve).

SB3 agents get compact defaults that learn within the small budgets of ``llm-gym compare`` and
``quickstart`` (PPO rollouts of 256 steps instead of 2048, DQN learning from step 500 with a
50k buffer); anything in ``config`` overrides them.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from llm_gym.agents.base import AgentEnvMismatch
from llm_gym.agents.config import config_from_dict, plain_config, read_config_file
from llm_gym.wrappers.stack import (
    WrappersLike,
    WrapperStack,
    is_token_env,
    make_env,
    parse_wrappers,
)


def load_entry_point(entry_point: str) -> Any:
    """The object a ``"package.module:Name"`` string names, imported on first use.

    Gymnasium's ``register(entry_point=...)`` style: the table names classes by string, so
    reading it imports neither torch nor Stable-Baselines3.

    Example:
        >>> load_entry_point("llm_gym.agents.tabular:QLearningAgent").__name__
        'QLearningAgent'
    """
    module, sep, name = entry_point.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"an entry point is 'package.module:Name', got {entry_point!r}")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class AgentEntry:
    """One row of the agent table: what a name builds and where it can act.

    Attributes:
        name: the agent's name (``make_agent``, ``--agent``, ``llm-gym list --agents``).
        family: how it is built and loaded: ``"llm"`` (llm_gym's trainers,
            :class:`~llm_gym.agents.trainer.LLMTrainer`, with a config dataclass), ``"sb3"``
            (Stable-Baselines3 / sb3-contrib, through :func:`~llm_gym.agents.sb3.make_sb3_agent`),
            ``"simple"`` (tabular, greedy, random) or ``"bandit"`` (the bandit baselines of
            :mod:`llm_gym.agents.bandits`); the last two are built as ``cls(env, seed=...)``.
        env_kinds: the env kinds it can act in, ``"token"`` and/or ``"classic"``; a finer
            check (action and observation spaces) runs on the env itself.
        entry_point: the agent's class, ``"package.module:Class"``.
        summary: one line for ``llm-gym list --agents``.
        config_entry_point: an ``"llm"`` agent's config dataclass, ``"package.module:Class"``.
        preset: settings the name gives (config fields or keyword arguments; the user's
            override them): RLOO and REINFORCE++ are GRPO with another advantage estimator,
            SB3 agents get compact defaults that learn within ``llm-gym compare``'s budgets.
        saved_file: what ``llm-gym train`` saves the agent to inside its run folder;
            ``None`` when there is nothing to save (loading builds a fresh agent).
    """

    name: str
    family: str
    env_kinds: frozenset[str]
    entry_point: str
    summary: str
    config_entry_point: str | None = None
    preset: dict[str, Any] = field(default_factory=dict)
    saved_file: str | None = "agent"

    def agent_class(self) -> Any:
        """The class :attr:`entry_point` names (imported now)."""
        return load_entry_point(self.entry_point)

    def config_class(self) -> Any:
        """The config dataclass :attr:`config_entry_point` names (imported now)."""
        if self.config_entry_point is None:
            raise ValueError(f"{self.name} takes keyword arguments, not a config dataclass")
        return load_entry_point(self.config_entry_point)


_BOTH = frozenset({"token", "classic"})
_TOKEN = frozenset({"token"})
_CLASSIC = frozenset({"classic"})
_GRPO = ("llm_gym.agents.grpo:GRPOAgent", "llm_gym.agents.grpo_algorithm:GRPOConfig")
_SB3_PPO = {"n_steps": 256, "batch_size": 64}  # SB3 default: 2048 steps per rollout
# The one table of agents; every list of names below is derived from it (issue 8), and
# make_agent / load_agent read it instead of testing names (issue 20).
AGENTS: dict[str, AgentEntry] = {entry.name: entry for entry in (
    AgentEntry("grpo", "llm", _TOKEN, _GRPO[0],
               "GRPO / Dr. GRPO / DAPO on a causal LM (GRPOAgent)", _GRPO[1]),
    AgentEntry("rloo", "llm", _TOKEN, _GRPO[0],
               "RLOO: GRPOAgent with the leave-one-out baseline", _GRPO[1],
               {"advantage": "rloo"}),
    AgentEntry("reinforce-pp", "llm", _TOKEN, _GRPO[0],
               "REINFORCE++: GRPOAgent with batch-normalised, KL-penalised returns", _GRPO[1],
               {"advantage": "reinforce_pp", "kl_coef": 0.01}),
    AgentEntry("ppo", "llm", _BOTH, "llm_gym.agents.ppo:PPOAgent",
               "PPO with a value head (token) or an MLP (classic)",
               "llm_gym.agents.ppo_algorithm:PPOConfig"),
    AgentEntry("dpo", "llm", _TOKEN, "llm_gym.agents.dpo:DPOAgent",
               "DPO / IPO from a preference file (config data=FILE) against a frozen "
               "reference (DPOAgent)", "llm_gym.agents.dpo_algorithm:DPOConfig"),
    AgentEntry("sft", "llm", _TOKEN, "llm_gym.agents.sft:SFTAgent",
               "supervised fine-tuning on conversations in TRL's SFT format (config "
               "data=FILE), the warm start before RL (SFTAgent)",
               "llm_gym.agents.sft_algorithm:SFTConfig"),
    AgentEntry("sb3-ppo", "sb3", _BOTH, "stable_baselines3:PPO", "Stable-Baselines3 PPO",
               preset=_SB3_PPO, saved_file="agent.zip"),
    AgentEntry("sb3-a2c", "sb3", _BOTH, "stable_baselines3:A2C", "Stable-Baselines3 A2C",
               saved_file="agent.zip"),
    AgentEntry("sb3-dqn", "sb3", _CLASSIC, "stable_baselines3:DQN",
               "Stable-Baselines3 DQN (Discrete actions; its replay buffer would hold whole "
               "conversations on a token env)",
               preset={"learning_starts": 500, "buffer_size": 50_000,
                       "target_update_interval": 250, "exploration_fraction": 0.3},
               saved_file="agent.zip"),
    AgentEntry("sb3-maskable-ppo", "sb3", _BOTH, "sb3_contrib:MaskablePPO",
               "sb3-contrib MaskablePPO (needs action_masks)", preset=_SB3_PPO,
               saved_file="agent.zip"),
    AgentEntry("q-learning", "simple", _CLASSIC, "llm_gym.agents.tabular:QLearningAgent",
               "tabular Q-learning (Discrete spaces)", saved_file="agent.npz"),
    AgentEntry("greedy", "simple", _CLASSIC, "llm_gym.agents.greedy:GreedyAgent",
               "one-step greedy, gamma = 0 (Discrete spaces)", saved_file="agent.npz"),
    AgentEntry("random", "simple", _BOTH, "llm_gym.agents.greedy:RandomAgent",
               "uniform random actions (masked when the env says)", saved_file=None),
    AgentEntry("epsilon-greedy", "bandit", _CLASSIC, "llm_gym.agents.bandits:EpsilonGreedyAgent",
               "bandit baseline: epsilon-greedy, fixed epsilon (Bandit-v0)",
               saved_file="agent.json"),
    AgentEntry("epsilon-greedy-decay", "bandit", _CLASSIC,
               "llm_gym.agents.bandits:EpsilonGreedyAgent",
               "bandit baseline: epsilon-greedy, epsilon_t = min(1, k/t) (Bandit-v0)",
               preset={"decay_c": 1.0}, saved_file="agent.json"),
    AgentEntry("ucb1", "bandit", _CLASSIC, "llm_gym.agents.bandits:UCB1Agent",
               "bandit baseline: UCB1, Auer et al. 2002 (Bandit-v0)", saved_file="agent.json"),
    AgentEntry("thompson", "bandit", _CLASSIC, "llm_gym.agents.bandits:ThompsonAgent",
               "bandit baseline: Thompson sampling (Bandit-v0)", saved_file="agent.json"),
)}
AGENT_NAMES = tuple(AGENTS)
LLM_AGENTS = tuple(name for name, entry in AGENTS.items() if entry.family == "llm")
# The GRPO trainer and the algorithms that are it with another advantage estimator.
GRPO_FAMILY: dict[str, dict[str, Any]] = {
    name: dict(entry.preset) for name, entry in AGENTS.items() if entry.entry_point == _GRPO[0]}


def agent_entry(name: str) -> AgentEntry:
    """The table row of agent ``name``; ``ValueError`` listing the valid names for another.

    Example:
        >>> agent_entry("rloo").preset
        {'advantage': 'rloo'}
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(AGENT_NAMES)}")
    return AGENTS[name]


def check_agent_name(name: str) -> None:
    """Raise ``ValueError`` listing the valid names unless ``name`` is one of them."""
    agent_entry(name)


def load_config(config: Any) -> Any:
    """A config as a plain dict when given as a path (TOML/JSON) or any mapping, else as is.

    Any mapping: Hydra's and OmegaConf's ``DictConfig``, a ``MappingProxyType`` (nested
    mappings and sequences become dicts and lists, :func:`~llm_gym.agents.config.plain_config`).
    """
    if isinstance(config, (str, Path)):
        return read_config_file(config)
    if isinstance(config, Mapping):
        return plain_config(config)
    return config


def make_agent(
    name: str, env_id: str | gym.Env | gym.vector.VectorEnv, *, model: Any = None,
    config: Any = None, seed: int = 0,
    log_dir: str | Path | None = None, env_kwargs: dict[str, Any] | None = None,
    wrappers: WrappersLike = None, distributed: dict[str, Any] | None = None,
    device: str | None = None,
) -> Any:
    """Build agent ``name`` for the registered env ``env_id``, wrapped in ``wrappers``.

    Args:
        name: one of :data:`AGENT_NAMES`.
        env_id: a registered Gymnasium id (``"llm_gym/LeftRight-v0"``, ``"CartPole-v1"``), or
            an env: a (wrapped) single env for any agent, a (wrapped) batched token env for
            grpo and ppo.
        model: grpo/ppo/dpo on token envs only: a model name for ``llm_gym.models.load_model``
            (``"tiny"``, ``"smollm2"``, a hub id or path) or a causal LM module.
        config: grpo/ppo/dpo: their config dataclass, a dict of its fields (dpo needs
            ``{"data": FILE}`` at least), or a TOML/JSON path;
            other agents: a dict (or file) of constructor keyword arguments. Any mapping
            stands for a dict (Hydra's and OmegaConf's ``DictConfig`` included).
        seed: seed of the agent and its envs.
        log_dir: metrics/TensorBoard folder (grpo, ppo, SB3).
        env_kwargs: keyword arguments of ``gym.make``.
        wrappers: a wrapper stack (``[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]``,
            see :mod:`llm_gym.wrappers.stack`): every agent learns the shaped reward.
        distributed: GRPO-family agents on Ray: ``rollout_workers``, ``scoring_workers`` and
            ``ray_address`` (see :class:`~llm_gym.agents.grpo.GRPOAgent`).
        device: torch device of the LLM agents and SB3 models (``"cpu"``, ``"cuda:0"``);
            ``None``: the GPU when there is one. Table and bandit agents have none.

    Raises:
        ValueError: unknown name, or :class:`AgentEnvMismatch` when the agent cannot act in
            the env (q-learning on a token env, DQN on a token env, grpo on a classic env).

    Example:
        >>> agent = make_agent("q-learning", "llm_gym/LeftRight-v0")
        >>> len(agent.learn(500).episode_log) > 0
        True
    """
    entry = agent_entry(name)
    config = load_config(config)
    wrappers = parse_wrappers(wrappers)  # the edge: checked once, taken as is below
    distributed = distributed_options(name, distributed)
    if entry.family == "llm":
        placed = {**distributed, **({"device": device} if device is not None else {})}
        return _make_llm_agent(entry, env_id, model, config, seed, log_dir, env_kwargs, wrappers,
                               placed)
    if model is not None:
        raise ValueError(f"model= only applies to grpo and ppo, not to {name}")
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config of {name} must be a dict or a TOML/JSON file, "
                        f"got {type(config).__name__}")
    from llm_gym.agents.sb3 import make_sb3_agent

    if isinstance(env_id, gym.vector.VectorEnv):
        raise TypeError(f"{name} takes an env id or a single env, got the vector env {env_id}; "
                        "pass the id (and wrappers=) instead")
    env = make_env(env_id, env_kwargs=env_kwargs, wrappers=wrappers)
    kwargs = {**entry.preset, **(config or {})}
    if entry.family == "sb3":
        if device is not None:
            kwargs["device"] = device
        return make_sb3_agent(entry.agent_class(), env, seed=seed, log_dir=log_dir, **kwargs)
    return entry.agent_class()(env, seed=seed, **kwargs)


def env_kind_mismatch(name: str, env: Any) -> str | None:
    """Why agent ``name`` cannot act in ``env`` (an id or an env) by its kind, or ``None``.

    Example:
        >>> env_kind_mismatch("grpo", "CartPole-v1")
        'grpo needs a token env; CartPole-v1 is classic'
    """
    entry = agent_entry(name)
    kind = "token" if is_token_env(env) else "classic"
    if kind in entry.env_kinds:
        return None
    wanted = " or ".join(sorted(entry.env_kinds))
    return f"{name} needs a {wanted} env; {env} is {kind}"


def distributed_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The Ray options that are set (``rollout_workers``, ...); only GRPO-family agents take them.

    Raises:
        ValueError: an option for an agent that runs in one process only.
    """
    options = {k: v for k, v in (options or {}).items() if v}
    if options and name not in GRPO_FAMILY:
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise ValueError(f"{flags}: Ray workers run the GRPO-family trainers ("
                         f"{', '.join(GRPO_FAMILY)}); {name} runs in one process, leave them out")
    return options


def _make_llm_agent(entry: AgentEntry, env_id: Any, model: Any, config: Any, seed: int,
                    log_dir: Any, env_kwargs: dict[str, Any] | None,
                    wrappers: WrapperStack, extra: dict[str, Any]) -> Any:
    name, token_env = entry.name, is_token_env(env_id)
    if env_kind_mismatch(name, env_id) is not None:
        raise AgentEnvMismatch(
            f"{name} trains a language model and needs a token env; {env_id} is classic. Use a "
            "token env (llm_gym/LeftRightText-v0 is LeftRight-v0's text twin) or ppo")
    if model is not None and not token_env:
        raise ValueError(f"model= applies to token envs; {env_id} is classic (ppo uses an MLP)")
    config_cls, preset = entry.config_class(), entry.preset
    if config is None and preset:
        config = {}
    if isinstance(config, dict):
        config = config_from_dict(config_cls, {**preset, **config})
    elif isinstance(config, config_cls) and preset:  # the name fixes the estimator
        config = dataclasses.replace(config, advantage=preset["advantage"])
    elif config is not None and not isinstance(config, config_cls):
        raise TypeError(f"config of {name} must be a {config_cls.__name__}, a dict or a file, "
                        f"got {type(config).__name__}")
    kwargs: dict[str, Any] = {"config": config, "env_kwargs": env_kwargs, "seed": seed,
                              "log_dir": log_dir, "wrappers": wrappers, **extra}
    if model is not None:
        kwargs["model"] = model
    return entry.agent_class()(env_id, **kwargs)


def agent_file(name: str, directory: str | Path) -> Path:
    """Where ``llm-gym train`` saves agent ``name`` inside ``directory``."""
    return Path(directory) / (agent_entry(name).saved_file or "agent")


def load_agent(
    name: str, path: str | Path, env_id: str, *, env_kwargs: dict[str, Any] | None = None,
    seed: int = 0, log_dir: str | Path | None = None, wrappers: WrappersLike = None,
    distributed: dict[str, Any] | None = None, device: str | None = None,
) -> Any:
    """Load an agent saved with ``agent.save(path)`` so that ``learn`` continues its run.

    ``wrappers`` rebuilds the run's wrapper stack (``llm-gym train`` records it in run.json);
    ``distributed`` are a GRPO-family agent's Ray options and ``device`` where an LLM agent or
    SB3 model goes (see :func:`make_agent`).
    """
    entry = agent_entry(name)
    if wrappers is not None:  # the edge, as in make_agent; None: the stack the save recorded
        wrappers = parse_wrappers(wrappers)
    distributed = distributed_options(name, distributed)
    cls = entry.agent_class()
    placed = {"device": device} if device is not None else {}
    if entry.family == "llm":
        return cls.load(path, log_dir=log_dir, wrappers=wrappers, **distributed, **placed)
    if entry.family == "sb3":
        from llm_gym.agents.sb3 import load_sb3_agent

        return load_sb3_agent(cls, path, env_id, env_kwargs=env_kwargs, wrappers=wrappers,
                              tensorboard_log=str(log_dir) if log_dir else None, **placed)
    env = make_env(env_id, env_kwargs=env_kwargs, wrappers=wrappers)
    if entry.saved_file is None:  # nothing was saved: a fresh agent with the run's seed
        return cls(env, seed=seed)
    return cls.load(path, env=env)
