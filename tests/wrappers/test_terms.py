"""Reward terms: each rule is one object that the single wrapper and its vector twin both hold."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.wrappers import shaping, vector
from llm_gym.wrappers.response import Response, Step
from llm_gym.wrappers.shaping import PotentialTerm, WeightedTerms

ARITH = "llm_gym/Arithmetic-v0"
TWINS = {
    "LengthPenalty": {"coef": 0.01},
    "PotentialShaping": {"potential": lambda o: float(np.count_nonzero(o["agent_mask"]))},
    "RewardTerms": {"terms": {"a": lambda *_: 1.0}, "response_terms": {"n": len}},
    "OverlongPenalty": {"max_tokens": 8},
    "FormatBonus": {"pattern": r"\d+"},
}


@pytest.mark.parametrize("name", TWINS)
def test_both_twins_hold_the_same_term_and_borrow_no_methods(name):
    single = getattr(shaping, name)(gym.make(ARITH), **TWINS[name])
    batched = getattr(vector, name)(
        gym.make_vec(ARITH, 2, vectorization_mode="vector_entry_point"), **TWINS[name])
    assert type(single.term) is type(batched.term)
    assert vars(single.term).keys() == vars(batched.term).keys()
    # Composition, not borrowing: no function of a single-env wrapper sits on the vector class.
    for cls in type(batched).__mro__:
        for attr, value in vars(cls).items():
            assert getattr(value, "__module__", None) != shaping.__name__, (cls, attr)


def _step(obs, terminated=False, truncated=False, reply=None):
    return Step(obs, 0, 0.0, terminated, truncated, {}, reply)


def test_potential_term_hands_its_state_back():
    term = PotentialTerm(lambda o: float(o), gamma=0.5)
    phi0 = term.start(4.0)
    scored = term(phi0, _step(2.0))
    assert scored.terms == {"potential": 0.5 * 2.0 - 4.0} and scored.state == 2.0
    assert term(2.0, _step(9.0, truncated=True))[:2] == ({"potential": 0.5 * 9.0 - 2.0}, None)
    assert term(2.0, _step(9.0, terminated=True)).terms == {"potential": -2.0}  # Phi(end) = 0
    with pytest.raises(RuntimeError, match="reset"):
        term(None, _step(1.0))


def test_weighted_terms_name_weigh_and_check_every_term():
    term = WeightedTerms({"step": lambda *_: 2.0}, {"chars": len},
                         weights={"env": 0.5, "chars": -1.0}, name_prefix="x/")
    assert term.names == ("x/step", "x/chars") and term.scale == 0.5
    assert term.reads_reply and not term.replies_only  # a step term runs every step
    reply = Response("abc", (), 4, True)
    assert term(None, _step(None, reply=reply)).terms == {"x/step": 2.0, "x/chars": -3.0}
    assert term(None, _step(None)).terms == {"x/step": 2.0, "x/chars": 0.0}
    broken = WeightedTerms({"nan": lambda *_: float("nan")})
    with pytest.raises(ValueError, match="'nan'.*finite"):
        broken(None, _step(None))
    # The vector twin's call: a row whose term raised gets its error, the others their terms.
    flaky = WeightedTerms({"inv": lambda o, *_: 1 / o})
    out = flaky.rows([None, None], [_step(0), _step(2)])
    assert isinstance(out[0], ZeroDivisionError) and out[1].terms == {"inv": 0.5}
