"""The sandbox's syscall policy: a seccomp filter built with libseccomp (``pyseccomp``).

Namespaces are not a syscall policy (issue 19): inside the run's user namespace, model code
could ``unshare(CLONE_NEWUSER | CLONE_NEWNET)``, get a full capability and bounding set back
from the kernel, bring up loopback in its own netns, raise ``tcp_rmem`` there and pin socket
memory. The trusted parent builds this filter once with libseccomp and exports it as a classic
BPF program (:func:`policy_bpf`); the bootstrap, which runs ``python -I -S`` with the standard
library only, installs those bytes with ``prctl(PR_SET_SECCOMP)`` after the privilege drop and
before the model's code (:func:`llm_gym.sandbox.confine.install_seccomp`).

Denied with ``EPERM`` (everything else is allowed):

* new namespaces: ``unshare``, ``setns``, ``clone`` with any ``CLONE_NEW*`` flag; ``clone3``
  returns ``ENOSYS`` instead (its flags live in a struct a filter cannot read), so glibc falls
  back to ``clone``, which is filtered;
* kernel attack surface an honest program never needs: io_uring (its operations bypass
  seccomp), ``bpf``, ``perf_event_open``, ``userfaultfd``, the keyring (``keyctl``,
  ``add_key``, ``request_key``);
* ``ptrace`` and cross-process memory access, outright: every process a run can see is its own
  (private pid namespace), so nothing honest needs it;
* ``timer_settime``, ``timer_delete``, ``execve`` and ``execveat``: the run's wall clock is a
  SIGKILL timer the bootstrap arms on the program's process (:func:`~llm_gym.sandbox.confine.
  arm_wall`), which disarming or an exec would remove. Python itself never uses POSIX timers
  (``signal.setitimer`` is ``setitimer``), and the empty root holds nothing to execute;
* the mount API (``mount``, ``umount2``, ``pivot_root``, ``move_mount``, ``open_tree``,
  ``fsopen`` ...), file handles (``open_by_handle_at``), modules, ``kexec``, ``reboot``, swap,
  clocks, accounting, quotas.

A syscall of another ABI (``int 0x80`` on x86-64) kills the process: libseccomp's default
action for an architecture the filter was not built for.
"""

from __future__ import annotations

import errno
import functools
import logging
import os

logger = logging.getLogger(__name__)

# CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
# CLONE_NEWNET. (CLONE_NEWTIME, 0x80, shares its bit with clone()'s exit signal; unshare and
# clone3 are denied whole, so time namespaces cannot be made either.)
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000)
DENIED = (
    "unshare", "setns",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "timer_settime", "timer_delete", "execve", "execveat",
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "fanotify_init", "lookup_dcookie",
    "iopl", "ioperm", "vhangup", "nfsservctl",
)
MISSING_NOTE = ("no seccomp filter (pyseccomp or libseccomp is missing): nested namespaces, "
                "io_uring, bpf, perf_event_open, userfaultfd, keyctl, ptrace and mount are not "
                "denied, and the program can disarm its in-run wall clock")


@functools.cache
def policy_bpf() -> bytes | None:
    """The filter as a classic BPF program (``struct sock_filter[]``); ``None`` without libseccomp.

    Example:
        >>> program = policy_bpf()
        >>> program is None or len(program) % 8 == 0
        True
    """
    try:
        import pyseccomp
    except (ImportError, OSError) as exc:  # OSError: the binding found no libseccomp.so
        logger.warning("sandbox: %s (%s)", MISSING_NOTE, exc)
        return None
    policy = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in DENIED:
        _deny(policy, pyseccomp.ERRNO(errno.EPERM), name)
    _deny(policy, pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS:  # rules of one syscall are OR-ed: any flag set is denied
        policy.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone",
                        pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    fd = os.memfd_create("llm_gym_seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as f:
        policy.export_bpf(f)
        f.seek(0)
        return f.read()


def _deny(policy: object, action: int, name: str) -> None:
    try:
        policy.add_rule(action, name)  # type: ignore[attr-defined]
    except OSError:  # a syscall this architecture does not have (iopl on arm64 ...)
        logger.debug("sandbox seccomp: no syscall %s on this architecture", name)
