"""Build any llm_gym agent by name: ``make_agent("sb3-ppo", "CartPole-v1")``.

Every name is a row of :data:`AGENTS` (name → family, env kinds, summary, config preset), from
which :data:`AGENT_NAMES`, :data:`LLM_AGENTS`, the CLI's ``--agent`` choices, ``llm-gym list
--agents`` and ``llm-gym compare``'s mismatch check are derived. Names: ``grpo``, ``rloo``,
``reinforce-pp``, ``ppo`` and ``dpo`` (llm_gym's own trainers; ``ppo`` also runs classic envs
with an MLP; ``dpo`` trains from a preference file, ``config={"data": FILE}``), ``sb3-ppo``,
``sb3-a2c``, ``sb3-dqn``, ``sb3-maskable-ppo`` (Stable-Baselines3 / sb3-contrib),
``q-learning``, ``greedy`` (one-step, γ = 0), ``random``, and the bandit baselines
``epsilon-greedy``, ``epsilon-greedy-decay``, ``ucb1`` and ``thompson``. Every agent has SB3's
interface plus ``episode_log`` (the training curve).

SB3 agents get compact defaults that learn within the small budgets of ``llm-gym compare`` and
``quickstart`` (PPO rollouts of 256 steps instead of 2048, DQN learning from step 500 with a
50k buffer); anything in ``config`` overrides them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from llm_gym.agents.base import AgentEnvMismatch
from llm_gym.agents.config import config_from_dict, read_config_file
from llm_gym.wrappers.stack import is_token_env_id, parse_wrappers


@dataclass(frozen=True)
class AgentEntry:
    """One row of the agent table: what a name builds and where it can act.

    Attributes:
        name: the agent's name (``make_agent``, ``--agent``, ``llm-gym list --agents``).
        family: ``"llm"`` (llm_gym's trainers, :class:`~llm_gym.agents.trainer.LLMTrainer`),
            ``"sb3"`` (Stable-Baselines3 / sb3-contrib), ``"simple"`` (tabular, greedy,
            random) or ``"bandit"`` (the bandit baselines of :mod:`llm_gym.agents.bandits`).
        env_kinds: the env kinds it can act in, ``"token"`` and/or ``"classic"``; a finer
            check (action and observation spaces) runs on the env itself.
        summary: one line for ``llm-gym list --agents``.
        preset: config fields the name fixes (RLOO and REINFORCE++ are GRPO with another
            advantage estimator).
    """

    name: str
    family: str
    env_kinds: frozenset[str]
    summary: str
    preset: dict[str, Any] = field(default_factory=dict)


_BOTH = frozenset({"token", "classic"})
_TOKEN = frozenset({"token"})
_CLASSIC = frozenset({"classic"})
# The one table of agents; every list of names below is derived from it (issue 8).
AGENTS: dict[str, AgentEntry] = {entry.name: entry for entry in (
    AgentEntry("grpo", "llm", _TOKEN, "GRPO / Dr. GRPO / DAPO on a causal LM (GRPOAgent)"),
    AgentEntry("rloo", "llm", _TOKEN, "RLOO: GRPOAgent with the leave-one-out baseline",
               {"advantage": "rloo"}),
    AgentEntry("reinforce-pp", "llm", _TOKEN,
               "REINFORCE++: GRPOAgent with batch-normalised, KL-penalised returns",
               {"advantage": "reinforce_pp", "kl_coef": 0.01}),
    AgentEntry("ppo", "llm", _BOTH, "PPO with a value head (token) or an MLP (classic)"),
    AgentEntry("dpo", "llm", _TOKEN, "DPO / IPO from a preference file (config data=FILE) "
               "against a frozen reference (DPOAgent)"),
    AgentEntry("sb3-ppo", "sb3", _BOTH, "Stable-Baselines3 PPO"),
    AgentEntry("sb3-a2c", "sb3", _BOTH, "Stable-Baselines3 A2C"),
    AgentEntry("sb3-dqn", "sb3", _CLASSIC, "Stable-Baselines3 DQN (Discrete actions; its "
               "replay buffer would hold whole conversations on a token env)"),
    AgentEntry("sb3-maskable-ppo", "sb3", _BOTH, "sb3-contrib MaskablePPO (needs action_masks)"),
    AgentEntry("q-learning", "simple", _CLASSIC, "tabular Q-learning (Discrete spaces)"),
    AgentEntry("greedy", "simple", _CLASSIC, "one-step greedy, gamma = 0 (Discrete spaces)"),
    AgentEntry("random", "simple", _BOTH, "uniform random actions (masked when the env says)"),
    AgentEntry("epsilon-greedy", "bandit", _CLASSIC, "bandit baseline: epsilon-greedy, fixed "
               "epsilon (Bandit-v0)"),
    AgentEntry("epsilon-greedy-decay", "bandit", _CLASSIC, "bandit baseline: epsilon-greedy, "
               "epsilon_t = min(1, k/t) (Bandit-v0)"),
    AgentEntry("ucb1", "bandit", _CLASSIC, "bandit baseline: UCB1, Auer et al. 2002 (Bandit-v0)"),
    AgentEntry("thompson", "bandit", _CLASSIC, "bandit baseline: Thompson sampling (Bandit-v0)"),
)}
AGENT_NAMES = tuple(AGENTS)
LLM_AGENTS = tuple(name for name, entry in AGENTS.items() if entry.family == "llm")
# The GRPO trainer and the algorithms that are it with another advantage estimator.
GRPO_FAMILY: dict[str, dict[str, Any]] = {
    name: dict(entry.preset) for name, entry in AGENTS.items()
    if entry.family == "llm" and name not in ("ppo", "dpo")}
# Bandit baselines (llm_gym.agents.bandits), for llm_gym/Bandit-v0.
BANDIT_AGENTS = tuple(name for name, entry in AGENTS.items() if entry.family == "bandit")
SB3_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 256, "batch_size": 64},
    "maskable-ppo": {"n_steps": 256, "batch_size": 64},
    "a2c": {},
    "dqn": {"learning_starts": 500, "buffer_size": 50_000, "target_update_interval": 250,
            "exploration_fraction": 0.3},
}


def check_agent_name(name: str) -> None:
    """Raise ``ValueError`` listing the valid names unless ``name`` is one of them."""
    if name not in AGENT_NAMES:
        raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(AGENT_NAMES)}")


def load_config(config: Any) -> Any:
    """A config given as a path (TOML or JSON) becomes a dict; anything else is returned."""
    if not isinstance(config, (str, Path)):
        return config
    return read_config_file(config)


def make_agent(
    name: str, env_id: str | gym.Env | gym.vector.VectorEnv, *, model: Any = None,
    config: Any = None, seed: int = 0,
    log_dir: str | Path | None = None, env_kwargs: dict[str, Any] | None = None,
    wrappers: Any = None, distributed: dict[str, Any] | None = None,
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
            other agents: a dict (or file) of constructor keyword arguments.
        seed: seed of the agent and its envs.
        log_dir: metrics/TensorBoard folder (grpo, ppo, SB3).
        env_kwargs: keyword arguments of ``gym.make``.
        wrappers: a wrapper stack (``[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]``,
            see :mod:`llm_gym.wrappers.stack`): every agent learns the shaped reward.
        distributed: GRPO-family agents on Ray: ``rollout_workers``, ``scoring_workers`` and
            ``ray_address`` (see :class:`~llm_gym.agents.grpo.GRPOAgent`).

    Raises:
        ValueError: unknown name, or :class:`AgentEnvMismatch` when the agent cannot act in
            the env (q-learning on a token env, DQN on a token env, grpo on a classic env).

    Example:
        >>> agent = make_agent("q-learning", "llm_gym/LeftRight-v0")
        >>> len(agent.learn(500).episode_log) > 0
        True
    """
    check_agent_name(name)
    config = load_config(config)
    wrappers = parse_wrappers(wrappers)
    distributed = distributed_options(name, distributed)
    if name in LLM_AGENTS:
        return _make_llm_agent(name, env_id, model, config, seed, log_dir, env_kwargs, wrappers,
                               distributed)
    if model is not None:
        raise ValueError(f"model= only applies to grpo and ppo, not to {name}")
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config of {name} must be a dict or a TOML/JSON file, "
                        f"got {type(config).__name__}")
    kwargs = dict(config or {})
    from llm_gym.agents.sb3 import make_env

    if isinstance(env_id, gym.vector.VectorEnv):
        raise TypeError(f"{name} takes an env id or a single env, got the vector env {env_id}; "
                        "pass the id (and wrappers=) instead")
    env = make_env(env_id, env_kwargs, wrappers)
    return _make_env_agent(name, env, kwargs, seed, log_dir)


def _make_env_agent(name: str, env: gym.Env, kwargs: dict, seed: int, log_dir: Any) -> Any:
    if name.startswith("sb3-"):
        from llm_gym.agents.sb3 import make_sb3_agent

        algo = name.removeprefix("sb3-")
        return make_sb3_agent(algo, env, seed=seed, log_dir=log_dir,
                              **{**SB3_DEFAULTS[algo], **kwargs})
    if name in BANDIT_AGENTS:
        from llm_gym.agents.bandits import make_bandit_agent

        return make_bandit_agent(name, env, seed=seed, **kwargs)
    from llm_gym.agents.greedy import GreedyAgent, RandomAgent
    from llm_gym.agents.tabular import QLearningAgent

    cls = {"q-learning": QLearningAgent, "greedy": GreedyAgent, "random": RandomAgent}[name]
    return cls(env, seed=seed, **kwargs)


def _is_token(env: Any) -> bool:
    if isinstance(env, str):
        return is_token_env_id(env)
    from llm_gym.token_env import TokenEnv
    from llm_gym.vector import TokenVectorEnv

    return isinstance(env.unwrapped, (TokenEnv, TokenVectorEnv))


def env_kind_mismatch(name: str, env: Any) -> str | None:
    """Why agent ``name`` cannot act in ``env`` (an id or an env) by its kind, or ``None``.

    Example:
        >>> env_kind_mismatch("grpo", "CartPole-v1")
        'grpo needs a token env; CartPole-v1 is classic'
    """
    check_agent_name(name)
    kind = "token" if _is_token(env) else "classic"
    if kind in AGENTS[name].env_kinds:
        return None
    wanted = " or ".join(sorted(AGENTS[name].env_kinds))
    return f"{name} needs a {wanted} env; {env} is {kind}"


def distributed_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The Ray options that are set (``rollout_workers``, ...); only GRPO-family agents take them.

    Raises:
        ValueError: an option for an agent that runs in one process only.
    """
    options = {k: v for k, v in (options or {}).items() if v}
    if options and (name not in LLM_AGENTS or name in ("ppo", "dpo")):
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise ValueError(f"{flags}: Ray workers run the GRPO-family trainers ("
                         f"{', '.join(n for n in LLM_AGENTS if n not in ('ppo', 'dpo'))}); "
                         f"{name} runs in one process, leave them out")
    return options


def _make_llm_agent(name: str, env_id: Any, model: Any, config: Any, seed: int, log_dir: Any,
                    env_kwargs: dict[str, Any] | None, wrappers: list[dict[str, Any]],
                    distributed: dict[str, Any]) -> Any:
    token_env = _is_token(env_id)
    if env_kind_mismatch(name, env_id) is not None:
        raise AgentEnvMismatch(
            f"{name} trains a language model and needs a token env; {env_id} is classic. Use a "
            "token env (llm_gym/LeftRightText-v0 is LeftRight-v0's text twin) or ppo")
    if model is not None and not token_env:
        raise ValueError(f"model= applies to token envs; {env_id} is classic (ppo uses an MLP)")
    agent_cls, config_cls = llm_agent_classes(name)
    preset = AGENTS[name].preset
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
                              "log_dir": log_dir, "wrappers": wrappers, **distributed}
    if model is not None:
        kwargs["model"] = model
    return agent_cls(env_id, **kwargs)


def llm_agent_classes(name: str) -> tuple[type, type]:
    """(agent class, config class) of an LLM agent, imported on first use (torch)."""
    if name not in LLM_AGENTS:
        raise ValueError(f"{name!r} is not one of llm_gym's LLM trainers ({', '.join(LLM_AGENTS)})")
    if name == "dpo":
        from llm_gym.agents.dpo import DPOAgent, DPOConfig

        return DPOAgent, DPOConfig
    if name != "ppo":
        from llm_gym.agents.grpo import GRPOAgent, GRPOConfig

        return GRPOAgent, GRPOConfig
    from llm_gym.agents.ppo import PPOAgent, PPOConfig

    return PPOAgent, PPOConfig


def agent_file(name: str, directory: str | Path) -> Path:
    """Where ``llm-gym train`` saves agent ``name`` inside ``directory``."""
    directory = Path(directory)
    if name.startswith("sb3-"):
        return directory / "agent.zip"
    if name in ("q-learning", "greedy"):
        return directory / "agent.npz"
    if name in BANDIT_AGENTS:
        return directory / "agent.json"
    return directory / "agent"


def load_agent(
    name: str, path: str | Path, env_id: str, *, env_kwargs: dict[str, Any] | None = None,
    seed: int = 0, log_dir: str | Path | None = None, wrappers: Any = None,
) -> Any:
    """Load an agent saved with ``agent.save(path)`` so that ``learn`` continues its run.

    ``wrappers`` rebuilds the run's wrapper stack (``llm-gym train`` records it in run.json).
    """
    check_agent_name(name)
    if name.startswith("sb3-"):
        from llm_gym.agents.sb3 import load_sb3_agent

        return load_sb3_agent(name.removeprefix("sb3-"), path, env_id, env_kwargs=env_kwargs,
                              wrappers=wrappers,
                              tensorboard_log=str(log_dir) if log_dir else None)
    if name in LLM_AGENTS:
        agent_cls, _ = llm_agent_classes(name)
        return agent_cls.load(path, wrappers=wrappers)
    from llm_gym.agents.greedy import GreedyAgent, RandomAgent
    from llm_gym.agents.sb3 import make_env
    from llm_gym.agents.tabular import QLearningAgent

    if name in BANDIT_AGENTS:
        from llm_gym.agents.bandits import load_bandit_agent

        return load_bandit_agent(name, path, make_env(env_id, env_kwargs, wrappers))
    cls = {"q-learning": QLearningAgent, "greedy": GreedyAgent, "random": RandomAgent}[name]
    env = make_env(env_id, env_kwargs, wrappers)
    return cls.load(path, env=env) if name != "random" else cls(env, seed=seed)
