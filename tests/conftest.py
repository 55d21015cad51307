"""Shared fixtures. Multi-node clusters and their process helpers stay in ``tests/_ray_cluster.py``."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def local_ray(request: pytest.FixtureRequest) -> Iterator[None]:
    """One loopback-only local Ray (``ray_setup.init_ray``) for the in-process runs of a test module.

    A module sets ``RAY_NUM_CPUS`` to size it (default 2). A Ray this fixture did not start (one left
    up by an earlier module, e.g. by an RLlib ``fit``) is reused and left running; one it started is
    shut down after the module. Drivers run in subprocesses start their own.
    """
    from ddecs_search.ray_setup import init_ray

    started = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    init_ray(num_cpus=getattr(request.module, "RAY_NUM_CPUS", 2))
    yield
    if started:
        sys.modules["ray"].shutdown()
