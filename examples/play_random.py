"""Basic usage: make llm_gym envs, step them one token at a time, batch them, talk to them.

    python examples/play_random.py

1. A random token agent on llm_gym/Arithmetic-v0 (it almost never answers: a reply ends only
   when it happens to emit the end-of-turn token).
2. The same env as a batched vector env (``gym.make_vec`` with the vector entry point).
3. The text face: an "oracle" that computes the answer scores 1 on the held-out test split,
   a constant guess scores what a constant guess deserves.
4. The classic LeftRight-v0 walk and its token twin LeftRightText-v0 give the same return for
   the same actions.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import llm_gym  # noqa: F401  (registers the llm_gym ids)
from llm_gym.wrappers import TextInterface


def random_tokens(episodes: int, seed: int) -> None:
    env = gym.make("llm_gym/Arithmetic-v0", render_mode="ansi")
    env.action_space.seed(seed)
    returns, truncations = [], 0
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
        returns.append(total)
        truncations += int(truncated)
    print(f"1. random tokens, {episodes} episodes: mean return {np.mean(returns):.2f}, "
          f"{truncations} cut at the {env.unwrapped.max_new_tokens}-token budget")
    print("   last conversation:", repr(env.render()[-60:]))


def vector_env(num_envs: int, steps: int, seed: int) -> None:
    envs = gym.make_vec("llm_gym/Arithmetic-v0", num_envs, vectorization_mode="vector_entry_point")
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    finished = 0
    for _ in range(steps):
        actions = rng.integers(envs.single_action_space.n, size=num_envs)
        _, rewards, terminated, truncated, _ = envs.step(actions)
        finished += int(np.sum(terminated | truncated))
    print(f"2. vector env: {num_envs} envs x {steps} steps, {finished} episodes finished, "
          f"obs['input_ids'] batch shape {envs.observation_space['input_ids'].shape}")
    envs.close()


def text_face(episodes: int, seed: int) -> None:
    env = TextInterface(gym.make("llm_gym/Arithmetic-v0", split="test", digits=2,
                                 operations="+-*", num_terms=3, allow_negative=True))
    oracle = guess = 0.0
    for index in range(episodes):
        text, info = env.reset(seed=seed, options={"index": index})
        task = env.unwrapped.task
        oracle += env.step(str(task.answer))[1]
        env.reset(options={"index": index})
        guess += env.step("0")[1]
    print(f"3. text face on {episodes} held-out questions: oracle accuracy "
          f"{oracle / episodes:.2f}, always-'0' accuracy {guess / episodes:.2f}")
    print("   last prompt:", repr(text))


def twin_faces(seed: int) -> None:
    classic = gym.make("llm_gym/LeftRight-v0")
    text = TextInterface(gym.make("llm_gym/LeftRightText-v0"))
    classic.reset(seed=seed)
    text.reset(seed=seed)
    words = ["stay", "right", "right"]
    classic_return = sum(classic.step(["left", "stay", "right"].index(w))[1] for w in words)
    text_return = sum(text.step(w)[1] for w in words)
    print(f"4. LeftRight classic return {classic_return:g}, token twin return {text_return:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random_tokens(args.episodes, args.seed)
    vector_env(8, 64, args.seed)
    text_face(args.episodes, args.seed)
    twin_faces(args.seed)


if __name__ == "__main__":
    main()
