"""The search-space file: YAML in, a validated :class:`SearchSpace` out.

A space fixes the dataset and backbone (one baseline per search) and spans exit placement, branch
architectures, training mode and exit policy. ``default_candidate`` is the single point that
``ddecs-search evaluate`` runs when no ``--candidate`` is given. See ``docs/search_space.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ddecs_search.config._candidate import (
    BaselineConfig,
    BranchSpec,
    DataConfig,
    MeasurementConfig,
    TrainingConfig,
    check_finite,
)
from ddecs_search.config._parse import fail
from ddecs_search.errors import ConfigError
from ddecs_search.metrics import NUMERIC_METRICS, SELECTABLE_METRICS, selection_error, static_value_error


def _each_choice(cls: type, name: str, choices: tuple[Any, ...], **fixed: Any) -> None:
    """Every item of a choice list obeys the rule the same field has as a fixed value in ``cls``.

    The rule is the dataclass's own ``__post_init__`` (one definition): ``cls(name=item, **fixed)`` is built
    for each item and a failure is reported at ``name[i]``.
    """
    for i, item in enumerate(choices):
        try:
            cls(**{name: item}, **fixed)
        except ConfigError as exc:
            message = str(exc)
            if message.startswith("'") and "': " in message:
                message = message.split("': ", 1)[1]
            fail(f"{name}[{i}]", message)


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
            ordered = all(a < b for a, b in zip(self.points, self.points[1:], strict=False))
            if not ordered or any(p < 0 for p in self.points):
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
        for name in ("conv_layers", "channels", "pool_size", "hidden", "dropout"):
            _each_choice(BranchSpec, name, getattr(self, name))


@dataclass(frozen=True)
class TrainingSpace:
    """Branch-training choices (``mode``, ``epochs``) and fixed settings."""

    mode: tuple[Literal["frozen", "joint"], ...] = ("frozen",)
    epochs: tuple[int, ...] = (2,)
    lr: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    loss_weights: tuple[float, ...] | None = None
    label_smoothing: float = 0.0
    distill: float = 0.0
    distill_temperature: float = 2.0

    def __post_init__(self) -> None:
        if not self.mode:
            fail("mode", "needs at least one choice")
        if not self.epochs:
            fail("epochs", "needs at least one choice")
        # the fixed settings obey TrainingConfig's rules (lr > 0, batch_size >= 1, weight_decay >= 0, ...)
        fixed = {
            "lr": self.lr,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "optimizer": self.optimizer,
            "lr_schedule": self.lr_schedule,
            "label_smoothing": self.label_smoothing,
            "loss_weights": self.loss_weights,
            "distill": self.distill,
            "distill_temperature": self.distill_temperature,
        }
        TrainingConfig(**fixed)
        _each_choice(TrainingConfig, "epochs", self.epochs, **fixed)


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
            check_finite(f"options.{kind}", opts)


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
        if self.max is not None and self.min is not None and self.min > self.max:
            fail("min", f"constraint on '{self.metric}' has min {self.min} > max {self.max} (never feasible)")


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Multi-objective early stopping at epoch rungs (rule and knobs: docs/search_space.md)."""

    enabled: bool = True
    # epochs after which trials are compared (a fraction: that far into the epoch, 0.5 = halfway through
    # the first); null = every whole epoch but the last
    rungs: tuple[float, ...] | None = None
    min_dominators: int = 2  # stop a trial whose rung point this many peers at the same rung dominate
    final_rung: bool = True  # also compare at the end of training, before the (costly) evaluation
    # intermediate rungs only: a no dearer peer at most this much less accurate counts as a dominator
    # (epsilon-dominance; 0 = plain dominance, the only setting that never stops a non-dominated point)
    epsilon: float = 0.0

    def __post_init__(self) -> None:
        if self.min_dominators < 1:
            fail("min_dominators", f"must be >= 1, got {self.min_dominators}")
        if not 0.0 <= self.epsilon < 1.0:  # also false for NaN
            fail("epsilon", f"must be an accuracy tolerance in [0, 1), got {self.epsilon}")
        rungs = list(self.rungs or ())
        if any(not r > 0 for r in rungs) or rungs != sorted(set(rungs)):
            fail("rungs", f"must be distinct epochs > 0 (fractions allowed) in increasing order, got {rungs}")
        if self.rungs is not None:  # whole epochs as integers: rung keys and stop records read "1", not "1.0"
            object.__setattr__(self, "rungs", tuple(map(rung_epoch, self.rungs)))


def rung_epoch(epoch: float) -> float:
    """An early-stopping rung's epoch as configured, reported and keyed: an int for a whole epoch (``1``,
    not ``1.0``), else the fraction (``0.5``: inside the first epoch)."""
    value = float(epoch)
    return int(value) if value.is_integer() else value


def _startup_trials(n_startup_trials: int | None, num_samples: int) -> int:
    """The random trials a model-based sampler starts with: as set, else a quarter of the budget, 2..10."""
    if n_startup_trials is not None:
        return n_startup_trials
    return min(10, max(2, num_samples // 4))


@dataclass(frozen=True)
class TPEOptions:
    """Optuna ``TPESampler`` knobs for ``algorithm: tpe`` (docs/search_space.md, ``search.tpe``).

    The defaults are the product's, not Optuna's: multivariate with ``group`` (Optuna's mode for a
    conditional space, whose parameters exist together or not at all) and the constant liar (trials run
    in parallel). Exposed because the right setting depends on the space and the budget, and a user of
    Optuna expects to set them as on the sampler itself; the arguments Optuna 4.9 deprecated (``gamma``,
    ``weights``, ``prior_weight``, ...) are left out.
    """

    n_startup_trials: int | None = None  # random trials first; null = a quarter of num_samples, 2..10
    multivariate: bool = True
    group: bool = True
    constant_liar: bool = True
    n_ei_candidates: int = 24

    def __post_init__(self) -> None:
        if self.n_startup_trials is not None and self.n_startup_trials < 0:
            fail("n_startup_trials", f"must be >= 0 or null (auto), got {self.n_startup_trials}")
        if self.n_ei_candidates < 1:
            fail("n_ei_candidates", f"must be >= 1, got {self.n_ei_candidates}")
        if self.group and not self.multivariate:
            fail("group", "needs multivariate: true (Optuna groups the multivariate model); set group: false")

    def startup_trials(self, num_samples: int) -> int:
        """``n_startup_trials``, else a quarter of the budget clamped to 2..10."""
        return _startup_trials(self.n_startup_trials, num_samples)


@dataclass(frozen=True)
class GPOptions:
    """Optuna ``GPSampler`` knobs for ``algorithm: gp`` (docs/search_space.md, ``search.gp``).

    A Gaussian process per objective (and one per constraint) with log expected hypervolume improvement:
    Optuna's sampler for small budgets. It learns from complete trials only (a trial stopped at a rung is
    pruned), and models only the parameters every finished trial has, which is why ``gp`` samples the
    space's flat encoding by default (``search.encoding``).
    """

    n_startup_trials: int | None = None  # random trials first; null = a quarter of num_samples, 2..10
    # On the flat encoding, show the GP the parameters a network does not read at their first choice
    # (search/_samplers.py, GPSampler): one network is one point to its model.
    pin_unused: bool = False

    def __post_init__(self) -> None:
        if self.n_startup_trials is not None and self.n_startup_trials < 0:
            fail("n_startup_trials", f"must be >= 0 or null (auto), got {self.n_startup_trials}")

    def startup_trials(self, num_samples: int) -> int:
        """``n_startup_trials``, else a quarter of the budget clamped to 2..10 (as TPE's)."""
        return _startup_trials(self.n_startup_trials, num_samples)


@dataclass(frozen=True)
class SearchConfig:
    """How Tune explores the space."""

    algorithm: Literal["nsga2", "tpe", "gp", "random"] = "nsga2"
    num_samples: int = 12
    max_concurrent: int = 2
    seed: int = 0
    max_failures: int = 1
    asha: bool = False
    verify: bool = True
    verify_top: int = 3
    population_size: int | None = None
    tpe: TPEOptions = field(default_factory=TPEOptions)
    gp: GPOptions = field(default_factory=GPOptions)
    # How the sampler sees the space: "conditional" samples a parameter only where the candidate uses it,
    # "flat" samples every parameter in every trial; null = flat for gp, conditional otherwise.
    encoding: Literal["conditional", "flat"] | None = None
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

    @property
    def space_encoding(self) -> Literal["conditional", "flat"]:
        """``encoding``, else flat for ``gp`` (it models only the parameters all trials share)."""
        if self.encoding is not None:
            return self.encoding
        return "flat" if self.algorithm == "gp" else "conditional"


@dataclass(frozen=True)
class Resources:
    """Resources one trial reserves (fractional GPUs allowed)."""

    cpu: float = 1.0
    gpu: float = 0.0

    def __post_init__(self) -> None:
        if self.cpu <= 0:
            fail("cpu", f"must be > 0, got {self.cpu}")
        if self.gpu < 0:
            fail("gpu", f"must be >= 0 (0 = CPU only), got {self.gpu}")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            fail("gpu", f"must be a fraction of one GPU (<= 1) or a whole number of GPUs, got {self.gpu}")


_DEFAULT_OBJECTIVES = (Objective("val_accuracy", "max"), Objective("expected_latency_ms", "min"))

# Objectives ASHA can stop on: each epoch scores a val-accuracy proxy (see ddecs_search/search/_fidelity.py).
ASHA_OBJECTIVES = ("val_accuracy", "val_accuracy_drop")


def _check_selectable(path: str, name: str) -> None:
    """Objectives and constraints choose, so they must be known metrics computed without test labels."""
    if name not in NUMERIC_METRICS:
        valid = ", ".join(n for n in SELECTABLE_METRICS if n in NUMERIC_METRICS)
        fail(path, f"unknown metric {name!r}; valid: {valid}")
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
            why = static_value_error(name)
            if why:
                fail(f"objectives[{i}].name", why)
        for i, c in enumerate(self.constraints):
            _check_selectable(f"constraints[{i}].metric", c.metric)
        if self.search.asha and (len(names) != 1 or names[0] not in ASHA_OBJECTIVES):
            fail(
                "search.asha",
                f"early stopping (ASHA) needs exactly one objective among "
                f"{', '.join(ASHA_OBJECTIVES)} (trials are ranked per epoch on a val-accuracy proxy), "
                f"got {names}",
            )
        weights, max_exits = self.training.loss_weights, self.exits.count[1]
        if weights is not None and len(weights) != max_exits + 1:
            fail(
                "training.loss_weights",
                f"needs {max_exits + 1} weights (one per early-exit slot up to "
                f"exits.count max = {max_exits}, then the final exit), got {len(weights)}",
            )
