"""ddecs-search: distributed multi-objective architecture search for early-exit networks.

The functions a notebook needs are importable from here (see ``docs/api.md``). Those that pull in
torch, Ray, pandas or plotly load their module on first use, so ``import ddecs_search`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ddecs_search.config import (
    BranchSpec,
    Candidate,
    DataConfig,
    MeasurementConfig,
    PolicyConfig,
    SearchSpace,
    TrainingConfig,
)
from ddecs_search.errors import ConfigError, DataError, UserError
from ddecs_search.spaces import candidate_from_dict, load_space, parse_space

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "evaluate_candidate": "ddecs_search.evaluation",
    "run_search": "ddecs_search.search",
    "resume_search": "ddecs_search.search",
    "search_status": "ddecs_search.search",
    "sampler_settings": "ddecs_search.search",
    "SearchOutcome": "ddecs_search.search",
    "load_trials": "ddecs_search.analysis",
    "compute_front": "ddecs_search.analysis",
    "experiment_front": "ddecs_search.analysis",
    "write_report": "ddecs_search.analysis",
    "export_trial": "ddecs_search.analysis",
    "load_exported": "ddecs_search.analysis",
    "load_study": "ddecs_search.study",
    "parameter_importances": "ddecs_search.analysis",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from ddecs_search.analysis import (
        compute_front,
        experiment_front,
        export_trial,
        load_exported,
        load_trials,
        parameter_importances,
        write_report,
    )
    from ddecs_search.evaluation import evaluate_candidate
    from ddecs_search.search import (
        SearchOutcome,
        resume_search,
        run_search,
        sampler_settings,
        search_status,
    )
    from ddecs_search.study import load_study


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ddecs_search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BranchSpec",
    "Candidate",
    "ConfigError",
    "DataConfig",
    "DataError",
    "MeasurementConfig",
    "PolicyConfig",
    "SearchOutcome",
    "SearchSpace",
    "TrainingConfig",
    "UserError",
    "__version__",
    "candidate_from_dict",
    "compute_front",
    "evaluate_candidate",
    "experiment_front",
    "export_trial",
    "load_exported",
    "load_space",
    "load_study",
    "load_trials",
    "parameter_importances",
    "parse_space",
    "resume_search",
    "run_search",
    "sampler_settings",
    "search_status",
    "write_report",
]
