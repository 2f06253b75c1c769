"""Guards the bootstrap sets up inside the run itself (stdlib only: this source runs there).

Its source is concatenated into the bootstrap script (see
:func:`llm_gym.sandbox.scripts.stdlib_source`), so it must not import anything outside the
standard library. Three guards (issue 19):

* :func:`deny_user_namespaces` — ``user.max_user_namespaces=0`` in the run's user namespace,
  written while the bootstrap is still root there: no nested user namespace even if the
  syscall filter is missing;
* :func:`arm_wall` — a SIGKILL timer on the program's own process at the run's wall limit;
  its death ends the run's pid namespace. The deadline then holds even when the process that
  started the run was killed (``kill -9`` of a trainer);
* :func:`install_seccomp` — the syscall filter the trusted parent built with libseccomp.
"""

import os
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


def arm_wall(wall):
    """SIGKILL this process ``wall`` seconds from now, whatever happens to its parent.

    A POSIX timer (``timer_create`` with ``SIGEV_SIGNAL``) whose signal is SIGKILL: it cannot
    be caught or ignored, and the syscall filter denies ``timer_settime``/``timer_delete``
    (no disarming it) and ``execve`` (an exec would delete it). This process is the direct
    child of the run's init shell: when it dies the shell exits and the kernel kills the rest
    of the pid namespace. No extra process and no fork: two syscalls per run.
    """
    import ctypes

    class SigEvent(ctypes.Structure):  # struct sigevent: 64 bytes on every Linux ABI
        _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int),
                    ("notify", ctypes.c_int), ("pad", ctypes.c_byte * (64 - 16))]

    class TimeSpec(ctypes.Structure):
        _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]

    class ITimerSpec(ctypes.Structure):
        _fields_ = [("interval", TimeSpec), ("value", TimeSpec)]

    libc = ctypes.CDLL(None, use_errno=True)
    wall = min(wall, 1 << 30)
    event = SigEvent(None, signal.SIGKILL, 0)  # SIGEV_SIGNAL
    timer = ctypes.c_void_p()  # glibc's timer_t
    spec = ITimerSpec(TimeSpec(0, 0), TimeSpec(int(wall), int(wall % 1 * 1e9)))
    if libc.timer_create(1, ctypes.byref(event), ctypes.byref(timer)) or libc.timer_settime(
            timer, 0, ctypes.byref(spec), None):  # CLOCK_MONOTONIC, relative
        err = ctypes.get_errno()
        os.write(2, f"sandbox: cannot arm the run's wall clock: {os.strerror(err)}\n".encode())
        os._exit(74)


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
