"""The distributed search: Ray Tune + OptunaSearch over exit placement, branches, training and policy.

Light to import: Ray is loaded only when a search runs (``status`` reads the experiment directory).
"""

from ddecs_search.experiment import Experiment
from ddecs_search.search._objectives import effective_objectives, metric_and_mode, violations
from ddecs_search.search._runner import (
    DEFAULT_STORAGE,
    SearchOutcome,
    resume_command,
    resume_search,
    run_search,
)
from ddecs_search.search._searcher import sampler_settings
from ddecs_search.search._shared_baseline import BaselineBlob
from ddecs_search.search._space_fn import ConditionalSpace, build_candidate
from ddecs_search.search._status import format_status, search_status

__all__ = [
    "DEFAULT_STORAGE",
    "BaselineBlob",
    "ConditionalSpace",
    "Experiment",
    "SearchOutcome",
    "build_candidate",
    "effective_objectives",
    "format_status",
    "metric_and_mode",
    "resume_command",
    "resume_search",
    "run_search",
    "sampler_settings",
    "search_status",
    "violations",
]
