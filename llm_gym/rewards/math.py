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

Numeric golds (every GSM8K answer: a plain decimal like ``72``, ``-3``, ``1,080`` or ``0.5``):
the final answer is read as one number when it is one number with decorations, and that number
is graded. Accepted around the number: a sign, currency symbols (``$``, ``\$``, ``€``, ``£``,
...) before it; units and words after it (``72 km/h``, ``72 cm^2``, ``72 dollars``); a
parenthetical remark without digits (``72 (six dozen)``); a percent sign, which is *not* a
factor of 100 (GSM8K golds hold the number the question asks for, so ``10%`` equals gold ``10``
and is wrong against ``0.1``); thousands separators ``,``, a space, a thin or no-break space,
``\,``, ``{,}``, ``~`` between 3-digit groups (``1 000``); full-width and other Unicode digits.
Two numbers with only such decorations between them (``72 73``, ``41, 42``, ``72 (73)``) are
several final values: verdict ``ambiguous``. Anything else (``144/2``, ``x = 72``) goes to
math-verify unchanged.

Several final values are a hedge, never an answer, whatever the gold: different ``####`` /
``\boxed`` answers, the words "or"/"and", ``\pm``, ``\vee``/``\lor``/``\wedge``, ``;``, a line
break ``\\`` or ``&`` outside an environment (``5 \\ 6``), an equation whose sides before the
last are constants (``30 = 72``; ``x = 6`` is one value), and two numbers side by side with no
operator between (``5 \quad 6``, ``5 \to 6``: math-verify would silently grade the last one). A
hedge the gold itself contains (gold ``1 \pm \sqrt{2}``) is not one.

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
_SUPERSCRIPT_DIGITS = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
# A plain decimal number always parses; golds like this skip the worker round trip at load.
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")

# Tokens of a numeric answer ("$1 000.50 km/h (about)"); see _read_number.
_NUMBER_TOKEN_RE = re.compile(
    r"""(?P<num>(?:\d{1,3}(?:(?:,|\{,\}|,?\\[,!]|[^\S\r\n]|~|')\d{3})+|\d+)(?:\.\d+)?(?!\d)
            |\.\d+)
    |(?P<space>\s+|~|\\[,;:!\ ]|\\q?quad(?![A-Za-z]))
    |(?P<sign>[-+])
    |(?P<currency>\\?\$|[€£¥₹₩₽¢])
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
_NOT_DIGITS_RE = re.compile(r"[^0-9.]")

# Tokens for hedge detection: numbers, control sequences, letter runs, spaces, runs of symbols
# that mean nothing to it ("$$", "##"), any other single character.
_MATH_TOKEN_RE = re.compile(
    r"(?P<num>\d+(?:\.\d+)?)|(?P<cmd>\\(?:[A-Za-z]+|.))|(?P<word>[^\W\d_]+)|(?P<space>\s+)"
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
    """``"18 dollars"`` -> ``"18"``; keeps the words when they hold a hedge ("or 19")."""
    words = _REVERSED_TRAILING_WORDS_RE.match(span[::-1])
    if words is None or _HEDGE_WORD_RE.search(span, len(span) - words.end()):
        return span
    return span[: len(span) - words.end()]


def _clean(span: str) -> str:
    span = span.strip()
    inner = boxed_contents(span, limit=2)
    if len(inner) == 1 and span.startswith(("\\boxed", "\\fbox")):
        span = inner[0].strip()
    span = span.strip("*").strip()  # markdown bold around the answer
    if span.startswith("\\(") and span.endswith("\\)"):
        span = span[2:-2]
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
    """Full-width forms (``７２``, ``＄``), other Unicode digits and ``−`` as ASCII."""
    def ascii_char(match: re.Match[str]) -> str:
        char = match.group()
        if "\uff01" <= char <= "\uff5e":
            return chr(ord(char) - 0xFEE0)
        if char == "\u2212":
            return "-"
        digit = unicodedata.decimal(char, None)
        return char if digit is None else str(digit)

    return _NON_ASCII_RE.sub(ascii_char, text)


def _read_number(answer: str) -> str | None:
    r"""``answer`` as one plain decimal number, ``_SEVERAL``, or ``None`` when it is no number.

    One pass over tokens (see the module docstring for what is accepted around the number).
    Arithmetic (``144/2``, ``72^2``, ``x = 72``) gives ``None``: math-verify's job.

    Example:
        >>> _read_number("$1,000.50 (about)"), _read_number("72 km/h"), _read_number("72 73")
        ('1000.50', '72', 'several values')
    """
    text, number, sign, previous, pos = _ascii_digits(answer), None, "", "", 0
    while pos < len(text):
        token = _NUMBER_TOKEN_RE.match(text, pos)
        if token is None:
            return None
        kind, pos = token.lastgroup, token.end()
        if kind == "space":
            continue
        if kind == "num":
            digits = _NOT_DIGITS_RE.sub("", token.group())
            if number is not None and digits != number:
                return _SEVERAL  # "72 (72 dollars)" repeats one value; "72 73" is two
            number = digits
        elif number is None:  # before the number: a sign and currency only
            if kind == "sign" and not sign:
                sign = token.group()
            elif kind != "currency":
                return None
        elif kind == "sign" and (token.group() != "-" or previous != "word"):
            return None  # "72 - 1", "72+": arithmetic; "year-old" is a word
        elif kind in ("slash", "power") and previous == "num":
            return None  # "144/2", "72^2"; "km/h" and "cm^2" are units
        previous = kind
    if number is None:
        return None
    whole, _, fraction = number.partition(".")
    value = (whole.lstrip("0") or "0") + (f".{fraction}" if fraction else "")
    return f"-{value}" if sign == "-" and value.strip("0.") else value


def _value_signals(text: str) -> set[str]:
    r"""Signs of several final values in ``text``: hedge tokens, "equation", "juxtaposed".

    One pass. ``\\`` and ``&`` count only outside ``\begin...\end`` (matrices use them); an
    equation counts when a side before the last is a constant (``30 = 72``, not ``x = 6``); two
    numbers count as juxtaposed when no operator is between them (``5 \quad 6``, ``5 \to 6``,
    ``\text{5} \text{6}``), unless the second is a thousands group (``1 000``).

    Example:
        >>> sorted(_value_signals(r"30 = 72")), sorted(_value_signals(r"5 \vee 6"))
        (['equation'], ['\\vee', 'juxtaposed'])
        >>> _value_signals(r"x = \frac{1}{2}") | _value_signals("1 000")
        set()
    """
    signals: set[str] = set()
    env = text_depth = 0
    groups: list[str] = []           # open brace groups: "operand", "text" or "plain"
    side_value = side_name = False   # what the current side of an equation holds
    after_number, gap = False, ""    # a number with no operator since; the text in between
    previous = ""                    # the last token that is not space
    for token in _MATH_TOKEN_RE.finditer(text):
        part, kind = token.group(), token.lastgroup
        if kind == "word" and part.lower() in ("or", "and"):
            part = part.lower()
        env += (part == "\\begin") - (env > 0 and part == "\\end")
        if part in _HEDGE_TOKENS or (part in _ALIGNMENT_TOKENS and env == 0):
            signals.add(part)
        if env or part == "\\end":
            continue
        if kind == "space":
            gap = (gap + " ")[:8]
            continue
        if part in _RELATIONS and not groups:
            if side_value and not side_name:
                signals.add("equation")
            side_value = side_name = after_number = False
        elif part == "{":
            group = ("operand" if previous in _OPERAND_OPENERS
                     else "text" if previous in _TEXT_COMMANDS else "plain")
            groups.append(group)
            text_depth += group == "text"
            after_number = after_number and group != "operand"
        elif part == "}":
            group = groups.pop() if groups else "plain"
            text_depth -= group == "text"
            after_number = after_number and group != "operand"
            part = "}" + group
        elif kind == "num":
            side_value = True
            if after_number and not (gap.strip() in _THOUSANDS_GAPS and len(part) >= 3
                                     and part[:3].isdigit() and part[3:4] in ("", ".")):
                signals.add("juxtaposed")
            # A bare exponent or subscript belongs to its base: "\log_2 3" is one value.
            after_number, gap = previous not in ("^", "_"), ""
        elif part in _OPERATOR_CHARS or part in _OPERATOR_COMMANDS:
            after_number = False
        else:
            if (kind == "word" and not text_depth) or (
                    kind == "cmd" and part not in _CONSTANT_COMMANDS):
                side_name = True
            side_value = side_value or part in ("\\pi", "\\infty")
            gap = (gap + part)[:8]
        previous = part
    return signals


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
    hedges = _value_signals(answer) - (_value_signals(gold) if gold else set())
    if hedges:
        return Extraction(answer, "ambiguous", marker, f"several values ({min(hedges)})")
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

    The final answer is read as one number: units, currency, a remark in parentheses and
    thousands separators around it are fine (``#### $1 000 (a thousand)``); a percent sign is
    not a factor of 100 (``#### 10%`` equals gold ``10`` and is wrong against ``0.1``); two
    numbers (``#### 72 73``, ``#### 41, 42``) are a hedge and score 0 (``ambiguous``).

    Example:
        >>> gsm8k_accuracy("24 + 48 = 72\n#### 72", "48/2 = 24\n#### 72").verdict
        'correct'
        >>> [gsm8k_accuracy(r, "1000").reward for r in ("#### 1 000 km", "#### 1000 1001")]
        [1.0, 0.0]
        >>> gsm8k_accuracy("#### 10%", "10").reward, gsm8k_accuracy("#### 10%", "0.1").reward
        (1.0, 0.0)
    """
    return math_accuracy(response, gold, strict=strict, prompt=prompt, timeout=timeout)


def format_reward(response: str, *, marker: str = "any", think: bool = False) -> MathResult:
    r"""1.0 when the response has exactly one final-answer marker (and think tags, if asked).

    Args:
        response: the model's reply only.
        marker: ``"####"``, ``"boxed"`` or ``"any"`` (one of the two).
        think: also require exactly one ``<think>...</think>`` block before the answer.

    Duplicated markers or tags earn nothing: a bonus per tag is the classic format hack.

    Example:
        >>> format_reward("<think>2+2</think> #### 4", think=True).reward
        1.0
        >>> format_reward("#### 4 #### 4").verdict
        'duplicate_tags'
    """
    if marker not in ("####", "boxed", "any"):
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
    if think:
        opens, closes = response.count("<think>"), response.count("</think>")
        if opens != 1 or closes != 1:
            verdict = "duplicate_tags" if max(opens, closes) > 1 else "format_error"
            return MathResult(0.0, None, verdict, detail="need one <think>...</think>")
        end = response.index("</think>")
        last_marker = max(response.rfind("####"), response.rfind("\\boxed"))
        if not response.index("<think>") < end < last_marker:
            return MathResult(0.0, None, "format_error", detail="answer must follow </think>")
    return MathResult(1.0, None, "formatted")


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
