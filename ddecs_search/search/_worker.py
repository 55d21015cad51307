"""What a trial does first in its (possibly reused) worker process, and the node-local data cache.

Trials run with ``TuneConfig(reuse_actors=True)``: Tune keeps a finished trial's actor and hands it the
next trial of the same resources (``FunctionTrainable.reset_config`` waits for the old trial's thread,
then restarts the function with the new config), so ``import torch``/Ray/the package and the decoded
dataset are paid once per worker, not once per trial. What a reused process carries over and how each
is handled:

- global RNGs (``random``, NumPy, torch): reseeded at every trial start, so a trial's result does not
  depend on the trials the process ran before (training also seeds per epoch and per candidate);
- torch's intra-op thread count: set by every evaluation (``evaluation._set_threads``);
- environment variables set here: the same values for every trial of an experiment;
- the in-process dataset LRU and the node's shared data cache: read-only tensors, shared on purpose;
- the baseline: materialised once per node into a folder every trial reads (``_shared_baseline``).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

#: Trials this process has started (1 for the first); with actor reuse it grows past 1.
_STATE: dict[str, Any] = {"trials": 0, "last_finished_at": None, "handed_at": None, "handed_after": None}


def node_cache_dir(exp_uid: str) -> Path:
    """Node-local folder of one experiment's caches (``data``, ``baselines``, ``scratch``): the one place
    its path is made; a search that finishes removes it on every node (:func:`remove_node_folders` on a
    cluster), and the tests remove it for the searches they interrupt."""
    return Path(tempfile.gettempdir()) / "ddecs-search" / exp_uid


def trial_scratch_dir(exp_uid: str) -> Path:
    """Node-local folder for trials' working files (a trial's work folder, an epoch's checkpoint on its way
    to Tune), made if missing.

    Inside the experiment's node folder rather than loose in the temp folder: a trial whose process is
    killed (its driver killed, a node lost) never runs its own clean-up, and such folders (a few MB each)
    used to stay in ``/tmp`` for good. Here the search that finishes removes them with the node folder.
    """
    path = node_cache_dir(exp_uid) / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_node_folders(exp_uid: str, timeout_s: float = 60.0) -> list[str]:
    """Remove the experiment's node folder on every alive node of the connected Ray cluster.

    Each node's folder is on that node's disk (data cache, materialised baseline, trials' scratch: a few
    hundred MB), out of the driver's reach, so a zero-CPU task pinned to each node removes it. Best effort:
    returns the ids of the nodes where that did not happen within ``timeout_s`` (for a notice).
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remove = ray.remote(num_cpus=0, max_retries=0)(remove_node_folder)
    pending = {
        remove.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
            exp_uid
        ): node["NodeID"]
        for node in ray.nodes()
        if node.get("Alive")
    }
    if not pending:
        return []
    done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
    failed = [pending[ref] for ref in pending if ref not in done]
    for ref in done:
        try:
            ray.get(ref)
        except Exception:  # (a node lost meanwhile: its folder stays)
            failed.append(pending[ref])
    return failed


def remove_node_folder(exp_uid: str) -> None:
    """Remove the experiment's node folder on this node (the driver's after a local search; the task that
    :func:`remove_node_folders` runs on each node of a cluster)."""
    shutil.rmtree(node_cache_dir(exp_uid), ignore_errors=True)


def node_data_dir(exp_uid: str) -> Path:
    """Node-local folder of the experiment's shared data cache (removed with ``node_cache_dir``)."""
    return node_cache_dir(exp_uid) / "data"


def use_shared_data(exp_uid: str) -> None:
    """Route this process's dataset loading through the node's shared cache of the experiment."""
    from ddecs_search.data import SHARED_CACHE_ENV

    os.environ[SHARED_CACHE_ENV] = str(node_data_dir(exp_uid))


def mark_handed_over() -> None:
    """Record that Tune hands this process its next trial (``Trainable.reset`` on a reused actor).

    It splits a reused worker's wait (``worker_idle_s``) at the moment the driver is done with it: before,
    the driver's part (the finished trial's result and callbacks, the sampler's ``suggest``, which for
    ``algorithm: gp`` fits its model); after, the worker's own (``reset``, the trainable's thread restart,
    this module's per-trial reset). Worker reuse is judged on the second part, the search on both.
    A trial stopped at a rung is handed over while its body still runs out to its next report: then the
    driver kept the worker waiting for nothing, and the whole wait is the worker's own.
    """
    _STATE["handed_at"], _STATE["handed_after"] = time.time(), _STATE["trials"]


def begin_trial(exp_uid: str) -> dict[str, Any]:
    """Reset per-trial process state; returns ``worker_pid``, ``worker_trial_number``, ``worker_idle_s``
    and ``worker_reset_s``.

    ``worker_idle_s``: seconds between the previous trial of this process finishing its body and this one
    starting (Tune's hand-over of a reused actor: result processing, the sampler, ``reset_config``);
    ``worker_reset_s``: the part of it after Tune handed the process this trial (:func:`mark_handed_over`;
    all of it when the hand-over came before the previous body ended). Both None for a process's first
    trial; ``worker_reset_s`` also when no hand-over was marked since the previous trial began.
    """
    import numpy as np
    import torch

    os.environ["DDECS_IN_TRIAL"] = "1"  # evaluation sizes torch's thread pool to the trial's CPUs
    use_shared_data(exp_uid)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    _STATE["trials"] += 1
    _STATE["started_at"] = now = time.time()
    last, handed = _STATE["last_finished_at"], _STATE["handed_at"]
    # this trial's hand-over: marked after the previous trial began (later resets, e.g. for a trial that
    # only re-reported its stored result and ran no body here, replace it)
    handed_now = handed is not None and _STATE["handed_after"] == _STATE["trials"] - 1
    return {
        "worker_pid": os.getpid(),
        "worker_trial_number": _STATE["trials"],
        "worker_idle_s": None if last is None else now - last,
        "worker_reset_s": now - max(handed, last) if last is not None and handed_now else None,
    }


def end_trial() -> None:
    """Mark the end of this process's current trial body (for the next trial's ``worker_idle_s``)."""
    _STATE["last_finished_at"] = time.time()


def current_trial() -> dict[str, Any]:
    """This process's running trial, for partial results (a trial stopped early keeps them)."""
    return {
        "worker_pid": os.getpid(),
        "worker_trial_number": _STATE["trials"],
        "trial_started_at": _STATE.get("started_at"),
    }
