"""The sandbox on its own: statuses, output caps, limits, slots, isolation."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from llm_gym.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxPool,
    Status,
    detect_isolation,
    pids_of_uid,
)
from llm_gym.sandbox.isolation import Isolation, root_view
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


# --- Issue 13: the sandbox sees no host file, and one run's memory has one bound -------------

REPO = Path(__file__).resolve().parents[2]


def test_empty_root_shows_only_the_interpreter(box):
    view = root_view()
    allowed = [*view["binds"], *(link for link, _ in view["links"])]
    secret_paths = [str(REPO / "README.md"), str(REPO), str(REPO.parent / "shared"),
                    "/etc/passwd", "/etc", "/home", "/root/.bashrc", "/work", "/proc/1/root/etc",
                    "/sys/fs/cgroup", "/usr/share", "/usr/bin/python3"]
    program = (
        "import json, os\n"
        f"allowed, hidden, secrets = {allowed!r}, {view['hidden']!r}, {secret_paths!r}\n"
        "inside = lambda p, dirs: any(p == a or p.startswith(a + '/') for a in dirs)\n"
        "seen = []\n"
        "for d, dirs, files in os.walk('/'):\n"
        "    if d.startswith(('/proc', '/dev')):\n"
        "        dirs[:] = []\n"
        "        continue\n"
        "    seen += [os.path.join(d, f) for f in files]\n"
        "print(json.dumps({'outside': [p for p in seen if not inside(p, allowed)],\n"
        "                  'hidden': [p for p in seen if inside(p, hidden)],\n"
        "                  'stdlib': any(p.endswith('/json/__init__.py') for p in seen),\n"
        "                  'found': [p for p in secrets if os.path.exists(p)],\n"
        "                  'pids': sorted(p for p in os.listdir('/proc') if p.isdigit())}))\n"
    )
    result = box.run(program, timeout=10)
    assert result.status == Status.OK, result.stderr[-500:]
    report = json.loads(result.stdout)
    assert report["found"] == [] and report["outside"] == [] and report["hidden"] == []
    assert report["stdlib"] is True
    assert report["pids"] == ["1", "2"]  # its own pid namespace: the init shell and itself


def see_running_site_packages(venv: Path) -> None:
    """Let ``venv`` import what this interpreter imports (issue 21).

    ``--system-site-packages`` reaches the *base* interpreter's packages only: run from a
    project's own venv, whose packages the base lacks, the new venv had no gymnasium. A ``.pth``
    that adds this interpreter's site directories (with their own ``.pth`` files, so editable
    installs too) works from a venv and from the base interpreter alike.
    """
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    dirs = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE
                                       else [])]
    Path(purelib, "running_interpreter.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")


def test_root_view_from_a_virtualenv_binds_nothing_of_the_venv(tmp_path):
    # Run from a project's venv, sysconfig's platstdlib and site-packages name the venv: binding
    # them put the project's path into the run's root (seen from worktree venvs under /work).
    venv = tmp_path / "project" / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=60)
    see_running_site_packages(venv)
    program = ("import json; from llm_gym.sandbox.isolation import root_view; "
               "view = root_view(); print(json.dumps(view['binds'] + view['hidden']))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", program], capture_output=True,
                         text=True, timeout=60, check=True, cwd=REPO).stdout
    paths = json.loads(out)
    assert paths and not [p for p in paths if p.startswith(str(tmp_path))]
    assert any(os.path.exists(os.path.join(p, "json", "__init__.py")) for p in paths)


def test_root_is_read_only_and_tmp_is_private_and_bounded(box):
    result = box.run(
        "import os\n"
        "for path in ('/x', '/usr/x', '/proc/x', '/tmp/x'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print(path, 'written')\n"
        "    except OSError as e:\n"
        "        print(path, e.errno)\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        os.mkdir('/tmp/d%d' % n)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    print('dirs', n)\n"
    )
    lines = result.stdout.split("\n")
    assert [line.split()[1] for line in lines[:4]] == ["30", "30", "2", "written"]  # EROFS, ENOENT
    assert int(lines[4].split()[1]) < box.config.tmp_inodes


MEMORY_ATTACKS = ["memfd_bomb", "forks_hold_memory", "sysv_shm", "mkdir_flood", "tmp_file_flood",
                  "fork_allocate", "memory_bomb"]


@pytest.mark.parametrize("name", MEMORY_ATTACKS)
def test_a_run_has_one_memory_bound(box, name):
    if box.cgroup is None or box.cgroup.version != 1:
        pytest.skip("needs a writable cgroup v1 memory controller to read the peak")
    peak = os.path.join(box.cgroup.dirs[0], "memory.max_usage_in_bytes")
    with open(peak, "w") as f:
        f.write("0")
    start = time.monotonic()
    result = box.run(RESOURCE_ATTACKS[name], timeout=2.0)
    assert time.monotonic() - start < 2.0 + 1.0
    assert result.status in (Status.MEMORY, Status.TIMEOUT, Status.KILLED), result.status
    with open(peak) as f:
        assert int(f.read()) <= box.config.run_memory_mb << 20
    assert pids_of_uid(box.uid) == [] and box.cgroup.pids() == []
    assert box.run("print(len(bytearray(100 << 20)))").stdout == f"{100 << 20}\n"


def test_userns_level_builds_the_same_empty_root():
    # The non-root level (unprivileged user namespaces), forced here as root: the same empty,
    # read-only root and no capability left, as the namespace's only UID.
    with Sandbox(config=SandboxConfig(timeout=5.0)) as userns_box:
        userns_box.isolation = Isolation("userns")
        result = userns_box.run(
            "import os\n"
            "print(sorted(os.listdir('/')), os.path.exists('/work'), os.path.exists('/etc'))\n"
            "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
            "try:\n"
            "    os.mkdir('/x')\n"
            "except OSError as e:\n"
            "    print(e.errno)\n")
    top, caps, errno = result.stdout.split("\n")[:3]
    assert top.endswith("False False") and "'work'" not in top and "'etc'" not in top
    assert int(caps, 16) == 0 and errno == "30"  # EROFS


def test_processes_starting_sandboxes_at_once_all_find_the_isolation():
    # Every process probes isolation as the same UID and a run's cleanup kills that UID's
    # processes: without the probe's machine-wide lock, Ray scoring actors starting together
    # killed each other's probe and fell back to "degraded" (then refused to run code).
    from llm_gym.sandbox import detect_isolation

    code = "from llm_gym.sandbox import detect_isolation; print(detect_isolation().level)"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(10)]
    levels = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert levels == [detect_isolation().level] * 10
