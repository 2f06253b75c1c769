"""The sandbox on its own: statuses, output caps, limits, slots, isolation."""

from __future__ import annotations

import os
import time

import pytest

from llm_gym.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxPool,
    Status,
    detect_isolation,
    pids_of_uid,
)
from llm_gym.sandbox.wire import Ref, decode, encode
from tests.attacks.programs import RESOURCE_ATTACKS

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def box():
    with Sandbox(config=SandboxConfig(timeout=1.0, stdout_limit=1 << 16)) as box:
        yield box


@pytest.mark.parametrize(("program", "status"), [
    ("print(6 * 7)", Status.OK),
    ("raise SystemExit(3)", Status.ERROR),
    ("import os\nos.kill(os.getpid(), 9)", Status.KILLED),
    ("import ctypes\nctypes.string_at(0)", Status.KILLED),
    ("x = bytearray(10**10)", Status.MEMORY),
    (RESOURCE_ATTACKS["infinite_loop"], Status.TIMEOUT),
    (RESOURCE_ATTACKS["ignore_signals"], Status.TIMEOUT),
    (RESOURCE_ATTACKS["block_on_stdin"], Status.ERROR),  # stdin is /dev/null: EOF at once
    (RESOURCE_ATTACKS["close_stdout_spin"], Status.TIMEOUT),
    (RESOURCE_ATTACKS["output_bomb_no_newline"], Status.OUTPUT_LIMIT),
    (RESOURCE_ATTACKS["line_100mb"], Status.OUTPUT_LIMIT),
])
def test_status_and_cleanup(box, program, status):
    start = time.monotonic()
    result = box.run(program)
    assert result.status == status, (result.status, result.stderr[-300:])
    assert time.monotonic() - start < 1.0 + 1.0
    assert len(result.stdout.encode()) <= (1 << 16) * 4  # capped (utf-8 may expand U+FFFD)
    assert pids_of_uid(box.uid) == []
    assert box.run("print('again')").stdout == "again\n"


def test_isolated_view(box):
    os.environ["LLM_GYM_TEST_SECRET"] = "hidden-7f3e"
    out = box.run(
        "import os, socket\n"
        "secret = 'hidden-7f3e' in str(os.environ)\n"
        "print(os.getuid(), os.getpid(), sorted(os.listdir('/tmp')), secret)\n"
        "print(len(socket.if_nameindex()))\n"
    ).stdout.split("\n")
    uid, pid, tmp, secret = out[0].split(" ", 3)
    assert int(uid) == box.uid and pid == "2" and tmp == "[]" and secret == "False"
    assert out[1] == "1"  # only the loopback device of its own network namespace


def test_invalid_utf8_is_replaced(box):
    result = box.run("import os\nos.write(1, b'ok \\xff\\xfe')")
    assert result.stdout == "ok \ufffd\ufffd"


def test_slots_have_distinct_uids_and_are_released():
    with SandboxPool(workers=3) as pool:
        uids = pool.uids
        assert len(set(uids)) == 3
        results = [f.result() for f in [pool.submit(f"print({i})") for i in range(6)]]
        assert [r.stdout.strip() for r in results] == [str(i) for i in range(6)]
    with SandboxPool(workers=3) as again:
        assert again.uids == uids


def test_degraded_flag_and_refusal():
    assert detect_isolation().level == "root"  # this machine and CI: root with namespaces
    with Sandbox() as box:
        assert box.run("pass").degraded is False


def test_bad_arguments():
    with pytest.raises(ValueError, match="workers"):
        SandboxPool(workers=0)
    with Sandbox() as box, pytest.raises(ValueError, match="timeout"):
        box.run("pass", timeout=0)


def test_wire_round_trip_is_strict():
    value = {(1, "a"): [None, True, 2.5, b"\x00", 1 + 2j, frozenset({3}), float("nan")]}
    back = decode(encode(value))
    assert back.keys() == value.keys() and back[(1, "a")][:6] == value[(1, "a")][:6]
    refs: list = []

    class Sneaky(int):
        def __eq__(self, other):
            return True

    ref = decode(encode(Sneaky(1), refs))
    assert isinstance(ref, Ref) and ref != 1 and refs[0] == 1
    with pytest.raises(TypeError):
        encode(object())
    for bad in ('{"t": "pickle", "v": "x"}', "[" * 100000, '{"t": "dict", "v": 3}'):
        with pytest.raises(ValueError):
            decode(bad)
