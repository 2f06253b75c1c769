r"""Code rewards: run a completion's Python against MBPP / HumanEval tests, safely.

Design (RELIABILITY.md, "Code execution"): the verdict is decided *outside* the model's
process, never from its exit code, its stdout or anything its code can reach.

* The model's code runs in the sandbox (:mod:`llm_gym.sandbox`) as a **call server**: it is
  executed as module ``solution``, then answers call requests on a private pipe pair (inherited
  fds, not stdout).
* The trusted tests run in a separate **grader process** (``python -I -S``, not the trainer's
  process, with its own memory, CPU, file and output limits). Every name the tests use comes from
  the task — its prompt (HumanEval's helpers), test imports, setup code — or from builtins or the
  standard library; only the function under test is a proxy. Nothing the model wrote ever runs
  there. A proxy call sends the arguments to the sandbox, which calls the real function and
  returns the result through a strict encoder; the grader rebuilds it with ``json`` only, size
  checked first (exact builtin types; an ``int`` subclass or an object with its own ``__eq__``
  arrives as an opaque handle that equals nothing — never ``pickle``). An exception the
  candidate raised arrives as data: a builtin error keeps its type, ``StopIteration`` and the
  like become a plain failure.
* With a HumanEval ``prompt=``, the sandbox runs prompt + code as HumanEval's own harness does:
  a full solution or a body-only completion both work, and the prompt's helpers are there.
* The expected values never enter the model's process. Stack walking, ``gc``, ``__eq__``
  tricks, ``os._exit(0)``, ``SkipTest``, ``conftest.py``/``sitecustomize.py`` (both processes
  start with ``-I -S``), monkeypatching ``builtins``/``json``/``print``, mutating arguments,
  printing a fake verdict and pickled payloads therefore all score 0; the worst a program can
  do on the channel is choose its own return values, which is what a function does anyway.
* Every function here that reads model text (:func:`extract_code`, the forged-verdict and
  suspicious-pattern scans, the verdict line) runs in linear time: a stdout of 20,000 newlines
  took the old verdict regex 18 s in the trainer's process (issue 13).
* Reward: 1.0 when every test passes, else 0.0; with ``partial=True`` the fraction passed. A
  HumanEval ``check(candidate)`` is one test. Timeouts and crashes score 0.

Example:
    >>> result = code_pass_rate("```python\ndef add(a, b):\n    return a + b\n```",
    ...                         ["assert add(1, 2) == 3"])  # doctest: +SKIP
    >>> result.reward, result.verdict  # doctest: +SKIP
    (1.0, 'passed')
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_gym.sandbox import RunResult, SandboxPool, SandboxUnavailable, Status
from llm_gym.sandbox.isolation import Isolation
from llm_gym.sandbox.runner import detect_isolation
from llm_gym.sandbox.scripts import PythonScript, stdlib_source

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
VERDICTS = ("passed", "failed", "timeout", "syntax_error", "no_code", "forged_output", "crashed",
            "memory", "output_limit", "degraded_refused", "grader_error")

# Possessive quantifiers (*+) never backtrack: `[ \t]*(?:py)?[ \t]*\n` took ~12 s on a fence
# followed by 100,000 spaces, `^\s*` under (?m) ~18 s on 20,000 newlines (issue 13).
_OPEN_FENCE = re.compile(r"```[ \t]*+(?:python3|python|py)?+[ \t]*+\n", re.I)
# Lines that look like a verdict printed by the program itself (counted, never believed). No
# part crosses a line end, so each line is read once.
_FORGED_LINE = re.compile(
    r"(?im)^[ \t]*+(?:all tests passed|tests? passed|passed|ok|success|\.++[ \t]*+ok|"
    r"(?:reward|verdict)[ \t]*+[:=]|\{[ \t]*+\"(?:passed|reward|verdict|per_test)\"|"
    r"\"(?:passed|reward|verdict|per_test)\"[ \t]*+:)")
# Source patterns of known grader attacks (literal alternatives: linear): reported and counted.
_SUSPICIOUS = {
    "exit": r"os\._exit|sys\.exit|\bexit\(|\bquit\(", "skiptest": r"SkipTest",
    "stack_walk": r"_getframe|f_back|f_globals|inspect\.stack|\bgc\.get_(objects|referrers)",
    "eq_override": r"def __eq__|def __ne__|def __bool__", "builtins": r"\bbuiltins\b|__builtins__",
    "harness_files": r"conftest|sitecustomize|usercustomize", "pickle": r"\bpickle\b|__reduce__",
    "proc": r"/proc/", "channel_fd": r"os\.(write|fdopen|dup2)|/dev/fd",
}
_SUSPICIOUS_RE = {name: re.compile(pattern) for name, pattern in _SUSPICIOUS.items()}
_GRADER_SOURCE = stdlib_source("wire_encode", "wire", "grader")
GRADER_MEMORY = 1 << 30  # the grader's own address-space limit, in bytes


def extract_code(completion: str) -> str:
    r"""The Python code in a completion: the **last** fenced block, else the raw text.

    A fence opened with ``python``, ``py`` or no language counts; a last fence left unclosed
    (a truncated completion) runs to the end. Models usually draft first and give their final
    answer last, hence the last block.

    Example:
        >>> extract_code("try this:\n```python\nx = 1\n```\nor\n```python\nx = 2\n```")
        'x = 2\n'
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    code, pos = completion, 0
    # One pass: each opener is matched without backtracking, each closer found with str.find.
    while (opener := _OPEN_FENCE.search(completion, pos)) is not None:
        close = completion.find("```", opener.end())
        if close < 0:
            return completion[opener.end():]
        code, pos = completion[opener.end():close], close + 3
    return code


def looks_forged(stdout: str) -> bool:
    r"""Whether the program printed a line that looks like a verdict (linear time).

    Example:
        >>> looks_forged("working...\n  All tests passed\n"), looks_forged("\n" * 10**6)
        (True, False)
    """
    return _FORGED_LINE.search(stdout) is not None


def suspicious_patterns(code: str) -> list[str]:
    r"""Names of known grader-attack patterns in ``code`` (linear time; reported, not judged).

    Example:
        >>> suspicious_patterns("import os\nos._exit(0)")
        ['exit']
    """
    return sorted(name for name, pattern in _SUSPICIOUS_RE.items() if pattern.search(code))


@dataclass
class CodeResult:
    """The outcome of :func:`code_pass_rate`.

    Attributes:
        reward: 1.0 all tests passed, else 0.0 (the fraction passed with ``partial=True``).
        verdict: one of :data:`VERDICTS`.
        per_test: one bool per test (all False when the run never got to the tests).
        details: sandbox status, test errors, suspicious source patterns, capped output tails.
    """

    reward: float
    verdict: str
    per_test: list[bool] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class RewardCounters:
    """Thread-safe counts of code-reward outcomes, for logging every batch.

    Example:
        >>> counters = RewardCounters()
        >>> counters.record(CodeResult(0.0, "timeout"))
        >>> counters.as_dict()["reward/code/timeouts"]
        1
    """

    FIELDS = ("runs", "passed", "timeouts", "kills", "forged", "suspicious", "no_verdict",
              "syntax_errors", "crashed", "degraded", "refused")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def record(self, result: CodeResult) -> None:
        verdict, details = result.verdict, result.details
        hits = {
            "runs": True, "passed": verdict == "passed", "timeouts": verdict == "timeout",
            "kills": verdict in ("memory", "output_limit") or details.get("status") == "killed",
            "forged": verdict == "forged_output", "suspicious": bool(details.get("suspicious")),
            "no_verdict": verdict == "grader_error", "syntax_errors": verdict == "syntax_error",
            "crashed": verdict == "crashed", "degraded": bool(details.get("degraded")),
            "refused": verdict == "degraded_refused",
        }
        with self._lock:
            for name, hit in hits.items():
                self._counts[name] += int(hit)

    def as_dict(self, prefix: str = "reward/code/") -> dict[str, int]:
        with self._lock:
            return {prefix + name: count for name, count in self._counts.items()}

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self.FIELDS, 0)


COUNTERS = RewardCounters()  # every code_pass_rate call is recorded here
_default_pool: SandboxPool | None = None
# A pool set by set_default_pool (the Ray scoring workers' one) wins over the local default.
_installed_pool: Any = None
_pool_lock = threading.Lock()


def default_pool() -> SandboxPool:
    """The process-wide pool used when ``pool=None``.

    That is the pool installed with :func:`set_default_pool`, if any; else a local
    ``SandboxPool`` of ``os.cpu_count()`` workers, made on first use. Degraded (namespace-less)
    local runs are refused unless ``LLM_GYM_SANDBOX_ALLOW_DEGRADED=1``.
    """
    global _default_pool
    with _pool_lock:
        if _installed_pool is not None:
            return _installed_pool
        if _default_pool is None:
            allow = os.environ.get("LLM_GYM_SANDBOX_ALLOW_DEGRADED") == "1"
            _default_pool = SandboxPool(allow_degraded=allow)
        return _default_pool


def set_default_pool(pool: Any) -> None:
    """Install ``pool`` as what :func:`default_pool` returns; ``None`` restores the local one.

    Args:
        pool: anything with ``SandboxPool``'s ``run`` and ``workers`` (e.g.
            :class:`llm_gym.distributed.scoring.RaySandboxPool`), or ``None``. It is not
            closed when replaced: its owner closes it.
    """
    global _installed_pool
    with _pool_lock:
        _installed_pool = pool


def installed_pool() -> Any:
    """The pool set with :func:`set_default_pool`, or ``None``."""
    return _installed_pool


def code_pass_rate(
    completion: str,
    tests: Sequence[str] | str,
    *,
    test_imports: Sequence[str] = (),
    entry_point: str | None = None,
    setup_code: str = "",
    prompt: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    partial: bool = False,
    pool: SandboxPool | None = None,
) -> CodeResult:
    """Score a completion's code against MBPP asserts or a HumanEval ``check`` (see module doc).

    Args:
        completion: model output; the code is :func:`extract_code` of it.
        tests: an MBPP ``test_list`` (assert statements, one test each) or a HumanEval ``test``
            string defining ``check(candidate)``.
        test_imports: import lines the tests need (MBPP ``test_imports``), run in the grader.
        entry_point: the function HumanEval's ``check`` receives (required with a str ``tests``).
        setup_code: trusted code run in the grader before the tests (MBPP ``test_setup_code``).
        prompt: the task's prompt. When it is Python (HumanEval ``prompt``) it runs in the
            grader, where its helpers serve the tests, and before the code in the sandbox,
            where they serve the candidate (a body-only completion continues it). A prompt that
            does not compile (MBPP's prose) defines nothing and runs nowhere.
        timeout: wall deadline of the whole run, in seconds.
        partial: reward the fraction of tests passed instead of all-or-nothing.
        pool: sandbox pool; default :func:`default_pool`.

    Returns:
        A :class:`CodeResult`; also recorded in :data:`COUNTERS`.

    Raises:
        ValueError: a HumanEval test string without ``entry_point``, or a ``timeout`` that is
            not a positive finite number of seconds.
        TypeError: ``tests`` or ``prompt`` of the wrong type.
    """
    timeout = float(timeout)
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive finite number of seconds, got {timeout!r}")
    job = _job(completion, tests, test_imports, entry_point, setup_code, prompt)
    if not job["candidate"].strip():
        result = CodeResult(0.0, "no_code", [False] * job["count"])
    else:
        result = _run(job, timeout, partial, pool)
    COUNTERS.record(result)
    return result


def _job(completion: str, tests: Sequence[str] | str, test_imports: Sequence[str],
         entry_point: str | None, setup_code: str, prompt: str) -> dict[str, Any]:
    candidate = extract_code(completion)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str (the task's prompt), got {type(prompt).__name__}")
    prompt = prompt if prompt and _is_python(prompt) else ""
    task = {"candidate": candidate, "code": _program(prompt, candidate), "prompt": prompt,
            "entry_point": entry_point, "test_imports": list(test_imports),
            "setup_code": setup_code}
    if isinstance(tests, str):
        if not entry_point:
            raise ValueError("a HumanEval test string needs entry_point= (the function that "
                             "check(candidate) receives)")
        return {**task, "tests": None, "test": tests, "count": 1}
    if not isinstance(tests, Sequence) or not all(isinstance(t, str) for t in tests) or not tests:
        raise TypeError("tests must be a non-empty list of assert strings (MBPP test_list) or a "
                        f"HumanEval test string, got {tests!r:.80}")
    return {**task, "tests": list(tests), "count": len(tests)}


def _program(prompt: str, code: str) -> str:
    # HumanEval's harness runs prompt + completion: an honest find_zero (HumanEval/32) calls the
    # prompt's poly, and a body-only completion continues the prompt's last function. A full
    # solution just redefines the stub. The grader gets its own, trusted copy of the helpers.
    if not prompt:
        return code
    return prompt + ("" if prompt.endswith("\n") else "\n") + code


@functools.lru_cache(maxsize=1024)  # a GRPO group scores one prompt many times
def _is_python(prompt: str) -> bool:
    # The prompt is the task's (trusted) text: compiling it here is not reading model output.
    try:
        compile(prompt, "<prompt>", "exec")
    except (SyntaxError, ValueError):  # ValueError: a NUL character
        return False
    return True


def _run(job: dict[str, Any], timeout: float, partial: bool,
         pool: SandboxPool | None) -> CodeResult:
    try:
        pool = pool or default_pool()
    except SandboxUnavailable as exc:
        return CodeResult(0.0, "degraded_refused", [False] * job["count"], {"error": str(exc)})
    iso: Isolation = detect_isolation()
    # The grader's own rlimits (issue 13: it ran without any); it sets them before anything else.
    limits = {"as": GRADER_MEMORY, "cpu": math.ceil(timeout) + 1, "fsize": 0, "nofile": 64}
    run = pool.run(job["code"], timeout=timeout, mode="serve",
                   peer=PythonScript(iso.python, _GRADER_SOURCE, (json.dumps(limits),)),
                   peer_input=json.dumps({**job, "candidate": None}).encode(
                       "utf-8", errors="surrogatepass"))
    return _score(job, run, partial)


def _score(job: dict[str, Any], run: RunResult, partial: bool) -> CodeResult:
    suspicious = suspicious_patterns(job["candidate"])
    details: dict[str, Any] = {"status": str(run.status), "degraded": run.degraded,
                               "suspicious": suspicious, "stdout": run.stdout[-500:],
                               "stderr": run.stderr[-500:]}
    grade = _grader_line(run.peer_stdout)
    per_test = [False] * job["count"]
    if run.status in (Status.TIMEOUT, Status.OUTPUT_LIMIT):
        return CodeResult(0.0, str(run.status), per_test, details)
    if grade is None:
        details["grader_stderr"] = run.peer_stderr[-500:]
        logger.warning("code grader gave no verdict: %s", run.peer_stderr[-300:])
        return CodeResult(0.0, "grader_error", per_test, details)
    details.update(errors=grade.get("errors", []), error=grade.get("error", ""))
    verdict = grade["verdict"]
    if verdict == "passed" and len(grade.get("per_test", [])) == job["count"]:
        return CodeResult(1.0, "passed", [True] * job["count"], details)
    if verdict == "failed":
        per_test = [bool(ok) for ok in grade["per_test"]]
    if run.status == Status.MEMORY:
        verdict = "memory"
    elif looks_forged(run.stdout):
        verdict = "forged_output"
    elif verdict not in ("failed", "syntax_error", "crashed"):
        verdict = "grader_error"
    reward = sum(per_test) / len(per_test) if partial and verdict == "failed" else 0.0
    return CodeResult(reward, verdict, per_test, details)


def _grader_line(stdout: str) -> dict[str, Any] | None:
    """The grader's verdict: its last stdout line, parsed by ``json`` (linear time)."""
    try:
        grade = json.loads(stdout.rstrip().rpartition("\n")[2])
    except (ValueError, RecursionError):
        return None
    return grade if isinstance(grade, dict) and grade.get("verdict") in VERDICTS else None


__all__ = ["COUNTERS", "CodeResult", "RewardCounters", "code_pass_rate", "default_pool",
           "extract_code", "installed_pool", "looks_forged", "set_default_pool",
           "suspicious_patterns"]
