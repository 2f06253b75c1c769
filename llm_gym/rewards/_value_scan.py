r"""The LaTeX final-value scanner: signs that one answer holds several final values.

math-verify grades the *last* value of ``5 \vee 6``, ``5 \\ 6`` or ``\begin{cases} 72 \\ 73
\end{cases}`` and silently drops a number's subscript (``72_{73}``), so a hedge would score as
an answer. :func:`_value_signals` reads an answer's LaTeX tokens once, following environments,
brace groups and scripts as math-verify does, and names what it finds (hedge tokens,
``"equation"``, ``"juxtaposed"``, ``"subscript"``, ...); the caller treats any signal the gold
does not share as a hedge. It also flags the number forms math-verify misreads
(:data:`_NUMBER_FORMS`), which the number reader then grades exactly. The rules are in the
docstring of :mod:`llm_gym.rewards.math`.
"""

from __future__ import annotations

import re

from llm_gym.rewards._number_reader import _digits_below

# Every regex below is linear-time on any input: no nested or adjacent quantifiers that can
# trade characters with each other on a failed match (issue 13; 1 MB inputs are tested).

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
_ENV_NAME_RE = re.compile(r"[ \t]*\{([A-Za-z]*\*?)\}")  # after \begin / \end
# The environments math-verify reads as one matrix value; it flattens every other one.
_MATRIX_ENVIRONMENTS = frozenset({"matrix", "pmatrix", "bmatrix", "array"})
_THOUSANDS_GAPS = frozenset({"", "\\,", "\\!", "~", "\\", "'"})  # "1 000", "1\,000" (stripped)


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
