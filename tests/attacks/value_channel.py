"""The value channel between grader and sandbox (issue 19), as data: honest programs and forgeries.

Each honest case is a task whose tests pass in plain Python with its candidate — tests run in the
same process as the code, as a reader would check them — and that scored 0 through the channel
before issue 19: ints past CPython's 4,300-digit cap, standard types the tests compare with
(``Fraction``, ``Decimal``, enums, named tuples, dict views, ``bytearray``, ``Counter``,
``deque``, dates) and arguments a call changes in place. Each must now score 1.

Each forgery claims one of those types, or forges what a call left in its arguments, and must
score 0 (verdict ``failed``; ``error`` is a piece of the test error). A forgery that rewrites
the sandbox's own encoder (``_answer``'s globals) shows the worst a program can do: send any
JSON it likes, which the grader rebuilds as at most an honest value of the claimed type.

Keys of a case: ``code``, ``tests`` (MBPP asserts) or ``test`` + ``entry_point`` (HumanEval),
optionally ``prompt`` and ``test_imports``.
"""

COLOR_PROMPT = '''from enum import IntEnum


class Color(IntEnum):
    RED = 1
    GREEN = 2


def parse_color(name: str) -> Color:
    """The Color called name, in any case.
    >>> parse_color("red")
    <Color.RED: 1>
    """
'''
POINT_PROMPT = '''from typing import NamedTuple


class Point(NamedTuple):
    x: float
    y: float

    def norm1(self) -> float:
        return abs(self.x) + abs(self.y)


def midpoint(a: Point, b: Point) -> Point:
    """The point halfway between a and b.
    >>> midpoint(Point(0, 0), Point(2, 4))
    Point(x=1.0, y=2.0)
    """
'''
REVERSE_PROMPT = '''def reverse_in_place(xs: list) -> None:
    """Reverse xs in place; return nothing.
    >>> xs = [1, 2, 3]
    >>> reverse_in_place(xs)
    >>> xs
    [3, 2, 1]
    """
'''
_HARMONIC = ("from fractions import Fraction\n"
             "def harmonic(n):\n"
             "    return sum((Fraction(1, k) for k in range(1, n + 1)), Fraction(0))\n")
_FRACTION_IMPORTS = ["from fractions import Fraction"]

HONEST = {
    # Ints: CPython refuses decimal text past 4,300 digits; 7**6000 has 5,071.
    "big_int_result": {"code": "def power(b, e):\n    return b ** e\n",
                       "tests": ["assert power(7, 6000) == 7 ** 6000",
                                 "assert power(-3, 9001) == -3 ** 9001"]},
    "big_int_argument": {"code": "def bits(n):\n    return n.bit_length()\n",
                         "tests": ["assert bits(7 ** 6000) == (7 ** 6000).bit_length()"]},
    "big_factorial": {"code": ("def factorial(n):\n    out = 1\n"
                               "    for k in range(2, n + 1):\n        out *= k\n"
                               "    return out\n"),
                      "tests": ["assert factorial(2000) == math.factorial(2000)"]},
    # Numbers of the standard library.
    "fraction_result": {"code": _HARMONIC, "test_imports": _FRACTION_IMPORTS,
                        "tests": ["assert harmonic(3) == Fraction(11, 6)",
                                  "assert type(harmonic(4)) is Fraction",
                                  "assert harmonic(1).denominator == 1"]},
    "fraction_argument": {"code": "def double(q):\n    return q * 2\n",
                          "test_imports": _FRACTION_IMPORTS,
                          "tests": ["assert double(Fraction(1, 3)) == Fraction(2, 3)"]},
    "decimal_result": {"code": ("from decimal import Decimal\n"
                                "def money(a, b):\n    return Decimal(a) + Decimal(b)\n"),
                       "test_imports": ["from decimal import Decimal"],
                       "tests": ["assert money('0.10', '0.20') == Decimal('0.30')",
                                 "assert str(money('1.10', '2.20')) == '3.30'"]},
    # Enums: the task's own class, a stdlib one, the candidate's own data enums.
    "task_int_enum": {"prompt": COLOR_PROMPT, "entry_point": "parse_color",
                      "code": "    return Color[name.upper()]\n",
                      "test": ("def check(candidate):\n"
                               "    assert candidate('red') is Color.RED\n"
                               "    assert candidate('Green') == 2\n")},
    "task_enum_argument": {"prompt": COLOR_PROMPT, "tests": [
                               "assert next_color(Color.RED) is Color.GREEN",
                               "assert next_color(Color.GREEN) is Color.RED"],
                           "code": ("def next_color(c):\n"
                                    "    assert isinstance(c, Color), type(c)\n"
                                    "    return Color.GREEN if c is Color.RED else Color.RED\n")},
    "candidate_int_enum": {"code": ("from enum import IntEnum\n"
                                    "class Level(IntEnum):\n    LOW = 1\n    HIGH = 2\n"
                                    "def level(x):\n"
                                    "    return Level.HIGH if x > 10 else Level.LOW\n"),
                           "tests": ["assert level(11) == 2", "assert level(3) + 1 == 2"]},
    "candidate_str_enum": {"code": ("from enum import StrEnum\n"
                                    "class Suit(StrEnum):\n    HEARTS = 'hearts'\n"
                                    "def suit_of(c):\n    return Suit.HEARTS\n"),
                           "tests": ["assert suit_of('h') == 'hearts'"]},
    "stdlib_enum": {"code": ("from http import HTTPStatus\n"
                             "def status(found):\n"
                             "    return HTTPStatus.OK if found else HTTPStatus.NOT_FOUND\n"),
                    "test_imports": ["from http import HTTPStatus"],
                    "tests": ["assert status(False) is HTTPStatus.NOT_FOUND",
                              "assert status(True) == 200"]},
    # Named tuples: the task's class (with a method), the candidate's own.
    "task_named_tuple": {"prompt": POINT_PROMPT, "entry_point": "midpoint",
                         "code": "    return Point((a.x + b.x) / 2, (a.y + b.y) / 2)\n",
                         "test": ("def check(candidate):\n"
                                  "    m = candidate(Point(0, 0), Point(2, 4))\n"
                                  "    assert m == Point(1.0, 2.0) and m.norm1() == 3.0\n"
                                  "    assert type(m) is Point\n")},
    "candidate_named_tuple": {"code": ("from collections import namedtuple\n"
                                       "Span = namedtuple('Span', 'start end')\n"
                                       "def span(xs):\n"
                                       "    return Span(min(xs), max(xs))\n"),
                              "tests": ["assert span([3, 1, 2]) == (1, 3)",
                                        "assert span([5]).end == 5",
                                        "assert span([1, 2])._asdict() == "
                                        "{'start': 1, 'end': 2}"]},
    # Dict views compare as sets (keys, items) or have a length (values).
    "dict_keys": {"code": "def keys_of(d):\n    return d.keys()\n",
                  "tests": ["assert keys_of({1: 'a', 2: 'b'}) == {1, 2}",
                            "assert keys_of({1: 0}) & {1, 5} == {1}"]},
    "dict_items": {"code": "def items_of(d):\n    return d.items()\n",
                   "tests": ["assert items_of({1: 2}) == {(1, 2)}"]},
    "dict_values": {"code": "def values_of(d):\n    return d.values()\n",
                    "tests": ["assert len(values_of({1: 3, 2: 1})) == 2",
                              "assert sorted(values_of({1: 3, 2: 1})) == [1, 3]"]},
    # Other containers of the standard library.
    "bytearray_result": {"code": "def upper(b):\n    return bytearray(b).upper()\n",
                         "tests": ["assert upper(b'ab') == b'AB'",
                                   "assert isinstance(upper(b'x'), bytearray)"]},
    "counter_result": {"code": ("from collections import Counter\n"
                                "def letters(s):\n    return Counter(s)\n"),
                       "tests": ["assert letters('aab').most_common(1) == [('a', 2)]"]},
    "deque_result": {"code": ("from collections import deque\n"
                              "def rotate(xs, k):\n    d = deque(xs)\n    d.rotate(k)\n"
                              "    return d\n"),
                     "test_imports": ["from collections import deque"],
                     "tests": ["assert rotate([1, 2, 3], 1) == deque([3, 1, 2])"]},
    "date_argument_and_result": {"code": ("import datetime\n"
                                          "def next_day(d):\n"
                                          "    return d + datetime.timedelta(days=1)\n"),
                                 "test_imports": ["from datetime import date"],
                                 "tests": ["assert next_day(date(2024, 2, 28)) == "
                                           "date(2024, 2, 29)"]},
    # Arguments changed in place: the test checks its own objects after the call.
    "list_sorted_in_place": {"code": "def sort_in_place(xs):\n    xs.sort()\n",
                             "tests": ["xs = [3, 1, 2]\nsort_in_place(xs)\n"
                                       "assert xs == [1, 2, 3]"]},
    "rows_sorted_in_place": {"code": "def sort_rows(rows):\n    for row in rows:\n"
                                     "        row.sort()\n",
                             "tests": ["rows = [[3, 1], [2, 0]]\nfirst = rows[0]\n"
                                       "sort_rows(rows)\n"
                                       "assert rows == [[1, 3], [0, 2]] and first == [1, 3]"]},
    "dict_filled_in_place": {"code": ("def count_into(counts, word):\n"
                                      "    counts[word] = counts.get(word, 0) + 1\n"),
                             "tests": ["c = {}\ncount_into(c, 'a')\ncount_into(c, 'a')\n"
                                       "count_into(c, 'b')\nassert c == {'a': 2, 'b': 1}"]},
    "bytearray_zeroed_in_place": {"code": "def zero(buf):\n    buf[:] = bytes(len(buf))\n",
                                  "tests": ["b = bytearray(b'ab')\nzero(b)\n"
                                            "assert b == bytearray(2)"]},
    "set_filled_then_raises": {"code": ("def add_or_fail(s, x):\n    s.add(x)\n"
                                        "    raise ValueError('added')\n"),
                               "tests": ["s = set()\ntry:\n    add_or_fail(s, 1)\n"
                                         "except ValueError:\n    pass\nassert s == {1}"]},
    # Keyword arguments, and one changed in place.
    "keyword_arguments": {"code": ("def scale(xs, factor=2, *, reverse=False):\n"
                                   "    out = [x * factor for x in xs]\n"
                                   "    return out[::-1] if reverse else out\n"),
                          "tests": ["assert scale([1, 2], factor=3) == [3, 6]",
                                    "assert scale([1, 2], reverse=True) == [4, 2]"]},
    "keyword_argument_sorted_in_place": {"code": ("def sort_pairs(pairs, by=0):\n"
                                                  "    pairs.sort(key=lambda p: p[by])\n"),
                                         "tests": ["ps = [(2, 'a'), (1, 'b')]\n"
                                                   "sort_pairs(pairs=ps, by=0)\n"
                                                   "assert ps == [(1, 'b'), (2, 'a')]"]},
    "humaneval_reverse_in_place": {"prompt": REVERSE_PROMPT, "entry_point": "reverse_in_place",
                                   "code": "    xs.reverse()\n",
                                   "test": ("def check(candidate):\n"
                                            "    xs = [1, 2, 3]\n"
                                            "    assert candidate(xs) is None\n"
                                            "    assert xs == [3, 2, 1]\n")},
}

# Rewrites the sandbox's encoder (the caller's globals) so the reply carries `payload`.
_FORGE = ("import sys\n"
          "def _forge(payload):\n"
          "    sys._getframe(2).f_globals['to_wire'] = lambda value, refs=None: payload\n")

FORGED = {
    "fraction_subclass_always_equal": {
        "task": "fraction_result", "error": "AssertionError",
        "code": ("from fractions import Fraction\n"
                 "class Yes(Fraction):\n    def __eq__(self, other):\n        return True\n"
                 "    __hash__ = Fraction.__hash__\n"
                 "def harmonic(n):\n    return Yes(0)\n")},
    "int_enum_always_equal": {
        "task": "candidate_int_enum", "error": "AssertionError",
        "code": ("from enum import IntEnum\n"
                 "class Level(IntEnum):\n    ZERO = 0\n"
                 "    def __eq__(self, other):\n        return True\n"
                 "    __hash__ = IntEnum.__hash__\n"
                 "def level(x):\n    return Level.ZERO\n")},
    "named_tuple_always_equal": {
        "task": "candidate_named_tuple", "error": "AssertionError",
        "code": ("from collections import namedtuple\n"
                 "class Span(namedtuple('Span', 'start end')):\n"
                 "    def __eq__(self, other):\n        return True\n"
                 "def span(xs):\n    return Span(0, 0)\n")},
    "fraction_payload_with_code": {
        "task": "fraction_result", "error": "malformed",
        "code": _FORGE + ("def harmonic(n):\n"
                          "    _forge({'t': 'Fraction', 'v': [\"__import__('os')\", 1]})\n")},
    "named_tuple_payload_with_dunder_field": {
        "task": "candidate_named_tuple", "error": "malformed",
        "code": _FORGE + ("def span(xs):\n"
                          "    _forge({'t': 'namedtuple', 'c': ['m', 'Span'],\n"
                          "            'v': [['__eq__', 'end'], [1, 3]]})\n")},
    "enum_payload_naming_a_function": {  # os.system is no enum class: nothing is called
        "task": "task_int_enum", "error": "AssertionError",
        "code": _FORGE + ("def parse_color(name):\n"
                          "    _forge({'t': 'enum', 'c': ['os', 'system'], 'v': 'true',\n"
                          "            'd': False, 'r': 0})\n")},
    "enum_payload_wrong_member": {  # the task's own class decides: honest GREEN, not RED
        "task": "task_int_enum", "error": "AssertionError",
        "code": _FORGE + ("def parse_color(name):\n"
                          "    _forge({'t': 'enum', 'c': ['solution', 'Color'], 'v': 2,\n"
                          "            'd': False})\n")},
    "int_past_the_cap": {
        "task": "big_int_result", "error": "65536 bits",
        "code": "def power(b, e):\n    return 1 << 70_000\n"},
    "argument_states_wrong_length": {
        "task": "list_sorted_in_place", "error": "malformed argument states",
        "code": ("import sys\n"
                 "def sort_in_place(xs):\n"
                 "    sys._getframe(1).f_globals['_arg_states'] = lambda a, s: [[1, 2, 3]] * 3\n")},
}
