"""Shared fixtures. Multi-node clusters and their process helpers stay in ``tests/_ray_cluster.py``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _remove_node_caches_of_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session, remove the node caches (``<tmp>/ddecs-search/<uid>``) of its searches.

    A finished local search removes its own; the searches a test interrupts on purpose (kill and resume
    tests) keep theirs for a resume that never comes, ~200 MB each, and a CI machine's ``/tmp`` filled up
    with them. Only the uids read from the ``run.json`` files under this session's base temp are removed,
    so a search running beside the tests (``make demo``) keeps its cache.
    """
    from ddecs_search.search._worker import remove_node_folder

    yield
    for record in tmp_path_factory.getbasetemp().rglob("run.json"):
        try:
            uid = json.loads(record.read_text()).get("exp_uid")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(uid, str) and uid and "/" not in uid and uid not in (".", ".."):
            remove_node_folder(uid)


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
