"""The calculator tool: exact arithmetic, every limit, agreement with Python's own arithmetic."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gym.tools import as_tool, run_tool
from llm_gym.tools.calculator import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_NUMBER_DIGITS,
    calculator,
    evaluate,
)


@pytest.mark.parametrize(("expression", "result"), [
    ("1 + 2 * 3", "7"),
    ("2 * 3 + 1", "7"),
    ("10 - 4 - 3", "3"),
    ("100 / 10 / 5", "2"),
    ("2 * 3 / 4", "1.5"),
    ("1 - 2 + 3", "2"),
    ("(1 + 2) * 3", "9"),
    ("((2))", "2"),
    ("2 * (3 + 4) * (5 - 1)", "56"),
    ("(1 + (2 * (3 + (4 - 1))))", "13"),
    ("-3", "-3"),
    ("+3", "3"),
    ("-3 * -3", "9"),
    ("2 - -3", "5"),
    ("--3", "3"),
    ("-(2 + 3)", "-5"),
    ("-2 * 3 + 1", "-5"),
    ("1.5 + 2.25", "3.75"),
    ("0.1 + 0.2", "0.3"),
    ("3.0", "3"),
    ("007 + 1", "8"),
    ("1 / 3", "0.3333333333"),
    ("2 / 3", "0.6666666667"),
    ("-1 / 3", "-0.3333333333"),
    ("10 / 4", "2.5"),
    ("1 / 8", "0.125"),
    ("1 / 100000000000", "0"),
    ("-1 / 100000000000", "0"),
    ("48213 * 5521", "266183973"),
    ("4821373 * 5521981", "26623530099913"),
    ("9999999 * 9999999", "99999980000001"),
    ("-1234567 * 7654321", "-9449772114007"),
    ("9" * MAX_NUMBER_DIGITS + " + 1", "1" + "0" * MAX_NUMBER_DIGITS),
    ("1\t+\n2", "3"),
])
def test_calculator(expression, result):
    assert calculator(expression) == result


def test_arithmetic_is_exact():
    assert evaluate("1 / 3 * 3") == 1
    assert evaluate("0.1 + 0.2") == Fraction(3, 10)
    assert evaluate("1" * 30 + " * " + "1" * 30) == int("1" * 30) ** 2


@pytest.mark.parametrize(("expression", "message"), [
    ("1 / 0", "division by zero"),
    ("1 / (2 - 2)", "division by zero"),
    ("0 / 0.0", "division by zero"),
    ("", "empty expression"),
    ("   ", "empty expression"),
    ("1 +", "incomplete"),
    ("-", "incomplete"),
    ("()", "missing number"),
    ("* 2", "missing number"),
    ("2 * / 3", "missing number"),
    ("1 2", "missing operator"),
    ("2 (3)", "missing operator"),
    ("(1) 2", "missing operator"),
    ("(1 + 2", "unbalanced '\\('"),
    ("1 + 2)", "unbalanced '\\)'"),
    (")(", "missing number"),
    ("1.", "ends with '.'"),
    (".5", "starts with '.'"),
    ("1.2.3", "two decimal points"),
    ("2 ** 3", "missing number"),
    ("1e5", "unexpected character 'e'"),
    ("1,000", "unexpected character ','"),
    ("2 ^ 3", "unexpected character"),
    ("x + 1", "unexpected character 'x'"),
    ("\u0662 + 1", "unexpected character"),  # Arabic-Indic two: str.isdigit says yes
    ("\u00b2", "unexpected character"),  # superscript two
    ("1 \u2212 1", "unexpected character"),  # Unicode minus
    ("__import__('os')", "unexpected character '_'"),
    ("__import__('os').system('ls')", "unexpected character"),
    ("().__class__", "starts with '.'"),
    ("lambda: 1", "unexpected character"),
])
def test_bad_expressions_raise_value_error(expression, message):
    with pytest.raises(ValueError, match=message):
        calculator(expression)


def test_expression_length_limit():
    at_limit = "1+" * (MAX_EXPRESSION_CHARS // 2 - 1) + "1"
    assert len(at_limit) == MAX_EXPRESSION_CHARS - 1
    assert calculator(at_limit + " ") == str(MAX_EXPRESSION_CHARS // 2)
    with pytest.raises(ValueError, match=f"limit is {MAX_EXPRESSION_CHARS}"):
        calculator(at_limit + "  ")
    with pytest.raises(ValueError, match="limit is"):
        calculator("1" * 10_000_000)  # refused before it is read


def test_number_length_limit():
    assert calculator("9" * MAX_NUMBER_DIGITS) == "9" * MAX_NUMBER_DIGITS
    assert evaluate("1" * 20 + "." + "1" * 10) == Fraction(int("1" * 30), 10**10)
    with pytest.raises(ValueError, match=f"{MAX_NUMBER_DIGITS + 1} digits"):
        calculator("9" * (MAX_NUMBER_DIGITS + 1))
    with pytest.raises(ValueError, match="digits; the limit is"):
        calculator("1" * 20 + "." + "1" * 11)


def test_parentheses_depth_limit():
    assert calculator("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH) == "1"
    assert calculator("(" * MAX_DEPTH + "1)" + "+(1)" * 20 + ")" * (MAX_DEPTH - 1)) == "21"
    with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH}"):
        calculator("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ValueError, match="deeper than"):
        calculator("(" * 150)  # refused before the missing closes are noticed


def test_long_unary_chains_are_iterative():
    assert calculator("-" * (MAX_EXPRESSION_CHARS - 1) + "1") == "-1"


def test_non_text_is_a_type_error():
    with pytest.raises(TypeError, match="must be text"):
        calculator(12)  # type: ignore[arg-type]


def test_calculator_is_a_tool():
    tool = as_tool(calculator)
    assert tool.name == "calculator"
    assert tool.description == "Evaluate an arithmetic expression exactly."
    assert tool.parameters["required"] == ["expression"]
    assert tool.parameters["properties"]["expression"]["type"] == "string"
    assert run_tool(tool, {"expression": "6 * 7"}).text == "42"
    failed = run_tool(tool, {"expression": "1 / 0"})
    assert not failed.ok and failed.text == "error: ValueError: division by zero"


# Small integer expressions with every operator, unary signs and parentheses, rendered without
# extra parentheses so the result depends on precedence and associativity.
_leaf = st.integers(0, 999).map(str)
_expressions = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
            lambda parts: f"{parts[0]} {parts[1]} {parts[2]}"),
        inner.map(lambda text: f"({text})"),
        inner.map(lambda text: f"-{text}"),
    ),
    max_leaves=12,
)


def _depth(expression: str) -> int:
    depth = deepest = 0
    for char in expression:
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    return deepest


def _python_value(expression: str) -> Fraction:
    """The value Python's own parser and Fraction arithmetic give the same text."""
    as_fractions = re.sub(r"\d+", lambda number: f"F({number.group()})", expression)
    return eval(as_fractions, {"__builtins__": {}, "F": Fraction})  # the test's own text


@settings(max_examples=500, deadline=None)
@given(_expressions)
def test_agrees_with_python_arithmetic(expression):
    if len(expression) > MAX_EXPRESSION_CHARS or _depth(expression) > MAX_DEPTH:
        with pytest.raises(ValueError):
            evaluate(expression)
        return
    try:
        expected = _python_value(expression)
    except ZeroDivisionError:
        with pytest.raises(ValueError, match="division by zero"):
            evaluate(expression)
        return
    assert evaluate(expression) == expected
    if expected.denominator == 1:
        assert calculator(expression) == str(expected)
    else:
        assert Fraction(calculator(expression)) == round(expected, 10)


@settings(max_examples=300, deadline=None)
@given(st.integers(-10**7, 10**7), st.integers(-10**7, 10**7))
def test_integer_products_and_sums_are_exact(a, b):
    assert calculator(f"{a} * {b}") == str(a * b)
    assert calculator(f"{a} - {b}") == str(a - b)
