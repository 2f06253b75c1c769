"""Reward shaping with plain Gymnasium wrappers: LunarLander with SB3 PPO, then an LLM env.

Part 1 trains SB3 PPO on LunarLander-v3 twice, on the env's own reward and with a
potential-based shaping term (Ng et al., 1999) stacked on it, and evaluates both on the
*unshaped* env. Potential-based shaping cannot change the optimal policy; whether it speeds
learning depends on the potential (LunarLander's reward already contains a similar one).
The default budget is tiny so that the script runs in about a minute; use --timesteps 200000
or more to see PPO land.

Part 2 stacks the same kind of wrappers on llm_gym/Arithmetic-v0 and prints
info["reward_components"] for a few replies typed through the text face.

    python examples/shaping_lunarlander.py --timesteps 200000
"""

from __future__ import annotations

import argparse
import math
import time

import gymnasium as gym
from gymnasium.wrappers import RecordEpisodeStatistics

import llm_gym  # noqa: F401  (registers the llm_gym ids)
from llm_gym.wrappers import (
    FormatBonus,
    LengthPenalty,
    OverlongPenalty,
    PotentialShaping,
    RewardTerms,
    TextInterface,
)

GAMMA = 0.99  # PPO's discount, also the gamma of the potential shaping term


def lander_potential(obs) -> float:
    """Higher near the pad, slow and level: Phi = -100 (distance + speed + |angle|)."""
    x, y, vx, vy, angle = (float(v) for v in obs[:5])
    return -100.0 * (math.hypot(x, y) + math.hypot(vx, vy) + abs(angle))


def make_lander(shaped: bool) -> gym.Env:
    # RecordEpisodeStatistics sits below the shaping, so it logs the env's own return.
    env = RecordEpisodeStatistics(gym.make("LunarLander-v3"))
    if shaped:
        env = PotentialShaping(env, lander_potential, gamma=GAMMA)
    return env


def train_and_evaluate(shaped: bool, timesteps: int, seed: int, eval_episodes: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    torch.set_num_threads(1)  # a 64x64 MLP gains nothing from more threads; they only contend
    start = time.perf_counter()
    model = PPO("MlpPolicy", make_lander(shaped), n_steps=512, batch_size=64, gamma=GAMMA,
                seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=timesteps)
    train_s = time.perf_counter() - start
    eval_env = Monitor(gym.make("LunarLander-v3"))  # always judged on the unshaped reward
    eval_env.reset(seed=seed + 1000)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes,
                                deterministic=True)
    return {"variant": "potential-shaped" if shaped else "baseline", "mean": mean, "std": std,
            "train_s": train_s}


def lunar_lander_experiment(timesteps: int, seed: int, eval_episodes: int) -> None:
    print(f"PPO on LunarLander-v3, {timesteps} timesteps each, evaluated on the env's reward "
          f"over {eval_episodes} episodes")
    print(f"{'variant':<18} {'eval return':>18} {'train s':>8}")
    for shaped in (False, True):
        row = train_and_evaluate(shaped, timesteps, seed, eval_episodes)
        print(f"{row['variant']:<18} {row['mean']:>9.1f} ± {row['std']:<6.1f} "
              f"{row['train_s']:>8.1f}")


def llm_experiment() -> None:
    print("\nThe same kind of stack on llm_gym/Arithmetic-v0 (replies typed via TextInterface):")
    env = gym.make("llm_gym/Arithmetic-v0", max_new_tokens=24)
    env = RewardTerms(env, response_terms={"short": lambda text: float(len(text) <= 4)},
                      weights={"short": 0.05})
    env = FormatBonus(env, r"-?\d+", bonus=0.1, whole=True)
    env = LengthPenalty(env, coef=0.002)
    env = OverlongPenalty(env, cache_tokens=8, weight=0.5)
    env = TextInterface(env)
    env.reset(seed=0, options={"index": 0})
    answer = env.unwrapped.task.answer
    for reply in [str(answer), f"It is {answer}.", str(answer + 1),
                  f"Let me think... it is {answer}"]:
        env.reset(seed=0, options={"index": 0})
        _, reward, terminated, truncated, info = env.step(reply)
        parts = ", ".join(f"{k}={v:+.3f}" for k, v in info["reward_components"].items())
        print(f"  {reply!r:<34} reward {reward:+.3f}  ({parts})"
              + ("  [cut at the token budget]" if truncated else ""))
    print(f"  wrapper stack in env.spec: "
          f"{[w.name for w in env.spec.additional_wrappers]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=5_000, help="PPO steps per variant")
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-lander", action="store_true", help="only run the LLM part")
    args = parser.parse_args()
    if not args.skip_lander:
        lunar_lander_experiment(args.timesteps, args.seed, args.eval_episodes)
    llm_experiment()


if __name__ == "__main__":
    main()
