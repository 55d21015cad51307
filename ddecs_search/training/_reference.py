"""The static network a candidate is compared with: same total training epochs, same recipe.

In ``frozen`` mode a candidate's backbone *is* the baseline, so the baseline is its reference. In
``joint`` mode the backbone trains ``training.epochs`` more epochs (with the branches); comparing it with
the baseline would flatter it with extra training. Its reference is the baseline continued for the same
``training.epochs`` with the candidate's recipe (optimizer, lr and its schedule, batch size, weight decay,
label smoothing) and no branches: plain static training, for the same total epochs as the candidate's
backbone.

The continued network depends only on the baseline and that recipe (seed 0, not the candidate's seed), so
it is trained once per epoch count and recipe and shared by every trial: cached next to the baseline
(``<baseline folder>/continued/<epochs>ep-<hash>/``) behind a file lock, like the baseline itself.

At a constant learning rate (``lr_schedule: constant``) nothing depends on the epoch count (batches and
seeds are chosen per epoch), so the network continued for ``e`` epochs is exactly the first ``e`` epochs of
a longer continuation: :func:`static_references` trains every epoch count a search can ask for in one run
to the longest, writing each shorter one as it passes (a search does it with its baseline, before any
trial). A ``cosine`` schedule decays over the whole run, so there each epoch count is its own run.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
from collections.abc import Sequence
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
RECIPE_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "optimizer", "label_smoothing", "lr_schedule")


def _recipe(training: TrainingConfig) -> dict[str, Any]:
    """The recipe keys of ``training``; a constant schedule is left out, so the cache keys (and the
    references cached) from before the schedule existed stay valid."""
    recipe = {k: getattr(training, k) for k in RECIPE_KEYS}
    if recipe["lr_schedule"] == "constant":
        del recipe["lr_schedule"]
    return recipe


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
    payload = {"baseline": baseline.key, "recipe": _recipe(training), "seed": 0, "version": 1}
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
    return _continue(baseline, [training], splits, device, num_workers, quiet)[-1]


def reference_folder(baseline: BaselineResult, training: TrainingConfig) -> Path:
    """Where the reference of ``training`` (joint, > 0 epochs) is cached, next to the baseline."""
    return baseline.path.parent / "continued" / f"{training.epochs}ep-{reference_key(baseline, training)}"


def static_references(
    baseline: BaselineResult,
    trainings: Sequence[TrainingConfig],
    splits: Any,
    *,
    device: torch.device,
    num_workers: int = 0,
    quiet: bool = False,
) -> list[StaticReference]:
    """The references of every ``joint`` recipe in ``trainings``, with one training run per recipe.

    Recipes that differ only in ``epochs`` share a run to the longest at a constant learning rate: each
    shorter count is written when the run passes it (the same weights :func:`static_reference` would
    train for it alone); with a ``cosine`` schedule every epoch count is its own run. Frozen and 0-epoch
    recipes need none. Returns the references in order of recipe, then epochs.
    """
    groups: dict[str, list[TrainingConfig]] = {}
    for t in trainings:
        if t.mode == "joint" and t.epochs > 0:
            shared = t.lr_schedule == "constant"  # a decaying schedule depends on the epoch count
            recipe = {k: getattr(t, k) for k in RECIPE_KEYS if k != "epochs" or not shared}
            groups.setdefault(json.dumps(recipe, sort_keys=True), []).append(t)
    out: list[StaticReference] = []
    for group in groups.values():
        by_epochs = {t.epochs: t for t in group}
        out += _continue(
            baseline, [by_epochs[e] for e in sorted(by_epochs)], splits, device, num_workers, quiet
        )
    return out


def _continue(
    baseline: BaselineResult,
    trainings: list[TrainingConfig],
    splits: Any,
    device: torch.device,
    num_workers: int,
    quiet: bool,
) -> list[StaticReference]:
    """Continue the baseline once to the last recipe's epochs (``trainings`` differ only in epochs,
    ascending), caching a reference at each recipe's epoch count; cached ones are loaded, not trained."""
    folders = [reference_folder(baseline, t) for t in trainings]
    with contextlib.ExitStack() as locks:
        for folder in sorted(folders):  # one order for every process: no lock-order deadlock
            locks.enter_context(_file_lock(folder.with_suffix(".lock")))
        refs = [_load(baseline, t, f, device) for t, f in zip(trainings, folders, strict=True)]
        todo = {t.epochs: (t, f) for t, f, ref in zip(trainings, folders, refs, strict=True) if ref is None}
        if todo:
            written = _train_continued(baseline, todo, splits, device, num_workers, quiet)
            refs = [ref or written.get(t.epochs) for t, ref in zip(trainings, refs, strict=True)]
    # a run resumed from a checkpoint past an epoch whose snapshot a kill lost: train that one alone
    return [
        ref if ref is not None else _continue(baseline, [t], splits, device, num_workers, quiet)[0]
        for t, ref in zip(trainings, refs, strict=True)
    ]


def _train_continued(
    baseline: BaselineResult,
    todo: dict[int, tuple[TrainingConfig, Path]],
    splits: Any,
    device: torch.device,
    num_workers: int,
    quiet: bool,
) -> dict[int, StaticReference]:
    """One run of the baseline to the largest epoch count of ``todo``, written at each of its counts."""
    from ddecs_search.data import make_loader

    longest, last_folder = todo[max(todo)]
    model = copy.deepcopy(baseline.backbone).to(device)
    for _, folder in todo.values():
        folder.mkdir(parents=True, exist_ok=True)
    val = make_loader(
        splits.val, batch_size=512, shuffle=False, seed=0, num_workers=num_workers, device=device
    )
    start = time.perf_counter()
    written: dict[int, StaticReference] = {}

    def batches(epoch: int) -> Any:
        return make_loader(
            splits.train,
            batch_size=longest.batch_size,
            shuffle=True,
            seed=epoch,  # seed 0: shared by every trial, whatever its own seed
            num_workers=num_workers,
            device=device,
            drop_last=len(splits.train) > longest.batch_size,
        )

    def loss_fn(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(x), y, label_smoothing=longest.label_smoothing)

    def snapshot(epoch: int, stats: dict[str, float], checkpoint: Path) -> None:
        if epoch + 1 not in todo:
            return
        training, folder = todo[epoch + 1]
        elapsed = time.perf_counter() - start
        weights = folder / "backbone.pt"
        save_atomic(model.state_dict(), weights)
        model.eval()  # scored as evaluated (batch-norm statistics frozen); the next epoch sets train mode
        meta = {
            "baseline_key": baseline.key,
            "key": reference_key(baseline, training),
            "baseline_epochs": baseline.epochs,
            "continued_epochs": training.epochs,
            "epochs": baseline.epochs + training.epochs,
            "recipe": {k: v for k, v in to_dict(training).items() if k in RECIPE_KEYS},
            "val_accuracy": accuracy(model, val, device),
            "train_time_s": elapsed,
            "continued_in_one_run_to": longest.epochs,
        }
        write_text_atomic(json.dumps(meta, indent=2), folder / "meta.json")
        snap = copy.deepcopy(model).eval()
        written[training.epochs] = StaticReference(
            snap, meta["epochs"], training.epochs, weights, elapsed, False
        )

    settings = LoopSettings.from_config(longest, seed=0, quiet=quiet, desc="static reference")
    checkpoint = last_folder / "checkpoint.pt"
    info = run_epochs(
        model, list(model.parameters()), batches, loss_fn, settings, device, checkpoint, on_epoch=snapshot
    )
    if info["epochs_trained"] == longest.epochs and longest.epochs not in written:
        # resumed from the last epoch's checkpoint (a kill before its snapshot): no epoch ran, and the
        # model holds that checkpoint's weights
        snapshot(longest.epochs - 1, {}, checkpoint)
    checkpoint.unlink(missing_ok=True)
    return written


def _load(
    baseline: BaselineResult, training: TrainingConfig, folder: Path, device: torch.device
) -> StaticReference | None:
    """The cached reference in ``folder``, or None when it is not (completely) there."""
    weights, meta_path = folder / "backbone.pt", folder / "meta.json"
    if not (weights.is_file() and meta_path.is_file()):
        return None
    model = copy.deepcopy(baseline.backbone).to(device)
    model.load_state_dict(load_checkpoint(weights))
    meta = json.loads(meta_path.read_text())
    total = baseline.epochs + training.epochs
    return StaticReference(model.eval(), total, training.epochs, weights, meta["train_time_s"], True)
