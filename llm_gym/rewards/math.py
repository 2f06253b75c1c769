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

Verdicts: ``correct``, ``wrong``, ``no_answer`` (nothing extractable, or an empty answer),
``ambiguous`` (several different final answers), ``echo`` (only a copy of the prompt),
``rejected`` (failed a cheap safety pre-check: too long, NUL bytes, lone surrogates, deep brace
nesting, too many ``\boxed``), ``timeout`` and ``error``. Only ``correct`` scores 1.
"""

from __future__ import annotations

import re
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

_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS_RE = re.compile(
    r"answer\s*(?:is|:)\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE
)
# Several alternatives in one final answer ("41 or 42", "42 \pm 1") are a hedge, not an answer.
_HEDGE_RE = re.compile(r"\bor\b|\band\b|\\pm\b|\\mp\b|±|∓")
_TRAILING_WORDS_RE = re.compile(r"(?:\s+[A-Za-z]{2,}[.,;:!]?)+$")
_SPACE_RE = re.compile(r"\s+")
# A plain decimal number always parses; golds like this skip the worker round trip at load.
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


@dataclass(frozen=True)
class MathResult:
    """What a math scorer returns.

    Attributes:
        reward: 1.0 or 0.0.
        answer: the extracted final answer (``None`` when none was found).
        verdict: one of the module's verdicts (``correct``, ``wrong``, ``no_answer``, ...).
        gold: the gold answer it was compared with.
        detail: a short reason for ``rejected``/``error`` verdicts, else ``""``.
    """

    reward: float
    answer: str | None
    verdict: str
    gold: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Extraction:
    """A final answer pulled out of a response, or the reason there is none."""

    answer: str | None
    verdict: str | None = None  # None when ``answer`` is usable
    marker: str | None = None   # "####", "boxed" or "answer is"
    detail: str = ""


# --------------------------------------------------------------------------- extraction
def boxed_contents(text: str) -> list[str]:
    r"""Contents of every ``\boxed{...}`` in ``text`` (balanced braces, linear scan).

    Example:
        >>> boxed_contents(r"so \boxed{\frac{1}{2}} and \boxed{3}")
        ['\\frac{1}{2}', '3']
    """
    found = []
    for match in _BOXED_RE.finditer(text):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            char = text[pos]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:pos])
                    break
    return found


def _clean(span: str) -> str:
    span = span.strip()
    inner = boxed_contents(span)
    if len(inner) == 1 and span.startswith(("\\boxed", "\\fbox")):
        span = inner[0].strip()
    span = span.strip("*").strip()  # markdown bold around the answer
    if span.startswith("\\(") and span.endswith("\\)"):
        span = span[2:-2]
    span = span.strip().strip("$").strip().rstrip(".").strip()
    if re.match(r"^[-+\\$]?\d", span):
        # "18 dollars" -> "18": trailing unit words confuse the parser, never change the value
        span = _TRAILING_WORDS_RE.sub("", span)
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
    return None if at < 0 else text[at + 4 :].split("\n", 1)[0]


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
        stated = _ANSWER_IS_RE.findall(response)
        if stated:
            return [stated[-1]], "answer is"
    return [], None


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
        gold: the gold answer; hedge words it contains itself (``\pm``, "or") are not a hedge.

    Example:
        >>> extract_answer("2 + 2 = 4\n#### 4").answer
        '4'
        >>> extract_answer(r"\boxed{41} \boxed{42}").verdict
        'ambiguous'
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    problem = _precheck(response)
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
    answers = [_clean(span) for span in spans]
    answers = [a for a in answers if a]
    if not answers:
        return Extraction(None, "no_answer", marker)
    distinct = {_SPACE_RE.sub("", a) for a in answers}
    if len(distinct) > 1:
        return Extraction(answers[-1], "ambiguous", marker)
    answer = answers[-1]
    if len(answer) > MAX_ANSWER_CHARS:
        return Extraction(None, "rejected", marker, f"answer longer than {MAX_ANSWER_CHARS}")
    if _brace_depth(answer) > MAX_BRACE_DEPTH:
        return Extraction(None, "rejected", marker, f"braces nested over {MAX_BRACE_DEPTH} deep")
    if _HEDGE_RE.search(answer) and not (gold and _HEDGE_RE.search(gold)):
        return Extraction(answer, "ambiguous", marker)
    return Extraction(answer, None, marker)


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
            jobs.append((gold_text, found.answer))
            where.append(i)
    graded = (pool or get_pool()).verify_many(jobs, timeout=timeout) if jobs else []
    for i, (gold_text, answer), (verdict, detail) in zip(where, jobs, graded, strict=True):
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

    Example:
        >>> gsm8k_accuracy("24 + 48 = 72\n#### 72", "48/2 = 24\n#### 72").verdict
        'correct'
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
