"""One memory and process budget for a whole sandbox run: a cgroup per slot.

Rlimits are per process: 31 forks each under the address-space limit held 5.7 GB, memfds and
SysV shared memory are not counted by ``RLIMIT_AS`` at all, and a ``mkdir`` flood grows kernel
memory. A memory cgroup counts all of it — every process of the run, their shared memory, the
files of the run's tmpfs and the kernel memory they cost — against one limit, and a pids
cgroup bounds the process count across every UID of the run. The kernel OOM-kills inside the
group when the run exceeds its budget; nothing outside it is touched.

Socket buffers are memory too (issue 19): v2 charges them to ``memory.current`` already; v1
charges TCP buffers only to a separate counter, and only once ``memory.kmem.tcp.limit_in_bytes``
is set — so on v1 the budget is split, a sixteenth (at most 32 MiB) for TCP buffers and the rest
for everything else, and the two together stay within it.

A run leaves page cache and dentries charged to its slot (reading every file it can see left
~235 MiB). That memory is reclaimable, not the run's: :meth:`SlotCgroup.release` reclaims it
and then waits only on *live* memory, so one run never slows or shrinks the next.

Both cgroup v1 (separate ``memory`` and ``pids`` hierarchies, as on this project's machines) and
v2 (one unified hierarchy) are supported. Where no writable hierarchy exists the sandbox falls
back to rlimits alone and says so once in the log (see :class:`SlotCgroup.create`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

CGROUP_ROOT = "/sys/fs/cgroup"
GROUP = "llm_gym_sandbox"


@dataclass(frozen=True)
class SlotCgroup:
    """The cgroup directories of one sandbox slot and the files that bound them."""

    dirs: tuple[str, ...]  # v1: (memory dir, pids dir); v2: (the one dir,)
    version: int
    socket_memory_charged: bool = True  # v1 without memory.kmem.tcp: socket buffers are not

    @property
    def notes(self) -> list[str]:
        """What this group does not bound (for ``RunResult.notes``)."""
        return [] if self.socket_memory_charged else [
            "cgroup v1 without memory.kmem.tcp: TCP socket buffers are not charged to the run"]

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_pids: int) -> SlotCgroup | None:
        """Create (or reuse) the slot's group with these limits; ``None`` where none can be made."""
        try:
            if os.path.isdir(os.path.join(CGROUP_ROOT, "memory")):
                group = cls((_make(CGROUP_ROOT, "memory", name), _make(CGROUP_ROOT, "pids", name)),
                            1)
                if not _limit_v1(group.dirs[0], memory_bytes):
                    group = dataclasses.replace(group, socket_memory_charged=False)
                _write(group.dirs[1], "pids.max", max_pids)
            else:
                _write(CGROUP_ROOT, f"{GROUP}/cgroup.subtree_control", "+memory +pids",
                       make_parent=True)
                group = cls((_make(CGROUP_ROOT, "", name),), 2)
                _write(group.dirs[0], "memory.max", memory_bytes)
                _write(group.dirs[0], "memory.swap.max", 0, optional=True)
                _write(group.dirs[0], "pids.max", max_pids)
        except OSError as exc:
            _warn_once(f"sandbox: no writable memory cgroup ({exc}); a run's memory is bounded "
                       "by rlimits per process only (processes x address space + tmpfs)")
            return None
        return group

    def add(self, pids: list[int]) -> None:
        """Move ``pids`` (and so every process they start later) into the group."""
        for directory in self.dirs:
            for pid in pids:
                _write(directory, "cgroup.procs", pid)

    def pids(self) -> list[int]:
        with open(os.path.join(self.dirs[-1], "cgroup.procs")) as f:
            return [int(line) for line in f if line.strip()]

    def kill(self, timeout: float = 2.0) -> bool:
        """SIGKILL every process in the group until it is empty; False if some outlived it."""
        end = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return True
            if time.monotonic() > end:
                return False
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)  # a pid in our group cannot be recycled unseen:
                except ProcessLookupError:       # it stays listed until it is reaped
                    pass
            time.sleep(0.005)

    def release(self, below_bytes: int, timeout: float = 1.0) -> bool:
        """After a run: reclaim what it left charged, then :meth:`wait_released`.

        Reclaim only when the group holds ``below_bytes`` or more: below that the cache is
        mostly the interpreter's own files, which the next run reads again.
        """
        if self.usage() >= below_bytes:
            self.reclaim()
        return self.wait_released(below_bytes, timeout)

    def reclaim(self) -> None:
        """Ask the kernel to drop the group's reclaimable memory (page cache, dentries)."""
        try:
            if self.version == 1:  # only works on a group without processes, as here
                _write(self.dirs[0], "memory.force_empty", 0)
            else:
                _write(self.dirs[0], "memory.reclaim", max(self.usage(), 1 << 20))
        except OSError as exc:  # EBUSY, EAGAIN: not all of it could go; live memory decides
            logger.debug("sandbox cgroup: reclaim of %s: %s", self.dirs[0], exc)

    def usage(self) -> int:
        """Every byte charged to the group (including page cache)."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        with open(os.path.join(self.dirs[0], name)) as f:
            return int(f.read())

    def live_bytes(self) -> int:
        """Charged memory that is not reclaimable file cache: what a dead run still holds."""
        with open(os.path.join(self.dirs[0], "memory.stat")) as f:
            stat = dict(line.split() for line in f if line.count(" ") == 1)
        cache = sum(int(stat.get(key, 0)) for key in ("active_file", "inactive_file",
                                                        "slab_reclaimable"))
        return max(self.usage() - cache, 0)

    def wait_released(self, below_bytes: int, timeout: float = 1.0) -> bool:
        """Wait until the group's live memory (:meth:`live_bytes`) falls under ``below_bytes``.

        The kernel frees a dead run's IPC namespace (SysV shared memory) and tmpfs
        asynchronously, still charged to the group for a moment: the next run must not start
        inside what is left of its predecessor's budget. Page cache is not waited on: it was
        a poisoned slot's full timeout on every later run (issue 19).
        """
        end = time.monotonic() + timeout
        while True:
            if self.live_bytes() < below_bytes:
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.01)

    def oom_kills(self) -> int:
        """How many processes the kernel has OOM-killed in this group so far."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        with open(os.path.join(self.dirs[0], name)) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (the namespace shell that ``unshare --fork`` started)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tcp_share(memory_bytes: int) -> int:
    """The part of a v1 budget for TCP socket buffers (a sixteenth, at most 32 MiB)."""
    return min(memory_bytes // 16, 32 << 20)


def _limit_v1(directory: str, memory_bytes: int) -> bool:
    """Set the v1 limits; False where TCP buffers cannot be charged (then the whole budget)."""
    try:
        _write(directory, "memory.kmem.tcp.limit_in_bytes", tcp_share(memory_bytes))
        tcp = tcp_share(memory_bytes)
    except OSError as exc:
        logger.debug("sandbox cgroup: no TCP buffer accounting in %s: %s", directory, exc)
        tcp = 0
    # memsw must stay >= the memory limit at every step: lift it, set both, lower it again.
    _write(directory, "memory.memsw.limit_in_bytes", -1, optional=True)
    _write(directory, "memory.limit_in_bytes", memory_bytes - tcp)
    _write(directory, "memory.memsw.limit_in_bytes", memory_bytes - tcp, optional=True)
    return tcp > 0


def _make(root: str, controller: str, name: str) -> str:
    path = os.path.join(root, controller, GROUP, name)
    os.makedirs(path, exist_ok=True)
    return path


def _write(directory: str, name: str, value: object, *, optional: bool = False,
           make_parent: bool = False) -> None:
    path = os.path.join(directory, name)
    if make_parent:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except FileNotFoundError:
        if not optional:
            raise


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)
