r"""Math answer grading: extract the final answer, check it against the gold with math-verify.

Extraction is plain, linear-time string work in the caller's process: the last ``#### x`` line,
``\boxed{...}`` contents, or (lenient mode) "the answer is x". Grading parses LaTeX with
math-verify, which turns model text into sympy objects (``parse_expr`` evaluates strings) and
bounds its work with ``signal.alarm`` — main thread only, and some inputs ignore it. So the
parse/verify step runs in a small pool of persistent worker *processes* (see
:class:`GradingPool`): a worker that misses its hard deadline is killed and replaced, and the
answer scores 0 with verdict ``"timeout"``. Nothing derived from model text is evaluated in the
caller's process, and the result is the same from the main thread, a thread pool or a process
pool.

An answer is unwrapped first: ``\boxed{}``, markdown bold or code (``**72**``, backticks),
``$...$``, ``\(...\)``, ``\[...\]``; a trailing "or so" rounds the value, it adds no second one
(``72 or so`` is 72; ``72 or 73 or so`` is still two values).

Numeric golds (every GSM8K answer: a plain decimal like ``72``, ``-3``, ``1,080`` or ``0.5``):
the final answer is read as one number when it is one number with decorations, and that exact
value is graded. Accepted before the number: a sign, currency symbols (``$``, ``\$``, ``€``,
``£``, ...) and codes (``USD``, ``US$``, ``Rs.``), approximation words (``about``,
``approximately``, ``approx.``, ``roughly``, ``around``, ``≈``, ``\approx``) — a closed list, so
``not 72`` or ``over 72`` is no value. Read as part of the number: a scale word (``1.2 million``
is 1,200,000; ``hundred``, ``thousand``, ``million``, ``billion``, ``trillion``; ``dozen`` stays
a unit), an exponent (``1e3``, ``5e-1``; beyond 10^±100 no number), a mixed number (a
whole number then a proper fraction: ``72 1/2`` and ``72½`` are 72.5), thousands separators
``,``, a space, a thin or no-break space, ``\,``, ``{,}``, ``~`` between 3-digit groups
(``1 000``), full-width and other Unicode digits. Accepted after it: units and words
(``72 km/h``, ``72/hour``, ``72 cm^2``, ``72 dollars``); a parenthetical remark without digits
(``72 (six dozen)``) or repeating the value (``72 (72.0)``); a percent sign, which is *not* a
factor of 100 (GSM8K golds hold the number the question asks for, so ``10%`` equals gold ``10``
and is wrong against ``0.1``). Two numbers with only such decorations between them (``72 73``,
``41, 42``, ``72 (73)``, ``72 3/2``) are several final values: verdict ``ambiguous``. Anything
else (``144/2``, ``x = 72``) goes to math-verify unchanged.

Several final values are a hedge, never an answer, whatever the gold: different ``####`` /
``\boxed`` answers, the words "or"/"and", ``\pm``, ``\vee``/``\lor``/``\wedge``, ``;``, a line
break ``\\`` or ``&`` outside an environment (``5 \\ 6``), an equation whose sides before the
last are constants (``30 = 72``; ``x = 6`` is one value), and two numbers side by side with no
operator between (``5 \quad 6``, ``5 \to 6``: math-verify would silently grade the last one).
The rule holds inside LaTeX: math-verify reads ``matrix``, ``pmatrix``, ``bmatrix`` and
``array`` as one matrix value (a relation inside one is a hedge: it splits there), and flattens
every other environment (``cases``, ``aligned``, ``gathered``, ``split``, ``align*``,
``vmatrix``, unknown ones) to its last entry, so there a second row that holds something
(``\begin{cases} 72 \\ 73 \end{cases}``), two cells (``72 & 73``) or a number after the
environment is several values; one row (``\begin{aligned} x &= 72 \end{aligned}``) is one
value, and so is a trailing ``\\``. A derivation in a box (``2x &= 144 \\ x &= 72``) is two
rows: keep it outside the box. A number's subscript (``72_{73}``, ``1011_2``) and a superscript
written as text (``72^{\text{73}}``) hold a second value, since math-verify drops them;
``72^{3}`` is a power, one value. A hedge the gold itself contains (gold ``1 \pm \sqrt{2}``,
``1011_2``) is not one.

Verdicts: ``correct``, ``wrong``, ``no_answer`` (nothing extractable, or an empty answer),
``ambiguous`` (several different final answers), ``echo`` (only a copy of the prompt),
``rejected`` (failed a cheap safety pre-check: too long, NUL bytes, lone surrogates, deep brace
nesting, too many ``\boxed``), ``timeout`` and ``error``. Only ``correct`` scores 1.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from llm_gym.rewards._grading_pool import GradingPool, get_pool

__all__ = [
    "GradingPool",
    "MathResult",
    "Extraction",
    "extract_answer",
    "gold_answer",
    "gsm8k_accuracy",
    "math_accuracy",
    "format_reward",
    "MARKERS",
    "grade_batch",
    "check_golds",
]

MAX_RESPONSE_CHARS = 100_000  # far above any honest response; keeps extraction cheap
MAX_ANSWER_CHARS = 1_000      # MATH's longest gold answers are a few hundred characters
MAX_BRACE_DEPTH = 32
MAX_BOXED = 64

# Every regex below is linear-time on any input: no nested or adjacent quantifiers that can
# trade characters with each other on a failed match (issue 13; 1 MB inputs are tested).
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_OR_BRACE_RE = re.compile(r"\\(?:boxed|fbox)\s*\{|[{}]")
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:)", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_STARTS_NUMERIC_RE = re.compile(r"[-+\\$]?\d")
# Unit words after a number, matched on the *reversed* answer so one anchored pass finds them all.
_REVERSED_TRAILING_WORDS_RE = re.compile(r"(?:[.,;:!]?[A-Za-z]{2,}\s+)+")
_HEDGE_WORD_RE = re.compile(r"\b(?:or|and)\b", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s+")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")
# "72²" must not read as 72 (math-verify drops the superscript): written as LaTeX, it is 5184.
_SUPERSCRIPT_RE = re.compile("⁻?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
_VULGAR_FRACTIONS = {  # "72½" is the mixed number "72 1/2"
    "½": " 1/2", "⅓": " 1/3", "⅔": " 2/3", "¼": " 1/4", "¾": " 3/4", "⅕": " 1/5", "⅖": " 2/5",
    "⅗": " 3/5", "⅘": " 4/5", "⅙": " 1/6", "⅚": " 5/6", "⅛": " 1/8", "⅜": " 3/8", "⅝": " 5/8",
    "⅞": " 7/8",
}
_SUPERSCRIPT_DIGITS = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
# A plain decimal number always parses; golds like this skip the worker round trip at load.
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")

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
_FIRST_WORD_RE = re.compile(r"\s+([A-Za-z]+)")
_OR_SO_RE = re.compile(r"\s+or\s+so\W*$", re.IGNORECASE)  # run on a 64-character tail only

# Tokens for hedge detection: numbers, control sequences, letter runs, spaces, runs of symbols
# that mean nothing to it ("$$", "##"), any other single character.
_MATH_TOKEN_RE = re.compile(
    r"(?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<cmd>\\(?:[A-Za-z]+|.))|(?P<word>[^\W\d_]+)"
    r"|(?P<space>\s+)"
    r"|(?P<other>[$#@?'\"`~.]+)|.",
    re.DOTALL,
)
# Several final values in one answer. math-verify grades the last of "5 \vee 6" / "5 \\ 6".
_HEDGE_TOKENS = frozenset({
    "or", "and", "\\pm", "\\mp", "±", "∓", "\\vee", "\\lor", "\\wedge", "\\land", "\\bigvee",
    "\\bigwedge", "∨", "∧", ";", "\\newline", "\\linebreak", "\\par", "\\hspace", "\\hfill",
})
_ALIGNMENT_TOKENS = frozenset({"\\\\", "&", "\\cr", "\\hline"})  # fine inside \begin...\end
_RELATIONS = frozenset({
    "=", "\\approx", "\\sim", "\\simeq", "\\equiv", "\\cong", "\\doteq", "\\coloneqq",
    "\\to", "\\rightarrow", "\\Rightarrow", "\\implies", "\\longrightarrow", "\\Longrightarrow",
    "\\iff", "\\Leftrightarrow", "\\mapsto", "\\therefore", "≈", "≡", "→", "⇒",
})
# Between two numbers these make one value ("2 \cdot 3", "3\frac12"); anything else does not.
# Braces are neither: only an operand group (after \frac, \sqrt, ^, _) separates two numbers.
_OPERATOR_CHARS = frozenset("+-*/^_!%:<>()[],=×÷·")
_OPERATOR_COMMANDS = frozenset({
    "\\cdot", "\\times", "\\div", "\\frac", "\\dfrac", "\\tfrac", "\\cfrac", "\\sqrt",
    "\\binom", "\\dbinom", "\\tbinom", "\\choose", "\\over", "\\pm", "\\mp", "\\log", "\\ln",
    "\\lg", "\\exp", "\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc", "\\arcsin",
    "\\arccos", "\\arctan", "\\sinh", "\\cosh", "\\tanh", "\\left", "\\right", "\\le", "\\ge",
    "\\leq", "\\geq", "\\lt", "\\gt", "\\ne", "\\neq", "\\deg", "\\bmod", "\\pmod", "\\mod",
    "\\%", "\\{", "\\}", "\\lfloor", "\\rfloor", "\\lceil", "\\rceil", "\\langle", "\\rangle",
})
_OPERAND_OPENERS = frozenset({
    "\\frac", "\\dfrac", "\\tfrac", "\\cfrac", "\\sqrt", "\\binom", "\\dbinom", "\\tbinom",
    "\\overline", "^", "_", "}operand",
})
_TEXT_COMMANDS = frozenset({
    "\\text", "\\textrm", "\\textnormal", "\\textbf", "\\textit", "\\textsf", "\\texttt",
    "\\mathrm", "\\mathbf", "\\mathit", "\\mathsf", "\\mbox", "\\operatorname",
})
# Commands a constant side of an equation may hold ("\frac{144}{2} = 72" is two values); words
# inside \text{} are units, not unknowns ("5\text{ cm} = 0.05\text{ m}" is two values too).
_CONSTANT_COMMANDS = _OPERATOR_COMMANDS | _TEXT_COMMANDS | {
    "\\pi", "\\infty", "\\circ", "\\,", "\\;", "\\!", "\\ ", "\\$",
}
# Notations math-verify misreads ("1 1/2" is 1/2, "1e3" is 3e): graded by their exact value.
_NUMBER_FORMS = frozenset({"mixed number", "exponent"})
# Tokens math-verify ignores between a number and its script ("72\limits_{73}" is 72).
_TRANSPARENT = frozenset({
    "\\limits", "\\nolimits", "\\left", "\\right", "\\quad", "\\qquad", "\\,", "\\;", "\\:",
    "\\!", "\\ ", "\\displaystyle", "\\textstyle", "\\scriptstyle", "}empty",
})
# Commands that write nothing by themselves: "#### \text{}" or "#### \quad" holds no answer.
_LAYOUT_COMMANDS = _TEXT_COMMANDS | _TRANSPARENT | {
    "\\boxed", "\\fbox", "\\hspace", "\\vspace", "\\phantom", "\\hphantom", "\\vphantom",
    "\\(", "\\)", "\\[", "\\]", "\\{", "\\}", "\\\\", "\\newline",
}
_ENV_NAME_RE = re.compile(r"[ \t]*\{([A-Za-z]*\*?)\}")  # after \begin / \end
# The environments math-verify reads as one matrix value; it flattens every other one.
_MATRIX_ENVIRONMENTS = frozenset({"matrix", "pmatrix", "bmatrix", "array"})
_THOUSANDS_GAPS = frozenset({"", "\\,", "\\!", "~", "\\", "'"})  # "1 000", "1\,000" (stripped)


@dataclass(frozen=True)
class MathResult:
    """What a math scorer returns.

    Attributes:
        reward: 1.0 or 0.0.
        answer: the extracted final answer (``None`` when none was found).
        verdict: one of the module's verdicts (``correct``, ``wrong``, ``no_answer``, ...).
        gold: the gold answer it was compared with.
        detail: a short reason for ``rejected``/``error``/``ambiguous`` verdicts, else ``""``.
    """

    reward: float
    answer: str | None
    verdict: str
    gold: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Extraction:
    """A final answer pulled out of a response, or the reason there is none.

    ``value`` is what math-verify grades when it differs from ``answer``: the plain number read
    from it when the gold is a number (``"1000"`` for ``"1 000 km"``).
    """

    answer: str | None
    verdict: str | None = None  # None when ``answer`` is usable
    marker: str | None = None   # "####", "boxed" or "answer is"
    detail: str = ""
    value: str | None = None


# --------------------------------------------------------------------------- extraction
def boxed_contents(text: str, limit: int = MAX_BOXED + 1) -> list[str]:
    r"""Contents of the first ``limit`` ``\boxed{...}`` in ``text`` (balanced braces, one pass).

    The limit keeps nested boxes (``\boxed{\boxed{...}}``) from costing quadratic copies;
    callers reject more than :data:`MAX_BOXED` boxes anyway.

    Example:
        >>> boxed_contents(r"so \boxed{\frac{1}{2}} and \boxed{3}")
        ['\\frac{1}{2}', '3']
    """
    found: list[tuple[int, str]] = []
    open_boxes: list[tuple[int, int]] = []  # (content start, brace depth inside the box)
    depth = opened = 0
    for match in _BOXED_OR_BRACE_RE.finditer(text):
        if match.group() == "}":
            if open_boxes and open_boxes[-1][1] == depth:
                start = open_boxes.pop()[0]
                found.append((start, text[start : match.start()]))
            depth -= 1
            continue
        depth += 1
        if match.group() != "{" and opened < limit:
            opened += 1
            open_boxes.append((match.end(), depth))
    found.sort()  # inner boxes close first; report them in reading order
    return [content for _, content in found]


def _strip_trailing_words(span: str) -> str:
    """``"18 dollars"`` -> ``"18"``; keeps the words when they hold a hedge ("or 19").

    Scale words right after the number stay: ``"1.2 million dollars"`` -> ``"1.2 million"``.
    """
    words = _REVERSED_TRAILING_WORDS_RE.match(span[::-1])
    if words is None or _HEDGE_WORD_RE.search(span, len(span) - words.end()):
        return span
    cut = len(span) - words.end()
    word = _FIRST_WORD_RE.match(span, cut)
    while word is not None and word.group(1).lower() in _SCALE_WORDS:
        cut = word.end()
        word = _FIRST_WORD_RE.match(span, cut)
    return span[:cut]


def _strip_or_so(span: str) -> str:
    """``"72 or so"`` -> ``"72"``: "or so" rounds the value before it, it adds no second one."""
    tail = span[-64:]  # a fixed window: the regex never scans a long answer
    found = _OR_SO_RE.search(tail)
    return span if found is None else span[: len(span) - len(tail) + found.start()]


def _unwrap(span: str) -> str:
    r"""Drop markdown bold and code, ``\(...\)`` and ``\[...\]`` around an answer."""
    span = span.strip("*").strip().strip("`").strip()
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        if span.startswith(opener) and span.endswith(closer) and len(span) >= 4:
            span = span[2:-2].strip()
    return span


def _clean(span: str) -> str:
    span = span.strip()
    inner = boxed_contents(span, limit=2)
    if len(inner) == 1 and span.startswith(("\\boxed", "\\fbox")):
        span = inner[0].strip()
    span = _strip_or_so(_unwrap(span))
    span = span.strip().strip("$").strip().rstrip(".").strip()
    span = _SUPERSCRIPT_RE.sub(lambda m: f"^{{{m.group().translate(_SUPERSCRIPT_DIGITS)}}}", span)
    if _STARTS_NUMERIC_RE.match(span):
        # "18 dollars" -> "18": trailing unit words confuse the parser, never change the value
        span = _strip_trailing_words(span)
    return span


def _precheck(text: str) -> str | None:
    if len(text) > MAX_RESPONSE_CHARS:
        return f"longer than {MAX_RESPONSE_CHARS} characters"
    if "\x00" in text:
        return "contains NUL bytes"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains lone surrogates"
    return None


def _brace_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth = max(depth - 1, 0)
    return deepest


def _last_hash_line(text: str) -> str | None:
    """What follows the last ``####`` up to the end of its line, or ``None`` without one."""
    at = text.rfind("####")
    if at < 0:
        return None
    end = text.find("\n", at)
    return text[at + 4 : end if end >= 0 else len(text)]


def _stated_answer(text: str) -> str | None:
    """What follows the last "answer is" / "answer:", up to the end of its sentence or line."""
    last = previous = None
    for match in _ANSWER_IS_RE.finditer(text):
        previous, last = last, match
    for match in (last, previous):  # "... is 5. That is my answer:" states 5
        if match is None:
            return None
        rest = text[match.end() :].lstrip()
        rest = rest[1:].lstrip() if rest.startswith(":") else rest
        if rest:
            end = rest.find("\n")
            line = rest[: end if end >= 0 else len(rest)]
            stop = _SENTENCE_END_RE.search(line, 1)
            return line[: stop.start()] if stop else line
    return None


def _candidates(response: str, strict: bool) -> tuple[list[str], str | None]:
    """Final-answer spans in ``response`` and the marker they came from."""
    spans: list[str] = []
    hashes = _last_hash_line(response)
    if hashes is not None:
        spans.append(hashes)  # with repeated "####" the last one counts, even on one line
    boxed = boxed_contents(response)
    spans.extend(boxed)
    if spans:
        return spans, "####" if hashes is not None else "boxed"
    if not strict:
        stated = _stated_answer(response)
        if stated is not None:
            return [stated], "answer is"
    return [], None


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

    One pass over tokens (see the module docstring for what is accepted around the number).
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


def _value_signals(text: str) -> set[str]:
    r"""Signs of several final values in ``text``: hedge tokens, "equation", "juxtaposed", ...

    One pass (see :class:`_ValueScan`). ``\\`` and ``&`` count as hedges outside environments;
    an equation counts when a side before the last is a constant (``30 = 72``, not ``x = 6``);
    two numbers count as juxtaposed when no operator is between them (``5 \quad 6``,
    ``5 \to 6``, ``\text{5} \text{6}``), unless the second is a thousands group (``1 000``).
    A mixed number (``72 1/2``) and an exponent (``1e3``) are signs of their own
    (:data:`_NUMBER_FORMS`): one value, which math-verify would misread.

    Example:
        >>> sorted(_value_signals(r"30 = 72")), sorted(_value_signals(r"5 \vee 6"))
        (['equation'], ['\\vee', 'juxtaposed'])
        >>> _value_signals(r"x = \frac{1}{2}") | _value_signals("1 000"), _value_signals("72 1/2")
        (set(), {'mixed number'})
        >>> sorted(_value_signals(r"\begin{cases} 72 \\ 73 \end{cases}")), _value_signals("72_{73}")
        (['\\\\'], {'subscript'})
    """
    scan = _ValueScan()
    pos = 0
    while pos < len(text):
        token = _MATH_TOKEN_RE.match(text, pos)
        pos = token.end()
        part, kind = token.group(), token.lastgroup or ""
        if part in ("\\begin", "\\end"):
            name = _ENV_NAME_RE.match(text, pos)
            pos = name.end() if name else pos
            scan.environment(part, name.group(1) if name else "")
        else:
            scan.feed(part.lower() if kind == "word" and part.lower() in ("or", "and") else part,
                      kind)
    return scan.finish()


class _ValueScan:
    r"""State of :func:`_value_signals`' pass over one answer's LaTeX tokens.

    Environments: math-verify reads ``matrix``, ``pmatrix``, ``bmatrix`` and ``array`` as one
    matrix; every other environment (``cases``, ``aligned``, ``vmatrix``, unknown ones) it
    flattens to its last entry, so there each row (``\\``) and cell (``&``) holding a value
    is a final value of its own. Scripts: math-verify drops a subscript of a number
    (``72_{73}``, ``1011_2``) and a superscript written as text (``72^{\text{73}}``), so a
    number inside one is a second value; ``72^{3}`` is a power, one value.
    """

    def __init__(self) -> None:
        self.signals: set[str] = set()
        self.envs: list[bool] = []       # open environments: True for a matrix
        # open brace groups: (kind, script, holds a number's script, token count, base_number)
        self.groups: list[tuple[str, str, bool, int, bool]] = []
        self.count = 0  # tokens fed that are not space
        self.text_depth = 0
        self.side_value = self.side_name = False  # what the current side of an equation holds
        self.after_number, self.gap = False, ""   # a number with no operator since; between
        self.previous = self.previous_kind = ""   # the last token that is not space
        self.script = ""        # "sub"/"sup"/"suptext": a number's script, before its operand
        self.base_number = False  # a number came last, but for tokens math-verify ignores
        self.numerator = ""     # "72 1": the numerator of a possible mixed number
        self.mixed_slash = False  # "72 1/": its slash came
        self.row_filled = self.row_broken = False  # the rows of a non-matrix environment

    def environment(self, part: str, name: str) -> None:
        r"""``\begin{name}`` or ``\end{name}``."""
        self._settle_mixed("", "")
        self.script = ""
        if part == "\\begin":
            if self.row_broken:
                self.signals.add("\\\\")  # an environment is what the next row holds
            self.envs.append(name in _MATRIX_ENVIRONMENTS)
            self.row_filled = self.row_broken = False
            if self.envs[-1]:
                self._new_entry()  # "3 \begin{pmatrix}...": a scalar times a matrix
            else:
                self.gap = "\\begin"  # "72 \begin{cases} 73": the rows follow a value
            return
        if self.envs:
            self.envs.pop()
        self.row_filled, self.row_broken = True, False
        # The environment is a value: a number right after it is a second one.
        self.after_number, self.gap, self.previous, self.previous_kind = True, "\\end", "", ""

    def feed(self, part: str, kind: str) -> None:
        r"""One token of :data:`_MATH_TOKEN_RE` (not ``\begin``/``\end``)."""
        if part in _HEDGE_TOKENS or (part in _ALIGNMENT_TOKENS and not self.envs):
            self.signals.add(part)
        if kind == "space":
            self.gap = (self.gap + " ")[:8]
            return
        if self.envs and part in _ALIGNMENT_TOKENS:
            self._separator(part)
            return
        if self.row_broken:
            self.signals.add("\\\\")  # a second row of a non-matrix environment holds something
        self.row_filled, self.row_broken = True, False
        self._settle_mixed(part, kind)
        self.count += 1
        pending, self.script = self.script, ""
        if part in _RELATIONS and self.envs and self.envs[-1]:
            self.signals.add(part)  # math-verify splits a matrix at it: "x = 72 \\ 73" is 73
        if part in _RELATIONS and not self.groups:
            self._relation()
        elif part in ("{", "}"):
            part = self._brace(part, pending)
        elif kind == "num":
            self._number(part, pending)
        elif part in _OPERATOR_CHARS or part in _OPERATOR_COMMANDS:
            self.after_number = False
        else:
            self._other(part, kind)
        if part in ("_", "^") and self.base_number:
            self.script = "sub" if part == "_" else "sup"
        elif pending and part in _TEXT_COMMANDS:
            self.script = "suptext" if pending == "sup" else pending
        # "72\limits_{73}", "72~_{73}", "72{}_{73}": the script is still the number's.
        if kind == "num" or part == "}script":
            self.base_number = True
        elif not (part in _TRANSPARENT or kind == "other"):
            self.base_number = False
        self.previous, self.previous_kind = part, kind

    def finish(self) -> set[str]:
        """The signals found, once every token was fed."""
        self._settle_mixed("", "")
        return self.signals

    def _new_entry(self) -> None:
        self.side_value = self.side_name = self.after_number = False
        self.gap = ""

    def _separator(self, part: str) -> None:
        r"""``&``, ``\\``, ``\cr`` or ``\hline`` inside an environment."""
        if self.envs[-1]:
            self._new_entry()  # the next matrix entry
        elif part == "&":
            self.gap = (self.gap + "&")[:8]  # "72 & 73": two values side by side
        elif part != "\\hline":
            self.row_broken = self.row_broken or self.row_filled  # "72 \\ \\ 73" too
            self.row_filled = False
            self._new_entry()

    def _relation(self) -> None:
        if self.side_value and not self.side_name:
            self.signals.add("equation")
        self.side_value = self.side_name = self.after_number = False

    def _brace(self, part: str, pending: str) -> str:
        """Open or close a brace group; returns what the next token sees as ``previous``."""
        if part == "{":
            kind = ("operand" if self.previous in _OPERAND_OPENERS
                    else "text" if self.previous in _TEXT_COMMANDS else "plain")
            script = pending or (self.groups[-1][1] if self.groups else "")
            script = "suptext" if script == "sup" and kind == "text" else script
            self.groups.append((kind, script, bool(pending), self.count, self.base_number))
            self.text_depth += kind == "text"
            self.after_number = self.after_number and kind != "operand"
            return part
        kind, _, numbers_script, opened, base = (self.groups.pop() if self.groups
                                                 else ("plain", "", False, 0, False))
        empty = opened == self.count - 1  # nothing between "{" and this "}"
        self.text_depth -= kind == "text"
        self.after_number = self.after_number and kind != "operand"
        if numbers_script:  # "72_{} 73": the number, script and all, is a value
            self.after_number, self.gap = True, "}"
            return "}script"
        if empty and kind == "plain":
            self.base_number = base  # "72{}_{73}": an empty group is nothing
            return "}empty"
        return "}" + kind

    def _number(self, part: str, pending: str) -> None:
        script = pending or (self.groups[-1][1] if self.groups else "")
        if script in ("sub", "suptext"):
            self.signals.add("subscript" if script == "sub" else "superscript")
        self.side_value = True
        if "e" in part or "E" in part:
            self.signals.add("exponent")
        gap = self.gap.strip()
        thousands = (gap in _THOUSANDS_GAPS and len(part) >= 3 and part[:3].isdigit()
                     and part[3:4] in ("", "."))  # "1 000"
        if self.after_number and not thousands:
            if not gap and part.isdigit() and self.previous_kind == "num":
                self.numerator = part  # "72 1/2" or "72 1": decided by the next tokens
            else:
                self.signals.add("juxtaposed")
        # A bare exponent or subscript belongs to its base: "\log_2 3" is one value; a number's
        # bare script is part of that number ("72_3 73" is two values).
        self.after_number, self.gap = self.previous not in ("^", "_") or bool(pending), ""

    def _settle_mixed(self, part: str, kind: str) -> None:
        """After "72 1": "/" then a larger whole number is a mixed number, anything else is not."""
        if not self.numerator:
            return
        if not self.mixed_slash and part == "/":
            self.mixed_slash = True
            return
        proper = (self.mixed_slash and kind == "num" and part.isdigit()
                  and _digits_below(self.numerator, part))
        self.signals.add("mixed number" if proper else "juxtaposed")
        self.numerator, self.mixed_slash = "", False

    def _other(self, part: str, kind: str) -> None:
        if (kind == "word" and not self.text_depth) or (
                kind == "cmd" and part not in _CONSTANT_COMMANDS):
            self.side_name = True
        self.side_value = self.side_value or part in ("\\pi", "\\infty")
        self.gap = (self.gap + part)[:8]


def extract_answer(
    response: str, *, strict: bool = False, prompt: str | None = None, gold: str | None = None
) -> Extraction:
    r"""Pull the final answer out of a model response.

    Args:
        response: the model's reply only (never the prompt: a system prompt with ``\boxed{}``
            examples must not score).
        strict: require the answer after ``####`` or in ``\boxed{}``; lenient also accepts
            "the answer is x".
        prompt: the question; a verbatim copy of it inside the response is ignored.
        gold: the gold answer; hedges it contains itself (``\pm``, "or") are not a hedge, and
            a numeric gold makes the answer be read as a number (see the module docstring).

    Example:
        >>> extract_answer("2 + 2 = 4\n#### 4").answer
        '4'
        >>> extract_answer(r"\boxed{41} \boxed{42}").verdict
        'ambiguous'
        >>> extract_answer("#### 1 000 km", gold="1000").value
        '1000'
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    problem = _precheck(response)  # before any regex: bounds the work below
    if problem:
        return Extraction(None, "rejected", detail=problem)
    if prompt and prompt.strip():
        stripped = response.replace(prompt.strip(), " ")
        if stripped != response and not stripped.strip():
            return Extraction(None, "echo")
        response = stripped
    if len(_BOXED_RE.findall(response, 0, MAX_RESPONSE_CHARS)) > MAX_BOXED:
        return Extraction(None, "rejected", detail=f"more than {MAX_BOXED} \\boxed")
    spans, marker = _candidates(response, strict)
    return _choose(spans, marker, gold)


def _choose(spans: list[str], marker: str | None, gold: str | None) -> Extraction:
    answers = [a for a in (_clean(span) for span in spans) if a]
    if not answers:
        return Extraction(None, "no_answer", marker)
    numeric = bool(gold) and _PLAIN_NUMBER_RE.fullmatch(gold) is not None
    values = [_read_number(a) if numeric and len(a) <= MAX_ANSWER_CHARS else None
              for a in answers]
    keys = {v if v not in (None, _SEVERAL) else _SPACE_RE.sub("", a)
            for a, v in zip(answers, values, strict=True)}
    answer, value = answers[-1], values[-1]
    if len(keys) > 1:
        return Extraction(answer, "ambiguous", marker, "different final answers")
    if len(answer) > MAX_ANSWER_CHARS:
        return Extraction(None, "rejected", marker, f"answer longer than {MAX_ANSWER_CHARS}")
    if _brace_depth(answer) > MAX_BRACE_DEPTH:
        return Extraction(None, "rejected", marker, f"braces nested over {MAX_BRACE_DEPTH} deep")
    signals = _value_signals(answer)
    hedges = signals - (_value_signals(gold) if gold else set()) - _NUMBER_FORMS
    if hedges:
        return Extraction(answer, "ambiguous", marker, f"several values ({min(hedges)})")
    forms = signals & _NUMBER_FORMS
    if forms and value is None:
        # math-verify reads "1 1/2" as 1/2 and "1e3" as 3e: grade the exact value, or nothing.
        value = _read_number(answer)
        if value is None:
            return Extraction(answer, "ambiguous", marker, f"unreadable number ({min(forms)})")
    if value == _SEVERAL:
        return Extraction(answer, "ambiguous", marker, "several numbers")
    return Extraction(answer, None, marker, value=value)


def gold_answer(gold: str | float | int) -> str:
    r"""The final answer inside a gold field: after the last ``####``, else the last ``\boxed``.

    Example:
        >>> gold_answer("48/2 = 24 clips\n#### 72")
        '72'
    """
    if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
        raise TypeError(f"gold must be a str or a number, got {type(gold).__name__}")
    text = str(gold)
    hashes = _last_hash_line(text)
    if hashes is not None:
        return _clean(hashes)
    boxed = boxed_contents(text)
    return _clean(boxed[-1]) if boxed else _clean(text)


# --------------------------------------------------------------------------- scorers
def grade_batch(
    responses: Sequence[str],
    golds: Sequence[str | float | int],
    *,
    strict: bool = False,
    prompts: Sequence[str | None] | None = None,
    timeout: float | None = None,
    pool: GradingPool | None = None,
) -> list[MathResult]:
    r"""Grade many responses at once, spreading math-verify work over the worker pool.

    Args:
        responses: model replies (response text only).
        golds: gold answers or gold solutions (``#### x`` / ``\boxed{x}`` are unwrapped).
        strict: require ``####`` or ``\boxed{}`` (see :func:`extract_answer`).
        prompts: questions, for echo detection (optional).
        timeout: hard deadline in seconds per grading (default: the pool's).
        pool: a :class:`GradingPool` (default: the shared one).

    Example:
        >>> [r.verdict for r in grade_batch(["#### 4", "#### 5"], ["4", "4"])]
        ['correct', 'wrong']
    """
    if len(responses) != len(golds):
        raise ValueError(f"got {len(responses)} responses but {len(golds)} golds")
    prompts = list(prompts) if prompts is not None else [None] * len(responses)
    results: list[MathResult | None] = [None] * len(responses)
    jobs, where = [], []
    for i, (response, gold, prompt) in enumerate(zip(responses, golds, prompts, strict=True)):
        gold_text = gold_answer(gold)
        found = extract_answer(response, strict=strict, prompt=prompt, gold=gold_text)
        if found.verdict is not None:
            results[i] = MathResult(0.0, found.answer, found.verdict, gold_text, found.detail)
        else:
            jobs.append((gold_text, found.value or found.answer))
            where.append((i, found.answer))
    graded = (pool or get_pool()).verify_many(jobs, timeout=timeout) if jobs else []
    for (i, answer), (gold_text, _), (verdict, detail) in zip(where, jobs, graded, strict=True):
        reward = 1.0 if verdict == "correct" else 0.0
        results[i] = MathResult(reward, answer, verdict, gold_text, detail)
    return results  # type: ignore[return-value]


def math_accuracy(
    response: str, gold: str | float | int, *, strict: bool = False, prompt: str | None = None,
    timeout: float | None = None,
) -> MathResult:
    r"""1.0 when the final answer of ``response`` equals ``gold`` (math-verify), else 0.0.

    Example:
        >>> math_accuracy(r"so $x = \boxed{\frac{1}{2}}$", "0.5").reward
        1.0
    """
    return grade_batch([response], [gold], strict=strict, prompts=[prompt], timeout=timeout)[0]


def gsm8k_accuracy(
    response: str, gold: str | float | int, *, strict: bool = False, prompt: str | None = None,
    timeout: float | None = None,
) -> MathResult:
    r"""GSM8K accuracy: ``gold`` may be the full reference solution ending in ``#### x``.

    The final answer is read as one exact number: units, currency, a remark in parentheses and
    thousands separators around it are fine (``#### $1 000 (a thousand)``), and so are
    approximation words and currency codes before it (``about 72``, ``USD 72``), scale words,
    exponents and mixed numbers (``1.2 million``, ``1e3``, ``72 1/2``); a percent sign is not a
    factor of 100 (``#### 10%`` equals gold ``10`` and is wrong against ``0.1``); two numbers
    (``#### 72 73``, ``#### 41, 42``) are a hedge and score 0 (``ambiguous``). See the module
    docstring for every rule.

    Example:
        >>> gsm8k_accuracy("24 + 48 = 72\n#### 72", "48/2 = 24\n#### 72").verdict
        'correct'
        >>> [gsm8k_accuracy(r, "1000").reward for r in ("#### 1 000 km", "#### 1000 1001")]
        [1.0, 0.0]
        >>> gsm8k_accuracy("#### 10%", "10").reward, gsm8k_accuracy("#### 10%", "0.1").reward
        (1.0, 0.0)
        >>> [gsm8k_accuracy(r, "1200000").reward for r in ("#### about 1.2 million", "#### 1.2")]
        [1.0, 0.0]
    """
    return math_accuracy(response, gold, strict=strict, prompt=prompt, timeout=timeout)


MARKERS = ("####", "boxed", "any")  # what format_reward (and FormatBonus) can ask for


def format_reward(response: str, *, marker: str = "any", think: bool = False) -> MathResult:
    r"""1.0 when the response has exactly one final-answer marker with an answer in it.

    A format is a marker *with an answer*: ``####`` followed by something on its line, or a
    ``\boxed{}`` that is not empty. The answer is what :func:`extract_answer` would read there,
    and it must write something — a digit, a letter, a symbol or a meaningful command — so
    ``#### $``, ``#### -``, ``#### \text{}`` or ``\boxed{\quad}`` are no answer either (verdict
    ``no_answer``). ``think=True`` also needs exactly one
    ``<think>...</think>`` block with something in it, before the answer. This is the one format
    rule of the project: the TRL function and :class:`~llm_gym.wrappers.FormatBonus` (with a
    ``marker``) call it.

    Args:
        response: the model's reply only.
        marker: ``"####"``, ``"boxed"`` or ``"any"`` (one of the two).
        think: also require the ``<think>...</think>`` block.

    Duplicated markers or tags earn nothing: a bonus per tag is the classic format hack.

    Example:
        >>> format_reward("<think>2+2</think> #### 4", think=True).reward
        1.0
        >>> format_reward("#### 4 #### 4").verdict, format_reward("#### ").verdict
        ('duplicate_tags', 'no_answer')
    """
    if marker not in MARKERS:
        raise ValueError(f"marker must be '####', 'boxed' or 'any', got {marker!r}")
    problem = _precheck(response)
    if problem:
        return MathResult(0.0, None, "rejected", detail=problem)
    hashes, boxed = response.count("####"), len(_BOXED_RE.findall(response))
    counts = {"####": hashes, "boxed": boxed, "any": hashes + boxed}
    # "#### \boxed{4}" is one answer written both ways, not a duplicate.
    if marker == "any" and hashes == 1 and boxed == 1 and _HASH_RE.findall(response)[0].lstrip(
    ).startswith(("\\boxed", "\\fbox")):
        counts["any"] = 1
    if counts[marker] == 0:
        return MathResult(0.0, None, "format_error", detail=f"no {marker} answer")
    if counts[marker] > 1:
        return MathResult(0.0, None, "duplicate_tags", detail=f"{counts[marker]} answers")
    answer = _clean(_marked_span(response, marker, hashes))
    if not _holds_answer(answer):
        return MathResult(0.0, None, "no_answer", detail="the marker holds no answer")
    if think:
        problem = _think_problem(response)
        if problem:
            return MathResult(0.0, answer, problem[0], detail=problem[1])
    return MathResult(1.0, answer, "formatted")


def _marked_span(response: str, marker: str, hashes: int) -> str:
    """What the one marker of ``response`` holds (``####``'s line, else the box)."""
    if marker != "boxed" and hashes:
        return _last_hash_line(response) or ""
    contents = boxed_contents(response, limit=2)
    return contents[0] if contents else ""  # an unclosed box holds nothing


def _holds_answer(answer: str) -> bool:
    r"""Whether ``answer`` writes anything: a digit, a letter, a symbol or a meaningful command.

    Spacing, wrappers and ASCII punctuation alone (``\text{}``, ``\quad``, ``-``) are nothing.
    """
    for token in _MATH_TOKEN_RE.finditer(answer):
        kind, part = token.lastgroup, token.group()
        if kind in ("num", "word") or (kind == "cmd" and part not in _LAYOUT_COMMANDS) or (
                kind is None and not part.isascii()):
            return True
    return False


def _think_problem(response: str) -> tuple[str, str] | None:
    """``(verdict, detail)`` unless one non-empty think block comes before the answer."""
    opens, closes = response.count("<think>"), response.count("</think>")
    if opens != 1 or closes != 1:
        verdict = "duplicate_tags" if max(opens, closes) > 1 else "format_error"
        return verdict, "need one <think>...</think>"
    start, end = response.index("<think>"), response.index("</think>")
    last_marker = max(response.rfind("####"), response.rfind("\\boxed"))
    if not start < end < last_marker:
        return "format_error", "answer must follow </think>"
    if not response[start + len("<think>") : end].strip():
        return "format_error", "an empty <think> block"
    return None


def check_golds(
    golds: Sequence[str | float | int], *, pool: GradingPool | None = None
) -> list[str | None]:
    """Parse every gold answer with math-verify; ``None`` per gold that parses, else the reason.

    Example:
        >>> check_golds(["72", "#### 1,080", ""])
        [None, None, 'empty gold answer']
    """
    texts = [gold_answer(g) for g in golds]
    todo = [i for i, t in enumerate(texts) if t and not _PLAIN_NUMBER_RE.fullmatch(t)]
    results: list[str | None] = [None if t else "empty gold answer" for t in texts]
    checked = (pool or get_pool()).parse_golds([texts[i] for i in todo]) if todo else []
    for i, (verdict, detail) in zip(todo, checked, strict=True):
        if verdict != "parsed":
            results[i] = f"math-verify cannot parse gold {texts[i]!r} ({verdict}{detail})"
    return results
