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
from ddecs_search.analysis._format import FRONT_FIGURES
from ddecs_search.analysis._pareto import experiment_front
from ddecs_search.analysis._select import best_for_accuracy_floor, best_under_budget, knee_point
from ddecs_search.analysis._trials import (
    Experiment,
    Objective,
    experiment_dirs,
    read_objectives,
)
from ddecs_search.dominance import default_reference_point, hypervolume_history
from ddecs_search.metrics import DEVICE_BOUND_METRICS, ORACLE_OF, STATIC_TRIAL_ID, STATIC_VALUES

if TYPE_CHECKING:
    import pandas as pd

# the oracle policy (every sample leaves at its earliest correct exit) of a trial's exit configuration
ORACLE_COLUMNS = dict(ORACLE_OF)  # test accuracy, table latency, MACs: never shown as val or measured
ACCURACY_FLOOR_MARGIN = 0.01  # "fastest within 1 point of the static network's validation accuracy"
# columns reported beside the chosen-on ones; never used to choose (the report says so)
TEST_COLUMNS = ("accuracy", "accuracy_drop", "exit_fractions", "exit_accuracies")


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
    trials = ranked[~_is_static(ranked)]
    for group, rows in trials[trials["feasible"]].groupby("group", sort=True):
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


def _is_static(df: pd.DataFrame) -> pd.Series:
    return df["trial_id"].astype(str).eq(STATIC_TRIAL_ID)


def _baseline(ranked: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Per group, the static network's value of each objective and reported metric (its front row)."""
    pd = require("pandas")
    metrics = list(dict.fromkeys([n for n, _ in objectives] + list(STATIC_VALUES)))
    rows = []
    for group, sub in ranked.groupby("group", sort=True):
        static = sub[_is_static(sub)]
        row = {"group": str(group)}
        for metric in metrics:
            values = pd.to_numeric(static[metric], errors="coerce") if metric in static.columns else None
            row[metric] = float(values.median()) if values is not None and values.notna().any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["group", *metrics])


def choosing_accuracy(objectives: Sequence[Objective], columns: Sequence[str]) -> str | None:
    """The accuracy metric picks use: the first maximised accuracy objective (validation), if any."""
    for name, direction in objectives:
        if direction == "max" and "accuracy" in name:
            return name
    return "val_accuracy" if "val_accuracy" in columns else None


def _speed_metric(objectives: Sequence[Objective]) -> str | None:
    """The objective a latency budget applies to: the first device-bound "min" one, else the first "min"."""
    mins = [n for n, d in objectives if d == "min"]
    bound = [n for n in mins if n in DEVICE_BOUND_METRICS]
    return (bound or mins or [None])[0]


def _recommend(
    front: pd.DataFrame, objectives: Sequence[Objective], baseline: pd.DataFrame, budget: float | None
) -> pd.DataFrame:
    """Front members for common needs, chosen on the objectives' metrics only (validation, table).

    The static network is a front member like any other: where it is the best answer (e.g. the most
    accurate), it is the one recommended. Test metrics are shown beside the picks, never used for them.
    """
    pd = require("pandas")
    speed = _speed_metric(objectives)
    acc = choosing_accuracy(objectives, front.columns)
    picks = []
    for group, sub in front.groupby("group", sort=True):
        picks.append(("knee", knee_point(sub, objectives)))
        if acc:
            picks.append((f"best {acc}", sub.loc[pd.to_numeric(sub[acc]).idxmax()]))
        if acc and speed:
            limit = float(sub[speed].median()) if budget is None else float(budget)
            how = " (front median)" if budget is None else ""
            role = f"best {acc}, {speed} ≤ {limit:.4g}{how}"
            picks.append((role, best_under_budget(sub, speed, limit, acc)))
            base_acc = baseline.loc[baseline["group"] == str(group), acc] if acc in baseline.columns else []
            if len(base_acc) and np.isfinite(base_acc.iloc[0]):
                floor = float(base_acc.iloc[0]) - ACCURACY_FLOOR_MARGIN
                picks.append(
                    (
                        f"lowest {speed}, {acc} ≥ {floor:.4g} (static − 1 pt)",
                        best_for_accuracy_floor(sub, floor, speed, acc),
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
        if trial_id in out or trial_id == STATIC_TRIAL_ID:
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


# after the objectives: the other chosen-on figures, then test and measured ones shown beside them
COMPARISON_METRICS = FRONT_FIGURES
COMPARISON_TEXT = ("summary", "latency_source")
BASELINE_ROLE = "static network (no early exit)"
ORACLE_ROLE = "oracle policy on the knee's exits (bound)"


def comparison_table(data: ReportData) -> pd.DataFrame:
    """Recommended configurations next to the static network and the oracle, one row each.

    Every row names its configuration (``summary``). The static row is the static network's front row
    (``trial_id`` ``static``), measured the same way as the trials. The oracle row uses the knee trial's
    exit configuration with a perfect exit decision (each sample leaves at its earliest correct exit):
    an upper bound for any policy on those exits, on the test split.
    """
    pd = require("pandas")
    cols = data.ranked.columns
    metrics = [n for n, _ in data.objectives] + [m for m in COMPARISON_METRICS if m in cols]
    metrics = [m for m in dict.fromkeys(metrics) if m in cols and data.ranked[m].notna().any()]
    text = [c for c in COMPARISON_TEXT if c in cols]
    rows = []
    for _, rec in data.recommended.iterrows():
        rows.append(
            {
                "role": rec["role"],
                "group": rec["group"],
                "trial_id": rec["trial_id"],
                **{m: rec.get(m) for m in text + metrics},
            }
        )
    static = data.ranked[_is_static(data.ranked)]
    for _, base in static.iterrows():
        rows.append(
            {
                "role": BASELINE_ROLE,
                "group": base["group"],
                "trial_id": STATIC_TRIAL_ID,
                **{m: base.get(m, np.nan) for m in text + metrics},
            }
        )
    knees = (
        data.recommended[data.recommended["role"] == "knee"] if len(data.recommended) else data.recommended
    )
    for _, knee in knees.iterrows():
        if str(knee["trial_id"]) == STATIC_TRIAL_ID:
            continue  # the static network has no exits to be an oracle on
        oracle = {m: knee.get(ORACLE_COLUMNS[m]) for m in metrics if ORACLE_COLUMNS.get(m) in knee.index}
        rows.append(
            {
                "role": ORACLE_ROLE,
                "group": knee["group"],
                "trial_id": knee["trial_id"],
                "summary": f"{knee.get('exits', '')} | oracle (reads the labels)",
                **oracle,
            }
        )
    table = pd.DataFrame(rows, columns=["role", "group", "trial_id", *text, *metrics])
    table = table.rename(columns={c: f"{c} (test, not used to choose)" for c in TEST_COLUMNS if c in table})
    if data.group_by is None:
        return table.drop(columns="group")
    return table.sort_values("group", kind="stable", ignore_index=True)
