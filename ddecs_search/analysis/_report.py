"""The data behind the HTML report (no plotly here): tests compare this, not pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ddecs_search._imports import require
from ddecs_search.analysis._constraints import Constraint
from ddecs_search.analysis._exit_stats import ExitDetails, load_exit_details
from ddecs_search.analysis._pareto import DEVICE_BOUND_METRICS, experiment_front
from ddecs_search.analysis._select import best_for_accuracy_floor, best_under_budget, knee_point
from ddecs_search.analysis._trials import (
    Experiment,
    Objective,
    experiment_dirs,
    read_objectives,
)
from ddecs_search.dominance import default_reference_point, hypervolume_history

if TYPE_CHECKING:
    import pandas as pd

# what the static baseline (no early exit) measures, per objective metric
BASELINE_COLUMNS = {
    "accuracy": "baseline_accuracy",
    "latency_ms": "baseline_latency_ms",
    "expected_latency_ms": "baseline_latency_ms",
    "energy_mj": "baseline_energy_mj",
    "macs": "baseline_macs",
}
# the oracle policy (every sample leaves at its earliest correct exit) of a trial's exit configuration
ORACLE_COLUMNS = {
    "accuracy": "oracle_accuracy",
    "expected_latency_ms": "oracle_expected_latency_ms",
    "latency_ms": "oracle_expected_latency_ms",
    "macs": "oracle_macs",
}
ACCURACY_FLOOR_MARGIN = 0.01  # "fastest within 1 point of the static baseline's accuracy"


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, computed once.

    Attributes:
        title: report title.
        exp_dirs: the experiment directories read.
        trials: every row of the trials tables (any state).
        ranked: completed rows with ``rank``, ``crowding``, ``feasible``, ``group``.
        front: rank-0 feasible rows (see :func:`compute_front`).
        objectives: objectives ranked on (after the energy → MACs fallback).
        constraints: constraints applied (the space's plus the caller's).
        group_by: "device" when one front per device was computed, else None.
        hv_history: columns ``group``, ``trial_index``, ``trial_id``, ``hypervolume`` (feasible
            completed trials in the order they finished, per group).
        reference_points: per group, the hypervolume reference point (objective units).
        recommended: front rows chosen for the user, with ``role`` (knee, best under budget, ...).
        baseline: per group, the static baseline's value of each objective (``group`` + metric columns).
        color_metric: the metric the 2-D front is coloured by (``energy_mj``, else ``macs``).
        exit_details: per-sample exits of recommended trials that saved ``test_exits.npz``.
        notices: sentences to show above the plots.
    """

    title: str
    exp_dirs: tuple[Experiment, ...]
    trials: pd.DataFrame
    ranked: pd.DataFrame
    front: pd.DataFrame
    objectives: list[Objective]
    constraints: list[Constraint]
    group_by: str | None
    hv_history: pd.DataFrame
    reference_points: dict[str, list[float]]
    recommended: pd.DataFrame
    baseline: pd.DataFrame
    color_metric: str | None
    exit_details: dict[str, ExitDetails] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def _hv_history(
    ranked: pd.DataFrame, objectives: Sequence[Objective]
) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    pd = require("pandas")
    names, directions = [n for n, _ in objectives], [d for _, d in objectives]
    frames, refs = [], {}
    for group, rows in ranked[ranked["feasible"]].groupby("group", sort=True):
        if "trial_index" in rows.columns:
            rows = rows.sort_values("trial_index", kind="stable")
        values = rows[names].to_numpy(dtype=float)  # (N, M)
        ref = default_reference_point(values, directions)
        refs[str(group)] = ref.tolist()
        frames.append(
            pd.DataFrame(
                {
                    "group": str(group),
                    "trial_index": rows["trial_index"].to_numpy()
                    if "trial_index" in rows.columns
                    else np.arange(len(rows)),
                    "trial_id": rows["trial_id"].to_numpy(),
                    "hypervolume": hypervolume_history(values, directions, ref),
                }
            )
        )
    columns = ["group", "trial_index", "trial_id", "hypervolume"]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)), refs


def _baseline(ranked: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    pd = require("pandas")
    metrics = dict.fromkeys([n for n, _ in objectives] + list(BASELINE_COLUMNS))
    rows = []
    for group, sub in ranked.groupby("group", sort=True):
        row = {"group": str(group)}
        for metric in metrics:
            col = BASELINE_COLUMNS.get(metric)
            row[metric] = (
                float(sub[col].median()) if col in sub.columns and sub[col].notna().any() else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=["group", *metrics])


def _speed_metric(objectives: Sequence[Objective]) -> str | None:
    """The objective a latency budget applies to: the first device-bound "min" one, else the first "min"."""
    mins = [n for n, d in objectives if d == "min"]
    bound = [n for n in mins if n in DEVICE_BOUND_METRICS]
    return (bound or mins or [None])[0]


def _recommend(
    front: pd.DataFrame, objectives: Sequence[Objective], baseline: pd.DataFrame, budget: float | None
) -> pd.DataFrame:
    pd = require("pandas")
    speed = _speed_metric(objectives)
    has_accuracy = "accuracy" in front.columns
    picks = []
    for group, sub in front.groupby("group", sort=True):
        picks.append(("knee", knee_point(sub, objectives)))
        if has_accuracy:
            picks.append(("best accuracy", sub.loc[sub["accuracy"].idxmax()]))
        if has_accuracy and speed:
            limit = float(sub[speed].median()) if budget is None else float(budget)
            how = " (front median)" if budget is None else ""
            picks.append(
                (
                    f"best accuracy, {speed} ≤ {limit:.4g}{how}",
                    best_under_budget(sub, speed, limit, "accuracy"),
                )
            )
            base_acc = baseline.loc[baseline["group"] == str(group), "accuracy"]
            if len(base_acc) and np.isfinite(base_acc.iloc[0]):
                floor = float(base_acc.iloc[0]) - ACCURACY_FLOOR_MARGIN
                picks.append(
                    (
                        f"lowest {speed}, accuracy ≥ {floor:.4g} (baseline − 1 pt)",
                        best_for_accuracy_floor(sub, floor, speed),
                    )
                )
    rows = [row.to_frame().T.assign(role=role) for role, row in picks if row is not None]
    if not rows:
        return front.iloc[0:0].assign(role=[])
    out = pd.concat(rows, ignore_index=True).infer_objects()
    return out[["role"] + [c for c in out.columns if c != "role"]]


def _exit_details(
    recommended: pd.DataFrame, dirs: Sequence[Experiment], notices: list[str]
) -> dict[str, ExitDetails]:
    by_name = {d.name: d for d in dirs} | {d.root: d for d in dirs}
    out: dict[str, ExitDetails] = {}
    for _, row in recommended.iterrows():
        trial_id = str(row["trial_id"])
        if trial_id in out:
            continue
        exp = by_name.get(str(row.get("experiment", "")), dirs[0])
        try:
            details = load_exit_details(exp.trial_dir(trial_id), trial_id)
        except (ValueError, OSError) as exc:
            notices.append(f"per-sample exits of trial {trial_id} not shown: {exc}")
            continue
        if details is not None:
            out[trial_id] = details
    return out


def build_report_data(
    exp_dirs: str | Path | Sequence[str | Path],
    objectives: Sequence[Objective] | None = None,
    constraints: Sequence[str | Constraint] = (),
    *,
    budget: float | None = None,
    title: str | None = None,
) -> ReportData:
    """Load the experiment(s) and compute everything :func:`write_report` draws.

    Args:
        exp_dirs: one experiment directory, or several to compare (rows get an ``experiment`` column).
        objectives: default: the ``objectives:`` of the first directory's ``space.yaml``.
        constraints: added to the ``constraints:`` of the first directory's ``space.yaml``.
        budget: the latency budget of the "best accuracy under budget" pick; default: the median latency
            of the front (per device group).
        title: default "ddecs-search report: <experiment names>".

    Raises:
        ConfigError: missing directory/trials table, unknown objective or constraint metric.
    """
    dirs = experiment_dirs(exp_dirs)
    trials, result = experiment_front(exp_dirs, objectives, constraints)
    notices = list(result.notices)
    hv, refs = _hv_history(result.ranked, result.objectives)
    baseline = _baseline(result.ranked, result.objectives)
    recommended = _recommend(result.front, result.objectives, baseline, budget)
    details = _exit_details(recommended, dirs, notices)
    if "energy_mj" in trials.columns and trials["energy_mj"].notna().any():
        color = "energy_mj"
    else:
        color = "macs" if "macs" in trials.columns else None
        # a requested energy objective was already explained by compute_front's fallback notice
        requested_energy = any(n == "energy_mj" for n, _ in objectives or read_objectives(dirs[0]))
        sources = trials["energy_source"].dropna().unique() if "energy_source" in trials.columns else []
        if not requested_energy and len(sources):
            notices.append(
                f"energy was not measured ({'; '.join(sorted(map(str, sources)))}); the front is "
                f"coloured by {color or 'nothing'} instead."
            )
    return ReportData(
        title=title or f"ddecs-search report: {', '.join(d.name for d in dirs)}",
        exp_dirs=tuple(dirs),
        trials=trials,
        ranked=result.ranked,
        front=result.front,
        objectives=result.objectives,
        constraints=result.constraints,
        group_by=result.group_by,
        hv_history=hv,
        reference_points=refs,
        recommended=recommended,
        baseline=baseline,
        color_metric=color,
        exit_details=details,
        notices=notices,
    )


COMPARISON_METRICS = ("accuracy", "latency_ms", "energy_mj", "macs", "speedup")  # + the objectives
COMPARISON_CONFIG = ("config/exit_points", "config/policy_kind", "config/cost_weight")
BASELINE_ROLE = "static baseline (no early exit)"
ORACLE_ROLE = "oracle policy on the knee's exits"


def comparison_table(data: ReportData) -> pd.DataFrame:
    """Recommended configurations next to the static baseline and the oracle, one row each.

    The oracle row uses the knee trial's exit configuration with a perfect exit decision (each sample
    leaves at its earliest correct exit): an upper bound for any policy on those exits.
    """
    pd = require("pandas")
    cols = data.trials.columns
    metrics = [n for n, _ in data.objectives] + [m for m in COMPARISON_METRICS if m in cols]
    metrics = [m for m in dict.fromkeys(metrics) if m in cols and data.trials[m].notna().any()]
    config = [c for c in COMPARISON_CONFIG if c in data.recommended.columns]
    rows = []
    for _, rec in data.recommended.iterrows():
        rows.append(
            {
                "role": rec["role"],
                "group": rec["group"],
                "trial_id": rec["trial_id"],
                **{m: rec.get(m) for m in metrics + config},
            }
        )
    for _, base in data.baseline.iterrows():
        rows.append(
            {
                "role": BASELINE_ROLE,
                "group": base["group"],
                "trial_id": "",
                **{m: base.get(m, np.nan) for m in metrics},
                "speedup": 1.0 if "speedup" in metrics else None,
            }
        )
    knees = (
        data.recommended[data.recommended["role"] == "knee"] if len(data.recommended) else data.recommended
    )
    for _, knee in knees.iterrows():
        oracle = {m: knee.get(ORACLE_COLUMNS[m]) for m in metrics if ORACLE_COLUMNS.get(m) in knee.index}
        if "speedup" in metrics and oracle.get("latency_ms") and "baseline_latency_ms" in knee.index:
            oracle["speedup"] = knee["baseline_latency_ms"] / oracle["latency_ms"]
        rows.append(
            {
                "role": ORACLE_ROLE,
                "group": knee["group"],
                "trial_id": knee["trial_id"],
                **oracle,
                **{c: knee.get(c) for c in config if c != "config/policy_kind"},
                "config/policy_kind": "oracle",
            }
        )
    table = pd.DataFrame(rows, columns=["role", "group", "trial_id", *metrics, *config])
    if data.group_by is None:
        return table.drop(columns="group")
    return table.sort_values("group", kind="stable", ignore_index=True)
