"""Re-measuring the final Pareto picks end to end, one at a time, with nothing else running.

During the search, latency comes from the serialised per-module table; here each pick's real
early-exit inference is timed against the static backbone at batch 1 (``compare_static_vs_early_exit``)
in a Ray task with a trial's resources on the target device, picks one after another. Results go to
``EXP/verified.csv`` and as ``verified_*`` columns into the trials table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ddecs_search import _faults, storage
from ddecs_search.config import Objective, SearchSpace
from ddecs_search.experiment import Experiment
from ddecs_search.search._latency_broker import RETRY_WAIT_S, SLOW_STATE, slow_spell, usable_time
from ddecs_search.static_contender import static_values, timing_groups

VERIFIED_COLUMNS = (
    "verified_latency_ms",
    "verified_latency_p95_ms",
    "verified_baseline_latency_ms",
    "verified_speedup",
    "verified_latency_source",
    "verified_device",
    "verified_table_latency_ms",
    "verified_load",
    "expected_over_verified",
    "table_over_verified",
)
_RATIO_TOLERANCE = 0.10  # |table / end-to-end - 1| the latency table is built to stay within
# Rounds of (table, end-to-end) per pick: medians are reported, with the end-to-end range, because on a
# small shared VM one pick's batch-1 time moved 0.11-0.17 ms between measurements a minute apart.
VERIFY_ROUNDS = 3
VERIFY_EXTRA_ROUNDS = 3  # rounds that may replace ones taken in a slow spell (see _measure)


def pick_front(trials: Any, objectives: Sequence[Objective], top: int) -> list[str]:
    """Trial ids of the feasible, fully evaluated non-dominated trials; at most ``top``, most spread first.

    Chosen on the objectives only (validation accuracy, table costs: never test labels), and with the
    static network ranked beside them: a trial it dominates is not a pick. Trials timed on different
    devices or in different runtimes are not comparable: as the analyzer's fronts, the picks are chosen
    per group (:func:`~ddecs_search.static_contender.timing_groups`), each against its own static
    network, at most ``top`` per group.
    """
    names = [o.name for o in objectives]
    trials = trials.copy()
    column, groups = timing_groups(trials, names)
    if column is None:
        return _pick_group(trials, objectives, top)
    return [tid for g in groups for tid in _pick_group(trials[trials[column] == g], objectives, top)]


def _pick_group(trials: Any, objectives: Sequence[Objective], top: int) -> list[str]:
    """:func:`pick_front` within one group of comparable trials."""
    from ddecs_search.dominance import crowding_distance, non_dominated_sort

    names = [o.name for o in objectives]
    ok = _rankable(trials, names)
    if ok.empty:
        return []
    values = ok[names].to_numpy(dtype=float)
    directions = [o.mode for o in objectives]
    # the contender is chosen among every fully evaluated trial's static networks, feasible or not (as
    # the front's static row is): an infeasible joint trial's backbone is still a static network
    done = trials[trials["full_fidelity"] == True].dropna(subset=list(names))  # noqa: E712
    static = _static_point(done, names)
    with_static = values if static is None else np.vstack([values, static])
    ranks = non_dominated_sort(with_static, directions)[: len(values)]
    front = ok[ranks == 0]
    if front.empty:
        return []
    crowd = crowding_distance(front[names].to_numpy(dtype=float), directions)
    order = np.argsort(-crowd, kind="stable")
    return [str(front["trial_id"].iloc[i]) for i in order[:top]]


def _rankable(trials: Any, names: Sequence[str]) -> Any:
    """The trials :func:`pick_front` ranks: feasible, fully evaluated, every objective value present
    (an empty frame when there are none)."""
    if trials.empty or "feasible" not in trials.columns or any(n not in trials.columns for n in names):
        return trials.iloc[0:0]
    ok = trials[(trials["feasible"] == True) & (trials["full_fidelity"] == True)]  # noqa: E712
    return ok.dropna(subset=list(names))


def _why_no_picks(trials: Any, objectives: Sequence[Objective]) -> str:
    """Why :func:`pick_front` found nothing: a user reading the log must tell "the static network wins"
    (a real result: deploy the static network) from "no trial finished feasible" (a search problem)."""
    names = [o.name for o in objectives]
    ranked = _rankable(trials, names)
    if ranked.empty:
        return "no feasible, fully evaluated trial with every objective value"
    return (
        f"the static network dominates every feasible trial ({len(ranked)}) on "
        f"{', '.join(names)}: deploy the static network"
    )


def _static_point(trials: Any, names: Sequence[str]) -> np.ndarray | None:
    """The static contender's objective vector (or None), by the front's own rule
    (:func:`~ddecs_search.static_contender.static_values`)."""
    _, values = static_values(trials)
    if any(name not in values for name in names):
        return None
    point = np.array([values[name] for name in names])
    return point if np.all(np.isfinite(point)) else None


def _measure(space: SearchSpace, files: dict[str, bytes], static_ref: float | None = None) -> dict[str, Any]:
    """Ray task body: rebuild the pick from its artefacts and time it against the static backbone.

    ``static_ref``: the static network in the search's latency table (its reference conditions). A round
    whose static network runs more than ``SLOW_STATE`` times slower is a slow spell of the machine: it is
    set aside and retried (``VERIFY_EXTRA_ROUNDS`` at most, ``RETRY_WAIT_S`` apart); the medians come from
    the calm rounds, or from all of them when none was calm (``verified_static_over_reference`` then says
    by how much verify's conditions differ from the table's).
    """
    import os
    import tempfile
    import time
    from pathlib import Path

    import torch

    from ddecs_search.artifacts import load_trained
    from ddecs_search.data import load_splits
    from ddecs_search.evaluation import with_decisions
    from ddecs_search.profiling import device_name, latency_source, resolve_device
    from ddecs_search.ray_setup import node_id
    from ddecs_search.runtime import inference_backend

    device = resolve_device(space.measurement.device)
    if device.type == "cpu":  # time with the thread count the search's latency table used
        torch.set_num_threads(space.measurement.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            Path(tmp, name).write_bytes(data)
        trained = load_trained(tmp, device)
    model, policy, spec = trained.model, trained.policy, trained.spec
    test = load_splits(space.dataset, tuple(spec["input_shape"])).test
    n = min(space.measurement.latency_samples, len(test))
    samples = torch.stack([test[i][0] for i in range(n)])
    m = space.measurement
    backend = inference_backend(m, model, policy, device)  # the search's runtime
    load_before = os.getloadavg()[0]
    # the table re-measured here, in the same conditions as the end-to-end timing that follows: with
    # the timed samples' own exits it tells the table method's error apart from a search-time table
    # measured under another load (expected_over_verified mixes both)
    rounds = []  # (early ms, early p95 ms, static ms, speedup, table ms) per round
    calm: list[bool] = []
    while sum(calm) < VERIFY_ROUNDS and len(rounds) < VERIFY_ROUNDS + VERIFY_EXTRA_ROUNDS:
        if len(rounds) >= VERIFY_ROUNDS:  # a slow spell: give it time to pass
            time.sleep(RETRY_WAIT_S)
        table = with_decisions(
            backend.latency_costs(warmup=m.warmup, repeats=m.repeats, sample=samples[0]),
            backend.decision_costs(samples[:1], warmup=m.warmup, repeats=m.repeats),
        )
        timing = backend.compare(samples, warmup=m.warmup)
        early, static = timing["early_exit"], timing["static"]
        table_ms = float(table.path()[np.asarray(timing["exit_indices"], dtype=int)].mean())
        rounds.append((early.mean_ms, early.p95_ms, static.mean_ms, timing["speedup"], table_ms))
        calm.append(not slow_spell(static.mean_ms, static_ref))
    load_after = os.getloadavg()[0]
    per_round = np.asarray(rounds, dtype=np.float64)
    if any(calm):
        per_round = per_round[np.asarray(calm)]
    early_ms, p95_ms, static_ms, speedup, table_ms = (float(v) for v in np.median(per_round, axis=0))
    threads = m.threads if device.type == "cpu" else None
    load = f"load {load_before:.1f}-{load_after:.1f} on {os.cpu_count()} CPUs"
    slow = len(calm) - sum(calm)
    spells = ""
    if slow and any(calm):
        spells = f" ({slow} round(s) in a slow spell set aside)"
    elif slow:
        spells = f" (every round in a slow spell: static network over {SLOW_STATE:g}x the table's)"
    how = f"end-to-end batch 1, isolated after the search, median of {len(per_round)} rounds{spells}, {load}"
    source = latency_source(backend.runtime_name, device_name(device), threads, how)
    return {
        "verified_table_latency_ms": table_ms,
        "table_over_verified": table_ms / early_ms,
        "verified_load": load,
        "verified_latency_ms": early_ms,
        "verified_latency_min_ms": float(per_round[:, 0].min()),
        "verified_latency_max_ms": float(per_round[:, 0].max()),
        "verified_rounds": len(per_round),
        "verified_slow_rounds": slow,
        "verified_static_over_reference": static_ms / static_ref if static_ref else float("nan"),
        "verified_latency_p95_ms": p95_ms,
        "verified_baseline_latency_ms": static_ms,
        "verified_speedup": speedup,
        "verified_speedup_min": float(per_round[:, 3].min()),
        "verified_speedup_max": float(per_round[:, 3].max()),
        "verified_latency_source": source,
        "verified_device": device_name(device),
        "verified_node_id": node_id(),
        "verified_samples": n,
        "verified_pid": os.getpid(),
    }


def verify_front(
    exp: Experiment, space: SearchSpace, objectives: Sequence[Objective], *, quiet: bool = False
) -> list[dict[str, Any]]:
    """Measure the picks (serially), write ``verified.csv`` and merge the columns into the trials table."""
    import pandas as pd
    import ray

    trials = exp.read_trials()
    picks = pick_front(trials, objectives, space.search.verify_top)
    if not picks:
        _say(quiet, f"verify: {_why_no_picks(trials, objectives)}; nothing to re-measure")
        return []
    _say(quiet, f"verify: re-measuring {len(picks)} Pareto pick(s) end to end in isolation ...")
    task = ray.remote(num_cpus=space.resources.cpu, num_gpus=space.resources.gpu)(_measure)
    rows = []
    for trial_id in picks:
        folder = exp.trial_dir(trial_id)
        wanted = ("model.pt", "spec.json", "policy.json")
        names = [n for n in wanted if storage.exists(storage.join(folder, n))]
        if "policy.json" not in names:
            _say(quiet, f"verify: {trial_id} has no deployable policy; skipped")
            continue
        files = {n: storage.read_bytes(storage.join(folder, n)) for n in names}
        row = trials[trials["trial_id"].astype(str) == trial_id].iloc[0]
        static_ref = usable_time(row.get("baseline_expected_latency_ms"))  # the table's reference conditions
        where = task.options(scheduling_strategy=_on_node(row.get("node_id")))  # where it was timed
        try:
            measured = ray.get(where.remote(space, files, static_ref))  # one at a time: nothing else runs
        except Exception as exc:  # (a corrupt artefact must not lose the finished search)
            cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            _say(
                quiet,
                f"verify: {trial_id}: its files in {folder} (model.pt, spec.json, policy.json) could "
                f"not be loaded ({cause}); skipped. Delete that folder and `ddecs-search resume` "
                "evaluates the trial again",
            )
            continue
        device = row.get("device")
        if isinstance(device, str) and measured["verified_device"] != device:
            _say(
                quiet,
                f"verify: {trial_id} was timed on {device} in the search but re-measured on "
                f"{measured['verified_device']} (its node is gone): its verified_* figures are that "
                "device's, not a check of the search's",
            )
        out = {
            "trial_id": trial_id,
            "summary": row.get("summary"),
            **{o.name: row.get(o.name) for o in objectives},
            "expected_latency_ms": row.get("expected_latency_ms"),
            "in_trial_latency_ms": row.get("latency_ms"),
            **measured,
        }
        expected = out.get("expected_latency_ms")
        out["expected_over_verified"] = expected / out["verified_latency_ms"] if expected else float("nan")
        rows.append(out)
        _faults.point("verify-pick")  # crash tests: during verify, some picks measured
        lo, hi = out["verified_latency_min_ms"], out["verified_latency_max_ms"]
        _say(
            quiet,
            f"verify: {trial_id} latency {out['verified_latency_ms']:.4f} ms end to end (median of "
            f"{out['verified_rounds']} rounds, {lo:.4f}-{hi:.4f}; search's table {expected:.4f} ms, ratio "
            f"{out['expected_over_verified']:.3f}; table re-measured now "
            f"{out['verified_table_latency_ms']:.4f} ms, ratio {out['table_over_verified']:.3f}; "
            f"{out['verified_load']}), speedup "
            f"{out['verified_speedup']:.2f}x ({out['verified_speedup_min']:.2f}-"
            f"{out['verified_speedup_max']:.2f})",
        )
        drift = _table_drift(
            out["expected_over_verified"],
            out["table_over_verified"],
            hi / lo - 1,
            out["verified_static_over_reference"],
        )
        if drift:
            _say(quiet, f"verify: {trial_id}: {drift}")
    if not rows:  # every pick was skipped (no deployable policy, unreadable files): nothing to merge
        _say(quiet, "verify: no pick could be re-measured")
        return []
    frame = pd.DataFrame(rows)
    storage.write_text(exp.path("verified.csv"), frame.to_csv(index=False))
    merged = trials.drop(columns=[c for c in trials.columns if c.startswith("verified_")])
    ratios = ("expected_over_verified", "table_over_verified")
    keep = ["trial_id", *[c for c in frame.columns if c.startswith("verified_")], *ratios]
    merged = merged.drop(columns=[c for c in ratios if c in merged.columns])
    merged = merged.merge(frame[keep].astype({"trial_id": str}), how="left", on="trial_id")
    exp.write_frame(merged)
    return rows


def _on_node(node_id: Any) -> Any:
    """Ray scheduling strategy: the node a pick was timed on while it is alive (soft), else Ray's default.

    On a cluster of mixed devices a pick is verified on the kind of node its search figures came from;
    ``soft``: after a restart (new node ids) or a lost node the task runs wherever Ray places it, and
    :func:`verify_front` says when that is another device.
    """
    if not isinstance(node_id, str) or not node_id:
        return "DEFAULT"
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        return NodeAffinitySchedulingStrategy(node_id=node_id, soft=True)
    except ValueError:  # not a Ray node id (a table edited by hand): anywhere, as before
        return "DEFAULT"


def _table_drift(
    expected_ratio: float, table_ratio: float, spread: float = 0.0, static_ratio: float = float("nan")
) -> str | None:
    """A warning when the search's table misses the end-to-end time by more than the tolerance.

    ``table_ratio`` (the table re-measured beside the end-to-end timing) says whether the table method
    itself is off or the search-time table was measured in other conditions (another load on a shared
    machine): the user must know which before trusting the front's expected latencies. ``spread`` is the
    end-to-end time's own range over verify's rounds (max / min - 1): when it exceeds the tolerance, the
    machine cannot tell a 10 % error from its own noise, and the warning says so. ``static_ratio`` is
    verify's static network over the table's (the table's reference conditions): when every round ran
    more than the tolerance slower, verify itself timed a slow spell of the machine, and that is said
    instead of blaming the table.
    """
    verdict = _drift_verdict(expected_ratio, table_ratio)
    if verdict is not None and np.isfinite(static_ratio) and static_ratio > 1 + _RATIO_TOLERANCE:
        return (
            f"the search's latency table is off by {100 * (expected_ratio - 1):+.0f} % against an end-to-end "
            "time taken in a slow spell of this machine: the static network ran "
            f"{100 * (static_ratio - 1):+.0f} % slower than in the table's reference in every verify round, "
            "so this verdict cannot be told; "
            "re-measure on a quiet machine (`ddecs-search resume EXP` runs verify again)"
        )
    if verdict is None or not np.isfinite(spread) or spread <= _RATIO_TOLERANCE:
        return verdict
    return (
        f"{verdict} (but the end-to-end time itself moved {100 * spread:.0f} % between verify's rounds: "
        "this machine does not repeat its timings well enough to tell)"
    )


def _drift_verdict(expected_ratio: float, table_ratio: float) -> str | None:
    """The verdict of :func:`_table_drift` before the spread is considered."""
    if not np.isfinite(expected_ratio):
        return None
    if abs(expected_ratio - 1) <= _RATIO_TOLERANCE:
        if not np.isfinite(table_ratio) or abs(table_ratio - 1) <= _RATIO_TOLERANCE:
            return None
        # the search-time table agrees, but the same table measured now does not: the agreement came from
        # the search's load inflating the table as much as the method under-counts (or the reverse)
        return (
            f"the search's latency table agrees with end-to-end time ({expected_ratio:.3f}), but the same "
            f"table re-measured now misses it by {100 * (table_ratio - 1):+.0f} %: the agreement owes to the "
            "load the search measured under; on a quiet machine the table method is off by that much here"
        )
    if np.isfinite(table_ratio) and abs(table_ratio - 1) <= _RATIO_TOLERANCE:
        return (
            f"the search's latency table is off by {100 * (expected_ratio - 1):+.0f} % while the same "
            f"table re-measured now is within {100 * _RATIO_TOLERANCE:.0f} % ({table_ratio:.3f}): the "
            "search measured it under another load; its expected_* figures chose the front, so re-run "
            "the search on a quiet machine before trusting them"
        )
    return (
        f"the latency table misses end-to-end time by {100 * (expected_ratio - 1):+.0f} % (re-measured "
        f"now: {100 * (table_ratio - 1):+.0f} %): expected_* figures do not predict this runtime here"
    )


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stdout, flush=True)
