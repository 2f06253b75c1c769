"""Issue 19, sandbox: a syscall policy, slots that stay clean, runs that die with their owner."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from llm_gym.rewards.code import code_pass_rate
from llm_gym.sandbox import (
    Sandbox,
    SandboxConfig,
    Status,
    detect_isolation,
    pids_of_uid,
    seccomp_policy,
)
from llm_gym.sandbox.cgroup import SlotCgroup, tcp_share
from llm_gym.sandbox.isolation import level_notes
from tests.attacks.programs import ADD_TESTS, HONEST_ADD
from tests.attacks.sandbox_round3 import (
    HONEST_SYSTEM_OUTPUT,
    HONEST_SYSTEM_USE,
    READ_EVERY_FILE,
    SLEEP_600,
    SOCKET_BUFFER_ATTACK,
    SYSCALL_ATTACKS,
    SYSCALL_DENIED,
    SYSCALL_PRELUDE,
    X32_UNSHARE,
)

pytestmark = pytest.mark.sandbox
x86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 syscall numbers")


@pytest.fixture(scope="module")
def box():
    with Sandbox(config=SandboxConfig(timeout=5.0)) as box:
        yield box


def _needs(box: Sandbox, *, cgroup_v1: bool = False) -> None:
    if box.isolation.level != "root":
        pytest.skip("needs the root level (namespaces, slot UIDs, cgroups)")
    if cgroup_v1 and (box.cgroup is None or box.cgroup.version != 1):
        pytest.skip("needs a writable cgroup v1 memory controller")


# 1. No nested user namespaces, a real syscall policy -----------------------------------------

@x86_64
def test_every_denied_syscall_fails_inside_the_sandbox(box):
    _needs(box)
    result = box.run(SYSCALL_PRELUDE + "".join(SYSCALL_ATTACKS.values()))
    assert result.status == Status.OK, result.stderr[-500:]
    got = {name: (int(res), int(err)) for name, res, err in
           (line.split() for line in result.stdout.splitlines())}
    assert got == {name: (-1, errno) for name, errno in SYSCALL_DENIED.items()}


@x86_64
def test_the_x32_abi_does_not_bypass_the_filter(box):
    _needs(box)
    # Either the kernel has no x32 (then this cannot fail: CONFIG_X86_X32_ABI is off on this
    # project's machines, where the process dies of SIGSYS with or without the filter) or the
    # filter, built for x86-64 only, kills the process: never a success.
    result = box.run(X32_UNSHARE)
    assert not result.stdout.startswith("x32_unshare 0"), result.stdout
    assert pids_of_uid(box.uid) == []


def test_the_run_allows_no_nested_user_namespace(box):
    _needs(box)
    result = box.run("print(open('/proc/sys/user/max_user_namespaces').read().strip())")
    assert result.stdout == "0\n" and result.notes == [], (result.stdout, result.notes)


def test_honest_system_use_still_works_under_the_filter(box):
    _needs(box)
    result = box.run(HONEST_SYSTEM_USE)
    assert (result.status, result.stdout) == (Status.OK, HONEST_SYSTEM_OUTPUT), result.stderr
    assert code_pass_rate(HONEST_ADD, ADD_TESTS, timeout=5.0).reward == 1.0


def test_the_socket_buffer_trick_stays_in_budget(box):
    _needs(box, cgroup_v1=True)
    memory = box.cgroup.dirs[0]
    for name in ("memory.max_usage_in_bytes", "memory.kmem.tcp.max_usage_in_bytes"):
        with open(os.path.join(memory, name), "w") as f:
            f.write("0")
    result = box.run(SOCKET_BUFFER_ATTACK, timeout=10.0)
    lines = result.stdout.splitlines()
    assert lines[0] == "unshare -1 1", result.stdout  # EPERM
    held = int(lines[-1].split()[1]) << 20
    peaks = []
    for name in ("memory.max_usage_in_bytes", "memory.kmem.tcp.max_usage_in_bytes"):
        with open(os.path.join(memory, name)) as f:
            peaks.append(int(f.read()))
    budget = box.config.run_memory_mb << 20
    assert held + peaks[0] <= budget and sum(peaks) <= budget, (held, peaks)
    assert peaks[1] <= tcp_share(budget)
    assert box.run("print('again')").stdout == "again\n"


def test_a_machine_without_the_library_says_what_it_lacks(monkeypatch):
    seccomp_policy.policy_bpf.cache_clear()
    try:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "pyseccomp", None)  # the import fails
            assert seccomp_policy.policy_bpf() is None
    finally:
        seccomp_policy.policy_bpf.cache_clear()
    assert seccomp_policy.policy_bpf() is not None
    assert "not denied" in seccomp_policy.MISSING_NOTE
    assert any("degraded" in note for note in level_notes("degraded", ""))
    assert any("max_user_namespaces" in note for note in level_notes("root", "15000"))
    assert level_notes("root", "0") == []
    assert detect_isolation().notes == ()  # this machine lacks nothing


# 2. A slot poisoned for every later run ------------------------------------------------------

def test_a_run_that_reads_every_file_does_not_tax_the_next(box, monkeypatch):
    _needs(box, cgroup_v1=False)
    if box.cgroup is None:
        pytest.skip("needs a writable memory cgroup")
    waits: list[bool] = []
    real_wait = SlotCgroup.wait_released

    def spy(self: SlotCgroup, below_bytes: int, timeout: float = 1.0) -> bool:
        waits.append(real_wait(self, below_bytes, timeout))
        return waits[-1]

    monkeypatch.setattr(SlotCgroup, "wait_released", spy)
    baseline = [box.run("print(1)").duration for _ in range(3)]
    poison = box.run(READ_EVERY_FILE, timeout=30.0)
    assert poison.status == Status.OK and int(poison.stdout) > 1000, poison.stderr[-300:]
    del waits[:]
    after = [box.run("print(1)") for _ in range(3)]
    assert all(r.stdout == "1\n" for r in after)
    # Today's cleanup waited out its whole timeout (False) on every later run of the slot.
    assert waits == [True] * 3
    assert box.cgroup.usage() < box.config.run_memory_mb << 18  # the cache was reclaimed
    assert max(r.duration for r in after) < 5 * max(baseline) + 0.5, (baseline, after)
    start = time.monotonic()
    timed = box.run("import time\ntime.sleep(60)", timeout=2.0)
    assert timed.status == Status.TIMEOUT and time.monotonic() - start < 2.0 + 1.0


# 3. Orphans after kill -9 of the scorer ------------------------------------------------------

_SCORER = textwrap.dedent("""
    import json, sys
    from llm_gym.rewards.code import code_pass_rate
    from llm_gym.sandbox import SandboxPool, isolation, runner
    if sys.argv[3] == "no-pdeathsig":  # only the watchdog inside the run is left
        isolation.tie_to_parent = runner.tie_to_parent = lambda: ()
    with SandboxPool(workers=1) as pool:
        box = pool._slots[0]
        print(json.dumps({"uid": box.uid, "cgroup": list(box.cgroup.dirs)}), flush=True)
        code_pass_rate(sys.argv[1], json.loads(sys.argv[2]), timeout=4.0, pool=pool)
""")


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["pdeathsig", "no-pdeathsig"])
def test_kill_9_of_the_scorer_ends_every_process_of_its_run(box, mode):
    _needs(box)
    import json

    scorer = subprocess.Popen([sys.executable, "-c", _SCORER, SLEEP_600, json.dumps(ADD_TESTS),
                               mode], stdout=subprocess.PIPE, text=True, start_new_session=True)
    run: set[int] = set()
    try:
        slot = json.loads(scorer.stdout.readline())
        end = time.monotonic() + 60
        while not pids_of_uid(slot["uid"]) and time.monotonic() < end:
            time.sleep(0.05)  # wait for the model's program to be running (as the slot UID)
        assert pids_of_uid(slot["uid"]), "the run never started"
        time.sleep(0.5)
        run = _descendants(scorer.pid)
        assert len(run) >= 4  # unshare, the namespace shell, the program, the grader
        scorer.kill()
        killed = time.monotonic()
        scorer.wait()
        # The run's deadline is 4 s from its start (before the kill), + 2 s.
        while time.monotonic() < killed + 4.0 + 2.0:
            left = [pid for pid in run if _alive(pid)]
            if not left and not pids_of_uid(slot["uid"]):
                break
            time.sleep(0.05)
        assert [pid for pid in run if _alive(pid)] == [] and pids_of_uid(slot["uid"]) == []
        for directory in slot["cgroup"]:
            with open(os.path.join(directory, "cgroup.procs")) as f:
                assert f.read().split() == []
    finally:
        for pid in run:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        scorer.kill()
        scorer.wait()
