"""The epoch loop shared by baseline and branch training: seeds, AMP, progress, per-epoch checkpoints.

Every epoch ends with an atomic checkpoint (model, optimizer, scaler, epoch); a restarted run resumes
after the last finished epoch and, because each epoch's shuffling is seeded by ``seed + epoch``,
continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddecs_search.training._checkpoint import load_checkpoint, save_atomic

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[[int, dict[str, float], Path], None]


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs besides model and data."""

    epochs: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adam"
    seed: int = 0
    quiet: bool = False
    desc: str = "train"

    @classmethod
    def from_config(cls, cfg: Any, *, seed: int, quiet: bool, desc: str) -> LoopSettings:
        """From a BaselineConfig or TrainingConfig (both carry epochs, lr, weight_decay, optimizer)."""
        return cls(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, optimizer=cfg.optimizer,
                   seed=seed, quiet=quiet, desc=desc)  # fmt: skip


def make_optimizer(params: Iterable[nn.Parameter], settings: LoopSettings) -> torch.optim.Optimizer:
    """Adam or SGD (momentum 0.9, Nesterov) as configured."""
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.SGD(
        params, lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=settings.weight_decay
    )


def run_epochs(
    model: nn.Module,
    params: list[nn.Parameter],
    make_batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    loss_fn: LossFn,
    settings: LoopSettings,
    device: torch.device,
    checkpoint_path: Path,
    *,
    train_mode: Callable[[nn.Module], None] | None = None,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train ``params`` of ``model`` for ``settings.epochs`` epochs, resuming from ``checkpoint_path``.

    Args:
        make_batches: ``epoch -> iterable of (x, y)``; it must seed its own shuffling with the epoch.
        loss_fn: ``(model, x, y) -> scalar loss``.
        train_mode: sets train/eval mode per module (frozen parts stay in eval); default ``model.train()``.
        on_epoch: called after each finished epoch with ``(epoch, {"loss": ...}, checkpoint_path)``.

    Returns:
        ``{"epochs_run": n, "resumed_from": epoch or None, "last_loss": float}``.
    """
    from tqdm.auto import tqdm

    optimizer = make_optimizer(params, settings)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, resumed = 0, None
    if checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start = resumed = int(state["epoch"]) + 1
    last_loss = float("nan")
    for epoch in range(start, settings.epochs):
        torch.manual_seed(settings.seed * 1000 + epoch)
        (train_mode or (lambda m: m.train()))(model)
        total, count = 0.0, 0
        bar = tqdm(
            make_batches(epoch),
            desc=f"{settings.desc} {epoch + 1}/{settings.epochs}",
            leave=False,
            disable=settings.quiet,
            unit="batch",
        )
        for x, y in bar:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                loss = loss_fn(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(y)
            count += len(y)
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}", refresh=False)
        last_loss = total / max(count, 1)
        save_atomic(
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
            },
            checkpoint_path,
        )
        if on_epoch is not None:
            on_epoch(epoch, {"loss": last_loss}, checkpoint_path)
    return {"epochs_run": settings.epochs - start, "resumed_from": resumed, "last_loss": last_loss}


@torch.no_grad()
def accuracy(model: Callable[[torch.Tensor], torch.Tensor], loader: Iterable, device: torch.device) -> float:
    """Top-1 accuracy of ``model`` (returning logits) over ``loader``."""
    correct = total = 0
    for x, y in loader:
        pred = model(x.to(device, non_blocking=True)).argmax(dim=1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)
