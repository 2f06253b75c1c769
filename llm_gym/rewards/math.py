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

The pieces live in private modules, each with one job: ``_limits`` (size limits and the
pre-check), ``_answer_spans`` (where the answer is: ``####``, ``\boxed{}``, "the answer is",
and its cleanup), ``_number_reader`` (a GSM8K answer read as one exact number),
``_value_scan`` (LaTeX signs of several final values) and ``_grading_pool`` (the math-verify
workers). This module holds the verdicts and the public scorers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from llm_gym.rewards._answer_spans import (
    _candidates,
    _clean,
    _last_hash_line,
    boxed_contents,
)

# Not used here: reached through this module by the tests of each extraction step.
from llm_gym.rewards._answer_spans import _stated_answer as _stated_answer
from llm_gym.rewards._answer_spans import _strip_or_so as _strip_or_so
from llm_gym.rewards._answer_spans import _strip_trailing_words as _strip_trailing_words
from llm_gym.rewards._grading_pool import GradingPool, get_pool
from llm_gym.rewards._limits import (
    MAX_ANSWER_CHARS,
    MAX_BOXED,
    MAX_BRACE_DEPTH,
    MAX_RESPONSE_CHARS,
    _brace_depth,
    _precheck,
)
from llm_gym.rewards._number_reader import _SEVERAL, _read_number
from llm_gym.rewards._number_reader import MAX_EXPONENT as MAX_EXPONENT  # a public bound
from llm_gym.rewards._value_scan import (
    _MATH_TOKEN_RE,
    _NUMBER_FORMS,
    _TEXT_COMMANDS,
    _TRANSPARENT,
    _value_signals,
)

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

# Every regex below is linear-time on any input: no nested or adjacent quantifiers that can
# trade characters with each other on a failed match (issue 13; 1 MB inputs are tested).
# The two marker patterns live here: extract_answer and format_reward count markers only
# after the pre-check (tests swap these names out to prove it).
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_SPACE_RE = re.compile(r"\s+")
# A plain decimal number always parses; golds like this skip the worker round trip at load.
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# Commands that write nothing by themselves: "#### \text{}" or "#### \quad" holds no answer.
_LAYOUT_COMMANDS = _TEXT_COMMANDS | _TRANSPARENT | {
    "\\boxed", "\\fbox", "\\hspace", "\\vspace", "\\phantom", "\\hphantom", "\\vphantom",
    "\\(", "\\)", "\\[", "\\]", "\\{", "\\}", "\\\\", "\\newline",
}


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
