"""Static baseline training, cached by content hash so a search trains each backbone once.

The cache key hashes everything that changes the trained weights (backbone, classes, input shape,
dataset split, training budget, seed). Concurrent trials asking for the same baseline serialise on a
file lock: the first trains, the others wait and load the result.
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
from ddecs_search.training._loop import LoopSettings, accuracy, run_epochs


@dataclass(frozen=True)
class BaselineResult:
    """A trained static backbone and where it came from."""

    backbone: Backbone
    key: str
    path: Path
    val_accuracy: float
    train_time_s: float
    cached: bool


def baseline_key(
    backbone: str, num_classes: int, data: DataConfig, cfg: BaselineConfig, seed: int, arch: str = ""
) -> str:
    """Content hash of everything that determines the baseline's weights.

    ``arch`` is the module's text (layer types and sizes), so changing a backbone's definition under the
    same name never loads stale weights.
    """
    data_part = {k: v for k, v in to_dict(data).items() if k not in ("root", "num_workers", "test_subset")}
    payload = {
        "backbone": backbone,
        "num_classes": num_classes,
        "data": data_part,
        "baseline": to_dict(cfg),
        "seed": seed,
        "arch": hashlib.sha256(arch.encode()).hexdigest(),
        "version": 2,
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
) -> BaselineResult:
    """Return the trained static backbone, training it only if the cache has no copy.

    Args:
        splits: a ``DataSplits`` (train/val datasets, num_classes).
        cache_dir: folder of cached baselines (the experiment's ``baseline/`` in a search).
    """
    from ddecs_search.data import make_loader

    model = create_backbone(backbone_name, num_classes=splits.num_classes)
    key = baseline_key(backbone_name, splits.num_classes, data_cfg, cfg, seed, arch=str(model))
    folder = Path(cache_dir) / f"{backbone_name}-{key}"
    weights, meta_path = folder / "backbone.pt", folder / "meta.json"
    with _file_lock(folder.with_suffix(".lock")):
        if weights.is_file() and meta_path.is_file():
            model.load_state_dict(load_checkpoint(weights))
            meta = json.loads(meta_path.read_text())
            return BaselineResult(
                model.to(device).eval(), key, weights, meta["val_accuracy"], meta["train_time_s"], cached=True
            )
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
        run_epochs(
            model, list(model.parameters()), batches, loss_fn, settings, device, folder / "checkpoint.pt"
        )
        model.eval()
        val_loader = make_loader(
            splits.val, batch_size=512, shuffle=False, seed=0, num_workers=data_cfg.num_workers, device=device
        )
        val_acc = accuracy(model, val_loader, device)
        elapsed = time.perf_counter() - start
        save_atomic(model.state_dict(), weights)
        meta = {
            "backbone": backbone_name,
            "key": key,
            "val_accuracy": val_acc,
            "train_time_s": elapsed,
            "baseline": to_dict(cfg),
            "data": to_dict(data_cfg),
        }
        write_text_atomic(json.dumps(meta, indent=2), meta_path)
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        return BaselineResult(model, key, weights, val_acc, elapsed, cached=False)
