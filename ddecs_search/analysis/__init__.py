"""Analysis of finished (or running) searches: Pareto fronts, hypervolume, selection, plotly report.

Compute and drawing are kept apart (optuna's ``visualization/_pareto_front.py``): the functions here
return arrays, DataFrames and :class:`ReportData`; only ``_figures`` and ``write_report`` import plotly.
"""

from ddecs_search.analysis._constraints import Constraint, feasible_mask, parse_constraint
from ddecs_search.analysis._dominance import (
    crowding_distance,
    default_reference_point,
    hypervolume,
    hypervolume_history,
    non_dominated_sort,
)
from ddecs_search.analysis._format import FORMATS, format_front, front_records
from ddecs_search.analysis._pareto import (
    DEVICE_BOUND_METRICS,
    FrontResult,
    compute_front,
    pareto_front,
    rank_trials,
    resolve_objectives,
)
from ddecs_search.analysis._select import best_for_accuracy_floor, best_under_budget, knee_point
from ddecs_search.analysis._trials import (
    DEFAULT_OBJECTIVES,
    completed_trials,
    load_trials,
    read_constraints,
    read_objectives,
)

__all__ = [
    "DEFAULT_OBJECTIVES",
    "DEVICE_BOUND_METRICS",
    "FORMATS",
    "Constraint",
    "FrontResult",
    "best_for_accuracy_floor",
    "best_under_budget",
    "completed_trials",
    "compute_front",
    "crowding_distance",
    "default_reference_point",
    "feasible_mask",
    "format_front",
    "front_records",
    "hypervolume",
    "hypervolume_history",
    "knee_point",
    "load_trials",
    "non_dominated_sort",
    "parse_constraint",
    "pareto_front",
    "rank_trials",
    "read_constraints",
    "read_objectives",
    "resolve_objectives",
]
