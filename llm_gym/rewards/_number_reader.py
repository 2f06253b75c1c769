r"""The GSM8K number reader: a final answer read as one exact number, several, or none.

GSM8K golds are plain decimals, and math-verify misreads some honest ways of writing one
(``1 1/2`` is 1/2 to it, ``1e3`` is 3e). So an answer graded against a numeric gold is first
read here, in one pass over its tokens: a sign, currency and approximation words before the
number; separators, Unicode digits, scale words (``1.2 million``), exponents and mixed numbers
inside it; units, remarks and a percent sign after it. Two numbers are several values. The
full rules are in the docstring of :mod:`llm_gym.rewards.math`. The exact value, written as
math-verify reads it, is what gets graded; arithmetic (``144/2``, ``x = 72``) is left to
math-verify.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from llm_gym.rewards._limits import MAX_ANSWER_CHARS

# Every regex below is linear-time on any input: no nested or adjacent quantifiers that can
# trade characters with each other on a failed match (issue 13; 1 MB inputs are tested).
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")
_VULGAR_FRACTIONS = {  # "72½" is the mixed number "72 1/2"
    "½": " 1/2", "⅓": " 1/3", "⅔": " 2/3", "¼": " 1/4", "¾": " 3/4", "⅕": " 1/5", "⅖": " 2/5",
    "⅗": " 3/5", "⅘": " 4/5", "⅙": " 1/6", "⅚": " 5/6", "⅛": " 1/8", "⅜": " 3/8", "⅝": " 5/8",
    "⅞": " 7/8",
}

# Tokens of a numeric answer ("$1 000.50 km/h (about)"); see _read_number.
_NUMBER_TOKEN_RE = re.compile(
    r"""(?P<num>(?:(?:\d{1,3}(?:(?:,|\{,\}|,?\\[,!]|[^\S\r\n]|~|')\d{3})+|\d+)(?:\.\d+)?(?!\d)
            |\.\d+)(?:[eE][-+]?\d+)?)
    |(?P<space>\s+|~|\\[,;:!\ ]|\\q?quad(?![A-Za-z]))
    |(?P<sign>[-+])
    |(?P<currency>\\?\$|[€£¥₹₩₽¢])
    |(?P<about>\\approx(?![A-Za-z])|≈)
    |(?P<percent>\\?%|percent(?![A-Za-z]))
    |(?P<degree>\^\{?\\circ\}?|°)
    |(?P<power>\^\{?-?\d+\}?)
    |(?P<wrap>\\(?:text|textrm|textnormal|mathrm|mbox|textbf|textit|mathit|mathbf|operatorname)
            \s*\{|[{}])
    |(?P<word>[^\W\d_]+)
    |(?P<slash>/)
    |(?P<punct>[.,;:!?()\[\]'’"])""",
    re.VERBOSE,
)
_SEVERAL = "several values"  # _read_number's answer for "72 73"
_NOT_DIGITS_RE = re.compile(r"[^0-9.eE+-]")
# Words that may come before the number: approximations and currency codes ("about 72",
# "USD 72"). A closed list: "not 72", "over 72" or "between 70 and 72" are no plain value.
_LEAD_WORDS = frozenset({
    "about", "approximately", "approx", "around", "roughly", "circa", "ca", "exactly",
    "precisely", "usd", "us", "eur", "gbp", "jpy", "cny", "rmb", "inr", "rs", "cad", "aud",
    "chf", "nzd", "hkd", "sgd",
})
# Number words that scale the number before them ("1.2 million" is 1,200,000). "dozen" is not
# one: GSM8K questions count in dozens ("6 dozen" answers "how many dozen").
_SCALE_WORDS = {"hundred": 2, "thousand": 3, "million": 6, "billion": 9, "trillion": 12}
MAX_EXPONENT = 100  # "1e3" is read; "1e999999" goes to math-verify's killable worker


def _ascii_digits(text: str) -> str:
    """Full-width forms (``７２``, ``＄``), other Unicode digits, ``−`` and ``½`` as ASCII."""
    def ascii_char(match: re.Match[str]) -> str:
        char = match.group()
        if "\uff01" <= char <= "\uff5e":
            return chr(ord(char) - 0xFEE0)
        if char == "\u2212":
            return "-"
        if char in _VULGAR_FRACTIONS:
            return _VULGAR_FRACTIONS[char]
        digit = unicodedata.decimal(char, None)
        return char if digit is None else str(digit)

    return _NON_ASCII_RE.sub(ascii_char, text)


def _number_tokens(text: str) -> list[tuple[str, str]] | None:
    """``text`` as ``(kind, text)`` tokens of :data:`_NUMBER_TOKEN_RE`, spaces left out."""
    tokens, pos = [], 0
    while pos < len(text):
        token = _NUMBER_TOKEN_RE.match(text, pos)
        if token is None:
            return None
        pos = token.end()
        if token.lastgroup != "space":
            tokens.append((token.lastgroup or "", token.group()))
    return tokens


def _number_value(token: str) -> Fraction | None:
    """The exact value of one number token (``"1 000.5"``, ``"1e3"``); ``None`` past the bounds."""
    mantissa, _, exponent = _NOT_DIGITS_RE.sub("", token).lower().partition("e")
    if len(exponent.lstrip("+-0")) > 3 or (exponent and abs(int(exponent)) > MAX_EXPONENT):
        return None
    return Fraction(mantissa) * Fraction(10) ** int(exponent or 0)


def _kind_at(tokens: list[tuple[str, str]], i: int) -> str:
    return tokens[i][0] if i < len(tokens) else ""


def _digits_below(small: str, large: str) -> bool:
    """``int(small) < int(large)`` for digit strings, without building big ints."""
    small, large = small.lstrip("0"), large.lstrip("0")
    return (len(small), small) < (len(large), large)


def _number_at(tokens: list[tuple[str, str]], i: int) -> tuple[Fraction | None, int]:
    """The value of the number starting at ``tokens[i]`` and the index after it.

    Reads a mixed number (``72 1/2``: whole, then a proper fraction) and a scale word
    (``1.2 million``) as part of the number.
    """
    value, i = _number_value(tokens[i][1]), i + 1
    kinds = [kind for kind, _ in tokens[i : i + 3]]
    # A mixed number's parts are plain digit runs: no separators, point or exponent.
    if kinds == ["num", "slash", "num"] and tokens[i - 1][1].isdigit():
        numerator, denominator = tokens[i][1], tokens[i + 2][1]
        if (numerator.isdigit() and denominator.isdigit() and value is not None
                and _digits_below(numerator, denominator)):
            return value + Fraction(int(numerator), int(denominator)), i + 3
    scales = 0
    while value is not None and i < len(tokens) and tokens[i][1].lower() in _SCALE_WORDS:
        value, i = value * 10 ** _SCALE_WORDS[tokens[i][1].lower()], i + 1  # "5 hundred thousand"
        scales += 1
    return (value if scales <= 3 else None), i  # "1 million million ..." is no number


def _lead(tokens: list[tuple[str, str]]) -> tuple[int, str] | None:
    """Where the number starts and its sign, past currency and approximation words."""
    sign = ""
    for i, (kind, text) in enumerate(tokens):
        if kind == "num":
            return i, sign
        if kind == "sign" and not sign:
            sign = text
        elif not (kind in ("currency", "about")
                  or (kind == "word" and text.lower() in _LEAD_WORDS)
                  or (text == "." and i and tokens[i - 1][0] == "word")):  # "approx. 72"
            return None
    return None


def _render(value: Fraction) -> str:
    """``value`` as math-verify reads it exactly: ``"72"``, ``"72.5"`` or ``"217/3"``."""
    if value.denominator == 1:
        return str(value.numerator)
    places = max(_factor_count(value.denominator, 2), _factor_count(value.denominator, 5))
    scaled = value * 10**places
    if scaled.denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def _factor_count(number: int, factor: int) -> int:
    count = 0
    while number % factor == 0:
        number, count = number // factor, count + 1
    return count


def _read_number(answer: str) -> str | None:
    r"""``answer`` as one plain decimal number, ``_SEVERAL``, or ``None`` when it is no number.

    One pass over tokens (see :mod:`llm_gym.rewards.math` for what is accepted around the
    number).
    Arithmetic (``144/2``, ``72^2``, ``x = 72``) gives ``None``: math-verify's job. Answers
    longer than :data:`MAX_ANSWER_CHARS` give ``None`` (the caller rejects them anyway).

    Example:
        >>> _read_number("$1,000.50 (about)"), _read_number("72 km/h"), _read_number("72 73")
        ('1000.5', '72', 'several values')
        >>> _read_number("about 1.2 million"), _read_number("72 1/3"), _read_number("1e3")
        ('1200000', '217/3', '1000')
    """
    tokens = _number_tokens(_ascii_digits(answer)) if len(answer) <= MAX_ANSWER_CHARS else None
    start = _lead(tokens) if tokens else None
    if start is None:
        return None
    value, i = _number_at(tokens, start[0])
    previous = "num"
    while value is not None and i < len(tokens):
        kind, text = tokens[i]
        if kind == "num":
            other, i = _number_at(tokens, i)
            if other != value:
                return _SEVERAL  # "72 (72 dollars)" repeats one value; "72 73" is two
            previous = kind
            continue
        if kind == "sign" and (text != "-" or previous != "word"):
            return None  # "72 - 1", "72+": arithmetic; "year-old" is a word
        if kind == "power" and previous == "num":
            return None  # "72^2"; "cm^2" is a unit
        if kind == "slash" and previous == "num" and _kind_at(tokens, i + 1) != "word":
            return None  # "144/2"; "72/hour" is a unit
        previous, i = kind, i + 1
    if value is None:
        return None
    return _render(-value if start[1] == "-" else value)
