"""``status``: where a search stands, from the experiment directory alone (no Ray needed)."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ddecs_search import storage
from ddecs_search.experiment import Experiment
from ddecs_search.search._lock import LOCK_NAME, describe_holder, last_holder, lock_holder

_STATES = ("TERMINATED", "RUNNING", "PENDING", "PAUSED", "ERROR", "INTERRUPTED")


def search_status(exp_dir: str) -> dict[str, Any]:
    """Trials by state, best value per objective, front size, time spent and the driver's state.

    Returns:
        ``{"experiment", "name", "total", "num_samples", "by_state": {...}, "evaluated", "feasible",
        "best": {objective: {"value", "trial_id", "mode"}}, "objectives", "elapsed_s", "trial_time_s",
        "driver", "driver_lock", "resume_command", "cluster", "node_folder", "notices"}``.
        ``driver_lock`` is the driver that holds ``driver.lock`` now (``{"host", "pid", "since",
        "command"}``), or None when none does. ``cluster`` says whether the last driver joined a
        cluster (``--address``). ``node_folder`` is the experiment's node folder on this host
        (``{"host", "path", "bytes"}``), or None when this host has none: see :func:`_node_folder`.
    """
    exp = Experiment.at(exp_dir)
    space = exp.read_space()
    record = exp.read_record()
    trials = exp.read_trials()
    by_state = {s: 0 for s in _STATES}
    for state in trials.get("state", []):
        by_state[str(state)] = by_state.get(str(state), 0) + 1
    objectives = record.get("objectives") or [{"name": o.name, "mode": o.mode} for o in space.objectives]
    evaluated = trials[trials["evaluated"] == True] if "evaluated" in trials else trials.iloc[:0]  # noqa: E712
    feasible = evaluated[evaluated["feasible"] == True] if "feasible" in evaluated else evaluated  # noqa: E712
    best = {}
    for obj in objectives:
        name, mode = obj["name"], obj["mode"]
        if name not in feasible.columns or feasible[name].dropna().empty:
            continue
        col = feasible[name].astype(float)
        idx = col.idxmax() if mode == "max" else col.idxmin()
        best[name] = {"value": float(col[idx]), "trial_id": str(feasible.loc[idx, "trial_id"]), "mode": mode}
    trial_time = float(evaluated["trial_wall_s"].sum()) if "trial_wall_s" in evaluated else 0.0
    holder = lock_holder(exp.root)
    driver = "running" if holder else _driver_state(record, storage.exists(exp.path(LOCK_NAME)))
    started = record.get("started_at")
    end = time.time() if driver == "running" else record.get("updated_at", started)
    return {
        "experiment": exp.root,
        "name": space.name,
        "total": len(trials),
        "num_samples": space.search.num_samples,
        "by_state": by_state,
        "evaluated": len(evaluated),
        "feasible": len(feasible),
        "best": best,
        "objectives": objectives,
        "elapsed_s": (end - started) if started else None,
        "trial_time_s": trial_time,
        "driver_time_s": record.get("wall_s"),
        "driver": driver,
        "driver_lock": _public(holder),
        "last_driver": None if holder else _public(last_holder(exp.root)),
        "verified": record.get("verified"),
        "resume_command": record.get("resume_command"),
        "cluster": bool(record.get("address")),
        "node_folder": _node_folder(record.get("exp_uid")),
        "notices": record.get("notices", []),
    }


def _node_folder(exp_uid: str | None) -> dict[str, Any] | None:
    """The experiment's node folder on this host (data cache, materialised baseline, trials' scratch).

    A finished search removes it on every node; an interrupted one keeps it for its resume (a killed
    driver cannot remove anything), so a search that is never resumed leaves it in the temp folder: a
    few hundred MB per node, named here so that a user who will not resume knows what to delete. Only
    this host's disk can be seen from here: on a cluster every node the search used has one at the same
    path.
    """
    if not exp_uid:
        return None
    from ddecs_search.search._worker import node_cache_dir  # (the one place the path is made)

    path = node_cache_dir(str(exp_uid))
    if not path.is_dir():
        return None
    size = 0
    for root, _dirs, files in os.walk(path):  # (os.walk skips folders removed while it walks)
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile (a trial's scratch, the finishing search's clean-up)
                continue
    return {"host": os.uname().nodename, "path": str(path), "bytes": size}


def _public(holder: dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``status`` shows of a lock's holder (not its claim token)."""
    if not holder:
        return None
    return {k: holder.get(k) for k in ("host", "pid", "since", "command") if k in holder}


def _driver_state(record: dict[str, Any], lock_file: bool) -> str:
    """finished / interrupted / running / gone (recorded as running but its process is dead) / unknown.

    Called when no driver holds the lock. Every driver writes ``running`` while it holds the lock, so
    with a lock file (any host) a recorded ``running`` means the driver is gone; folders of versions
    without the lock fall back to probing the recorded pid (this host only).
    """
    status = record.get("status", "unknown")
    if status in ("running", "starting") and lock_file:
        return "gone"
    if status in ("running", "starting") and record.get("host") == os.uname().nodename and record.get("pid"):
        try:
            os.kill(int(record["pid"]), 0)
        except ProcessLookupError:
            return "gone"
        except PermissionError:
            pass
        return "running"
    return status


def format_status(info: dict[str, Any]) -> str:
    """Human-readable form of :func:`search_status`."""
    states = ", ".join(f"{k.lower()} {v}" for k, v in info["by_state"].items() if v)
    lines = [
        f"experiment {info['experiment']} ({info['name']})",
        f"trials: {info['total']} of {info['num_samples']} created ({states or 'none yet'}); "
        f"{info['evaluated']} evaluated, {info['feasible']} feasible",
    ]
    for name, best in info["best"].items():
        lines.append(f"best {name} ({best['mode']}): {best['value']:.6g} (trial {best['trial_id']})")
    elapsed = info["elapsed_s"]
    lines.append(f"time: {_duration(elapsed)} elapsed, {_duration(info['trial_time_s'])} inside trials")
    driver = info["driver"]
    holder = info.get("driver_lock")
    if holder:
        lines.append(f"driver lock: held by {describe_holder(holder)}")
    else:
        last = info.get("last_driver")
        gone = f" (the last driver, {describe_holder(last)}, ended without releasing it)" if last else ""
        lines.append(f"driver lock: no driver{gone}")
    if driver == "gone":
        lines.append(
            "driver: not running (killed?); states above are as last recorded; continue with "
            f"`{info['resume_command']}`"
        )
    elif driver == "interrupted":
        lines.append(f"driver: interrupted; continue with `{info['resume_command']}`")
    else:
        lines.append(f"driver: {driver}")
    if folder := info.get("node_folder"):
        lines.append(_node_folder_line(folder, driver, info.get("cluster", False)))
    lines.extend(f"notice: {n}" for n in info["notices"])
    return "\n".join(lines)


def _node_folder_line(folder: dict[str, Any], driver: str, cluster: bool) -> str:
    """What the node folder is kept for in this state of the driver, and when it may be deleted."""
    where = f"node folder: {folder['path']} on this host ({folder['bytes'] / 2**20:.0f} MB"
    others = "; the same path on every node the search used" if cluster else ""
    if driver == "running":
        return f"{where}{others}): removed when the search finishes"
    if driver == "finished":
        return f"{where}{others}): left over, nothing needs it; delete it"
    return (
        f"{where}{others}): kept for the resume, which removes it when the search finishes; "
        "delete it if the search will not be resumed"
    )


def _duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
