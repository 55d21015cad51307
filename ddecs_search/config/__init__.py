"""Typed configuration: candidates, data, measurement and search spaces (YAML in, dataclasses inside)."""

from ddecs_search.config._candidate import (
    BaselineConfig,
    BranchSpec,
    Candidate,
    DataConfig,
    MeasurementConfig,
    PolicyConfig,
    TrainingConfig,
)
from ddecs_search.config._describe import describe_branch, describe_candidate, describe_static, exit_names
from ddecs_search.config._parse import deep_merge, from_dict, to_dict
from ddecs_search.config._space import (
    BackboneSection,
    Constraint,
    ExitSpace,
    Objective,
    PolicySpace,
    Resources,
    SearchConfig,
    SearchSpace,
    TrainingSpace,
    candidate_from_dict,
    load_space,
    parse_space,
)

__all__ = [
    "BackboneSection",
    "BaselineConfig",
    "BranchSpec",
    "Candidate",
    "Constraint",
    "DataConfig",
    "ExitSpace",
    "MeasurementConfig",
    "Objective",
    "PolicyConfig",
    "PolicySpace",
    "Resources",
    "SearchConfig",
    "SearchSpace",
    "TrainingConfig",
    "TrainingSpace",
    "candidate_from_dict",
    "deep_merge",
    "describe_branch",
    "describe_candidate",
    "describe_static",
    "exit_names",
    "from_dict",
    "load_space",
    "parse_space",
    "to_dict",
]
