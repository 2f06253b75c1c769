"""A Hypothesis state machine per env: reset, valid and invalid steps, close, clone and replay."""

from __future__ import annotations

import copy
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from llm_gym.envs.left_right_text import LeftRightTextEnv
from llm_gym.testing import assert_same, bad_actions

SETTINGS = settings(max_examples=20, stateful_step_count=30, deadline=None)
ORDER_ERRORS = (RuntimeError, gym.error.ResetNeeded)


class EnvMachine(RuleBasedStateMachine):
    """Drives one env; mirrors the episode (seed and actions) so it can replay it anywhere."""

    def __init__(self, make: Callable[[], gym.Env]) -> None:
        super().__init__()
        self.make = make
        self.env = make()
        self.vocab = int(self.env.action_space.n)
        base = self.env.unwrapped
        self.tokenizer = getattr(base, "tokenizer", None)
        self.words = list(getattr(base, "action_words", ())) or ["42", "7", "x"]
        self.seed: int | None = None
        self.actions: list[int] = []
        self.obs = None
        self.done = True  # no episode to step until a reset

    # ------------------------------------------------------------------ rules
    @rule(seed=st.integers(0, 2**16))
    def reset(self, seed):
        self.obs, _ = self.env.reset(seed=seed)
        self.seed, self.actions, self.done = seed, [], False

    @precondition(lambda self: not self.done)
    @rule(data=st.data())
    def step_valid(self, data):
        self._step(data.draw(st.integers(0, self.vocab - 1), label="action"))

    @precondition(lambda self: not self.done and self.tokenizer is not None)
    @rule(data=st.data())
    def step_reply(self, data):
        word = data.draw(st.sampled_from(self.words), label="reply")
        for token in [*self.tokenizer.encode(word), self.tokenizer.eos_token_id]:
            self._step(token)
            if self.done:
                break

    @precondition(lambda self: not self.done)
    @rule(data=st.data())
    def step_invalid(self, data):
        name, action = data.draw(st.sampled_from(bad_actions(self.vocab)), label="bad action")
        twin = copy.deepcopy(self.env)
        try:
            self.env.step(action)
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError(f"bad action {name} ({action!r}) was accepted")
        token = data.draw(st.integers(0, self.vocab - 1), label="next action")
        expected = twin.step(token)
        assert_same(self._step(token), expected, f"step after bad action {name}")

    @precondition(lambda self: self.done)
    @rule(data=st.data())
    def step_without_episode(self, data):
        token = data.draw(st.integers(0, self.vocab - 1), label="action")
        try:
            self.env.step(token)
        except ORDER_ERRORS:
            return
        raise AssertionError("step without a running episode did not raise")

    @rule()
    def close(self):
        self.env.close()
        self.env.close()  # closing twice is harmless
        self.env, self.done = self.make(), True

    @precondition(lambda self: not self.done)
    @rule(data=st.data())
    def clone_and_replay(self, data):
        replayed = self.make()
        obs, _ = replayed.reset(seed=self.seed)
        for action in self.actions:
            obs, *_ = replayed.step(action)
        assert_same(obs, self.obs, "observation of the replayed episode")
        clone = copy.deepcopy(self.env)
        tokens = data.draw(st.lists(st.integers(0, self.vocab - 1), max_size=5), label="tokens")
        if self.tokenizer is not None:  # then end the turn, so the copy must score it too
            word = data.draw(st.sampled_from(self.words), label="reply")
            tokens += [*self.tokenizer.encode(word), self.tokenizer.eos_token_id]
        for token in tokens:
            expected = clone.step(token)
            assert_same(self._step(token), expected, "step of the clone")
            if self.done:
                break

    # ------------------------------------------------------------------ invariants
    @invariant()
    def observation_is_valid(self):
        if self.obs is None:
            return
        assert self.env.observation_space.contains(self.obs)
        if isinstance(self.obs, dict):
            assert np.all(self.obs["agent_mask"] <= self.obs["attention_mask"])
            length = int(self.obs["attention_mask"].sum())
            assert self.obs["attention_mask"][:length].all()  # left-aligned, no holes

    def _step(self, action: int):
        step = self.env.step(action)
        self.obs, self.done = step[0], bool(step[2] or step[3])
        self.actions.append(action)
        return step


def test_state_machine(registered_env_id, make_env, trace_length):
    pristine = make_env(registered_env_id)  # deep copies skip reloading datasets

    def make() -> gym.Env:
        return copy.deepcopy(pristine)

    examples = trace_length(registered_env_id, SETTINGS.max_examples)
    run_state_machine_as_test(lambda: EnvMachine(make),
                              settings=settings(SETTINGS, max_examples=examples))


class _ForgetsTheTurn(LeftRightTextEnv):
    """Broken on purpose: a deep copy loses where the current turn started."""

    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        clone._buf = copy.deepcopy(self._buf, memo)
        clone._buf.turn_start[clone._row] = 0
        return clone


# The bug only shows when a clone is taken in the second turn or later, which a random run of 20
# examples missed about one time in ten (measured: 6 of 60), and shrinking the counterexample
# once ran past 120 s. Derandomized with no example database, the search is the same on every
# run: it either always finds the bug or never does. No shrink phase: the test only needs the
# failure, not its smallest form. 200 examples leave margin should a Hypothesis upgrade change
# the fixed sequence (each random example finds the bug about one time in ten).
CATCH_SETTINGS = settings(SETTINGS, max_examples=200, derandomize=True, database=None,
                          phases=(Phase.explicit, Phase.generate))


def test_state_machine_catches_a_broken_clone():
    with pytest.raises(AssertionError, match="differs"):
        run_state_machine_as_test(lambda: EnvMachine(_ForgetsTheTurn), settings=CATCH_SETTINGS)
