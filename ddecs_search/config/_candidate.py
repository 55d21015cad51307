"""Typed configuration of one early-exit candidate and of how it is trained and measured.

These dataclasses are what flows inside the system (and to Ray workers, so they stay picklable);
YAML and JSON enter through :func:`ddecs_search.config.from_dict`, which validates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ddecs_search.config._parse import fail


def check_finite(path: str, value: Any) -> None:
    """Every number inside ``value`` (free-form mappings and lists such as policy options) is finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(f"{path}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_finite(f"{path}[{i}]", item)
    elif isinstance(value, float) and not math.isfinite(value):
        fail(path, f"must be a finite number, got {value!r}")


@dataclass(frozen=True)
class BranchSpec:
    """Architecture of one exit branch; input shape is inferred from the backbone at its exit point.

    The branch is ``conv_layers`` × (conv3×3 → BN → ReLU) with ``channels`` each, an adaptive
    ``pool`` to ``pool_size``×``pool_size``, an optional hidden FC layer (``hidden`` > 0, with
    ``dropout``), and a linear classifier. Without convolutions there is no width: ``channels`` is 0
    then, whatever was written, so that one network has one spelling (equal specs, one latency-table
    key, one candidate for the sampler; the search space samples no width there either).
    """

    conv_layers: int = 1
    channels: int = 32
    pool: Literal["avg", "max"] = "avg"
    pool_size: int = 2
    hidden: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.conv_layers <= 3:
            fail("conv_layers", f"must be 0..3, got {self.conv_layers}")
        if self.conv_layers == 0:
            object.__setattr__(self, "channels", 0)  # (frozen) no convolutions, no width
        elif self.channels < 1:
            fail("channels", f"must be >= 1, got {self.channels}")
        if not 1 <= self.pool_size <= 8:
            fail("pool_size", f"must be 1..8, got {self.pool_size}")
        if self.hidden < 0:
            fail("hidden", f"must be >= 0 (0 = no hidden layer), got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")


def _check_recipe(cfg: TrainingConfig | BaselineConfig) -> None:
    """The optimiser settings branch training and baseline training share, under the same rules."""
    if cfg.lr <= 0:
        fail("lr", f"must be > 0, got {cfg.lr}")
    if cfg.batch_size < 1:
        fail("batch_size", f"must be >= 1, got {cfg.batch_size}")
    if cfg.weight_decay < 0:
        fail("weight_decay", f"must be >= 0, got {cfg.weight_decay}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        fail("label_smoothing", f"must be in [0, 1), got {cfg.label_smoothing}")


@dataclass(frozen=True)
class TrainingConfig:
    """How exit branches are trained.

    ``frozen``: the trained baseline backbone is fixed and only branches learn (fast; the final exit's
    accuracy equals the baseline's). ``joint``: BranchyNet's weighted sum of all exits' losses,
    ``loss_weights`` one per exit including the final one (default: equal weights).

    ``distill`` (0 = off): each early exit's loss becomes ``(1 - distill) * CE + distill * T² *
    KL(final exit's softened distribution || the exit's)`` with ``T = distill_temperature``, the final
    exit's output detached (self-distillation: the exit learns which classes the full network confuses,
    not only the label). Either mode: in ``frozen`` the teacher is the baseline itself.

    ``lr_schedule``: ``constant`` keeps ``lr`` to the end; ``cosine`` decays it per step from ``lr`` to 0
    over the ``epochs`` (``lr * (1 + cos(pi * step / steps)) / 2``). Adam at a constant rate ends on a
    noisy iterate: on the default job's data the static network continued 3 epochs validated 0.903 at a
    constant rate and 0.919 with the cosine decay (docs/search_space.md). The static reference of a joint
    candidate trains with the same schedule.
    """

    mode: Literal["frozen", "joint"] = "frozen"
    epochs: int = 2
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
        if self.epochs < 0:
            fail("epochs", f"must be >= 0, got {self.epochs}")
        _check_recipe(self)
        if self.loss_weights is not None and any(w < 0 for w in self.loss_weights):
            fail("loss_weights", f"must be non-negative, got {list(self.loss_weights)}")
        if not 0.0 <= self.distill <= 1.0:
            fail("distill", f"must be in [0, 1] (0 = off), got {self.distill}")
        if not self.distill_temperature > 0:
            fail("distill_temperature", f"must be > 0, got {self.distill_temperature}")


@dataclass(frozen=True)
class BaselineConfig:
    """Training recipe of the static backbone (trained once, cached by content hash).

    The static network trains until its validation accuracy (on the *fit* part of validation, see
    ``DataConfig.selection_fraction``) has not improved for ``patience`` epochs, ``epochs`` being the
    cap, and keeps the best epoch's weights; ``patience: null`` trains exactly ``epochs`` epochs.

    ``lr_schedule`` as in ``TrainingConfig``, over ``epochs``: ``cosine`` decays the rate to 0 at the
    cap, so it pays with ``patience: null`` (a fixed horizon); with early stopping the run may stop
    mid-decay. Frozen candidates deploy this network unchanged, so its recipe sets how good they can be.
    """

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    label_smoothing: float = 0.0
    pretrained: str | None = None
    patience: int | None = 2
    lr_schedule: Literal["constant", "cosine"] = "constant"

    def __post_init__(self) -> None:
        if self.epochs < 0:
            fail("epochs", f"must be >= 0, got {self.epochs}")
        if self.patience is not None and self.patience < 1:
            fail("patience", f"must be >= 1 or null (no early stopping), got {self.patience}")
        _check_recipe(self)


@dataclass(frozen=True)
class PolicyConfig:
    """Which exit policy decides when a sample leaves, and its accuracy–cost trade-off.

    ``cost_weight`` (λ) is what the policy optimises: accuracy − λ · (expected cost / static cost).
    ``cost`` picks the cost table (measured ``latency`` or ``macs``). ``options`` holds kind-specific
    settings (e.g. RL iterations, learning rate); unknown options are rejected by the policy.
    """

    kind: str = "threshold"
    cost_weight: float = 0.3
    cost: Literal["latency", "macs"] = "latency"
    metric: Literal["max_prob", "entropy"] = "max_prob"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cost_weight < 0:
            fail("cost_weight", f"must be >= 0, got {self.cost_weight}")
        check_finite("options", self.options)


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: where the exits are, what they look like, how they decide.

    ``exit_points`` index the backbone's candidate exit points (see ``Backbone.exit_point_names``),
    strictly increasing; ``branches`` has one spec per exit point.
    """

    backbone: str
    exit_points: tuple[int, ...]
    branches: tuple[BranchSpec, ...]
    training: TrainingConfig = field(default_factory=TrainingConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.exit_points) == 0:
            fail("exit_points", "needs at least one early exit")
        if any(b <= a for a, b in zip(self.exit_points, self.exit_points[1:], strict=False)):
            fail(
                "exit_points",
                f"must be strictly increasing (ordered, distinct), got {list(self.exit_points)}",
            )
        if any(p < 0 for p in self.exit_points):
            fail("exit_points", f"must be >= 0, got {list(self.exit_points)}")
        if len(self.branches) != len(self.exit_points):
            fail(
                "branches",
                f"needs one branch spec per exit point: {len(self.exit_points)} exit points, "
                f"{len(self.branches)} branches",
            )
        weights = self.training.loss_weights
        if weights is not None and len(weights) != len(self.exit_points) + 1:
            fail(
                "training.loss_weights",
                f"needs one weight per exit including the final one ({len(self.exit_points) + 1}), "
                f"got {len(weights)}",
            )

    @property
    def num_exits(self) -> int:
        """Number of exits including the final classifier."""
        return len(self.exit_points) + 1


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where it lives and how it is split.

    Validation is carved from the training set with ``split_seed``; nothing is selected or tuned on
    test. Validation itself is split in two disjoint parts (seeded by ``split_seed``): exit policies are
    fitted on one, and ``selection_fraction`` of it is held out for choosing (objectives, constraints,
    picks, λ sweeps), so that a choice is never scored on the samples a policy was fitted on.
    ``*_subset`` cut the splits for smoke runs (``null`` = all).
    """

    name: str = "fashion-mnist"
    root: str | None = None
    val_fraction: float = 0.1
    train_subset: int | None = None
    val_subset: int | None = None
    test_subset: int | None = None
    num_workers: int = 0
    split_seed: int = 0
    selection_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            fail("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.selection_fraction < 1.0:
            fail("selection_fraction", f"must be in (0, 1), got {self.selection_fraction}")
        for name in ("train_subset", "val_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                fail(name, f"must be >= 1 or null (all), got {value}")
        if self.num_workers < 0:
            fail("num_workers", f"must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class MeasurementConfig:
    """How latency and energy are measured on the target device.

    ``latency_samples`` test samples are timed end to end at batch 1 (static and early-exit in the same
    run); the lookup table uses ``warmup`` + ``repeats`` runs per module and takes medians. ``threads``
    is torch's intra-op thread count while measuring on a CPU (default 1: batch-1 inference of small
    networks is fastest and far more stable on one thread, especially when trials share cores; set it to
    your deployment's thread count; ONNX Runtime sessions get the same intra-op thread count).

    ``runtime`` is what inference is measured in: ``onnxruntime`` (the network exported to ONNX per stage
    and branch, run by ONNX Runtime on the CPU with the exit decision in numpy: what a deployment gets),
    ``torch`` (eager PyTorch), or ``auto`` = ``onnxruntime`` when the device is a CPU and ``torch`` on CUDA,
    because no GPU runtime (ONNX Runtime CUDA/TensorRT execution provider) is set up yet. The latency
    table, end-to-end timing, batched throughput, energy windows and the static network all use it.
    """

    device: str = "auto"
    latency_samples: int = 300
    warmup: int = 10
    repeats: int = 30
    batch_size: int = 256
    energy: Literal["auto", "nvml", "rapl", "none"] = "auto"
    energy_min_seconds: float = 1.0
    threads: int = 1
    runtime: Literal["auto", "torch", "onnxruntime"] = "auto"

    def __post_init__(self) -> None:
        if self.runtime not in ("auto", "torch", "onnxruntime"):
            fail("runtime", f"must be auto, torch or onnxruntime, got {self.runtime!r}")
        if self.latency_samples < 1:
            fail("latency_samples", f"must be >= 1, got {self.latency_samples}")
        if self.repeats < 1:
            fail("repeats", f"must be >= 1, got {self.repeats}")
        if self.warmup < 0:
            fail("warmup", f"must be >= 0, got {self.warmup}")
        if self.batch_size < 1:
            fail("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.threads < 1:
            fail("threads", f"must be >= 1, got {self.threads}")
        if self.energy_min_seconds <= 0:
            fail("energy_min_seconds", f"must be > 0, got {self.energy_min_seconds}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            fail("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
