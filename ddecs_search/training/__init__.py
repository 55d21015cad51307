"""Training: the static baseline (early-stopped, cached per content hash), the same-budget static
reference of joint candidates, and exit branches (frozen or joint)."""

from ddecs_search.training._baseline import BaselineResult, baseline_key, train_baseline
from ddecs_search.training._branches import exit_losses, train_branches
from ddecs_search.training._checkpoint import load_checkpoint, save_atomic
from ddecs_search.training._loop import (
    BatchCallback,
    EarlyStopping,
    EpochCallback,
    LoopSettings,
    PartialEpochs,
    accuracy,
    run_epochs,
    scheduled_lr,
)
from ddecs_search.training._reference import (
    StaticReference,
    reference_folder,
    static_reference,
    static_references,
)

__all__ = [
    "BaselineResult",
    "BatchCallback",
    "EarlyStopping",
    "EpochCallback",
    "LoopSettings",
    "PartialEpochs",
    "StaticReference",
    "accuracy",
    "baseline_key",
    "exit_losses",
    "load_checkpoint",
    "reference_folder",
    "run_epochs",
    "save_atomic",
    "scheduled_lr",
    "static_reference",
    "static_references",
    "train_baseline",
    "train_branches",
]
