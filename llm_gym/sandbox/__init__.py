"""Run untrusted Python: isolated processes, one UID per slot, hard deadlines.

See :mod:`llm_gym.sandbox.runner` (one run), :mod:`llm_gym.sandbox.pool` (many at once) and
:mod:`llm_gym.sandbox.isolation` (what this machine allows).
"""

from llm_gym.sandbox.pool import SandboxPool
from llm_gym.sandbox.runner import (
    RunResult,
    Sandbox,
    SandboxConfig,
    SandboxUnavailable,
    Status,
    detect_isolation,
    pids_of_uid,
)

__all__ = ["RunResult", "Sandbox", "SandboxConfig", "SandboxPool", "SandboxUnavailable", "Status",
           "detect_isolation", "pids_of_uid"]
