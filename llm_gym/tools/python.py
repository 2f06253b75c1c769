r"""The ``python`` tool: run the model's code in :mod:`llm_gym.sandbox` and return what it printed.

Code from the model runs only in the sandbox, through the process-wide pool the code rewards use
(:func:`llm_gym.rewards.code.default_pool`, or the pool a Ray scoring worker installed), with
every guarantee of a code reward: its own UID, an empty root with the standard library only, no
network, a wall deadline of :data:`PYTHON_TIMEOUT` seconds, memory and process limits. Nothing
of it runs in the env's process or in a tool thread.

The text that comes back is short and always says what happened:

* the program's stdout, cut after :data:`MAX_OUTPUT_CHARS` characters (marked);
* on an uncaught exception, the last :data:`MAX_ERROR_CHARS` characters of its traceback (the
  frames of the program, not the sandbox's), after what it printed;
* ``error: timed out after 5 s``, ``error: out of memory ...``, ``error: exit status 3`` ...

Where the sandbox refuses to run (no namespace isolation, and degraded runs not allowed with
``LLM_GYM_SANDBOX_ALLOW_DEGRADED=1``), the tool raises
:class:`~llm_gym.sandbox.SandboxUnavailable`: the env gives the model an error result and counts
a tool error. It never falls back to running the code anywhere else.

Example:
    >>> python("print(6 * 7)")  # doctest: +SKIP
    '42\n'
    >>> print(python("1 / 0"))  # doctest: +SKIP
    Traceback (most recent call last):
      File "<program>", line 1, in <module>
    ZeroDivisionError: division by zero
    >>> describe_run(RunResult(Status.TIMEOUT, None), timeout=5.0)
    'error: timed out after 5 s'
"""

from __future__ import annotations

from typing import Any

from llm_gym.rewards.code import default_pool
from llm_gym.sandbox import RunResult, Status

#: Wall deadline of one call, in seconds (the tool's own deadline in the env is 10 s).
PYTHON_TIMEOUT = 5.0
#: Characters of stdout returned before the rest is cut.
MAX_OUTPUT_CHARS = 1000
#: Characters of a traceback (its end) or of stderr returned on an error.
MAX_ERROR_CHARS = 300
OUTPUT_TRUNCATED = "\n[output truncated]"
NO_OUTPUT = "(no output; print() the values you want to see)"
# The file name the sandbox's bootstrap compiles the program under.
_PROGRAM_FRAME = 'File "<program>"'


def python(code: str) -> str:
    """Run a Python program in a sandbox (no network, 5 s limit) and return what it prints.

    Args:
        code: the program; print() every value you want to see.
    """
    return run_python(code)


def run_python(code: str, *, timeout: float = PYTHON_TIMEOUT, pool: Any = None) -> str:
    """Run ``code`` in the sandbox and describe the run for the model (:func:`describe_run`).

    Args:
        code: Python source from the model (untrusted).
        timeout: wall deadline of the run, in seconds.
        pool: a :class:`~llm_gym.sandbox.SandboxPool` (anything with its ``run``); default the
            process-wide pool of :func:`llm_gym.rewards.code.default_pool`.

    Raises:
        TypeError: ``code`` is not a string.
        SandboxUnavailable: the sandbox refuses to run on this machine (see the module doc).
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a string of Python source, got {type(code).__name__}")
    if not code.strip():
        return "error: no code given"
    run = (pool or default_pool()).run(code, timeout=timeout)
    return describe_run(run, timeout)


def describe_run(run: RunResult, timeout: float) -> str:
    r"""The text the model gets for one sandboxed run: output, and what went wrong if anything.

    Example:
        >>> describe_run(RunResult(Status.OK, 0, stdout="42\n"), timeout=5.0)
        '42\n'
        >>> describe_run(RunResult(Status.ERROR, 3, stdout="hi\n"), timeout=5.0)
        'hi\nerror: exit status 3'
    """
    output = _cut(run.stdout)
    if run.status == Status.OK:
        return output or NO_OUTPUT
    if run.status == Status.TIMEOUT:
        return f"error: timed out after {timeout:g} s"
    if run.status == Status.OUTPUT_LIMIT:
        return _cut(run.stdout, always_mark=True)
    if run.status == Status.MEMORY:
        problem = "error: out of memory (the sandbox's memory limit)"
    elif run.status == Status.KILLED:
        problem = "error: killed (e.g. the CPU time limit)"
    else:
        problem = _traceback_tail(run.stderr) or f"error: exit status {run.returncode}"
    if output and not output.endswith("\n"):
        output += "\n"
    return output + problem


def _cut(text: str, always_mark: bool = False) -> str:
    """``text`` up to :data:`MAX_OUTPUT_CHARS`, marked when cut (or when ``always_mark``)."""
    if len(text) <= MAX_OUTPUT_CHARS and not always_mark:
        return text
    return text[:MAX_OUTPUT_CHARS] + OUTPUT_TRUNCATED


def _traceback_tail(stderr: str) -> str:
    """The end of the program's traceback (sandbox frames dropped), else of stderr."""
    text = stderr.rstrip()
    start = text.find(_PROGRAM_FRAME)
    if start >= 0:
        frames = text[text.rfind("\n", 0, start) + 1:]
        text = "Traceback (most recent call last):\n" + frames
    if len(text) > MAX_ERROR_CHARS:
        text = "..." + text[-MAX_ERROR_CHARS:]
    return text
