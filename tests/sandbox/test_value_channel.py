"""The value channel is exact for standard types (issue 19): tests/attacks/value_channel.py.

Every honest case passes in plain Python (checked here first) and scores 1 through the channel;
every forgery scores 0; the decoder turns hostile payloads into errors or honest values.
"""

from __future__ import annotations

import collections
import enum
import fractions
import sys
import time

import pytest

from llm_gym.rewards.code import code_pass_rate
from llm_gym.sandbox import SandboxPool
from llm_gym.sandbox.wire import MAX_INT_BITS, Ref, decode, encode, from_wire, update_in_place
from tests.attacks.value_channel import FORGED, HONEST

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as pool:
        yield pool


def _score(case: dict, code: str, pool: SandboxPool):
    tests = case["test"] if "test" in case else case["tests"]
    return code_pass_rate(code, tests, entry_point=case.get("entry_point"),
                          prompt=case.get("prompt", ""), test_imports=case.get("test_imports", ()),
                          pool=pool, timeout=TIMEOUT)


def _run_in_plain_python(case: dict) -> None:
    # HumanEval's harness: prompt + completion + test in one namespace, then check(candidate).
    namespace: dict = {"__name__": "plain"}
    exec("\n".join(case.get("test_imports", ())), namespace)
    exec(case.get("prompt", "") + case["code"], namespace)
    import math  # MBPP tests may use math without importing it; the grader binds stdlib names

    namespace.setdefault("math", math)
    if "test" in case:
        exec(case["test"], namespace)
        namespace["check"](namespace[case["entry_point"]])
    else:
        for test in case["tests"]:
            exec(test, dict(namespace))


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_case_passes_in_plain_python(name):
    _run_in_plain_python(HONEST[name])  # the case is a fair one: no exception


@pytest.mark.sandbox
@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_case_scores_one_through_the_channel(name, pool):
    result = _score(HONEST[name], HONEST[name]["code"], pool)
    assert (result.reward, result.verdict) == (1.0, "passed"), result.details


@pytest.mark.sandbox
@pytest.mark.parametrize("name", sorted(FORGED))
def test_forgery_scores_zero(name, pool):
    forgery = FORGED[name]
    task = HONEST[forgery["task"]]
    result = _score(task, forgery["code"], pool)
    assert (result.reward, result.verdict) == (0.0, "failed"), result.details
    assert any(forgery["error"] in e for e in result.details["errors"]), result.details
    honest = _score(task, task["code"], pool)
    assert honest.reward == 1.0, honest.details


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


class Shape(enum.Enum):
    SQUARE = "square"


Pair = collections.namedtuple("Pair", "left right")


def test_round_trips_keep_value_and_type():
    import datetime
    import decimal

    values = [7 ** 6000, -(7 ** 6000), range(0, 2 ** 2000, 2 ** 1990), fractions.Fraction(-7, 3),
              decimal.Decimal("-1.10E+5"), decimal.Decimal("NaN"), Color.GREEN, Pair(1, [2]),
              bytearray(b"\x00a"), collections.Counter("aab"), collections.OrderedDict(b=1, a=2),
              collections.defaultdict(list, a=[1]), collections.deque([1, 2], maxlen=3),
              datetime.date(2024, 2, 29), datetime.timedelta(days=-1, microseconds=5),
              datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
              {1: 2}.keys(), {1: 2}.items()]
    classes = {"Color": Color, "Pair": Pair}
    for value in values:
        back = decode(encode(value), classes)
        assert type(back) is type(value), value
        assert back == value or (back != back and value != value), value
    assert list(decode(encode({1: 3}.values()))) == [3]
    assert decode(encode(collections.defaultdict(list))).default_factory is list


def test_members_and_records_without_the_receivers_class():
    assert type(decode(encode(Color.GREEN))) is int  # a data enum equals its value
    member = decode(encode(Shape.SQUARE, refs := []))
    assert isinstance(member, Ref) and refs == [Shape.SQUARE]  # a plain enum stays opaque
    with pytest.raises(ValueError, match="enum member"):
        decode(encode(Shape.SQUARE))  # without a handle it cannot cross at all
    record = decode(encode(Pair(1, 2)))
    assert record == (1, 2) and record.right == 2 and repr(record) == "Pair(left=1, right=2)"
    assert type(record) is type(decode(encode(Pair(3, 4))))  # one class per name and fields


FORGED_PAYLOADS = {
    "fraction_str_numerator": {"t": "Fraction", "v": ["1", 2]},
    "fraction_zero_denominator": {"t": "Fraction", "v": [1, 0]},
    "fraction_int_subclass_claim": {"t": "Fraction", "v": [{"t": "ref", "v": 0}, 1]},
    "decimal_not_text": {"t": "Decimal", "v": 1.5},
    "decimal_garbage": {"t": "Decimal", "v": "__import__('os')"},
    "decimal_too_long": {"t": "Decimal", "v": "1" * (MAX_INT_BITS + 1)},
    "hex_int_too_wide": {"t": "int", "v": "f" * (MAX_INT_BITS // 4 + 2)},
    "hex_int_not_hex": {"t": "int", "v": "0xzz"},
    "named_tuple_dunder_field": {"t": "namedtuple", "c": ["m", "P"], "v": [["__eq__"], [1]]},
    "named_tuple_private_field": {"t": "namedtuple", "c": ["m", "P"], "v": [["_x"], [1]]},
    "named_tuple_code_field": {"t": "namedtuple", "c": ["m", "P"],
                               "v": [["a=__import__('os')"], [1]]},
    "named_tuple_length_mismatch": {"t": "namedtuple", "c": ["m", "P"], "v": [["a", "b"], [1]]},
    "defaultdict_factory": {"t": "dict", "k": "defaultdict", "f": "eval", "v": []},
    "dict_kind_unknown": {"t": "dict", "k": "UserDict", "v": []},
    "timedelta_overflow": {"t": "timedelta", "v": [10 ** 12, 0, 0]},
    "date_garbage": {"t": "date", "v": "yesterday"},
    "deque_maxlen_text": {"t": "deque", "v": [], "m": "3"},
    "items_not_pairs": {"t": "items", "v": [[1, 2]]},
    "plain_enum_without_handle": {"t": "enum", "c": ["m", "Shape"], "v": "square", "d": False},
}


@pytest.mark.parametrize("name", sorted(FORGED_PAYLOADS))
def test_forged_payloads_are_malformed(name):
    start = time.monotonic()
    with pytest.raises(ValueError):
        from_wire(FORGED_PAYLOADS[name])
    assert time.monotonic() - start < 1.0


def test_claimed_classes_are_looked_up_never_imported_or_called():
    before = set(sys.modules)
    # An importable module the process has not loaded: it stays unloaded.
    assert "antigravity" not in before
    value = from_wire({"t": "enum", "c": ["antigravity", "X"], "v": 1, "d": True})
    assert value == 1 and "antigravity" not in sys.modules
    # A class that is no enum is never called; a non-tuple class is never instantiated.
    assert from_wire({"t": "enum", "c": ["os", "system"], "v": "true", "d": False, "r": 3}) \
        == Ref(3)
    record = from_wire({"t": "namedtuple", "c": ["collections", "OrderedDict"], "v": [["a"], [1]]})
    assert type(record).__bases__ == (tuple,) and record.a == 1
    # The receiver's own class decides which member a value is.
    assert from_wire({"t": "enum", "c": ["x", "Color"], "v": 2, "d": False},
                     {"Color": Color}) is Color.GREEN
    assert from_wire({"t": "enum", "c": ["x", "Color"], "v": 9, "d": True}, {"Color": Color}) == 9


def test_update_in_place_keeps_identities_and_touches_only_builtin_containers():
    rows = [[3, 1], {"k": [2]}, (["t"],), {5}, bytearray(b"a"), collections.deque([1])]
    inner, mapping, in_tuple = rows[0], rows[1], rows[2][0]
    new = [[1, 3], {"k": [0], "j": 1}, (["u"],), {6}, bytearray(b"b"), collections.deque([2]), 7]
    assert update_in_place(rows, new) is rows
    assert rows == new
    assert rows[0] is inner and rows[1] is mapping and rows[2][0] is in_tuple
    ordered = collections.OrderedDict(a=1)
    update_in_place(ordered, collections.OrderedDict(b=2, a=1))
    assert list(ordered.items()) == [("b", 2), ("a", 1)]
    counts = collections.Counter(a=1)
    update_in_place(counts, collections.Counter(a=3))
    assert counts == {"a": 3}
    frozen = ([1], 2)
    assert update_in_place(frozen, ([0], 2)) is frozen and frozen == ([0], 2)
    pairs = [(2, "a"), (1, "b")]
    update_in_place(pairs, [(1, "b"), (2, "a")])  # sorted in place: other tuples in each slot
    assert pairs == [(1, "b"), (2, "a")]
    assert update_in_place((1, 2), (3, 4)) == (3, 4)  # what belongs there; the old one is intact
    assert update_in_place([1], (1,)) == (1,)  # another type: the new value, nothing touched
