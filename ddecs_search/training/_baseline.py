"""Static baseline training, cached by content hash so a search trains each backbone once.

The baseline trains until its validation accuracy stops improving (``BaselineConfig.patience``; the
``epochs`` key is the cap) and keeps the best epoch's weights. Early stopping reads the *fit* part of
validation only (``data.validation_parts``), so the selection part that compares the static network with
the candidates was never used to train or stop it.

The cache key hashes everything that changes the trained weights (backbone, classes, input shape,
dataset split, training recipe incl. patience, seed). Concurrent trials asking for the same baseline
serialise on a file lock: the first trains, the others wait and load the result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ddecs_search._atomic import write_text_atomic
from ddecs_search.config import BaselineConfig, DataConfig, to_dict
from ddecs_search.models import Backbone, create_backbone
from ddecs_search.training._checkpoint import load_checkpoint, save_atomic
from ddecs_search.training._loop import (
    BatchCallback,
    EarlyStopping,
    EpochCallback,
    LoopSettings,
    accuracy,
    run_epochs,
)


@dataclass(frozen=True)
class BaselineResult:
    """A trained static backbone and where it came from."""

    backbone: Backbone
    key: str
    path: Path
    #: accuracy on the selection part of validation: the split every trial's ``baseline_val_accuracy``
    #: and ``val_accuracy`` use (``all_val_accuracy`` in meta.json: the whole validation split)
    selection_val_accuracy: float
    train_time_s: float
    cached: bool
    #: epochs the returned weights trained (the best epoch with early stopping)
    epochs: int = 0
    #: epochs trained before stopping (>= ``epochs``)
    epochs_trained: int = 0
    #: early stopping's best score: accuracy on the fit part of validation (None without early stopping)
    best_val_accuracy: float | None = None


def _val_accuracies(
    model: Backbone, splits: Any, data_cfg: DataConfig, device: torch.device
) -> dict[str, float]:
    """The trained baseline on the selection part of validation (what trials compare with) and on the
    whole validation split, under names that say which."""
    from ddecs_search.data import make_loader, validation_parts

    def score(ds: Any) -> float:
        loader = make_loader(ds, batch_size=512, shuffle=False, seed=0, num_workers=data_cfg.num_workers,
                             device=device)  # fmt: skip
        return accuracy(model, loader, device)

    _, select = validation_parts(splits, data_cfg.selection_fraction, data_cfg.split_seed)
    return {"selection_val_accuracy": score(select), "all_val_accuracy": score(splits.val)}


def _result_from_meta(model: Backbone, weights: Path, meta: dict[str, Any], cfg: BaselineConfig,
                      cached: bool) -> BaselineResult:  # fmt: skip
    return BaselineResult(
        model, meta["key"], weights, meta["selection_val_accuracy"], meta["train_time_s"], cached,
        epochs=int(meta.get("epochs", cfg.epochs)),
        epochs_trained=int(meta.get("epochs_trained", cfg.epochs)),
        best_val_accuracy=meta.get("best_val_accuracy"),
    )  # fmt: skip


def baseline_key(
    backbone: str, num_classes: int, data: DataConfig, cfg: BaselineConfig, seed: int, arch: str = ""
) -> str:
    """Content hash of everything that determines the baseline's weights.

    ``arch`` is the module's text (layer types and sizes), so changing a backbone's definition under the
    same name never loads stale weights.
    """
    data_part = {k: v for k, v in to_dict(data).items() if k not in ("root", "num_workers", "test_subset")}
    recipe = to_dict(cfg)
    if recipe.get("lr_schedule") == "constant":  # the key predates the schedule: cached baselines stay valid
        del recipe["lr_schedule"]
    payload = {
        "backbone": backbone,
        "num_classes": num_classes,
        "data": data_part,
        "baseline": recipe,
        "seed": seed,
        "arch": hashlib.sha256(arch.encode()).hexdigest(),
        "version": 3,  # 3: early stopping on the fit part of validation
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def train_baseline(
    backbone_name: str,
    splits: Any,
    data_cfg: DataConfig,
    cfg: BaselineConfig,
    *,
    device: torch.device,
    cache_dir: Path,
    seed: int = 0,
    quiet: bool = False,
    on_batch: BatchCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> BaselineResult:
    """Return the trained static backbone, training it only if the cache has no copy.

    Trains up to ``cfg.epochs`` epochs, stopping once the accuracy on the fit part of ``splits.val``
    has not improved for ``cfg.patience`` epochs, and returns the best epoch's weights. ``meta.json``
    records ``epochs`` (of the returned weights), ``epochs_trained``, ``best_val_accuracy`` and the
    per-epoch ``val_history``.

    Args:
        splits: a ``DataSplits`` (train/val datasets, num_classes).
        cache_dir: folder of cached baselines (the experiment's ``baseline/`` in a search).
        on_batch: per-step ``(epoch, step, loss)`` callback (recipe checks), only when training here.
        on_epoch: called after each trained epoch (not when the cache has the baseline).
    """
    from ddecs_search.data import make_loader, validation_parts

    torch.manual_seed(seed)  # the initial weights: the same whatever ran before in this process
    model = create_backbone(backbone_name, num_classes=splits.num_classes)
    key = baseline_key(backbone_name, splits.num_classes, data_cfg, cfg, seed, arch=str(model))
    folder = Path(cache_dir) / f"{backbone_name}-{key}"
    weights, meta_path = folder / "backbone.pt", folder / "meta.json"
    with _file_lock(folder.with_suffix(".lock")):
        if weights.is_file() and meta_path.is_file():
            model.load_state_dict(load_checkpoint(weights))
            model.to(device).eval()
            meta = {"key": key, **json.loads(meta_path.read_text())}
            if "selection_val_accuracy" not in meta:  # cached before the key existed: measure, record
                meta.pop("val_accuracy", None)  # it was the whole validation split's: named apart now
                meta.update(_val_accuracies(model, splits, data_cfg, device))
                write_text_atomic(json.dumps(meta, indent=2), meta_path)
            return _result_from_meta(model, weights, meta, cfg, cached=True)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if cfg.pretrained:
            from ddecs_search.models import load_torchvision_weights

            load_torchvision_weights(model, cfg.pretrained)
        model.to(device)

        def batches(epoch: int) -> Any:
            return make_loader(
                splits.train,
                batch_size=cfg.batch_size,
                shuffle=True,
                seed=seed * 1000 + epoch,
                num_workers=data_cfg.num_workers,
                device=device,
                drop_last=len(splits.train) > cfg.batch_size,
            )

        def loss_fn(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(m(x), y, label_smoothing=cfg.label_smoothing)

        settings = LoopSettings.from_config(cfg, seed=seed, quiet=quiet, desc=f"baseline {backbone_name}")

        def loader(ds: Any) -> Any:
            return make_loader(
                ds, batch_size=512, shuffle=False, seed=0, num_workers=data_cfg.num_workers, device=device
            )

        stopping, stopping_on = None, None
        if cfg.patience is not None and cfg.epochs > 0:
            fit_val, _ = validation_parts(splits, data_cfg.selection_fraction, data_cfg.split_seed)
            fraction = data_cfg.selection_fraction
            stopping_on = f"validation fit part: {len(fit_val)} samples (selection_fraction {fraction})"
            stopping = EarlyStopping(lambda m: accuracy(m.eval(), loader(fit_val), device), cfg.patience)
        info = run_epochs(
            model,
            list(model.parameters()),
            batches,
            loss_fn,
            settings,
            device,
            folder / "checkpoint.pt",
            on_batch=on_batch,
            early_stopping=stopping,
            on_epoch=on_epoch,
        )
        model.eval()
        elapsed = time.perf_counter() - start
        save_atomic(model.state_dict(), weights)
        meta = {
            "backbone": backbone_name,
            "key": key,
            **_val_accuracies(model, splits, data_cfg, device),
            "train_time_s": elapsed,
            "epochs": info.get("best_epoch", info["epochs_trained"]),
            "epochs_trained": info["epochs_trained"],
            "epochs_cap": cfg.epochs,
            "patience": cfg.patience,
            "stopped_early": info.get("stopped_early", False),
            "best_val_accuracy": info.get("best_score"),
            "val_history": info.get("history", []),
            "early_stopping_on": stopping_on,
            "baseline": to_dict(cfg),
            "data": to_dict(data_cfg),
        }
        write_text_atomic(json.dumps(meta, indent=2), meta_path)
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        return _result_from_meta(model, weights, meta, cfg, cached=False)
