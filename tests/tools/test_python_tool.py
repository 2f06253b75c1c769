"""The python tool: model code runs in the sandbox; prints, errors, deadlines, caps, no network."""

from __future__ import annotations

import socket

import pytest

from llm_gym.sandbox import SandboxPool, SandboxUnavailable
from llm_gym.tools import as_tool, run_tool
from llm_gym.tools.env import resolve_tools
from llm_gym.tools.python import (
    MAX_ERROR_CHARS,
    MAX_OUTPUT_CHARS,
    NO_OUTPUT,
    OUTPUT_TRUNCATED,
    python,
    run_python,
)

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as pool:
        yield pool


def test_prints_come_back(pool):
    assert run_python("for i in range(3):\n    print(i * 7)", pool=pool) == "0\n7\n14\n"
    assert run_python("x = 6 * 7", pool=pool) == NO_OUTPUT


def test_an_exception_gives_the_end_of_its_traceback_after_the_output(pool):
    text = run_python("print('start')\ndef f():\n    return 1 / 0\nf()", pool=pool)
    assert text.startswith("start\nTraceback (most recent call last):\n")
    assert text.endswith("ZeroDivisionError: division by zero")
    assert 'File "<program>", line 3, in f' in text
    assert "llm_gym" not in text  # the sandbox's own frames are not the model's business
    deep = run_python("def f(n):\n    return f(n + 1)\nf(0)", pool=pool)
    assert deep.endswith("RecursionError: maximum recursion depth exceeded")
    assert len(deep) <= MAX_ERROR_CHARS + 3


def test_an_exit_status_without_a_traceback_is_reported(pool):
    assert run_python("import sys\nprint('hi')\nsys.exit(3)", pool=pool) == \
        "hi\nerror: exit status 3"


def test_an_infinite_loop_hits_the_deadline(pool):
    text = run_python("while True:\n    pass", timeout=1.0, pool=pool)
    assert text == "error: timed out after 1 s"


def test_a_huge_print_is_truncated(pool):
    text = run_python("print('x' * 5000)", pool=pool)
    assert text == "x" * MAX_OUTPUT_CHARS + OUTPUT_TRUNCATED
    # Past the sandbox's own stdout cap (1 MiB) the program is killed; the start still comes back.
    flood = run_python("while True:\n    print('y' * 10000)", pool=pool)
    assert flood == "y" * MAX_OUTPUT_CHARS + OUTPUT_TRUNCATED


def test_the_network_is_unreachable(pool):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        code = (f"import socket\ns = socket.socket()\ns.settimeout(2)\n"
                f"s.connect(('127.0.0.1', {port}))\nprint('connected')")
        text = run_python(code, pool=pool)
        assert "connected" not in text and "Error" in text, text
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host's port
    finally:
        listener.close()


def test_the_file_system_is_the_sandboxs(pool):
    text = run_python("import os\nprint(os.path.exists('/work'), os.getuid() != 0)", pool=pool)
    assert text == "False True\n"


def test_through_run_tool_and_the_named_tool():
    (function,) = resolve_tools(["python"])
    assert function is python
    tool = as_tool(python)
    assert tool.name == "python" and tool.parameters["required"] == ["code"]
    assert "code" in tool.schema()["function"]["parameters"]["properties"]
    outcome = run_tool(tool, {"code": "print(2 ** 10)"})
    assert (outcome.text, outcome.ok) == ("1024\n", True)
    # The model's own error is a result for the model; the tool itself worked.
    failed = run_tool(tool, {"code": "raise ValueError('bad')"})
    assert failed.ok and failed.text.endswith("ValueError: bad")
    looping = run_tool(tool, {"code": "while True:\n    pass"})
    assert looping.ok and looping.text == "error: timed out after 5 s"
    assert looping.latency_s < tool.timeout_s
    wrong = run_tool(tool, {"code": 42})
    assert not wrong.ok and wrong.error == "exception:TypeError"


def test_no_sandbox_means_an_error_result_never_an_unsandboxed_run(monkeypatch, tmp_path):
    import llm_gym.tools.python as module

    def refuse():
        raise SandboxUnavailable("no namespace isolation on this machine")

    monkeypatch.setattr(module, "default_pool", refuse)
    marker = tmp_path / "ran"
    outcome = run_tool(as_tool(python), {"code": f"open({str(marker)!r}, 'w').write('x')"})
    assert not outcome.ok and outcome.error == "exception:SandboxUnavailable"
    assert "no namespace isolation" in outcome.text
    assert not marker.exists()
