"""Build any llm_gym agent by name: ``make_agent("sb3-ppo", "CartPole-v1")``.

Names: ``grpo`` and ``ppo`` (llm_gym's own trainers; ``ppo`` also runs classic envs with an MLP),
``sb3-ppo``, ``sb3-a2c``, ``sb3-dqn``, ``sb3-maskable-ppo`` (Stable-Baselines3 / sb3-contrib),
``q-learning``, ``greedy`` (one-step, γ = 0), ``random``, and the bandit baselines
``epsilon-greedy``, ``epsilon-greedy-decay``, ``ucb1`` and ``thompson``. Every agent has SB3's
interface plus ``episode_log`` (the training curve).

SB3 agents get compact defaults that learn within the small budgets of ``llm-gym compare`` and
``quickstart`` (PPO rollouts of 256 steps instead of 2048, DQN learning from step 500 with a
50k buffer); anything in ``config`` overrides them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym

from llm_gym.agents.config import read_config_file
from llm_gym.wrappers.stack import is_token_env_id, parse_wrappers

# The GRPO trainer and the algorithms that are it with another advantage estimator (GRPOConfig
# fields each name fixes). They train language models only: token envs.
GRPO_FAMILY: dict[str, dict[str, Any]] = {
    "grpo": {},
    "rloo": {"advantage": "rloo"},
    "reinforce-pp": {"advantage": "reinforce_pp", "kl_coef": 0.01},
}
LLM_AGENTS = (*GRPO_FAMILY, "ppo")
# Bandit baselines (llm_gym.agents.bandits), for llm_gym/Bandit-v0.
BANDIT_AGENTS = ("epsilon-greedy", "epsilon-greedy-decay", "ucb1", "thompson")
AGENT_NAMES = (*LLM_AGENTS, "sb3-ppo", "sb3-a2c", "sb3-dqn", "sb3-maskable-ppo", "q-learning",
               "greedy", "random", *BANDIT_AGENTS)
SB3_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 256, "batch_size": 64},
    "maskable-ppo": {"n_steps": 256, "batch_size": 64},
    "a2c": {},
    "dqn": {"learning_starts": 500, "buffer_size": 50_000, "target_update_interval": 250,
            "exploration_fraction": 0.3},
}


class AgentEnvMismatch(ValueError):
    """The agent cannot act in the env (e.g. q-learning on a token env)."""


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
    wrappers: Any = None,
) -> Any:
    """Build agent ``name`` for the registered env ``env_id``, wrapped in ``wrappers``.

    Args:
        name: one of :data:`AGENT_NAMES`.
        env_id: a registered Gymnasium id (``"llm_gym/LeftRight-v0"``, ``"CartPole-v1"``), or
            an env: a (wrapped) single env for any agent, a (wrapped) batched token env for
            grpo and ppo.
        model: grpo/ppo on token envs only: a model name for ``llm_gym.models.load_model``
            (``"tiny"``, ``"smollm2"``, a hub id or path) or a causal LM module.
        config: grpo/ppo: their config dataclass, a dict of its fields, or a TOML/JSON path;
            other agents: a dict (or file) of constructor keyword arguments.
        seed: seed of the agent and its envs.
        log_dir: metrics/TensorBoard folder (grpo, ppo, SB3).
        env_kwargs: keyword arguments of ``gym.make``.
        wrappers: a wrapper stack (``[{"name": "LengthPenalty", "kwargs": {"coef": 0.01}}]``,
            see :mod:`llm_gym.wrappers.stack`): every agent learns the shaped reward.

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
    if name in LLM_AGENTS:
        return _make_llm_agent(name, env_id, model, config, seed, log_dir, env_kwargs, wrappers)
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


def _make_llm_agent(name: str, env_id: Any, model: Any, config: Any, seed: int, log_dir: Any,
                    env_kwargs: dict[str, Any] | None, wrappers: list[dict[str, Any]]) -> Any:
    token_env = _is_token(env_id)
    if name in GRPO_FAMILY and not token_env:
        raise AgentEnvMismatch(
            f"{name} trains a language model and needs a token env; {env_id} is classic. Use a "
            "token env (llm_gym/LeftRightText-v0 is LeftRight-v0's text twin) or ppo")
    if model is not None and not token_env:
        raise ValueError(f"model= applies to token envs; {env_id} is classic (ppo uses an MLP)")
    agent_cls, config_cls = llm_agent_classes(name)
    preset = GRPO_FAMILY.get(name, {})
    if config is None and preset:
        config = {}
    if isinstance(config, dict):
        config = _config_from_dict(config_cls, {**preset, **config})
    elif isinstance(config, config_cls) and preset:  # the name fixes the estimator
        config = dataclasses.replace(config, advantage=preset["advantage"])
    elif config is not None and not isinstance(config, config_cls):
        raise TypeError(f"config of {name} must be a {config_cls.__name__}, a dict or a file, "
                        f"got {type(config).__name__}")
    kwargs: dict[str, Any] = {"config": config, "env_kwargs": env_kwargs, "seed": seed,
                              "log_dir": log_dir, "wrappers": wrappers}
    if model is not None:
        kwargs["model"] = model
    return agent_cls(env_id, **kwargs)


def llm_agent_classes(name: str) -> tuple[type, type]:
    """(agent class, config class) of an LLM agent, imported on first use (torch)."""
    if name in GRPO_FAMILY:
        from llm_gym.agents.grpo import GRPOAgent, GRPOConfig

        return GRPOAgent, GRPOConfig
    from llm_gym.agents.ppo import PPOAgent, PPOConfig

    return PPOAgent, PPOConfig


def _config_from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    from dataclasses import fields

    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {config_cls.__name__} keys {unknown}; valid keys: "
                         f"{', '.join(sorted(known))}")
    return config_cls(**values)


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
