"""Objectives as the search applies them: energy fallback and Tune metric/mode.

Feasibility (``violations``) and objective vectors belong to the trials-table contract
(:mod:`ddecs_search.experiment`); they are re-exported here for the search's callers.
"""

from __future__ import annotations

from collections.abc import Sequence

from ddecs_search.config import Objective, SearchSpace
from ddecs_search.experiment import objective_values, violations

__all__ = ["effective_objectives", "metric_and_mode", "objective_values", "violations"]


def effective_objectives(
    space: SearchSpace, energy_available: bool
) -> tuple[tuple[Objective, ...], list[str]]:
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
                notices.append(
                    f"no energy meter on the target device: objective '{obj.name}' dropped "
                    "('macs' is already an objective)"
                )
                continue
            notices.append(
                f"no energy meter on the target device: objective '{obj.name}' replaced by "
                "'macs' (multiply-accumulates per sample, minimised)"
            )
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
