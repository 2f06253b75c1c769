r"""Where the final answer is, and its cleanup: ``####``, ``\boxed{}``, "the answer is".

Plain string work on the response: the text after the last ``####`` (to the end of its line),
the contents of every ``\boxed{}`` (balanced braces, one pass), or in lenient mode what follows
the last "answer is". Each span is then cleaned: wrappers (a box, markdown bold or code, ``$``,
``\(...\)``) come off, Unicode superscripts become LaTeX powers, and trailing unit words after
a number go ("18 dollars" is "18"), unless they hold a hedge. Which span is the answer, and
whether several are a hedge, is decided by :func:`llm_gym.rewards.math.extract_answer`.
"""

from __future__ import annotations

import re

from llm_gym.rewards._limits import MAX_BOXED
from llm_gym.rewards._number_reader import _SCALE_WORDS

# Every regex below is linear-time on any input: no nested or adjacent quantifiers that can
# trade characters with each other on a failed match (issue 13; 1 MB inputs are tested).
_BOXED_OR_BRACE_RE = re.compile(r"\\(?:boxed|fbox)\s*\{|[{}]")
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:)", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_STARTS_NUMERIC_RE = re.compile(r"[-+\\$]?\d")
# Unit words after a number, matched on the *reversed* answer so one anchored pass finds them all.
_REVERSED_TRAILING_WORDS_RE = re.compile(r"(?:[.,;:!]?[A-Za-z]{2,}\s+)+")
_HEDGE_WORD_RE = re.compile(r"\b(?:or|and)\b", re.IGNORECASE)
# "72²" must not read as 72 (math-verify drops the superscript): written as LaTeX, it is 5184.
_SUPERSCRIPT_RE = re.compile("⁻?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
_SUPERSCRIPT_DIGITS = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
_FIRST_WORD_RE = re.compile(r"\s+([A-Za-z]+)")
_OR_SO_RE = re.compile(r"\s+or\s+so\W*$", re.IGNORECASE)  # run on a 64-character tail only


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
