"""Scale-out on Ray: connecting to Ray, and the scoring workers as Ray actors.

The rollout workers, which play a trainer's batch with a policy copy, are an agents part
(:mod:`llm_gym.agents.rollout_workers`); they use :func:`connect` and :func:`require_ray`.

Ray is an optional extra (``pip install 'llm_gym[ray]'``). Nothing here is imported by the
single-process path; :func:`require_ray` gives the one-line message when Ray is missing and
:func:`connect` starts (or joins) the Ray instance the workers run on.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'llm_gym[ray]'"


def require_ray() -> Any:
    """The ``ray`` module, or an ImportError that says what to install.

    Raises:
        ImportError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ImportError(
            f"--rollout-workers, --scoring-workers and --ray-address need Ray; install it with "
            f"`{INSTALL_HINT}`") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Start a local Ray instance (``address=None``) or join a cluster; returns ``ray``.

    Already connected (a caller's own ``ray.init``): that connection is used as it is.

    Args:
        address: ``"auto"``, ``"ray://host:10001"`` or ``"host:6379"`` of a running cluster;
            ``None`` starts a local instance owned by this process.
        num_cpus: logical CPUs of a local instance (default: this machine's). Ray schedules
            actors on these, so a small machine may declare more than it has to fit the
            workers; the OS shares the real cores.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    # No network at run time: Ray would otherwise report usage statistics from the driver.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                              "logging_level": logging.WARNING}
    if address is None:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise ConnectionError(
            f"could not join the Ray cluster at {address!r}: {err}; start one with `ray start "
            "--head` (on its head node `--ray-address auto` finds it), give this process the "
            "cluster's token if it uses token authentication "
            "(https://docs.ray.io/en/latest/ray-security/token-auth.html), or leave out "
            "--ray-address to run a local instance") from None
    return ray


__all__ = ["INSTALL_HINT", "connect", "require_ray"]
