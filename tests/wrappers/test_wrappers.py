"""Reward-shaping wrappers on classic envs (CartPole, LunarLander) and token envs."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.wrappers import (
    FormatBonus,
    LengthPenalty,
    OverlongPenalty,
    PotentialShaping,
    RewardTerms,
    TextInterface,
    last_response,
)


def run_episode(env: gym.Env, seed: int, actions=None, max_steps: int = 2000):
    """Play seeded random (or given) actions; return rewards, infos, first obs, flags."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    rewards, infos, terminated, truncated = [], [], False, False
    for k in range(max_steps):
        action = actions[k] if actions is not None else env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        infos.append(info)
        if terminated or truncated:
            break
    return rewards, infos, terminated, truncated


def lander_potential(obs) -> float:
    x, y, vx, vy, angle = obs[:5]
    return float(-100 * math.hypot(x, y) - 100 * math.hypot(vx, vy) - 100 * abs(angle))


def token_reply(env: gym.Env, text: str, eos: bool = True):
    tok = env.unwrapped.tokenizer
    out = None
    for t in tok.encode(text) + ([tok.eos_token_id] if eos else []):
        out = env.step(t)
        if out[2] or out[3]:
            break
    return out


# ---------------------------------------------------------------- potential shaping
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_potential_shaping_offsets_terminated_return_by_minus_phi0_lunarlander(seed):
    base, _, terminated, _ = run_episode(gym.make("LunarLander-v3"), seed)
    assert terminated  # random landers crash well before the 1000-step limit
    shaped_env = PotentialShaping(gym.make("LunarLander-v3"), lander_potential, gamma=1.0)
    shaped, infos, _, _ = run_episode(shaped_env, seed)
    phi0 = lander_potential(gym.make("LunarLander-v3").reset(seed=seed)[0])
    assert len(shaped) == len(base)
    assert sum(shaped) == pytest.approx(sum(base) - phi0, abs=1e-6)
    assert sum(i["reward_components"]["potential"] for i in infos) == pytest.approx(-phi0)


def test_potential_shaping_keeps_phi_on_truncation_and_uses_gamma():
    potential = lambda o: float(o[0] * 10 + o[2])  # noqa: E731
    env = PotentialShaping(TimeLimit(gym.make("CartPole-v1"), 3), potential, gamma=0.9)
    obs0, _ = env.reset(seed=3)
    phis = [potential(obs0)]
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(1)
        phis.append(potential(obs))
        expected = 0.9 * phis[-1] - phis[-2]
        assert info["reward_components"]["potential"] == pytest.approx(expected)
        assert reward == pytest.approx(1.0 + expected)
    assert truncated and not terminated  # the last state kept its potential
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_potential_shaping_on_token_env_gamma_one():
    # Phi = characters the agent has written so far: a dense "keep writing" signal whose total
    # must vanish (Phi(s0) = 0) on a terminated episode.
    def written(obs):
        return float(np.count_nonzero(obs["agent_mask"]))

    env = PotentialShaping(gym.make("llm_gym/Arithmetic-v0"), written, gamma=1.0)
    env.reset(seed=0, options={"index": 1})
    answer = env.unwrapped.task.answer
    tok = env.unwrapped.tokenizer
    total, shaped = 0.0, []
    for t in tok.encode(f"{answer}") + [tok.eos_token_id]:
        _, reward, terminated, _, info = env.step(t)
        total += reward
        shaped.append(info["reward_components"]["potential"])
    assert terminated and total == pytest.approx(1.0)  # env reward 1, shaping sums to -Phi(s0)=0
    assert shaped[:-1] == [1.0] * (len(shaped) - 1)  # each token raised Phi by one ...
    assert shaped[-1] == -(len(shaped) - 1)  # ... and the terminal state gave it all back


# ---------------------------------------------------------------- reward terms
def test_reward_terms_weighted_sum_and_components_sum_to_reward():
    env = RewardTerms(
        gym.make("CartPole-v1"),
        {"centered": lambda o, *_: -abs(o[0]), "pushed_left": lambda o, a, *_: float(a == 0)},
        weights={"env": 0.5, "centered": 2.0},
    )
    obs, _ = env.reset(seed=0)
    obs2, reward, *_, info = env.step(0)
    comps = info["reward_components"]
    assert comps == pytest.approx({"env": 0.5, "centered": -2 * abs(obs2[0]), "pushed_left": 1.0})
    assert reward == pytest.approx(sum(comps.values()))


def test_stacked_wrappers_keep_the_sum_and_show_in_spec():
    env = RewardTerms(LengthPenalty(PotentialShaping(gym.make("LunarLander-v3"),
                                                     lander_potential), coef=0.5),
                      {"alive": lambda *_: 0.1}, weights={"env": 2.0})
    _, infos, *_ = run_episode(env, 0, max_steps=20)
    for info in infos:
        assert set(info["reward_components"]) == {"env", "potential", "length_penalty", "alive"}
        assert info["reward_components"]["length_penalty"] == -1.0  # scaled by the env weight
    names = [w.name for w in env.spec.additional_wrappers]
    assert names[-3:] == ["PotentialShaping", "LengthPenalty", "RewardTerms"]


def test_record_episode_statistics_below_shaping_logs_the_unshaped_return():
    base, _, _, _ = run_episode(gym.make("LunarLander-v3"), 5)
    env = LengthPenalty(RecordEpisodeStatistics(gym.make("LunarLander-v3")), coef=1.0)
    shaped, infos, _, _ = run_episode(env, 5)
    assert infos[-1]["episode"]["r"] == pytest.approx(sum(base), abs=1e-4)
    assert sum(shaped) == pytest.approx(sum(base) - len(base), abs=1e-4)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"terms": {"env": lambda *_: 0.0}}, "not 'env'"),
    ({"terms": {"a": lambda *_: 0.0}, "weights": {"b": 1.0}}, "unknown terms"),
])
def test_reward_terms_rejects_bad_names(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RewardTerms(gym.make("CartPole-v1"), **kwargs)


def test_a_failing_term_ends_the_episode_with_a_counted_error_naming_it(caplog):
    env = RewardTerms(gym.make("CartPole-v1"), {"broken": lambda *_: float("nan")})
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(0)
    assert terminated and reward == 1.0  # the env's own reward, finite
    assert info["reward_error"] == "wrapper:RewardTerms:ValueError"
    assert "broken" in caplog.text
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=1)
    assert env.step(0)[2] is True  # still broken, still counted


def test_response_terms_see_each_turn_of_a_multi_turn_env():
    seen = []

    def record(text):
        seen.append(text)
        return len(text)

    env = RewardTerms(gym.make("llm_gym/LeftRightText-v0"), response_terms={"chars": record},
                      weights={"chars": 0.01})
    env.reset(seed=0)
    _, r1, *_, i1 = token_reply(env, "stay")
    _, r2, *_, i2 = token_reply(env, "right")
    assert seen == ["stay", "right"]  # called once per finished turn, with the reply text
    assert i1["reward_components"] == pytest.approx({"env": -1.0, "chars": 0.04})
    assert r2 == pytest.approx(-5.0 + 0.05)


# ---------------------------------------------------------------- response wrappers
@pytest.mark.parametrize(("reply", "whole", "bonus"), [
    ("<answer>7</answer>", False, 0.5),
    ("think <answer>7</answer>", False, 0.5),
    ("<answer>7</answer><answer>8</answer>", False, 0.0),  # duplicated tags earn nothing
    ("7", False, 0.0),
    ("<answer>7</answer>", True, 0.5),
    ("x <answer>7</answer>", True, 0.0),
])
def test_format_bonus(reply, whole, bonus):
    env = FormatBonus(gym.make("llm_gym/Arithmetic-v0", max_new_tokens=48),
                      r"<answer>-?\d+</answer>", bonus=0.5, whole=whole)
    env.reset(seed=0)
    *_, info = token_reply(env, reply)
    assert info["reward_components"]["format_bonus"] == bonus


def test_length_penalty_per_token_and_overlong_soft_zone():
    env = OverlongPenalty(LengthPenalty(gym.make("llm_gym/Arithmetic-v0"), coef=0.01),
                          max_tokens=8, cache_tokens=4)
    assert [env.penalty(n) for n in (0, 4, 5, 6, 8, 9)] == [0, 0, -0.25, -0.5, -1, -1]
    for reply, overlong in [("7", 0.0), ("  7", 0.0), ("     7", -0.75)]:
        env.reset(seed=0)
        *_, info = token_reply(env, reply)
        comps = info["reward_components"]
        assert comps["overlong_penalty"] == overlong
        assert comps["length_penalty"] == -0.01  # the last step's token
    env.reset(seed=0)
    _, _, terminated, truncated, info = token_reply(env, "1" * 40, eos=False)  # cut at 16 tokens
    assert truncated and info["reward_components"]["overlong_penalty"] == -1.0


def test_response_wrappers_refuse_classic_envs():
    for make in (lambda e: FormatBonus(e, "x"), lambda e: OverlongPenalty(e, 8),
                 lambda e: RewardTerms(e, response_terms={"n": len})):
        with pytest.raises(TypeError, match="token observation"):
            make(gym.make("CartPole-v1"))


def test_last_response_strips_end_of_turn_and_reports_budget_cut():
    env = gym.make("llm_gym/Arithmetic-v0", max_new_tokens=4)
    tok = env.unwrapped.tokenizer
    env.reset(seed=0)
    obs, *_ = token_reply(env, "42")
    response = last_response(obs, tok)
    assert (response.text, response.num_generated, response.finished) == ("42", 3, True)
    env.reset(seed=0)
    obs, *_ = token_reply(env, "123456", eos=False)
    response = last_response(obs, tok)
    assert (response.text, response.num_generated, response.finished) == ("1234", 4, False)


def test_text_face_sums_shaped_components_like_the_token_env():
    def stack():
        return FormatBonus(LengthPenalty(gym.make("llm_gym/LeftRightText-v0"), 0.01),
                           "^(left|stay|right)$")

    token_env, text_env = stack(), TextInterface(stack())
    token_env.reset(seed=0)
    text_env.reset(seed=0)
    tok = token_env.unwrapped.tokenizer
    for reply in ["stay", "jump", "right"]:
        token_total, token_components = 0.0, {}
        for t in tok.encode(reply) + [tok.eos_token_id]:
            *_, reward, _, _, info = token_env.step(t)
            token_total += reward
            for name, value in info["reward_components"].items():
                token_components[name] = token_components.get(name, 0.0) + value
        _, text_reward, *_, info = text_env.step(reply)
        assert text_reward == pytest.approx(token_total)
        assert info["reward_components"] == pytest.approx(token_components)
        tokens = len(reply) + 1
        assert info["reward_components"]["length_penalty"] == pytest.approx(-0.01 * tokens)
        assert info["reward_components"]["format_bonus"] == (0.0 if reply == "jump" else 0.1)
