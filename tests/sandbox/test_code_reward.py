"""code_pass_rate: every attack of RELIABILITY.md scores 0 and is contained; honest code, 1."""

from __future__ import annotations

import contextlib
import doctest
import importlib
import json
import os
import random
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import no_live_processes

from llm_gym.rewards.code import (
    COUNTERS,
    VERDICTS,
    CodeResult,
    _grader_line,
    code_pass_rate,
    extract_code,
    looks_forged,
    suspicious_patterns,
)
from llm_gym.sandbox import SandboxPool, detect_isolation
from tests.attacks.programs import ADD_TESTS, HONEST_ADD, INTEGRITY_ATTACKS, RESOURCE_ATTACKS

pytestmark = pytest.mark.sandbox
TIMEOUT = 1.0
SECRET = "llm-gym-test-secret-4c1d"
MARKER = f"llm_gym_attack_{os.getpid()}"
SHARED = Path(os.environ.get("LLM_GYM_SHARED_DATA", Path(__file__).parents[3] / "shared" / "data"))


@pytest.fixture(scope="module")
def pool():
    os.environ["LLM_GYM_TEST_SECRET"] = SECRET  # the parent's environment holds a secret
    with SandboxPool(workers=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def listeners():
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    abstract = f"llm_gym_test_{os.getpid()}"
    unix.bind("\0" + abstract)
    unix.listen()
    for s in (tcp, udp, unix):
        s.setblocking(False)
    fill = {"port": tcp.getsockname()[1], "udp_port": udp.getsockname()[1], "abstract": abstract,
            "marker": MARKER}
    yield fill, (tcp, udp, unix)
    for s in (tcp, udp, unix):
        s.close()


def _nothing_received(sockets) -> bool:
    tcp, udp, unix = sockets
    for sock, op in ((tcp, "accept"), (unix, "accept"), (udp, "recv")):
        try:
            getattr(sock, op)(*(() if op == "accept" else (64,)))
        except BlockingIOError:
            continue
        return False
    return True


def _outside_files() -> list[str]:
    paths = [f"{d}/{MARKER}" for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/root",
                                       "/work", "")]
    paths += ["/tmp/pwned", "/tmp/fill"]
    return [p for p in paths if os.path.exists(p)]


def _check_contained(result: CodeResult, elapsed: float, pool, sockets) -> None:
    assert result.reward == 0.0
    assert result.verdict in VERDICTS and result.verdict != "passed"
    assert elapsed < TIMEOUT + 1.0
    assert no_live_processes(pool.uids)
    assert SECRET not in json.dumps(result.details)
    assert _nothing_received(sockets)
    assert _outside_files() == []


ATTACKS = {**RESOURCE_ATTACKS, **INTEGRITY_ATTACKS}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_scores_zero_and_is_contained(name, pool, listeners):
    fill, sockets = listeners
    code = ATTACKS[name].replace("{port}", str(fill["port"])).replace(
        "{udp_port}", str(fill["udp_port"])).replace("{abstract}", fill["abstract"]).replace(
        "{marker}", MARKER)
    start = time.monotonic()
    result = code_pass_rate(code, ADD_TESTS, pool=pool, timeout=TIMEOUT)
    _check_contained(result, time.monotonic() - start, pool, sockets)
    honest = code_pass_rate(HONEST_ADD, ADD_TESTS, pool=pool, timeout=TIMEOUT)
    assert (honest.reward, honest.verdict, honest.per_test) == (1.0, "passed", [True] * 3)


def test_no_escapee_two_seconds_later(pool, listeners):
    fill, sockets = listeners
    code = RESOURCE_ATTACKS["double_fork_setsid"].replace("{marker}", MARKER)
    result = code_pass_rate(code, ADD_TESTS, pool=pool, timeout=TIMEOUT)
    assert result.reward == 0.0
    time.sleep(2.0)
    assert no_live_processes(pool.uids)
    assert _outside_files() == []


def test_named_verdicts(pool):
    assert code_pass_rate("no code here at all", ADD_TESTS, pool=pool).verdict == "syntax_error"
    assert code_pass_rate("", ADD_TESTS, pool=pool).verdict == "no_code"
    assert code_pass_rate("while True: pass", ADD_TESTS, pool=pool, timeout=1).verdict == "timeout"
    pytest_mention = code_pass_rate(INTEGRITY_ATTACKS["mentions_pytest_wrong"], ADD_TESTS,
                                    pool=pool)
    assert pytest_mention.verdict == "failed"
    assert any(e.startswith("AssertionError") for e in pytest_mention.details["errors"])
    forged = code_pass_rate(INTEGRITY_ATTACKS["fake_verdict_line"], ADD_TESTS, pool=pool)
    assert forged.verdict == "forged_output"


def test_partial_credit_and_humaneval(pool):
    half = "def add(a, b):\n    return 5\n"
    result = code_pass_rate(half, ADD_TESTS, pool=pool, partial=True)
    assert result.per_test == [True, False, False] and result.reward == pytest.approx(1 / 3)
    assert code_pass_rate(half, ADD_TESTS, pool=pool).reward == 0.0
    check = ("def check(candidate):\n    assert candidate([1, 2]) == 3\n"
             "    assert candidate([]) == 0\n")
    ok = code_pass_rate("def total(xs):\n    return sum(xs)\n", check, entry_point="total",
                        pool=pool)
    assert (ok.reward, ok.per_test) == (1.0, [True])
    bad = code_pass_rate("def total(xs):\n    return 3\n", check, entry_point="total", pool=pool)
    assert (bad.reward, bad.verdict) == (0.0, "failed")
    with pytest.raises(ValueError, match="entry_point"):
        code_pass_rate("x = 1", check, pool=pool)
    with pytest.raises(TypeError, match="test_list"):
        code_pass_rate("x = 1", [1, 2], pool=pool)


def test_values_cross_the_channel_exactly(pool):
    code = ("def f(x):\n    return x\n"
            "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
            "def first(p):\n    return p.a\n"
            "def gen(n):\n    return (i * i for i in range(n))\n")
    value = "{(1, 2): {3.5, None}, 'b': b'x', 'c': 1j}"
    tests = [f"assert f({value}) == {value}",
             "assert type(f((1,))) is tuple and f(float('inf')) == float('inf')",
             "assert first(Pair(5, 7)) == 5", "assert list(gen(3)) == [0, 1, 4]",
             "assert f(True) is True and f(frozenset([1])) == frozenset([1])"]
    result = code_pass_rate(code, tests, pool=pool)
    assert result.per_test == [True] * 5, result.details


def test_extract_code_takes_last_fenced_block():
    assert extract_code("a\n```python\nx = 1\n```\nb\n```py\nx = 2\n```") == "x = 2\n"
    assert extract_code("```\ny = 3\n```") == "y = 3\n"
    assert extract_code("```python\nz = 4\n") == "z = 4\n"  # truncated fence
    assert extract_code("def f(): pass") == "def f(): pass"
    with pytest.raises(TypeError):
        extract_code(None)


# The fence regex extract_code used before issue 13: the reference for its documented behaviour
# (quadratic on a fence followed by spaces, so only ever run on short texts here).
OLD_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def test_extract_code_matches_the_documented_fence_rules():
    rng = random.Random(13)
    pieces = ["```", "`", " ", "\t", "\n", "python", "PY", "py", "python3", "3", "x = 1", "java"]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        blocks = OLD_FENCE.findall(text)
        assert extract_code(text) == (blocks[-1] if blocks else text), repr(text)


SIZE = 1 << 20  # characters of each adversarial text
LIMIT_S = 2.0  # generous: linear work on 1 MB takes milliseconds, quadratic work minutes


def _fill(unit: str, head: str = "") -> str:
    return (head + unit * (SIZE // len(unit) + 1))[:SIZE]


MODEL_TEXT = {
    "newlines": _fill("\n"), "spaces": _fill(" "), "blank_lines": _fill(" \t\n"),
    "crlf": _fill("\r\n"), "fence_then_spaces": _fill(" ", "```"),
    "fence_lang_then_tabs": _fill(" \t", "```python"), "backticks": _fill("`"),
    "many_fences": _fill("```python\nx = 1\n```\n"), "unclosed_fences": _fill("```python\n"),
    "bare_fences": _fill("```"), "fences_without_newline": _fill("```py "),
    "other_language_fences": _fill("```java\n"), "ok_lines": _fill("ok\n"),
    "indented_ok_lines": _fill("   ok\n"), "dots": _fill("."), "dot_lines": _fill(".\n"),
    "dots_then_spaces": _fill(" ", "." * (SIZE // 2)), "brace_then_spaces": _fill(" ", "{"),
    "reward_then_spaces": _fill(" ", "reward"), "json_verdicts": _fill('{"verdict": "passed"}\n'),
    "open_brackets": _fill("["), "open_braces": _fill("{"), "exit_prefixes": _fill("os._"),
    "dunder_defs": _fill("def __"), "mixed": _fill(' \n```py \t\n.. ok {"reward" os.ex def __e'),
}
READERS = {"extract_code": extract_code, "looks_forged": looks_forged,
           "suspicious_patterns": suspicious_patterns, "grader_line": _grader_line}


@contextlib.contextmanager
def _interrupted_after(seconds: float):
    # A regression must fail, not hang the suite: the regex engine checks signals now and then.
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("text", sorted(MODEL_TEXT))
def test_model_text_readers_are_linear_on_1mb(reader, text):
    start = time.monotonic()
    with _interrupted_after(3 * LIMIT_S):
        READERS[reader](MODEL_TEXT[text])
    assert time.monotonic() - start < LIMIT_S


def test_forged_verdict_lines_are_still_seen():
    for line in ("All tests passed", "  ok", "...ok", "reward: 1", 'verdict = "passed"',
                 '{"passed": true}', '{ "per_test": [true]}', '  "verdict": "passed",',
                 "\tSUCCESS"):
        assert looks_forged(f"working\n{line}\nmore"), line
    for line in ("nothing here", "the reward is 1", "not ok", "[ok]"):
        assert not looks_forged(f"working\n{line}\n"), line
    grade = _grader_line('noise\n{"verdict": "failed", "per_test": [false]}\n')
    assert grade == {"verdict": "failed", "per_test": [False]}
    assert _grader_line("[" * 100_000) is None and _grader_line("") is None


@pytest.mark.parametrize("name", ["llm_gym.rewards.code", "llm_gym.sandbox.wire",
                                  "llm_gym.envs.code"])
def test_doc_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_counters_record_outcomes(pool):
    COUNTERS.reset()
    code_pass_rate(HONEST_ADD, ADD_TESTS, pool=pool)
    code_pass_rate("while True: pass", ADD_TESTS, pool=pool, timeout=1)
    code_pass_rate(INTEGRITY_ATTACKS["fake_verdict_line"], ADD_TESTS, pool=pool)
    counts = COUNTERS.as_dict()
    assert counts["reward/code/runs"] == 3 and counts["reward/code/passed"] == 1
    assert counts["reward/code/timeouts"] == 1 and counts["reward/code/forged"] == 1


@pytest.mark.slow
def test_storm_of_hostile_and_honest_runs():
    hostile = [RESOURCE_ATTACKS[n] for n in ("fork_bomb", "memory_bomb", "infinite_loop",
                                             "output_bomb_no_newline", "thread_bomb")] * 4
    jobs = [(code, False) for code in hostile] + [(HONEST_ADD, True)] * 40
    # Honest runs get a longer deadline: on 2 shared cores, 3 CPU hogs next to an honest run
    # can slow it past 2 s. What is tested is that no hostile run starves or breaks the others.
    with SandboxPool(workers=4) as pool, ThreadPoolExecutor(12) as ex:
        futures = [(ex.submit(code_pass_rate, code, ADD_TESTS, pool=pool,
                              timeout=10.0 if honest else 2.0), honest) for code, honest in jobs]
        results = [(f.result(), honest) for f, honest in futures]
        assert no_live_processes(pool.uids)
    bad = [(r.verdict, r.details) for r, honest in results if honest and r.reward != 1.0]
    assert bad == []
    assert [r.reward for r, honest in results if not honest] == [0.0] * 20


@pytest.mark.slow
@pytest.mark.shared_data
def test_mbpp_reference_solutions_pass_and_broken_ones_fail():
    path = SHARED / "mbpp" / "sanitized-mbpp.json"
    if not path.exists():
        pytest.skip(f"{path} not found (set LLM_GYM_SHARED_DATA)")
    rows = json.loads(path.read_text())
    assert len(rows) == 427

    def both(row):
        kwargs = {"test_imports": row["test_imports"], "pool": pool, "timeout": 30.0}
        good = code_pass_rate(row["code"], row["test_list"], **kwargs)
        # Broken: every function returns None after its real body ran.
        broken = code_pass_rate(row["code"] + "\n" + _break_all(row["code"]), row["test_list"],
                                **kwargs)
        return row["task_id"], good, broken

    with SandboxPool(workers=4) as pool, ThreadPoolExecutor(8) as ex:
        results = list(ex.map(both, rows))
    failed = [(tid, g.verdict, g.details.get("errors")) for tid, g, _ in results if g.reward != 1]
    assert failed == []
    passed_broken = [tid for tid, _, b in results if b.reward != 0]
    assert passed_broken == []


def _break_all(code: str) -> str:
    import ast
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # reference code has "\w" in strings
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(code)
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    return "\n".join(f"def {name}(*args, **kwargs):\n    return None" for name in names)


def test_isolation_is_not_degraded_here():
    # CI and the dev machine run as root with working namespaces (RELIABILITY.md).
    assert detect_isolation().level == "root"
