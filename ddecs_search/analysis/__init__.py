"""Analysis of finished (or running) searches: Pareto fronts, hypervolume, selection, plotly report.

Compute and drawing are kept apart (optuna's ``visualization/_pareto_front.py``): the functions here
return arrays, DataFrames and :class:`ReportData`; only ``_figures`` and ``write_report`` import plotly.
"""

from ddecs_search.analysis._constraints import Constraint, feasible_mask, parse_constraint
from ddecs_search.analysis._deploy import export_trial, load_exported
from ddecs_search.analysis._exit_figures import confusion_figure, per_class_exit_figure
from ddecs_search.analysis._exit_stats import (
    ExitDetails,
    confusion_matrices,
    load_exit_details,
    per_class_exit_fractions,
)
from ddecs_search.analysis._figures import (
    exit_profile_figure,
    hypervolume_figure,
    parallel_coordinates_figure,
    pareto_2d_figure,
    pareto_3d_figure,
    report_figures,
)
from ddecs_search.analysis._format import FORMATS, format_front, front_records
from ddecs_search.analysis._html import render_html, write_report
from ddecs_search.analysis._importance import ParamImportances, importance_figure, parameter_importances
from ddecs_search.analysis._pareto import (
    DEVICE_BOUND_METRICS,
    FrontResult,
    compute_front,
    experiment_front,
    pareto_front,
    parse_objective,
    rank_trials,
    resolve_objectives,
)
from ddecs_search.analysis._png import export_pngs, find_chromium
from ddecs_search.analysis._report import ReportData, build_report_data, comparison_table
from ddecs_search.analysis._select import best_for_accuracy_floor, best_under_budget, knee_point
from ddecs_search.analysis._trials import (
    DEFAULT_OBJECTIVES,
    completed_trials,
    load_trials,
    read_constraints,
    read_objectives,
)
from ddecs_search.dominance import (
    crowding_distance,
    default_reference_point,
    hypervolume,
    hypervolume_history,
    non_dominated_sort,
)

__all__ = [
    "DEFAULT_OBJECTIVES",
    "DEVICE_BOUND_METRICS",
    "FORMATS",
    "Constraint",
    "ExitDetails",
    "FrontResult",
    "ParamImportances",
    "ReportData",
    "best_for_accuracy_floor",
    "best_under_budget",
    "build_report_data",
    "comparison_table",
    "completed_trials",
    "compute_front",
    "confusion_figure",
    "confusion_matrices",
    "crowding_distance",
    "default_reference_point",
    "exit_profile_figure",
    "experiment_front",
    "export_pngs",
    "export_trial",
    "feasible_mask",
    "find_chromium",
    "format_front",
    "front_records",
    "hypervolume",
    "hypervolume_figure",
    "hypervolume_history",
    "importance_figure",
    "knee_point",
    "load_exit_details",
    "load_exported",
    "load_trials",
    "non_dominated_sort",
    "parallel_coordinates_figure",
    "parameter_importances",
    "pareto_2d_figure",
    "pareto_3d_figure",
    "pareto_front",
    "parse_constraint",
    "parse_objective",
    "per_class_exit_figure",
    "per_class_exit_fractions",
    "rank_trials",
    "read_constraints",
    "read_objectives",
    "render_html",
    "report_figures",
    "resolve_objectives",
    "write_report",
]
