"""One batched, guarded scoring path: every row that ends a turn is scored in one call."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from conftest import GSM8K_ROWS

import llm_gym  # noqa: F401
from llm_gym.envs.math import MathEnv
from llm_gym.token_env import TokenEnv, TurnResult
from llm_gym.vector import row_info


def _gsm8k(num_envs: int):
    envs = gym.make_vec("llm_gym/GSM8K-v0", num_envs, vectorization_mode="vector_entry_point",
                        autoreset_mode="Disabled", dataset=GSM8K_ROWS, max_new_tokens=16)
    envs.reset(seed=0, options={"index": list(range(num_envs))})
    return envs


def _answer_all(envs, texts):
    """Each row writes its reply; returns rewards, terminated and each row's last info."""
    tok = envs.unwrapped.tokenizer
    ids = [tok.encode(t) + [tok.eos_token_id] for t in texts]
    rewards, terminated = np.zeros(len(texts)), np.zeros(len(texts), dtype=bool)
    infos = [{} for _ in texts]
    for step in range(max(map(len, ids))):
        _, reward, term, trunc, info = envs.step(
            np.array([row[min(step, len(row) - 1)] for row in ids]))
        rewards += reward
        terminated |= term
        for i in np.flatnonzero(term | trunc):
            infos[i] = row_info(info, int(i))
    return rewards, terminated, infos


def test_rows_ending_together_are_graded_in_one_call(monkeypatch):
    calls = []
    original = MathEnv.score_responses

    def counting(self, indices, responses):
        calls.append(len(responses))
        return original(self, indices, responses)

    monkeypatch.setattr(MathEnv, "score_responses", counting)
    envs = _gsm8k(3)
    rewards, terminated, infos = _answer_all(envs, ["#### 7", "#### 1", "#### 5"])
    assert calls == [3]  # one grading call for the three replies that ended together
    assert terminated.all() and rewards.tolist() == [1.0, 0.0, 0.0]
    assert [info["verdict"] for info in infos] == ["correct", "wrong", "wrong"]


def test_a_failing_batch_is_scored_row_by_row_and_failures_are_counted(monkeypatch):
    def broken_batch(self, turns):
        raise RuntimeError("pool down")

    def flaky(self, response, response_ids, finished):
        if response == "#### 1":
            return TurnResult(reward=None)
        if response == "#### 2":
            raise ValueError("grader crashed")
        return TurnResult(reward=1.0, info={"success": True})

    monkeypatch.setattr(MathEnv, "end_turns", broken_batch)
    monkeypatch.setattr(MathEnv, "end_turn", flaky)
    envs = _gsm8k(3)
    rewards, terminated, infos = _answer_all(envs, ["#### 7", "#### 1", "#### 2"])
    assert terminated.all() and np.isfinite(rewards).all()
    assert rewards.tolist() == [1.0, 0.0, 0.0]
    errors = [info.get("reward_error") for info in infos]
    assert errors == [None, "none", "exception:ValueError"]


def test_the_default_end_turns_calls_each_envs_end_turn():
    class Echo(TokenEnv):
        def sample_task(self, index):
            from llm_gym.token_env import Task

            return Task(messages=[{"role": "user", "content": "hi"}], index=index)

        def end_turn(self, response, response_ids, finished):
            return TurnResult(reward=float(len(response)))

    from llm_gym.vector import TokenVectorEnv

    envs = TokenVectorEnv(Echo, 2, autoreset_mode="Disabled", max_length=64, max_new_tokens=8)
    envs.reset(seed=0)
    rewards, *_ = _answer_all(envs, ["abc", "a"])
    assert rewards.tolist() == [3.0, 1.0]
