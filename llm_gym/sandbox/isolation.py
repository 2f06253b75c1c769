"""How the sandbox isolates a run on this machine: detected once per process.

Three levels, best first:

* ``"root"`` — running as root with ``unshare`` and ``setpriv``: new user/mount/net/pid/ipc/uts
  namespaces (root maps itself and the slot UID into the user namespace), private tmpfs over
  every world-writable directory, then a drop to the slot's own UID with no capabilities. A
  Python installed under a directory others cannot enter (pyenv in ``/root``) is bind-mounted
  back at the same path over an empty tmpfs, so the rest of that directory stays hidden.
* ``"userns"`` — not root but unprivileged user namespaces work: the same namespaces, capabilities
  dropped after the mounts, but every slot shares the caller's UID (``RLIMIT_NPROC`` is then
  counted per user namespace instead of per slot UID).
* ``"degraded"`` — no namespaces: only rlimits, a private working directory, and (as root) a slot
  UID. Network, ``/tmp`` and other processes are reachable. It is logged once as a warning and
  every result carries ``degraded=True``; pools refuse it unless ``allow_degraded=True``.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

STATE_DIR = "/run/llm_gym_sandbox"
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")

# Python must be exec'ed *after* root mapped the ids (an exec by an unmapped UID drops every
# capability), so a tiny shell waits for the go byte; the bootstrap closes both fds. The shell
# stays pid 1 of the namespace (no exec): the kernel does not deliver a fatal SIGSEGV to a
# namespace's init normally, and when the shell exits every process left in it is killed.
# (dash only parses one-digit fds after >&, hence /proc/self/fd.)
_ROOT_WAIT = ('echo r >"/proc/self/fd/$LLM_GYM_READY" && read -r _ <"/proc/self/fd/$LLM_GYM_GO" '
              '&& "$@"; s=$?; exit $s')
_USERNS_SETUP = r"""set -e
TMP_MB=$1; shift 1
mount -t tmpfs -o "size=${TMP_MB}m,mode=1777" tmpfs /tmp
for d in /var/tmp /dev/shm /run/lock; do
  if [ -d "$d" ]; then mount -t tmpfs -o size=1m,mode=1777 tmpfs "$d"; fi
done
exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- "$@"
"""


@dataclass(frozen=True)
class Isolation:
    """The detected isolation level and how to launch a sandboxed command with it."""

    level: str  # "root", "userns" or "degraded"
    reason: str = ""
    python: str = os.path.realpath(sys.executable)

    @property
    def degraded(self) -> bool:
        return self.level == "degraded"

    @property
    def per_slot_uid(self) -> bool:
        return os.geteuid() == 0

    def wrap(self, argv: list[str], tmp_mb: int) -> list[str]:
        """The full command that runs ``argv`` (starting with the python path) isolated.

        At level ``"root"`` the bootstrap itself mounts and drops to the slot UID (see
        :meth:`root_setup`), which saves a shell, eight ``mount`` and a ``setpriv`` per run.
        """
        unshare = [shutil.which("unshare") or "unshare", "--user", "--mount", "--net", "--pid",
                   "--ipc", "--uts", "--fork", "--kill-child"]
        if self.level == "root":
            return [*unshare, "/bin/sh", "-c", _ROOT_WAIT, "sh", *argv]
        if self.level == "userns":
            return [*unshare, "--map-root-user", "--mount-proc", "/bin/sh", "-c", _USERNS_SETUP,
                    "sh", str(tmp_mb), *argv]
        return argv


def root_setup(uid: int, tmp_mb: int, ready_fd: int, go_fd: int) -> dict[str, object]:
    """What the bootstrap needs to isolate itself at level ``"root"``."""
    return {"uid": uid, "tmp_mb": tmp_mb, "ready_fd": ready_fd, "go_fd": go_fd,
            "prefix": os.path.realpath(sys.base_prefix), "stage": _stage_dir(),
            "hide": _hidden_ancestor(sys.base_prefix)}


def map_ids(pid: int, uid: int, ready_fd: int, go_fd: int, timeout: float) -> bool:
    """Map root and ``uid`` into the user namespace of ``pid`` once it says it is ready."""
    try:
        ready, _, _ = select.select([ready_fd], [], [], timeout)
        if not ready or not os.read(ready_fd, 8):
            return False
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"0 0 1\n{uid} {uid} 1\n")
        os.write(go_fd, b"g\n")
    except OSError as exc:  # the setup died first: closing go_fd makes it exit
        logger.warning("sandbox: could not map ids for pid %d: %s", pid, exc)
        return False
    return True


def _hidden_ancestor(path: str) -> str:
    """The outermost directory above ``path`` that other users cannot enter ('' if none)."""
    current = "/"
    for part in os.path.realpath(path).strip("/").split("/"):
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return current
    return ""


def _stage_dir() -> str:
    path = os.path.join(STATE_DIR, "stage")
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def candidate_levels() -> list[str]:
    """Levels worth probing on this machine, best first."""
    if not (all(shutil.which(t) for t in ("unshare", "setpriv")) and os.path.exists("/bin/sh")):
        return []
    # Root never uses "userns": inside it the program would still own root's files.
    return ["root"] if os.geteuid() == 0 else ["userns"]


def choose_isolation(probe: Callable[[Isolation], str]) -> Isolation:
    """The first candidate level whose ``probe`` returns '' (logged; a warning if degraded)."""
    errors = []
    for level in candidate_levels():
        error = probe(Isolation(level))
        if not error:
            logger.info("sandbox isolation: %s namespaces", level)
            return Isolation(level)
        errors.append(f"{level}: {error}")
    reason = "; ".join(errors) or "unshare/setpriv not found"
    logger.warning("sandbox DEGRADED (no namespaces: network, /tmp and other processes are "
                   "reachable from untrusted code): %s", reason)
    return Isolation("degraded", reason)
