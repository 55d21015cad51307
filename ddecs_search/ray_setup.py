"""Starting or joining Ray: a shared leaf for search, RLlib policies and benchmarks (imports no subpackage).

Without an address the search starts a private single-node Ray that listens on 127.0.0.1 only: Ray
2.60 otherwise rewrites loopback addresses to the machine's outward interface, which
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` turns off (read when ``ray`` is imported, so it is also patched
on the already-imported constant). ``address="local"`` keeps a stale ``/tmp/ray/ray_current_cluster``
from making ``ray.init()`` join an old cluster. With an address (``auto``, ``HOST:PORT``,
``ray://HOST:PORT``) the search joins that cluster as its driver.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ddecs_search._imports import require

_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_ray(
    address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = False
) -> dict[str, Any]:
    """Connect to ``address`` or start a loopback-only local Ray; returns the cluster's resources.

    An already initialised Ray (e.g. a test fixture) is reused as is. ``log_to_driver`` streams the
    workers' output (trials' own logs) to this process (``--verbose``).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
        if "ray" in sys.modules:  # imported before the variable was set: patch the constant it set
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = os.environ[_LOOPBACK_ENV] not in ("0", "false", "False")
    ray = require("ray")
    if not ray.is_initialized():
        # worker output (Tune's checkpoint chatter) stays in Ray's log files; failures reach the driver
        # through Tune's error files, the progress lines and the trials table
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": log_to_driver,
            "configure_logging": True,
            "logging_level": "WARNING",
        }
        if address is None:
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    return dict(ray.cluster_resources())


def node_id() -> str:
    """This process's Ray node id (inside a trial or task)."""
    import ray

    return ray.get_runtime_context().get_node_id()
