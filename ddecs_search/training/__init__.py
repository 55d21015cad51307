"""Training: the static baseline (cached per content hash) and exit branches (frozen or joint)."""

from ddecs_search.training._baseline import BaselineResult, baseline_key, train_baseline
from ddecs_search.training._branches import train_branches
from ddecs_search.training._checkpoint import load_checkpoint, save_atomic
from ddecs_search.training._loop import EpochCallback, LoopSettings, accuracy, run_epochs

__all__ = [
    "BaselineResult",
    "EpochCallback",
    "LoopSettings",
    "accuracy",
    "baseline_key",
    "load_checkpoint",
    "run_epochs",
    "save_atomic",
    "train_baseline",
    "train_branches",
]
