"""Size limits of math grading and the cheap pre-check that runs before any scan.

A response passes :func:`_precheck` before any regex touches it, so extraction costs time linear in
:data:`MAX_RESPONSE_CHARS` at most, whatever the model writes (issue 13); the other limits bound
what one final answer may hold. :mod:`llm_gym.rewards.math` says which verdict each one gives.
"""

from __future__ import annotations

MAX_RESPONSE_CHARS = 100_000  # far above any honest response; keeps extraction cheap
MAX_ANSWER_CHARS = 1_000      # MATH's longest gold answers are a few hundred characters
MAX_BRACE_DEPTH = 32
MAX_BOXED = 64


def _precheck(text: str) -> str | None:
    """Why ``text`` is refused before any scan (too long, NUL, lone surrogates), else ``None``."""
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
    """How deep ``{`` groups nest in ``text``; a stray ``}`` never takes the depth below 0."""
    depth = deepest = 0
    for char in text:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth = max(depth - 1, 0)
    return deepest

