"""Typed configuration: candidates, data, measurement and search spaces (YAML in, dataclasses inside).

A leaf package: it validates types, ranges and finiteness of every value, and imports nothing else of
ddecs_search but the leaves :mod:`ddecs_search.errors` and :mod:`ddecs_search.metrics`. Checks against
the dataset, backbone and policy registries, reading space files and building candidates live one layer
up, in :mod:`ddecs_search.spaces` (``load_space``, ``parse_space``, ``candidate_from_dict``).
"""

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
    rung_epoch,
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
    "deep_merge",
    "describe_branch",
    "describe_candidate",
    "describe_static",
    "exit_names",
    "from_dict",
    "rung_epoch",
    "to_dict",
]

_MOVED = frozenset({"load_space", "parse_space", "candidate_from_dict"})


def __getattr__(name: str):
    if name in _MOVED:  # a clear message instead of a bare AttributeError for code written before the move
        raise AttributeError(
            f"ddecs_search.config.{name} moved to ddecs_search.spaces.{name} "
            "(config is a leaf; spaces validates against the registries)"
        )
    raise AttributeError(f"module 'ddecs_search.config' has no attribute {name!r}")
