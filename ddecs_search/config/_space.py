"""The search-space file: YAML in, a validated :class:`SearchSpace` out.

A space fixes the dataset and backbone (one baseline per search) and spans exit placement, branch
architectures, training mode and exit policy. ``default_candidate`` is the single point that
``ddecs-search evaluate`` runs when no ``--candidate`` is given. See ``docs/search_space.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ddecs_search.config._candidate import (
    BaselineConfig,
    Candidate,
    DataConfig,
    MeasurementConfig,
)
from ddecs_search.config._parse import deep_merge, fail, from_dict
from ddecs_search.errors import ConfigError
from ddecs_search.metrics import NUMERIC_METRICS, SELECTABLE_METRICS, selection_error


@dataclass(frozen=True)
class BackboneSection:
    """The backbone of every candidate in the space and its baseline training budget."""

    name: str
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


@dataclass(frozen=True)
class ExitSpace:
    """Where exits may go and what their branches may look like (choices per branch)."""

    count: tuple[int, ...] = (1, 2)
    points: tuple[int, ...] | None = None
    conv_layers: tuple[int, ...] = (0, 1, 2)
    channels: tuple[int, ...] = (16, 32, 64)
    pool: tuple[Literal["avg", "max"], ...] = ("avg",)
    pool_size: tuple[int, ...] = (1, 2, 4)
    hidden: tuple[int, ...] = (0, 64)
    dropout: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        if len(self.count) != 2 or not 1 <= self.count[0] <= self.count[1]:
            fail("count", f"must be [min, max] early exits with 1 <= min <= max, got {list(self.count)}")
        if self.points is not None:
            if any(b <= a for a, b in zip(self.points, self.points[1:])) or any(p < 0 for p in self.points):
                fail("points", f"must be ordered, distinct, non-negative indices, got {list(self.points)}")
            if len(self.points) < self.count[1]:
                fail(
                    "count",
                    f"allows up to {self.count[1]} early exits but exits.points lists only "
                    f"{len(self.points)} exit points",
                )
        for name in ("conv_layers", "channels", "pool", "pool_size", "hidden", "dropout"):
            if len(getattr(self, name)) == 0:
                fail(name, "needs at least one choice")
        if any(not 0 <= c <= 3 for c in self.conv_layers):
            fail("conv_layers", f"choices must be 0..3, got {list(self.conv_layers)}")


@dataclass(frozen=True)
class TrainingSpace:
    """Branch-training choices (``mode``, ``epochs``) and fixed settings."""

    mode: tuple[Literal["frozen", "joint"], ...] = ("frozen",)
    epochs: tuple[int, ...] = (2,)
    lr: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    loss_weights: tuple[float, ...] | None = None
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not self.mode:
            fail("mode", "needs at least one choice")
        if not self.epochs or any(e < 0 for e in self.epochs):
            fail("epochs", f"needs non-negative choices, got {list(self.epochs)}")


@dataclass(frozen=True)
class PolicySpace:
    """Exit-policy choices; ``cost_weight`` is a [low, high] range searched on a log scale.

    ``options`` maps a policy kind to its kind-specific options (``{ppo: {iterations: 10}}``); kinds not
    listed get none.
    """

    kind: tuple[str, ...] = ("threshold",)
    cost_weight: tuple[float, ...] = (0.05, 1.0)
    cost: Literal["latency", "macs"] = "latency"
    metric: Literal["max_prob", "entropy"] = "max_prob"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kind:
            fail("kind", "needs at least one choice")
        cw = self.cost_weight
        if len(cw) != 2 or not 0 < cw[0] <= cw[1]:
            fail("cost_weight", f"must be [low, high] with 0 < low <= high, got {list(cw)}")
        for kind, opts in self.options.items():
            if kind not in self.kind:
                fail(
                    f"options.{kind}",
                    f"options are given per policy kind; {kind!r} is not one of the "
                    f"kind choices {list(self.kind)}",
                )
            if not isinstance(opts, dict):
                fail(f"options.{kind}", f"expected a mapping of {kind} options, got {opts!r}")


@dataclass(frozen=True)
class Objective:
    """One objective: a metric of the candidate evaluation and its direction."""

    name: str
    mode: Literal["min", "max"]


@dataclass(frozen=True)
class Constraint:
    """A feasibility bound on a metric, e.g. ``{metric: accuracy_drop, max: 0.02}``."""

    metric: str
    max: float | None = None
    min: float | None = None

    def __post_init__(self) -> None:
        if self.max is None and self.min is None:
            fail("max", f"constraint on '{self.metric}' needs max or min")


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Multi-objective early stopping at epoch rungs (rule and knobs: docs/search_space.md)."""

    enabled: bool = True
    rungs: tuple[int, ...] | None = None  # epochs after which trials are compared; null = every but the last
    min_dominators: int = 2  # stop a trial whose rung point this many peers at the same rung dominate

    def __post_init__(self) -> None:
        if self.min_dominators < 1:
            fail("min_dominators", f"must be >= 1, got {self.min_dominators}")
        rungs = list(self.rungs or ())
        if any(r < 1 for r in rungs) or rungs != sorted(set(rungs)):
            fail("rungs", f"must be distinct epochs >= 1 in increasing order, got {rungs}")


@dataclass(frozen=True)
class SearchConfig:
    """How Tune explores the space."""

    algorithm: Literal["nsga2", "tpe", "random"] = "nsga2"
    num_samples: int = 12
    max_concurrent: int = 2
    seed: int = 0
    max_failures: int = 1
    asha: bool = False
    verify: bool = True
    verify_top: int = 3
    population_size: int | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    warm_start: tuple[dict[str, Any], ...] = ()  # candidates evaluated first (search/_warm_start.py)

    def __post_init__(self) -> None:
        if self.population_size is not None and self.population_size < 2:
            fail("population_size", f"must be >= 2 or null (auto), got {self.population_size}")
        if self.verify_top < 1:
            fail("verify_top", f"must be >= 1, got {self.verify_top}")
        if self.num_samples < 1:
            fail("num_samples", f"must be >= 1, got {self.num_samples}")
        if self.max_concurrent < 1:
            fail("max_concurrent", f"must be >= 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            fail("max_failures", f"must be >= 0, got {self.max_failures}")


@dataclass(frozen=True)
class Resources:
    """Resources one trial reserves (fractional GPUs allowed)."""

    cpu: float = 1.0
    gpu: float = 0.0

    def __post_init__(self) -> None:
        if self.cpu <= 0:
            fail("cpu", f"must be > 0, got {self.cpu}")
        if self.gpu < 0:
            fail("gpu", f"must be >= 0, got {self.gpu}")


_DEFAULT_OBJECTIVES = (Objective("val_accuracy", "max"), Objective("expected_latency_ms", "min"))

# Objectives ASHA can stop on: each epoch scores a val-accuracy proxy (see ddecs_search/search/_fidelity.py).
ASHA_OBJECTIVES = ("val_accuracy", "val_accuracy_drop")


def _check_selectable(path: str, name: str) -> None:
    """Objectives and constraints choose, so they must be known metrics computed without test labels."""
    if name not in NUMERIC_METRICS:
        fail(path, f"unknown metric {name!r}; valid: {', '.join(SELECTABLE_METRICS)}")
    why = selection_error(name)
    if why:
        fail(path, why)


@dataclass(frozen=True)
class SearchSpace:
    """A whole search-space file, validated."""

    name: str
    dataset: DataConfig
    backbone: BackboneSection
    default_candidate: dict[str, Any]
    exits: ExitSpace = field(default_factory=ExitSpace)
    training: TrainingSpace = field(default_factory=TrainingSpace)
    policy: PolicySpace = field(default_factory=PolicySpace)
    objectives: tuple[Objective, ...] = _DEFAULT_OBJECTIVES
    constraints: tuple[Constraint, ...] = ()
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: Resources = field(default_factory=Resources)
    measurement: MeasurementConfig = field(default_factory=MeasurementConfig)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.objectives:
            fail("objectives", "needs at least one objective")
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            fail("objectives", f"names must be distinct, got {names}")
        for i, name in enumerate(names):
            _check_selectable(f"objectives[{i}].name", name)
        for i, c in enumerate(self.constraints):
            _check_selectable(f"constraints[{i}].metric", c.metric)
        if self.search.asha and (len(names) != 1 or names[0] not in ASHA_OBJECTIVES):
            fail("search.asha", f"early stopping (ASHA) needs exactly one objective among "
                 f"{', '.join(ASHA_OBJECTIVES)} (trials are ranked per epoch on a val-accuracy proxy), "
                 f"got {names}")
        weights, max_exits = self.training.loss_weights, self.exits.count[1]
        if weights is not None and len(weights) != max_exits + 1:
            fail(
                "training.loss_weights",
                f"needs {max_exits + 1} weights (one per early-exit slot up to "
                f"exits.count max = {max_exits}, then the final exit), got {len(weights)}",
            )


def _validate_against_registries(space: SearchSpace) -> None:
    """Check names and indices that depend on the data/model/policy registries."""
    from ddecs_search.data import list_datasets
    from ddecs_search.models import backbone_info
    from ddecs_search.policies import list_policies

    ds = space.dataset.name
    if not ds.startswith("imagefolder:") and ds not in list_datasets():
        valid = ", ".join(list_datasets())
        fail("dataset.name", f"unknown dataset {ds!r}; valid: {valid}, imagefolder:<path>")
    info = backbone_info(space.backbone.name, path="backbone.name")
    n_points = len(info.exit_point_names)
    points = space.exits.points if space.exits.points is not None else tuple(range(n_points))
    if points and points[-1] >= n_points:
        fail(
            "exits.points",
            f"backbone {space.backbone.name!r} has exit points 0..{n_points - 1} "
            f"({', '.join(info.exit_point_names)}), got {list(points)}",
        )
    if space.exits.count[1] > len(points):
        fail("exits.count", f"allows {space.exits.count[1]} exits but only {len(points)} exit points exist")
    for kind in space.policy.kind:
        if kind not in list_policies():
            fail("policy.kind", f"unknown policy {kind!r}; valid: {', '.join(list_policies())}")


def parse_space(data: Any, source: str = "<space>") -> SearchSpace:
    """Validate already-loaded YAML data into a :class:`SearchSpace`.

    Raises:
        ConfigError: naming ``source`` and the offending key.
    """
    try:
        space = from_dict(SearchSpace, data)
        _validate_against_registries(space)
        candidate_from_dict(space, {})  # the default candidate must itself be valid
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file (``yaml.safe_load``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: search-space file not found; see search_spaces/ for examples")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_space(data, str(path))


def candidate_from_dict(space: SearchSpace, override: dict[str, Any], path: str = "candidate") -> Candidate:
    """The space's ``default_candidate`` overlaid with ``override`` (deep merge), validated.

    The candidate's backbone defaults to the space's; exit points are checked against the backbone.
    """
    from ddecs_search.models import backbone_info
    from ddecs_search.policies import list_policies

    if not isinstance(override, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {override!r}")
    data = deep_merge({"backbone": space.backbone.name}, space.default_candidate)
    data = deep_merge(data, override)
    cand = from_dict(Candidate, data, path)
    info = backbone_info(cand.backbone, path=f"{path}.backbone")
    n = len(info.exit_point_names)
    if cand.exit_points[-1] >= n:
        fail(
            f"{path}.exit_points",
            f"backbone {cand.backbone!r} has exit points 0..{n - 1} ({', '.join(info.exit_point_names)}), "
            f"got {list(cand.exit_points)}",
        )
    if cand.policy.kind not in list_policies():
        valid = ", ".join(list_policies())
        fail(f"{path}.policy.kind", f"unknown policy {cand.policy.kind!r}; valid: {valid}")
    return cand
