"""Objectives and constraints as the search applies them: energy fallback, Tune metric/mode, feasibility."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ddecs_search.config import Constraint, Objective, SearchSpace


def effective_objectives(space: SearchSpace,
                         energy_available: bool) -> tuple[tuple[Objective, ...], list[str]]:
    """The objectives the search optimises, and notices about substitutions.

    Without an energy meter on the target device ``energy_mj`` is replaced by ``macs`` (minimised),
    or dropped when ``macs`` is already an objective.
    """
    out: list[Objective] = []
    notices: list[str] = []
    names = {o.name for o in space.objectives}
    for obj in space.objectives:
        if obj.name in ("energy_mj", "baseline_energy_mj") and not energy_available:
            if "macs" in names:
                notices.append(f"no energy meter on the target device: objective '{obj.name}' dropped "
                               "('macs' is already an objective)")
                continue
            notices.append(f"no energy meter on the target device: objective '{obj.name}' replaced by "
                           "'macs' (multiply-accumulates per sample, minimised)")
            out.append(Objective("macs", "min"))
            names.add("macs")
            continue
        out.append(obj)
    return tuple(out), notices


def metric_and_mode(objectives: Sequence[Objective]) -> tuple[str | list[str], str | list[str]]:
    """OptunaSearch's ``metric``/``mode``: plain strings for one objective, lists for several."""
    metric = [o.name for o in objectives]
    mode = [o.mode for o in objectives]
    return (metric[0], mode[0]) if len(objectives) == 1 else (metric, mode)


def violations(metrics: Mapping[str, Any], constraints: Sequence[Constraint]) -> list[str]:
    """Human-readable constraint violations of one trial's metrics (empty = feasible).

    A missing or non-finite constrained metric counts as a violation: feasibility must be shown.
    """
    out = []
    for c in constraints:
        value = _number(metrics.get(c.metric))
        if value is None:
            out.append(f"{c.metric} missing")
            continue
        if c.max is not None and value > c.max:
            out.append(f"{c.metric}={value:.4g} > max {c.max:g}")
        if c.min is not None and value < c.min:
            out.append(f"{c.metric}={value:.4g} < min {c.min:g}")
    return out


def objective_values(metrics: Mapping[str, Any], objectives: Sequence[Objective]) -> list[float] | None:
    """The objective vector of one trial, or None when any value is missing or not finite."""
    values = [_number(metrics.get(o.name)) for o in objectives]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
