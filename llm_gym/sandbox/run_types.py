"""The terms of a sandboxed run: its limits, how it ended, what it produced.

Shared by :mod:`llm_gym.sandbox.runner` (which takes the limits and returns the result),
:mod:`llm_gym.sandbox.process` (which enforces the one and builds the other) and
:mod:`llm_gym.sandbox.slots`, and importable from :mod:`llm_gym.sandbox` as before.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SandboxUnavailable(RuntimeError):
    """Namespaces are unavailable and degraded runs were not allowed."""


class Status(enum.StrEnum):
    """How a sandboxed run ended."""

    OK = "ok"                      # exited 0 (or served its peer until the peer finished)
    TIMEOUT = "timeout"            # wall deadline reached; everything was killed
    KILLED = "killed"              # died from a signal (segfault, CPU limit, ...)
    MEMORY = "memory"              # ran out of its address-space limit or the run's budget
    OUTPUT_LIMIT = "output_limit"  # wrote more than the stdout/stderr cap; killed
    ERROR = "error"                # exited non-zero (an uncaught exception, sys.exit(1) ...)


@dataclass(frozen=True)
class SandboxConfig:
    """Limits of one run. Sizes in MiB, times in seconds."""

    timeout: float = 5.0
    memory_mb: int = 256      # RLIMIT_AS per process
    nproc: int = 32           # RLIMIT_NPROC: processes + threads of the slot UID
    fsize_mb: int = 16        # RLIMIT_FSIZE: largest file it may write
    nofile: int = 64          # RLIMIT_NOFILE
    tmp_mb: int = 64          # size of the private tmpfs /tmp
    tmp_inodes: int = 4096    # files and directories in /tmp (a mkdir flood costs kernel memory)
    run_memory_mb: int = 512  # all memory of one run together (cgroup; see runner's doc)
    stdout_limit: int = 1 << 20
    stderr_limit: int = 1 << 16
    uid_base: int = 50000
    allow_degraded: bool = False

    def limits(self, timeout: float) -> dict[str, int]:
        return {"cpu": int(timeout) + 1, "as": self.memory_mb << 20, "nproc": self.nproc,
                "fsize": self.fsize_mb << 20, "nofile": self.nofile, "core": 0}


@dataclass
class RunResult:
    """What a run produced. Text is decoded with ``errors="replace"`` and capped."""

    status: Status
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    degraded: bool = False
    duration: float = 0.0
    peer_stdout: str = ""
    peer_stderr: str = ""
    peer_returncode: int | None = None
    notes: list[str] = field(default_factory=list)
