"""The static network a candidate is compared with: same total training epochs, same recipe.

In ``frozen`` mode a candidate's backbone *is* the baseline, so the baseline is its reference. In
``joint`` mode the backbone trains ``training.epochs`` more epochs (with the branches); comparing it with
the baseline would flatter it with extra training. Its reference is the baseline continued for the same
``training.epochs`` with the candidate's recipe (optimizer, lr, batch size, weight decay, label
smoothing) and no branches: plain static training, for the same total epochs as the candidate's backbone.

The continued network depends only on the baseline and that recipe (seed 0, not the candidate's seed), so
it is trained once per epoch count and recipe and shared by every trial: cached next to the baseline
(``<baseline folder>/continued/<epochs>ep-<hash>/``) behind a file lock, like the baseline itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ddecs_search._atomic import write_text_atomic
from ddecs_search.config import TrainingConfig, to_dict
from ddecs_search.models import Backbone
from ddecs_search.training._baseline import BaselineResult, _file_lock
from ddecs_search.training._checkpoint import load_checkpoint, save_atomic
from ddecs_search.training._loop import LoopSettings, accuracy, run_epochs

#: The parts of a TrainingConfig that change plain static training (mode and loss weights do not).
RECIPE_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "optimizer", "label_smoothing")


@dataclass(frozen=True)
class StaticReference:
    """The static backbone a candidate's accuracy drop is measured against."""

    backbone: Backbone
    #: total epochs of these weights (the baseline's best epoch + the continued epochs)
    epochs: int
    #: epochs trained on top of the baseline (0: the reference is the baseline itself)
    continued_epochs: int
    path: Path
    train_time_s: float
    cached: bool

    @property
    def is_baseline(self) -> bool:
        return self.continued_epochs == 0


def reference_key(baseline: BaselineResult, training: TrainingConfig) -> str:
    """Content hash of the baseline and the continued recipe."""
    recipe = {k: getattr(training, k) for k in RECIPE_KEYS}
    payload = {"baseline": baseline.key, "recipe": recipe, "seed": 0, "version": 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def static_reference(
    baseline: BaselineResult,
    training: TrainingConfig,
    splits: Any,
    *,
    device: torch.device,
    num_workers: int = 0,
    quiet: bool = False,
) -> StaticReference:
    """The static network a candidate trained with ``training`` is compared with.

    ``frozen`` mode (or 0 branch epochs): the baseline itself. ``joint`` mode: the baseline continued for
    ``training.epochs`` epochs with ``training``'s recipe and only the final classifier's loss, trained
    once and cached in the baseline's cache folder (concurrent trials wait on a file lock and load it).

    Args:
        baseline: what :func:`train_baseline` returned (its weights are not modified).
        splits: the ``DataSplits`` the baseline was trained on.
    """
    if training.mode == "frozen" or training.epochs == 0:
        return StaticReference(baseline.backbone, baseline.epochs, 0, baseline.path, 0.0, True)
    from ddecs_search.data import make_loader

    key = reference_key(baseline, training)
    folder = baseline.path.parent / "continued" / f"{training.epochs}ep-{key}"
    weights, meta_path = folder / "backbone.pt", folder / "meta.json"
    model = copy.deepcopy(baseline.backbone).to(device)
    total = baseline.epochs + training.epochs
    with _file_lock(folder.with_suffix(".lock")):
        if weights.is_file() and meta_path.is_file():
            model.load_state_dict(load_checkpoint(weights))
            meta = json.loads(meta_path.read_text())
            return StaticReference(model.eval(), total, training.epochs, weights, meta["train_time_s"], True)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()

        def batches(epoch: int) -> Any:
            return make_loader(
                splits.train,
                batch_size=training.batch_size,
                shuffle=True,
                seed=epoch,  # seed 0: shared by every trial, whatever its own seed
                num_workers=num_workers,
                device=device,
                drop_last=len(splits.train) > training.batch_size,
            )

        def loss_fn(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(m(x), y, label_smoothing=training.label_smoothing)

        settings = LoopSettings.from_config(training, seed=0, quiet=quiet, desc="static reference")
        run_epochs(
            model, list(model.parameters()), batches, loss_fn, settings, device, folder / "checkpoint.pt"
        )
        model.eval()
        val = make_loader(
            splits.val, batch_size=512, shuffle=False, seed=0, num_workers=num_workers, device=device
        )
        elapsed = time.perf_counter() - start
        save_atomic(model.state_dict(), weights)
        meta = {
            "baseline_key": baseline.key,
            "key": key,
            "baseline_epochs": baseline.epochs,
            "continued_epochs": training.epochs,
            "epochs": total,
            "recipe": {k: v for k, v in to_dict(training).items() if k in RECIPE_KEYS},
            "val_accuracy": accuracy(model, val, device),
            "train_time_s": elapsed,
        }
        write_text_atomic(json.dumps(meta, indent=2), meta_path)
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        return StaticReference(model, total, training.epochs, weights, elapsed, False)
