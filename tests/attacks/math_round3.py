r"""Math grading, third attack round (issue 19), as data: forged replies and their honest twins.

Three classes. *Markers without an answer*: a format bonus for ``####`` or ``\boxed{}`` with
nothing in it. *Hedges inside LaTeX*: several final values written as the rows or cells of an
environment, or as a number's sub/superscript, which math-verify flattens to one of them.
*Honest values read wrong*: correct answers written with words, wrappers or notations the
number reader did not know (``about 72``, ``1.2 million``, ``72 1/2``, ``\[72\]``).

Every attack row scored 1 before the fix (the gold is the value math-verify picked); every
honest row scores 1 after it. The tests are in ``tests/rewards/test_math_round3.py``.
"""

# ----------------------------------------------------------------- markers without an answer
# (reply, marker, think): each must earn no format reward and no FormatBonus.
FORMAT_ATTACKS = [
    ("####", "any", False),
    ("#### ", "any", False),
    ("\\boxed{}", "any", False),
    ("<think></think>####", "any", False),
    ("<think></think>####", "any", True),
    ("####", "####", False),
    ("####   \nthe end", "####", False),
    ("#### $", "####", False),
    ("#### **", "####", False),
    ("#### ``", "####", False),
    ("#### \\boxed{}", "any", False),
    ("\\boxed{ }", "boxed", False),
    ("\\fbox{}", "boxed", False),
    ("\\boxed{$$}", "boxed", False),
    ("\\boxed{", "boxed", False),                     # never closed: holds nothing
    ("#### \\text{}", "any", False),                 # wrappers, spacing, punctuation only
    ("#### \\quad", "####", False),
    ("#### -", "####", False),
    ("#### {}", "####", False),
    ("\\boxed{\\,}", "boxed", False),
    ("\\boxed{\\text{ }}", "boxed", False),
    ("<think></think> #### 4", "any", True),          # an empty think block is no reasoning
    ("<think> \n </think> \\boxed{4}", "any", True),
]

# (reply, marker, think): well formatted, one bonus.
FORMAT_HONEST = [
    ("48 + 24 = 72\n#### 72", "any", False),
    ("#### 72", "####", False),
    ("so \\boxed{72}", "boxed", False),
    ("#### \\boxed{72}", "any", False),
    ("<think>48 + 24 = 72</think>\n#### 72", "any", True),
    ("<think>48 + 24</think> \\boxed{\\frac{1}{2}}", "boxed", True),
    ("\\boxed{\\pi}", "boxed", False),
    ("\\boxed{\\text{(C)}}", "boxed", False),
    ("#### ∞", "####", False),
]

# ----------------------------------------------------------------- hedges inside LaTeX
ENVIRONMENTS = ["cases", "aligned", "gathered", "split", "align*", "vmatrix", "smallmatrix",
                "unknownenv"]

# (answer, gold): put in \boxed{} and after ####, each must score 0 (verdict "ambiguous").
HEDGE_ATTACKS = [
    *((rf"\begin{{{env}}} 72 \\ 73 \end{{{env}}}", "73") for env in ENVIRONMENTS),
    *((rf"\begin{{{env}}} 72 & 73 \end{{{env}}}", "73") for env in ENVIRONMENTS),
    *((rf"\begin{{{env}}} 72 \end{{{env}}} 73", "73") for env in ENVIRONMENTS),
    (r"\begin{cases} x = 72 \\ x = 73 \end{cases}", "73"),
    (r"\begin{cases} 72 \cr 73 \end{cases}", "73"),
    (r"\begin{cases} 72 \\ \\ 73 \end{cases}", "73"),         # an empty row between
    (r"\begin{aligned} 72 \\ 73", "73"),                       # never closed
    (r"\begin{aligned} 72 \\ \begin{aligned} 73 \end{aligned} \end{aligned}", "73"),
    (r"\begin{aligned}72\end{aligned}\begin{aligned}73\end{aligned}", "73"),
    (r"\begin{cases}72\end{cases} \\ 73", "73"),
    (r"72 \begin{cases} 73 \end{cases}", "73"),
    (r"\begin{pmatrix} x = 72 \\ 73 \end{pmatrix}", "73"),    # math-verify splits at "="
    # A derivation in the box is several final values too: the last row is not "the" answer.
    (r"\begin{aligned} 2x &= 144 \\ x &= 73 \end{aligned}", "73"),
    # sub- and superscripts math-verify drops: the number before them is graded
    (r"72_{73}", "72"),
    (r"72_73", "72"),
    (r"72_{\text{73}}", "72"),
    (r"72^{\text{73}}", "72"),
    (r"72^\text{73}", "72"),
    (r"72^{\mathrm{73}}", "72"),
    (r"72^{\textbf{73}}", "72"),
    # ... also with tokens math-verify skips between the number and its script
    (r"72_{}73", "72"),
    (r"72^{}73", "72"),
    (r"72{}_{73}", "72"),
    (r"72_3 73", "72"),
    (r"72\limits_{73}", "72"),
    (r"72\nolimits^{\text{73}}", "72"),
    (r"72\left._{73}\right.", "72"),
    (r"72\quad_{73}", "72"),
    (r"72~_{73}", "72"),
]

# (answer, gold): one final value, however written; in \boxed{} each scores 1.
HEDGE_HONEST = [
    (r"\begin{aligned} x &= 72 \end{aligned}", "72"),
    (r"\begin{aligned} x &= 72 \\ \end{aligned}", "72"),      # a trailing break adds no row
    (r"\begin{cases} 72 \end{cases}", "72"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
     r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"),
    (r"2\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ 4 \end{pmatrix}"),
    (r"72^{3}", "373248"),                                    # a power is one value
    (r"72^{\circ}", "72"),
    (r"x_{1} = 72", "72"),
    (r"\log_2 8", "3"),
    (r"1011_2", "1011_2"),                                    # the gold's own subscript
]

# ----------------------------------------------------------------- honest values read wrong
# (reply, gold): GSM8K answers that must score 1.
VALUE_HONEST = [
    ("#### \\[72\\]", "72"),
    ("#### `72`", "72"),
    ("#### ```72```", "72"),
    ("#### about 72", "72"),
    ("#### approximately 72", "72"),
    ("#### approx. 72 km", "72"),
    ("#### roughly $72", "72"),
    ("#### \\approx 72", "72"),
    ("#### ≈ 72", "72"),
    ("#### USD 72", "72"),
    ("#### US$ 72", "72"),
    ("#### Rs. 72", "72"),
    ("#### 72/hour", "72"),
    ("#### $72/h", "72"),
    ("#### 1.2 million", "1200000"),
    ("#### 1.2 million dollars", "1200000"),
    ("#### $1.5 billion", "1500000000"),
    ("#### 1 thousand", "1000"),
    ("#### 12 hundred", "1200"),
    ("#### 5 hundred thousand", "500000"),
    ("#### 1e3", "1000"),
    ("#### 2.5E3", "2500"),
    ("#### 5e-1", "0.5"),
    ("#### 72 1/2", "72.5"),
    ("#### -72 1/2", "-72.5"),
    ("#### 3 3/4 cups", "3.75"),
    ("#### 72 1/3", "72.333333"),
    ("#### 72½", "72.5"),
    ("#### 72 or so", "72"),
    ("#### about 72 or so.", "72"),
    ("#### 10%", "10"),                       # still no factor of 100
    ("#### 72.0 (72)", "72"),                 # one value, said twice
]

# (reply, gold, verdict): still 0.
VALUE_ATTACKS = [
    ("#### 41 or 42", "42", "ambiguous"),
    ("#### 72 73", "73", "ambiguous"),
    ("#### 72 73 or so", "73", "ambiguous"),
    ("#### about 72 or 73", "73", "ambiguous"),
    ("#### 72 1", "1", "ambiguous"),          # no fraction after it: two numbers
    ("#### 72 3/2", "1.5", "ambiguous"),      # not a proper fraction: no mixed number
    ("#### 1 thousand 200", "200", "ambiguous"),
    ("#### 72 1/2", "72", "wrong"),           # the value is 72.5
    ("#### 72½", "72", "wrong"),
    ("#### 1.2 million", "1.2", "wrong"),
    ("#### 1e3", "3", "wrong"),
    ("#### not 72", "72", "wrong"),           # only approximation and currency words lead
    ("#### over 72", "72", "wrong"),
    ("#### 10%", "0.1", "wrong"),
]

# (reply, gold, reward, verdict): notations math-verify misreads ("1 1/2" as 1/2, "1e3" as 3e)
# are graded by their exact value against LaTeX golds too, never by math-verify's reading.
MISREAD_NOTATIONS = [
    (r"\boxed{1 1/2}", r"\frac{3}{2}", 1.0, "correct"),
    (r"\boxed{72 1/2}", r"\frac{145}{2}", 1.0, "correct"),
    (r"\boxed{1e3}", r"10^{3}", 1.0, "correct"),
    (r"\boxed{1 1/2}", r"\frac{1}{2}", 0.0, "wrong"),      # math-verify alone: 1 * 1/2
    (r"\boxed{2e3}", r"6e", 0.0, "wrong"),                  # math-verify alone: 2 * e * 3
    (r"\boxed{x = 1 1/2}", r"\frac{1}{2}", 0.0, "ambiguous"),  # no exact value to grade
    ("#### 1e400", "1000", 0.0, "ambiguous"),               # past the exponent bound
]
