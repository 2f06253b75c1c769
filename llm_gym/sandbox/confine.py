"""Guards the bootstrap sets up inside the run itself (stdlib only: this source runs there).

Its source is concatenated into the bootstrap script (see
:func:`llm_gym.sandbox.runner.stdlib_source`), so it must not import anything outside the
standard library. Three guards (issue 19):

* :func:`deny_user_namespaces` — ``user.max_user_namespaces=0`` in the run's user namespace,
  written while the bootstrap is still root there: no nested user namespace even if the
  syscall filter is missing;
* :func:`watch` — a watchdog process that outlives nothing: it waits for the program and, at
  the run's wall limit, SIGKILLs every process of the run's pid namespace. The deadline then
  holds even when the process that started the run was killed (``kill -9`` of a trainer);
* :func:`install_seccomp` — the syscall filter the trusted parent built with libseccomp.
"""

import os
import select
import signal

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def deny_user_namespaces():
    """Allow no user namespace below this one; False where the kernel refused (best effort)."""
    try:
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
    except OSError:
        return False  # the parent's probe reads the value back and records a note
    return True


def watch(wall):
    """Fork; return in the child (which goes on to run the program), never in the parent.

    The parent must hold a capability over the child (it forks before the privilege drop): it
    closes every descriptor (so the program's pipes reach EOF exactly when the program's side
    closes them), waits for the child at most ``wall`` seconds, then kills every process it can
    signal — all of the run's pid namespace but its init — and exits with the child's status
    the way a shell reports it (128 + signal).
    """
    child = os.fork()
    if child == 0:
        return
    os.closerange(0, 1 << 16)
    pidfd = os.pidfd_open(child)
    if not select.select([pidfd], [], [], min(wall, 1 << 30))[0]:  # inf does not fit a timeval
        os.kill(-1, signal.SIGKILL)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def install_seccomp(program):
    """Install a classic BPF seccomp program (bytes of ``struct sock_filter[]``) for good.

    NO_NEW_PRIVS first: the kernel requires it of a process without CAP_SYS_ADMIN (and it is
    already set at the namespace levels). The filter is inherited by every child and can never
    be removed; a failure ends the run rather than running the program without it.
    """
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    code = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(code))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(
            _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0):
        err = ctypes.get_errno()
        os.write(2, f"sandbox: cannot install the seccomp filter: {os.strerror(err)}\n".encode())
        os._exit(73)
