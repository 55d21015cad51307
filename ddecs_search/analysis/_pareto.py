"""Pareto fronts of a trials table: objectives, constraints, device groups, ranks and crowding."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ddecs_search._imports import require
from ddecs_search.analysis._constraints import Constraint, check_columns, feasible_mask, parse_constraint
from ddecs_search.analysis._trials import (
    COMPLETED_STATE,
    DEFAULT_OBJECTIVES,
    Objective,
    completed_trials,
    experiment_dirs,
    load_trials,
    read_constraints,
    read_objectives,
)
from ddecs_search.dominance import crowding_distance, direction_signs, non_dominated_sort
from ddecs_search.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

from ddecs_search.metrics import DEVICE_BOUND_METRICS, STATIC_TRIAL_ID, selection_error, static_value_error
from ddecs_search.static_contender import REFERENCE_COLUMNS, static_values, timing_groups

ENERGY_METRIC, ENERGY_PROXY = "energy_mj", "macs"
ALL_GROUP = "all"  # the ``group`` of every row when the front is not split by device


class FrontResult(NamedTuple):
    """Everything :func:`compute_front` derives from a trials table.

    Attributes:
        front: the rank-0 feasible rows, sorted by group then by the first objective (best first).
        ranked: every completed row with ``rank`` (0 = first front, -1 = infeasible), ``crowding``
            (within its rank), ``feasible`` and ``group`` (the device, or device and runtime, when the
            front is split, else "all").
        objectives: the objectives actually ranked on (after the energy → MACs fallback).
        notices: sentences for the user (device split, energy fallback, rows left out).
        group_by: "device" when one front per device was computed, ``device_runtime`` when one per
            device and runtime (experiments measured in different runtimes), else None.
        constraints: the constraints applied, parsed.
    """

    front: pd.DataFrame
    ranked: pd.DataFrame
    objectives: list[Objective]
    notices: list[str]
    group_by: str | None
    constraints: list[Constraint]

    def with_static(self) -> pd.DataFrame:
        """The front, then every static-network row that is not on it (``rank`` >= 1 when dominated, -1
        when infeasible): what a user would deploy instead is always shown beside the front, and its
        ``rank`` says whether it is on it."""
        ranked = self.ranked
        if "static" not in ranked.columns or "rank" not in ranked.columns:
            return self.front
        off_front = ranked[(ranked["static"] == True) & (ranked["rank"] != 0)]  # noqa: E712
        if off_front.empty:
            return self.front
        return require("pandas").concat([self.front, off_front], ignore_index=True, sort=False)


def _normalise_objectives(objectives: Sequence[Objective] | None) -> list[Objective]:
    objectives = list(objectives or DEFAULT_OBJECTIVES)
    out = []
    for obj in objectives:
        if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
            raise ConfigError(f"objective {obj!r}: expected (metric, 'min' | 'max')")
        name, direction = str(obj[0]), str(obj[1]).lower()
        try:
            direction_signs([direction], 1)
        except ValueError:
            raise ConfigError(
                f"objective {name!r}: direction must be 'min' or 'max', got {obj[1]!r}"
            ) from None
        why = selection_error(name)
        if why:
            raise ConfigError(f"objective {why}")
        out.append((name, "max" if direction.startswith("max") else "min"))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives must be distinct, got {names}")
    return out


def resolve_objectives(
    df: pd.DataFrame, objectives: Sequence[Objective] | None = None
) -> tuple[list[Objective], list[str]]:
    """Validate objectives against the table; fall back from ``energy_mj`` to ``macs`` when no energy exists.

    Returns:
        ``(objectives, notices)``.

    Raises:
        ConfigError: an unknown metric (listing the table's columns) or a bad direction.
    """
    objs = _normalise_objectives(objectives)
    notices: list[str] = []
    names = [n for n, _ in objs]
    if ENERGY_METRIC in names:
        done = completed_trials(df)
        energy = done[ENERGY_METRIC] if ENERGY_METRIC in df.columns else None
        if energy is None or energy.isna().all():
            sources = sorted(done["energy_source"].dropna().unique()) if "energy_source" in df.columns else []
            why = f" (energy_source: {'; '.join(map(str, sources))})" if sources else ""
            if ENERGY_PROXY in names:
                objs = [o for o in objs if o[0] != ENERGY_METRIC]
                notices.append(
                    f"{ENERGY_METRIC} is missing for every finished trial{why}; it is dropped "
                    f"from the objectives ({ENERGY_PROXY} is already one)."
                )
            else:
                objs = [(ENERGY_PROXY, d) if n == ENERGY_METRIC else (n, d) for n, d in objs]
                notices.append(
                    f"{ENERGY_METRIC} is missing for every finished trial{why}; "
                    f"{ENERGY_PROXY} is used as the energy objective instead."
                )
    check_columns(df, [n for n, _ in objs], what="objectives")
    return objs, notices


def _device_groups(done: pd.DataFrame, objectives: Sequence[Objective]) -> tuple[str | None, list[str]]:
    """The column to compute one front per group by (None: one front), and a notice saying why.

    The rule is :func:`~ddecs_search.static_contender.timing_groups` (devices, or device and runtime
    when more than one runtime appears: the column ``device_runtime`` is then added to ``done``).
    """
    column, groups = timing_groups(done, [n for n, _ in objectives])
    if column is None:
        return None, []
    bound = [n for n, _ in objectives if n in DEVICE_BOUND_METRICS]
    what = "devices" if column == "device" else "device/runtime pairs"
    return column, [
        f"trials ran on {len(groups)} {what} ({', '.join(groups)}); {', '.join(bound)} "
        f"{'is' if len(bound) == 1 else 'are'} specific to the device and runtime, so one front per "
        f"{'device' if column == 'device' else 'device and runtime'} is computed (column 'group')."
    ]


def _left_out_notice(df: pd.DataFrame, done: pd.DataFrame) -> list[str]:
    if "state" not in df.columns or len(done) == len(df):
        return []
    states = df["state"].fillna("UNKNOWN").astype(str).value_counts()
    unfinished = {s: int(c) for s, c in states.items() if s != COMPLETED_STATE}
    missing = int(states.get(COMPLETED_STATE, 0)) - len(done)
    parts = [f"{c} {s}" for s, c in sorted(unfinished.items())]
    if missing:
        parts.append(f"{missing} finished without the objective values")
    return [f"{len(df) - len(done)} of {len(df)} trials are not ranked ({', '.join(parts)})."]


def _empty_result(
    df: pd.DataFrame, objectives: list[Objective], constraints: list[Constraint]
) -> FrontResult:
    columns = list(
        dict.fromkeys([*df.columns, *(n for n, _ in objectives), "group", "feasible", "rank", "crowding"])
    )
    types = {"feasible": bool, "rank": int, "crowding": float, "group": object}
    empty = df.reindex(columns=columns).iloc[0:0].astype(types)
    return FrontResult(empty, empty, objectives, ["no trial has reported yet."], None, constraints)


# the static network's own measurements, the same architecture's whichever static network is the contender
_TIMING_COLUMNS = (
    "baseline_latency_ms",
    "baseline_latency_p95_ms",
    "baseline_expected_latency_ms",
    "baseline_macs",
    "baseline_energy_mj",
)


def static_rows(done: pd.DataFrame, group_by: str | None) -> pd.DataFrame:
    """The static network as a contender, one row per group, from the columns every trial reports.

    Each trial measures the static network beside itself (``baseline_*`` columns: the same runtime,
    device, samples and method as its own numbers); the static row takes, per metric, the median over
    the group's trials, and the fixed values of a network without exits (``val_accuracy_drop`` 0,
    ``speedup`` 1). Its ``trial_id`` is ``static``.

    Its accuracies are those of the static network that validates best among the ones the group's
    trials can be compared with (:func:`ddecs_search.static_contender.choose_static`: the baseline, the
    baseline trained further, a joint trial's own backbone with its exits off), named in
    ``static_variant``: no configuration is recommended that a better static network of the same budget
    dominates. Timings and MACs, the same architecture's, use every trial.
    """
    pd = require("pandas")
    from ddecs_search.config import describe_static

    rows = []
    keys = ["group", "experiment"] if "experiment" in done.columns else ["group"]
    for key, sub in done.groupby(keys, sort=True):
        group = key[0] if isinstance(key, tuple) else key
        row: dict[str, object] = {
            "trial_id": STATIC_TRIAL_ID,
            "state": COMPLETED_STATE,
            "group": group,
            "static": True,
            "policy_kind": "static",
            "exits": "",
        }
        if group_by:
            row[group_by] = group
        choice, values = static_values(sub)
        row.update({metric: v for metric, v in values.items() if math.isfinite(v)})
        for col, value in zip(REFERENCE_COLUMNS, (choice.val_accuracy, choice.accuracy), strict=True):
            if col in sub.columns:
                row[col] = value
        if choice.name:
            row["static_variant"] = choice.name
        for col in _TIMING_COLUMNS:
            if col in sub.columns:
                row[col] = pd.to_numeric(sub[col], errors="coerce").median()
        for col in ("latency_source", "expected_latency_source", "device", "runtime"):
            if col in sub.columns and sub[col].notna().any():
                row[col] = sub[col].dropna().iloc[0]
        if "experiment" in sub.columns:
            row["experiment"] = sub["experiment"].iloc[0]
        backbones = sub["backbone"].dropna() if "backbone" in sub.columns else []
        row["summary"] = describe_static(str(backbones.iloc[0]) if len(backbones) else "network")
        if choice.name:
            row["summary"] += f", {choice.name}"
        rows.append(row)
    return pd.DataFrame(rows)


def compute_front(
    df: pd.DataFrame,
    objectives: Sequence[Objective] | None = None,
    constraints: Sequence[str | Constraint] = (),
    *,
    include_static: bool = True,
) -> FrontResult:
    """Rank the completed trials of ``df`` and extract the Pareto front.

    Args:
        df: a trials table (:func:`load_trials`); rows that are not TERMINATED or miss an objective
            are left out (and counted in a notice).
        objectives: ``[(metric, "min"|"max"), ...]``; default accuracy (max), latency_ms (min).
        constraints: ``"metric<=value"`` strings or :class:`Constraint`; infeasible rows get rank -1.
        include_static: rank the static network (``trial_id`` ``static``, see :func:`static_rows`) with
            the trials, so nothing it dominates is on the front (default). A notice says how many
            trials it dominates.

    Raises:
        ConfigError: unknown objective/constraint metric, bad direction or constraint text, or (with
            ``include_static``) an objective the static network has no value of.
    """
    pd = require("pandas")
    constraints = [parse_constraint(c) for c in constraints]
    if len(df) == 0:  # a search that has not reported yet: its table may not even have metric columns
        return _empty_result(df, _normalise_objectives(objectives), constraints)
    if len(completed_trials(df)) == 0:  # only running/failed trials: no metric columns to check yet
        empty = _empty_result(df, _normalise_objectives(objectives), constraints)
        return empty._replace(notices=_left_out_notice(df, completed_trials(df)) or empty.notices)
    objs, notices = resolve_objectives(df, objectives)
    names, directions = [n for n, _ in objs], [d for _, d in objs]
    for name in names if include_static else ():
        why = static_value_error(name)
        if why:
            raise ConfigError(f"objective {name!r}: {why}")
    done = completed_trials(df, names).copy()
    notices += _left_out_notice(df, done)
    for name in names:
        try:
            done[name] = pd.to_numeric(done[name])
        except (ValueError, TypeError):
            raise ConfigError(f"objective {name!r} is not numeric (e.g. {done[name].iloc[0]!r})") from None
    group_by, group_notices = _device_groups(done, objs)
    notices += group_notices
    done["group"] = done[group_by].astype(str) if group_by else ALL_GROUP
    done["static"] = False
    if include_static and len(done):
        static = static_rows(done, group_by)
        have = [n for n in names if n in static.columns]
        usable = static.dropna(subset=have) if len(have) == len(names) else static.iloc[0:0]
        if len(usable) < len(static):
            missing = [n for n in names if n not in static.columns or static[n].isna().any()]
            notices.append(
                f"the static network is not ranked: the trials report no static value of "
                f"{', '.join(missing)}."
            )
        if len(usable):
            done = pd.concat([done, usable], ignore_index=True, sort=False)
    done["feasible"] = feasible_mask(done, constraints)
    if constraints and not done["feasible"].all():
        shown = ", ".join(map(str, constraints))
        notices.append(f"{int((~done['feasible']).sum())} of {len(done)} ranked trials violate {shown}.")
    rank = np.full(len(done), -1)
    crowding = np.full(len(done), np.nan)
    values = done[names].to_numpy(dtype=float)  # (N, M)
    for _, idx in done.groupby("group", sort=True).indices.items():
        idx = idx[done["feasible"].to_numpy()[idx]]
        if idx.size == 0:
            continue
        ranks = non_dominated_sort(values[idx], directions)
        rank[idx] = ranks
        for r in np.unique(ranks):
            members = idx[ranks == r]
            crowding[members] = crowding_distance(values[members], directions)
    done["rank"], done["crowding"] = rank, crowding
    notices += _static_notice(done, values, directions)
    front = done[done["rank"] == 0]
    first, first_dir = names[0], directions[0]
    front = front.sort_values(["group", first], ascending=[True, first_dir == "min"], kind="stable")
    return FrontResult(front, done, objs, notices, group_by, constraints)


def _static_notice(done: pd.DataFrame, values: np.ndarray, directions: Sequence[str]) -> list[str]:
    """ "the static network dominates N of M trials" per group (feasible trials only)."""
    from ddecs_search.dominance import to_minimization

    out = []
    loss = to_minimization(values, directions)  # (N, M)
    is_static = done["static"].to_numpy(dtype=bool)
    feasible = done["feasible"].to_numpy(dtype=bool)
    for group, idx in done.groupby("group", sort=True).indices.items():
        statics = [i for i in idx if is_static[i]]
        trials = [i for i in idx if not is_static[i]]
        if not statics or not trials:
            continue
        dominated = sum(
            any(bool(np.all(loss[s] <= loss[i]) and np.any(loss[s] < loss[i])) for s in statics)
            for i in trials
            if feasible[i]
        )
        where = "" if group == ALL_GROUP else f" on {group}"
        ranks = [int(done["rank"].iloc[s]) for s in statics]
        if 0 in ranks:
            status = "it is on the front"
        elif all(r < 0 for r in ranks):
            status = "it violates a constraint, so it is not ranked; its row follows the front"
        else:
            rank = min(r for r in ranks if r > 0)
            status = f"it is not on the front (rank {rank}: dominated); its row follows the front"
        dominates = (
            f"dominates {dominated} of {len(trials)} ranked trials{where} (none of those is on the front)"
            if dominated
            else f"dominates none of the {len(trials)} ranked trials{where}"
        )
        out.append(f"the static network (trial_id 'static') {dominates}; {status}.")
    return out


def experiment_front(
    exp_dirs: str | Path | Sequence[str | Path],
    objectives: Sequence[Objective] | None = None,
    constraints: Sequence[str | Constraint] = (),
) -> tuple[pd.DataFrame, FrontResult]:
    """Load experiment directories and compute their front, with the first one's ``space.yaml`` defaults.

    Args:
        exp_dirs: one experiment directory or several (compared; rows get an ``experiment`` column).
        objectives: default: the ``objectives:`` of the first directory's ``space.yaml`` (else
            accuracy max, latency_ms min).
        constraints: applied on top of the ``constraints:`` of the first directory's ``space.yaml``.

    Returns:
        ``(trials, result)``: every loaded row (any state) and :func:`compute_front`'s result.

    Raises:
        ConfigError: not an experiment directory, bad ``space.yaml``, unknown metric, bad constraint.
    """
    first = experiment_dirs(exp_dirs)[0]
    trials = load_trials(exp_dirs)
    recorded_notices: list[str] = []
    if not objectives:  # the search's own (energy fallback applied by the search, with its notice)
        objectives = read_objectives(first)
        recorded_notices = [str(n) for n in first.read_record().get("notices", [])]
    all_constraints = read_constraints(first) + [parse_constraint(c) for c in constraints]
    result = compute_front(trials, list(objectives), all_constraints)
    return trials, result._replace(notices=recorded_notices + result.notices)


def parse_objective(text: str) -> Objective:
    """``"latency_ms:min"`` → ``("latency_ms", "min")`` (for command-line flags).

    Raises:
        ConfigError: naming the text and the valid form.
    """
    name, sep, direction = str(text).strip().rpartition(":")
    if not sep or not name or direction.lower() not in ("min", "max", "minimize", "maximize"):
        raise ConfigError(f"objective {text!r}: expected METRIC:min or METRIC:max (e.g. 'latency_ms:min')")
    return _normalise_objectives([(name, direction)])[0]


def pareto_front(
    df: pd.DataFrame,
    objectives: Sequence[Objective] | None = None,
    constraints: Sequence[str | Constraint] = (),
) -> pd.DataFrame:
    """The rank-0 feasible rows (+ ``rank``, ``crowding``, ``group``), sorted by the first objective.

    See :func:`compute_front` for the arguments and for the notices (device split, energy fallback).
    """
    return compute_front(df, objectives, constraints).front


def rank_trials(
    df: pd.DataFrame,
    objectives: Sequence[Objective] | None = None,
    constraints: Sequence[str | Constraint] = (),
) -> pd.DataFrame:
    """Every completed row with its ``rank`` (-1 when infeasible), ``crowding``, ``feasible``, ``group``."""
    return compute_front(df, objectives, constraints).ranked
