"""How the sandbox isolates a run on this machine: detected once per process.

Three levels, best first:

* ``"root"`` — running as root with ``unshare`` and ``setpriv``: new user/mount/net/pid/ipc/uts
  namespaces (root maps itself and the slot UID into the user namespace), then the bootstrap
  pivots into an **empty root** (:func:`root_view`: the standard library and the shared
  libraries of the interpreter, read-only; a private ``/tmp`` and a fresh ``/proc``), and drops
  to the slot's own UID with no capabilities. No host file outside that view — datasets, the
  project, ``/root``, ``/etc``, other processes — exists in the run's mount namespace.
* ``"userns"`` — not root but unprivileged user namespaces work: the same namespaces and the
  same empty root, capabilities dropped after the mounts, but every slot shares the caller's UID
  (``RLIMIT_NPROC`` is then counted per user namespace instead of per slot UID) and no cgroup
  bounds the run's memory.
* ``"degraded"`` — no namespaces: only rlimits, a private working directory, and (as root) a slot
  UID. Network, ``/tmp`` and other processes are reachable. It is logged once as a warning and
  every result carries ``degraded=True``; pools refuse it unless ``allow_degraded=True``.

At every level the bootstrap installs the syscall filter of :mod:`llm_gym.sandbox.seccomp_policy`
(where libseccomp is installed), and every process of a run is tied to the life of the thread
that started it (:func:`tie_to_parent`). At the namespace levels the run's user namespace
allows no nested one and a watchdog inside the run kills it at its wall limit (see
:mod:`llm_gym.sandbox.confine`). What a level or a machine lacks of all this is listed in
:attr:`Isolation.notes` and in every ``RunResult.notes``.
"""

from __future__ import annotations

import _ctypes
import functools
import glob
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import sysconfig
import tempfile
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
# At level "userns" the shell only stays pid 1 of the namespace (as above); the bootstrap
# builds the empty root itself.
_USERNS_INIT = '"$@"; s=$?; exit $s'


@dataclass(frozen=True)
class Isolation:
    """The detected isolation level and how to launch a sandboxed command with it."""

    level: str  # "root", "userns" or "degraded"
    reason: str = ""
    python: str = os.path.realpath(sys.executable)
    notes: tuple[str, ...] = ()  # the protections this level lacks on this machine

    @property
    def degraded(self) -> bool:
        return self.level == "degraded"

    @property
    def per_slot_uid(self) -> bool:
        return os.geteuid() == 0

    def wrap(self, argv: list[str]) -> list[str]:
        """The full command that runs ``argv`` (starting with the python path) isolated.

        At both namespace levels the bootstrap itself builds the empty root (see
        :func:`empty_root_setup`); at level ``"root"`` it then drops to the slot UID.
        """
        unshare = [*tie_to_parent(), shutil.which("unshare") or "unshare", "--user", "--mount",
                   "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        if self.level == "root":
            return [*unshare, "/bin/sh", "-c", _ROOT_WAIT, "sh", *argv]
        if self.level == "userns":
            return [*unshare, "--map-root-user", "--mount-proc", "/bin/sh", "-c", _USERNS_INIT,
                    "sh", *argv]
        return [*tie_to_parent(), *argv]


@functools.cache
def tie_to_parent() -> tuple[str, ...]:
    """A command prefix that makes the process get SIGKILL when its parent thread dies.

    ``setpriv --pdeathsig KILL`` sets ``PR_SET_PDEATHSIG`` and execs the command: a run's
    ``unshare`` (whose ``--kill-child`` does the same for the namespace's init, whose death
    ends the whole pid namespace) and the grader die with the scorer that started them, even
    after a ``kill -9`` of it (issue 19). Without ``setpriv``: empty (recorded in the notes).
    The signal follows the *thread* that forked, which is the one supervising the run.
    """
    setpriv = shutil.which("setpriv")
    return (setpriv, "--pdeathsig", "KILL", "--") if setpriv else ()


def level_notes(level: str, user_namespaces: str) -> list[str]:
    """What a run at ``level`` lacks; ``user_namespaces`` is the run's max_user_namespaces."""
    notes = []
    if level == "degraded":
        notes.append("degraded: no namespaces, empty root, memory cgroup or in-run watchdog: "
                     "network, /tmp and other processes are reachable")
    elif user_namespaces != "0":
        notes.append("user.max_user_namespaces could not be set to 0 in the run's user "
                     f"namespace (read {user_namespaces!r}): only the seccomp filter denies "
                     "nested user namespaces")
    if level == "userns":
        notes.append("userns level: every slot shares one UID and no cgroup bounds a run's "
                     "memory; the program may kill its own watchdog (the run then ends)")
    if not tie_to_parent():
        notes.append("no setpriv: a run outlives a killed scorer until its own wall limit")
    return notes


def empty_root_setup(level: str, tmp_mb: int, tmp_inodes: int) -> dict[str, object]:
    """What the bootstrap needs to build the run's empty root at a namespace level."""
    return {"level": level, "tmp_mb": tmp_mb, "tmp_inodes": tmp_inodes, "root": _root_dir(),
            **root_view()}


@functools.cache
def root_view() -> dict[str, list]:
    """The host paths an isolated run sees: ``binds`` (read-only), ``hidden``, ``links``.

    ``binds`` are the standard library directories and each shared library file that the
    interpreter and its stdlib extension modules load (``ldd``; plus ``libgcc_s``, which glibc
    loads itself when a thread exits); ``hidden`` are site-packages directories inside them
    (covered by an empty tmpfs: model code gets the standard library only); ``links`` re-create
    symlinked path components (``/lib -> usr/lib`` on merged-/usr systems) so library paths
    resolve as on the host.

    Example:
        >>> view = root_view()
        >>> any(os.path.exists(os.path.join(d, "json")) for d in view["binds"])
        True
    """
    paths = _base_interpreter_paths()
    stdlib = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")}
    dynload = os.path.dirname(os.path.realpath(_ctypes.__file__))
    links: dict[str, str] = {}
    libs = {_resolve(lib, links) for lib in _shared_libraries(
        [os.path.realpath(sys.executable), *glob.glob(os.path.join(dynload, "*.so"))])}
    dirs = _outermost(stdlib | {dynload})
    binds = dirs + sorted(lib for lib in libs if not _under(lib, dirs))
    site = {os.path.realpath(paths[k]) for k in ("purelib", "platlib")}
    hidden = sorted(p for p in site if os.path.isdir(p) and _under(p, dirs))
    links = {link: target for link, target in links.items() if not _under(link, dirs)}
    return {"binds": binds, "hidden": hidden, "links": sorted(links.items())}


def _base_interpreter_paths() -> dict[str, str]:
    """The sysconfig paths of the interpreter the sandbox runs (``realpath(sys.executable)``).

    Inside a virtualenv, ``platstdlib`` and site-packages name the venv (``/home/me/project/
    .venv/lib/python3.X``), which holds no standard library: binding it would put the
    project's path (as mount-point directories) into the run's root. The base prefixes name the
    real installation, the one whose interpreter runs there.
    """
    base = {"base": sys.base_prefix, "installed_base": sys.base_prefix,
            "platbase": sys.base_exec_prefix, "installed_platbase": sys.base_exec_prefix}
    return sysconfig.get_paths(vars=base)


def _shared_libraries(files: list[str]) -> set[str]:
    ldd = shutil.which("ldd")
    if ldd is None:
        raise OSError("ldd not found: cannot tell which shared libraries the sandbox needs")
    out = subprocess.run([ldd, *files], capture_output=True, text=True, timeout=60).stdout
    libs = set(re.findall(r"(/\S+) \(0x", out))
    for lib in list(libs):  # glibc dlopens libgcc_s for pthread_exit: thread exits need it
        if os.path.basename(lib).startswith("libc.so"):
            libs.update(glob.glob(os.path.join(os.path.dirname(lib), "libgcc_s.so.*")))
    return libs


def _resolve(path: str, links: dict[str, str], depth: int = 0) -> str:
    """The real path of ``path``, recording each symlinked component met on the way."""
    current = "/"
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        step = os.path.join(current, part)
        if os.path.islink(step) and depth < 40:
            target = os.readlink(step)
            links[step] = target
            rest = os.path.join(os.path.dirname(step), target, *parts[i + 1:])
            return _resolve(os.path.normpath(rest), links, depth + 1)
        current = step
    return current


def _under(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _outermost(paths: set[str]) -> list[str]:
    kept: list[str] = []
    for path in sorted(paths):  # a parent sorts before its children
        if not _under(path, kept):
            kept.append(path)
    return kept


def _root_dir() -> str:
    # Only a mount point: each run mounts its own tmpfs there, in its own mount namespace.
    base = STATE_DIR if os.geteuid() == 0 else os.path.join(
        tempfile.gettempdir(), f"llm_gym_sandbox-{os.geteuid()}")
    path = os.path.join(base, "root")
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def map_ids(pid: int, uid: int, ready_fd: int, go_fd: int, timeout: float,
            before_go: Callable[[], None] | None = None) -> bool:
    """Map root and ``uid`` into the user namespace of ``pid`` once it says it is ready.

    ``before_go`` runs after the maps and before the go byte (the run joins its cgroup there).
    """
    try:
        ready, _, _ = select.select([ready_fd], [], [], timeout)
        if not ready or not os.read(ready_fd, 8):
            return False
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"0 0 1\n{uid} {uid} 1\n")
        if before_go is not None:
            before_go()
        os.write(go_fd, b"g\n")
    except OSError as exc:  # the setup died first: closing go_fd makes it exit
        logger.warning("sandbox: could not map ids for pid %d: %s", pid, exc)
        return False
    return True


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
                   "reachable from untrusted code; no empty root, no memory cgroup, no nested-"
                   "namespace limit and no in-run watchdog; the syscall filter still applies "
                   "where libseccomp is installed): %s", reason)
    return Isolation("degraded", reason)
