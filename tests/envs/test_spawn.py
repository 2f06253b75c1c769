"""Spawned workers (AsyncVectorEnv with spawn, TorchRL/CleanRL workers) import nothing of ours.

Gymnasium 1.x loads no plugins from entry points, so a fresh interpreter knows llm_gym's ids
only through the ``"llm_gym:llm_gym/..."`` form, which imports the package first.
"""

from __future__ import annotations

import multiprocessing

import gymnasium as gym
import numpy as np


def _make_text_walk() -> gym.Env:
    return gym.make("llm_gym:llm_gym/LeftRightText-v0")


def _registered_in_a_fresh_interpreter(queue) -> None:
    import gymnasium

    before = "llm_gym/LeftRight-v0" in gymnasium.registry
    env = gymnasium.make("llm_gym:llm_gym/LeftRight-v0")
    queue.put((before, env.spec.id))


def test_module_prefix_registers_in_a_spawned_process():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_registered_in_a_fresh_interpreter, args=(queue,))
    process.start()
    before, env_id = queue.get(timeout=120)
    process.join(timeout=60)
    assert before is False  # nothing registered until the prefix imported llm_gym
    assert env_id == "llm_gym/LeftRight-v0"


def test_async_vector_env_with_spawn_steps_token_envs():
    envs = gym.vector.AsyncVectorEnv([_make_text_walk] * 2, context="spawn")
    try:
        obs, _ = envs.reset(seed=0)
        assert obs["input_ids"].shape[0] == 2
        obs, reward, terminated, truncated, _ = envs.step(np.array([ord("r"), ord("l")]))
        assert reward.shape == (2,) and not terminated.any() and not truncated.any()
    finally:
        envs.close()
