"""ddecs-search: distributed multi-objective architecture search for early-exit networks."""

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

__all__ = [
    "BranchSpec",
    "Candidate",
    "ConfigError",
    "DataConfig",
    "DataError",
    "MeasurementConfig",
    "PolicyConfig",
    "SearchSpace",
    "TrainingConfig",
    "UserError",
    "__version__",
    "candidate_from_dict",
    "load_space",
    "parse_space",
]
