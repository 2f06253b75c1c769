"""An exact calculator tool: + - * / and parentheses over integers and decimals.

The expression comes from the model, so it is parsed, never evaluated as Python (no ``eval``,
no ``ast``): a tokenizer and Dijkstra's shunting-yard algorithm with explicit stacks, linear in
the input and free of recursion, so deep parentheses cannot overflow the stack. Arithmetic is
exact (:class:`fractions.Fraction`); only the text of the result is rounded. Limits keep every
call cheap: :data:`MAX_EXPRESSION_CHARS` characters, :data:`MAX_NUMBER_DIGITS` digits per
number, :data:`MAX_DEPTH` levels of parentheses. Anything outside them raises ``ValueError``,
which the env turns into an error result for the model.

Example:
    >>> calculator("48213 * 5521")
    '266183973'
    >>> calculator("-(1 + 2) / 4")
    '-0.75'
    >>> calculator("__import__('os')")
    Traceback (most recent call last):
        ...
    ValueError: unexpected character '_' at position 0; use digits, + - * / ( ) and spaces
"""

from __future__ import annotations

from fractions import Fraction

#: Longest expression accepted (characters).
MAX_EXPRESSION_CHARS = 200
#: Most digits in one number literal (both sides of the decimal point together).
MAX_NUMBER_DIGITS = 30
#: Deepest nesting of parentheses.
MAX_DEPTH = 50
#: Digits after the decimal point in a result that is not an integer.
RESULT_DECIMALS = 10

_DIGITS = frozenset("0123456789")
_SPACES = frozenset(" \t\n")
_OPERATORS = frozenset("+-*/()")
# Binding strength: unary signs bind tighter than * and /, which bind tighter than + and -.
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "pos": 3}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Args:
        expression: digits, + - * / ( ) and spaces, e.g. "48213 * 5521".
    """
    return format_number(evaluate(expression))


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression.

    Raises ``ValueError`` on anything that is not a well-formed expression within the limits,
    and on division by zero.

    Args:
        expression: digits, ``.``, ``+ - * / ( )`` and spaces.

    Example:
        >>> evaluate("1.5 * (2 - -2)")
        Fraction(6, 1)
        >>> evaluate("1 / 3")
        Fraction(1, 3)
    """
    values: list[Fraction] = []
    operators: list[str] = []  # "+", "-", "*", "/", "neg", "pos" and "(" markers
    depth = 0
    expect_operand = True  # False right after a number or ")"
    for token, position in _tokens(expression):
        if isinstance(token, Fraction) or token == "(":
            if not expect_operand:
                raise ValueError(f"missing operator before position {position}")
            if token == "(":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ValueError(f"parentheses nested deeper than {MAX_DEPTH}")
                operators.append("(")
            else:
                values.append(token)
                expect_operand = False
        elif token == ")":
            if expect_operand:
                raise ValueError(f"missing number before ')' at position {position}")
            while operators and operators[-1] != "(":
                _apply(operators.pop(), values)
            if not operators:
                raise ValueError(f"unbalanced ')' at position {position}")
            operators.pop()
            depth -= 1
        elif expect_operand:
            if token not in "+-":
                raise ValueError(f"missing number before {token!r} at position {position}")
            operators.append("neg" if token == "-" else "pos")  # prefix: nothing to apply yet
        else:
            while (operators and operators[-1] != "("
                   and _PRECEDENCE[operators[-1]] >= _PRECEDENCE[token]):
                _apply(operators.pop(), values)  # left-associative: 8 - 2 - 1 is (8 - 2) - 1
            operators.append(token)
            expect_operand = True
    if expect_operand:
        raise ValueError("incomplete expression: it ends without a number" if expression.strip()
                         else "empty expression")
    while operators:
        operator = operators.pop()
        if operator == "(":
            raise ValueError("unbalanced '(': close every parenthesis")
        _apply(operator, values)
    return values[0]


def _tokens(expression: str) -> list[tuple[Fraction | str, int]]:
    """Numbers (as fractions) and operator characters, each with its position."""
    if not isinstance(expression, str):
        raise TypeError(f"expression must be text, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression is {len(expression)} characters long; the limit is "
                         f"{MAX_EXPRESSION_CHARS}")
    tokens: list[tuple[Fraction | str, int]] = []
    i = 0
    while i < len(expression):
        char = expression[i]
        if char in _DIGITS:
            end = _number_end(expression, i)
            tokens.append((Fraction(expression[i:end]), i))
            i = end
            continue
        if char in _OPERATORS:
            tokens.append((char, i))
        elif char == ".":
            raise ValueError(f"number at position {i} starts with '.'; write 0.5, not .5")
        elif char not in _SPACES:
            raise ValueError(f"unexpected character {char!r} at position {i}; use digits, "
                             "+ - * / ( ) and spaces")
        i += 1
    return tokens


def _number_end(expression: str, start: int) -> int:
    """Where the number literal starting at ``start`` ends: digits, optionally ``.`` digits."""
    end = start
    while end < len(expression) and expression[end] in _DIGITS:
        end += 1
    if end < len(expression) and expression[end] == ".":
        point = end
        end += 1
        while end < len(expression) and expression[end] in _DIGITS:
            end += 1
        if end == point + 1:
            raise ValueError(f"number at position {start} ends with '.'; write digits after it")
        if end < len(expression) and expression[end] == ".":
            raise ValueError(f"number at position {start} has two decimal points")
    digits = end - start - ("." in expression[start:end])
    if digits > MAX_NUMBER_DIGITS:
        raise ValueError(f"number at position {start} has {digits} digits; the limit is "
                         f"{MAX_NUMBER_DIGITS}")
    return end


def _apply(operator: str, values: list[Fraction]) -> None:
    """Replace the top one or two values with the operator's result."""
    if operator in ("neg", "pos"):
        values[-1] = -values[-1] if operator == "neg" else values[-1]
        return
    right = values.pop()
    left = values.pop()
    if operator == "+":
        values.append(left + right)
    elif operator == "-":
        values.append(left - right)
    elif operator == "*":
        values.append(left * right)
    elif right == 0:
        raise ValueError("division by zero")
    else:
        values.append(left / right)


def format_number(value: Fraction) -> str:
    """An exact value as text: an integer as its digits, otherwise at most 10 decimals.

    Rounds half to even; trailing zeros are dropped.

    Example:
        >>> format_number(Fraction(1, 3)), format_number(Fraction(-5, 2))
        ('0.3333333333', '-2.5')
    """
    if value.denominator == 1:
        return str(value.numerator)
    scaled = round(abs(value) * 10**RESULT_DECIMALS)
    whole, fraction = divmod(scaled, 10**RESULT_DECIMALS)
    sign = "-" if value < 0 and scaled else ""
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{RESULT_DECIMALS}d}".rstrip("0")
