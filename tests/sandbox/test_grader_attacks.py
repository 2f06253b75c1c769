"""The grader's own integrity (issue 13): every attack of tests/attacks/grader_attacks.py scores
0 with a named verdict and runs nothing outside the sandbox; honest counterparts score 1."""

from __future__ import annotations

import builtins
import os
import time

import pytest
from conftest import no_live_processes

from llm_gym.rewards.code import code_pass_rate
from llm_gym.sandbox import SandboxPool
from llm_gym.sandbox.grader import CandidateError, _exception
from llm_gym.sandbox.wire import (
    MAX_CHARS,
    MAX_DEPTH,
    MAX_INT_BITS,
    MAX_ITEMS,
    decode,
    encode,
    from_wire,
)
from tests.attacks.grader_attacks import GRADER_ATTACKS, HONEST, TASKS

pytestmark = pytest.mark.sandbox
TIMEOUT = 1.0
MARKER = f"llm_gym_grader_attack_{os.getpid()}"
OUTSIDE = [f"{d}/{MARKER}" for d in ("/tmp", "/var/tmp", "/dev/shm", "/tmp/plant", "")]


@pytest.fixture(scope="module", params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def pool(request):
    """Every test runs on a local pool and again through the Ray scoring actors, whose
    sandbox must contain each attack the same way (all of them: the Ray pass costs seconds)."""
    if request.param == "ray":
        pytest.importorskip("ray", reason="needs the ray extra: pip install 'llm_gym[ray]'")
        yield request.getfixturevalue("scoring_workers").sandbox
        return
    with SandboxPool(workers=2) as pool:
        yield pool


def _score(task_name, completion, pool, timeout=TIMEOUT, **overrides):
    task = TASKS[task_name]
    kwargs = {"entry_point": task.get("entry_point"), "setup_code": task.get("setup_code", ""),
              "prompt": task.get("prompt", ""), **overrides}
    return code_pass_rate(completion, task["tests"], pool=pool, timeout=timeout, **kwargs)


def _new_root_entries():
    # A venv made by the old grader from `from venv.__main__ import f` would be named after its
    # argv (JSON, so it starts with "{") in its cwd, "/".
    return {name for name in os.listdir("/") if name.startswith("{") or MARKER in name}


@pytest.mark.parametrize("name", sorted(GRADER_ATTACKS))
def test_grader_attack_scores_zero_then_honest_scores_one(name, pool):
    attack = GRADER_ATTACKS[name]
    completion = attack.get("completion") or attack["code"].replace("{marker}", MARKER)
    timeout = attack.get("timeout", TIMEOUT)
    before = _new_root_entries()
    start = time.monotonic()
    result = _score(attack["task"], completion, pool, timeout=timeout)
    elapsed = time.monotonic() - start
    assert (result.reward, result.verdict) == (0.0, attack["verdict"]), result.details
    if "error" in attack:
        assert any(attack["error"] in e for e in result.details["errors"]), result.details
    assert elapsed < timeout + 1.5  # nothing hangs, the trainer's own text handling included
    assert [p for p in OUTSIDE if os.path.exists(p)] == []
    assert _new_root_entries() == before
    assert no_live_processes(pool.uids)
    honest = _score(attack["task"], TASKS[attack["task"]]["honest"], pool)
    assert (honest.reward, honest.verdict) == (1.0, "passed"), honest.details


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_solution_scores_one(name, pool):
    task, completion = HONEST[name]
    result = _score(task, completion, pool, timeout=5.0)
    assert (result.reward, result.verdict, result.per_test) == (
        1.0, "passed", [True] * len(result.per_test)), result.details


def test_old_attacks_pass_against_a_candidate_side_helper():
    # The attack is real: with the candidate's encode_shift, the test itself would pass.
    namespace: dict = {}
    exec(GRADER_ATTACKS["helper_identity_38"]["code"], namespace)
    exec(TASKS["shift"]["tests"], namespace)
    namespace["check"](namespace["decode_shift"])


def test_without_the_prompt_a_helper_is_unbound_never_the_candidates(pool):
    result = _score("shift", GRADER_ATTACKS["helper_identity_38"]["code"], pool, prompt="")
    assert (result.reward, result.verdict) == (0.0, "failed")
    assert result.details["errors"] == ["NameError: name 'encode_shift' is not defined"]


def test_assert_list_tests_with_a_prompt_proxy_its_stubs_only(pool):
    # MBPP-style asserts on a HumanEval-style prompt, no entry_point: the prompt's stub is the
    # candidate's to write, its implemented helper stays the task's.
    tests = ["assert decode_shift(encode_shift('hello')) == 'hello'",
             "assert decode_shift(encode_shift('grader')) == 'grader'"]
    for code, reward in ((HONEST["shift_body_only"][1], 1.0),
                         (GRADER_ATTACKS["helper_identity_38"]["code"], 0.0)):
        result = code_pass_rate(code, tests, prompt=TASKS["shift"]["prompt"], pool=pool,
                                timeout=5.0)
        assert result.reward == reward, result.details


def test_grader_runs_under_its_own_limits(pool):
    setup = ("import resource\n"
             "LIMITS = {k: resource.getrlimit(getattr(resource, 'RLIMIT_' + k))[0]\n"
             "          for k in ('AS', 'CPU', 'FSIZE', 'NOFILE')}\n")
    tests = ["assert LIMITS == {'AS': 1 << 30, 'CPU': 3, 'FSIZE': 0, 'NOFILE': 64}, LIMITS",
             "assert add(1, 2) == 3"]
    result = code_pass_rate("def add(a, b):\n    return a + b\n", tests, setup_code=setup,
                            pool=pool, timeout=2.0)
    assert (result.reward, result.verdict) == (1.0, "passed"), result.details


def test_a_prose_prompt_defines_nothing(pool):
    # MBPP's prompt is prose: passing it along changes nothing (it does not compile, so it runs
    # neither in the grader nor before the code).
    task = TASKS["tuple_size"]
    result = code_pass_rate(task["honest"], task["tests"], pool=pool, timeout=5.0,
                            prompt="Write a function to find the size in bytes of a tuple.")
    assert (result.reward, result.verdict) == (1.0, "passed"), result.details


def test_prompt_and_timeout_are_validated():
    with pytest.raises(TypeError, match="prompt"):
        code_pass_rate("x = 1", ["assert x"], prompt=None)
    for timeout in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            code_pass_rate("x = 1", ["assert x"], timeout=timeout)


@pytest.mark.parametrize("name", sorted(n for n, v in vars(builtins).items()
                                        if isinstance(v, type) and issubclass(v, BaseException)))
def test_an_exception_name_from_the_sandbox_is_data(name):
    error = _exception(name, "message")
    kind = getattr(builtins, name)
    if not issubclass(kind, Exception) or issubclass(kind, (StopIteration, StopAsyncIteration)):
        assert type(error) is CandidateError and name in str(error)
    else:
        assert isinstance(error, (kind, CandidateError))
    assert isinstance(error, Exception)
    assert not isinstance(error, (StopIteration, StopAsyncIteration))


def test_unknown_or_odd_exception_names_are_candidate_errors():
    for name in ("Done", "SkipTest", "__import__", "print", None, ["StopIteration"], "x" * 10**6):
        assert type(_exception(name, "m")) is CandidateError


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


OVERSIZED_OR_MALFORMED = {
    "huge_range": ({"t": "range", "v": [0, 10**15, 1]}, "items"),
    "range_past_ssize_t": ({"t": "range", "v": [-10**40, 10**40, 1]}, "malformed"),
    "range_two_ints": ({"t": "range", "v": [0, 5]}, "malformed range"),
    "range_zero_step": ({"t": "range", "v": [0, 5, 0]}, "must not be zero"),
    "ranges_adding_up": ([{"t": "range", "v": [0, MAX_ITEMS // 2 + 1, 1]}] * 2, "items"),
    "huge_iterator": ({"t": "iter", "v": [0] * (MAX_ITEMS + 1)}, "items"),
    "huge_dict": ({"t": "dict", "v": [[[0] * 10, 1]] * (MAX_ITEMS // 10)}, "items"),
    "deep_nesting": (_nested(MAX_DEPTH + 1), "nested deeper"),
    "huge_string": ("x" * (MAX_CHARS + 1), "characters"),
    "strings_adding_up": (["x" * (MAX_CHARS // 2)] * 3, "characters"),
    "huge_int": (1 << (MAX_INT_BITS + 1), "bits"),
    "unhashable_set_item": ({"t": "set", "v": [[1]]}, "unhashable"),
    "dict_triple": ({"t": "dict", "v": [[1, 2, 3]]}, "malformed dict"),
    "dict_body_not_list": ({"t": "dict", "v": {"a": 1}}, "malformed"),
    "complex_from_str": ({"t": "complex", "v": ["1", 2.0]}, "malformed"),
    "pickle_tag": ({"t": "pickle", "v": "x"}, "malformed"),
}


@pytest.mark.parametrize("name", sorted(OVERSIZED_OR_MALFORMED))
def test_decoder_rejects_oversized_values_before_building_them(name):
    payload, message = OVERSIZED_OR_MALFORMED[name]
    start = time.monotonic()
    with pytest.raises(ValueError, match=message):
        from_wire(payload)
    assert time.monotonic() - start < 2.0


def test_decoder_accepts_values_up_to_the_caps():
    assert len(from_wire({"t": "range", "v": [0, MAX_ITEMS, 1]})) == MAX_ITEMS
    assert from_wire(_nested(MAX_DEPTH - 1)) == _nested(MAX_DEPTH - 1)
    value = {(1, 2): [3.5, None, b"\x00", 1j, frozenset({1})], "r": range(3)}
    assert decode(encode(value)) == value
    with pytest.raises(ValueError, match="nested too deep"):
        decode("[" * 100_000)
