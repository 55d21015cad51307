"""The epoch loop shared by baseline and branch training: seeds, AMP, progress, per-epoch checkpoints.

Every epoch ends with an atomic checkpoint (model, optimizer, scaler, epoch, early-stopping state); a
restarted run resumes after the last finished epoch and, because each epoch's shuffling is seeded by
``seed + epoch``, continues exactly as an uninterrupted run would. With :class:`EarlyStopping` the loop
stops once the validation score has not improved for ``patience`` epochs and restores the best epoch's
weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddecs_search.models import compute_layout
from ddecs_search.training._checkpoint import load_checkpoint, save_atomic

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[[int, dict[str, float], Path], None]
BatchCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class PartialEpochs:
    """Points inside epochs (``0.5``: halfway through the first) where ``callback`` sees the weights.

    Why: a search compares candidates at rungs, and a rung at the end of the first epoch still costs a
    stopped trial that whole epoch; a rung inside it stops a hopeless candidate sooner. At each point the
    loop saves the model's weights (``{"model": state_dict, "epoch": point}``, the key an epoch
    checkpoint has them under) to ``<checkpoint>.partial.pt``, calls ``callback(point, that path)`` and
    deletes the file. The point is the step ``round(fraction * steps_per_epoch)`` of its epoch; the
    callback runs with the random state forked, so training goes on exactly as without it. Points at
    whole epochs are not partial (``on_epoch`` sees them) and are ignored here.
    """

    points: tuple[float, ...]
    callback: Callable[[float, Path], None]

    def steps(self, epoch: int, per_epoch: int) -> dict[int, list[float]]:
        """``{step index (0-based): its points}`` for the points inside epoch ``epoch`` (0-based); points
        close enough to land on one step (few steps per epoch) are all called there, in order."""
        out: dict[int, list[float]] = {}
        for point in sorted(self.points):
            fraction = point - epoch
            if 0.0 < fraction < 1.0:
                out.setdefault(min(per_epoch, max(1, round(fraction * per_epoch))) - 1, []).append(point)
        return out


@dataclass
class EarlyStopping:
    """Stop when ``evaluate(model)`` (higher is better) has not improved for ``patience`` epochs.

    After each epoch the loop calls :meth:`update`; the best epoch's weights are kept (on the CPU) and
    restored at the end. The state travels in the per-epoch checkpoint, so a resumed run stops where an
    uninterrupted one would.
    """

    evaluate: Callable[[nn.Module], float]
    patience: int
    history: list[float] = field(default_factory=list)  # score after epoch 1, 2, ...
    best_epoch: int = 0  # 1-based; 0 = no epoch evaluated yet
    stopped: bool = False
    best_state: dict[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    @property
    def best_score(self) -> float:
        return self.history[self.best_epoch - 1] if self.best_epoch else float("nan")

    def update(self, model: nn.Module) -> bool:
        """Score the epoch just finished; True when training should stop."""
        score = float(self.evaluate(model))
        self.history.append(score)
        if not self.best_epoch or score > self.best_score:
            self.best_epoch = len(self.history)
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.stopped = len(self.history) - self.best_epoch >= self.patience
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "best_epoch": self.best_epoch, "stopped": self.stopped,
                "best_state": self.best_state}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [float(v) for v in state["history"]]
        self.best_epoch = int(state["best_epoch"])
        self.stopped = bool(state["stopped"])
        self.best_state = state["best_state"]


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs besides model and data."""

    epochs: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adam"
    lr_schedule: str = "constant"  # or "cosine": per step from lr to 0 over all epochs
    seed: int = 0
    quiet: bool = False
    desc: str = "train"

    @classmethod
    def from_config(cls, cfg: Any, *, seed: int, quiet: bool, desc: str) -> LoopSettings:
        """From a BaselineConfig or TrainingConfig (both carry epochs, lr, weight_decay, optimizer and
        lr_schedule; the schedule's horizon is ``epochs``, a baseline's cap)."""
        return cls(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, optimizer=cfg.optimizer,
                   lr_schedule=cfg.lr_schedule, seed=seed, quiet=quiet, desc=desc)  # fmt: skip


def scheduled_lr(settings: LoopSettings, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total_steps``.

    A pure function of the step, so a run resumed at an epoch boundary continues the schedule exactly
    (nothing but the epoch is stored). ``cosine`` reaches 0 only after the last step.
    """
    if settings.lr_schedule == "constant":
        return settings.lr
    if settings.lr_schedule == "cosine":
        return settings.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {settings.lr_schedule!r}")


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
    on_batch: BatchCallback | None = None,
    early_stopping: EarlyStopping | None = None,
    partial: PartialEpochs | None = None,
) -> dict[str, Any]:
    """Train ``params`` of ``model`` for up to ``settings.epochs`` epochs, resuming from ``checkpoint_path``.

    Args:
        make_batches: ``epoch -> iterable of (x, y)``; it must seed its own shuffling with the epoch.
        loss_fn: ``(model, x, y) -> scalar loss``.
        train_mode: sets train/eval mode per module (frozen parts stay in eval); default ``model.train()``.
        on_epoch: called after each finished epoch with ``(epoch, {"loss": ..., "train_s": ...},
            checkpoint_path)``; ``train_s``: seconds since this call began (a resumed run's own; earlier
            epochs' callbacks included, as in a trainer's ``train_time_s``).
        on_batch: called after each optimiser step with ``(epoch, batch index, batch loss)``.
        early_stopping: stop once its score stops improving and end with its best epoch's weights.
        partial: points inside epochs where a callback sees the weights (a search's sub-epoch rungs).

    Returns:
        ``{"epochs_run": n (this call), "epochs_trained": total epochs trained, "resumed_from": epoch or
        None, "last_loss": float}``; with early stopping also ``best_epoch`` (1-based: the returned
        weights have trained that many epochs), ``best_score``, ``history`` and ``stopped_early``.
    """
    from tqdm.auto import tqdm

    began = time.perf_counter()
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
        if early_stopping is not None and "early_stopping" in state:
            early_stopping.load_state_dict(state["early_stopping"])
    last_loss = float("nan")
    done = start
    with compute_layout(model, device) as to_layout:  # channels-last on a CPU (models/_layout.py)
        for epoch in range(start, settings.epochs):
            if early_stopping is not None and early_stopping.stopped:
                break
            torch.manual_seed(settings.seed * 1000 + epoch)
            (train_mode or (lambda m: m.train()))(model)
            total, count = 0.0, 0
            batches = make_batches(epoch)
            per_epoch = _steps_per_epoch(batches, settings)
            inside = partial.steps(epoch, _length(batches, "partial epochs")) if partial else {}
            bar = tqdm(
                batches,
                desc=f"{settings.desc} {epoch + 1}/{settings.epochs}",
                leave=False,
                disable=settings.quiet,
                unit="batch",
            )
            for step, (x, y) in enumerate(bar):
                x = to_layout(x.to(device, non_blocking=True))
                y = y.to(device, non_blocking=True)
                if per_epoch is not None:
                    lr = scheduled_lr(settings, epoch * per_epoch + step, settings.epochs * per_epoch)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                with torch.autocast(device_type=device.type, enabled=use_amp):
                    loss = loss_fn(model, x, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach()) * len(y)
                count += len(y)
                if on_batch is not None:
                    on_batch(epoch, step, float(loss.detach()))
                for point in inside.get(step, ()) if partial is not None else ():
                    _call_partial(partial, point, model, checkpoint_path, device)
                bar.set_postfix(loss=f"{total / max(count, 1):.4f}", refresh=False)
            last_loss = total / max(count, 1)
            stop = early_stopping.update(model) if early_stopping is not None else False
            state = {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
            }
            if early_stopping is not None:
                state["early_stopping"] = early_stopping.state_dict()
            save_atomic(state, checkpoint_path)
            done = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch, {"loss": last_loss, "train_s": time.perf_counter() - began}, checkpoint_path)
            if stop:
                break
    info: dict[str, Any] = {"epochs_run": done - start, "epochs_trained": done, "resumed_from": resumed,
                            "last_loss": last_loss}  # fmt: skip
    if early_stopping is not None:
        if early_stopping.best_state is not None:
            model.load_state_dict(early_stopping.best_state)
        info.update(best_epoch=early_stopping.best_epoch, best_score=early_stopping.best_score,
                    history=list(early_stopping.history), stopped_early=early_stopping.stopped)  # fmt: skip
    return info


def _steps_per_epoch(batches: Iterable[Any], settings: LoopSettings) -> int | None:
    """Optimiser steps in one epoch where the schedule needs them (``None`` at a constant rate)."""
    if settings.lr_schedule == "constant":
        return None
    return _length(batches, f"lr_schedule {settings.lr_schedule!r}")


def _length(batches: Iterable[Any], needed_by: str) -> int:
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{needed_by} needs batches with a length (steps per epoch)") from None


def _call_partial(
    partial: PartialEpochs, point: float, model: nn.Module, checkpoint_path: Path, device: torch.device
) -> None:
    """Show ``partial.callback`` the weights at ``point`` without touching the training's random state."""
    path = checkpoint_path.with_name(f"{checkpoint_path.stem}.partial{checkpoint_path.suffix}")
    save_atomic({"model": model.state_dict(), "epoch": point}, path)
    cuda: list[int] = []  # the GPU whose generator training draws from (dropout), forked with the CPU's
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    try:
        with torch.random.fork_rng(devices=cuda):
            partial.callback(point, path)
    finally:
        path.unlink(missing_ok=True)


@torch.no_grad()
def accuracy(model: Callable[[torch.Tensor], torch.Tensor], loader: Iterable, device: torch.device) -> float:
    """Top-1 accuracy of ``model`` (returning logits) over ``loader``."""
    correct = total = 0
    for x, y in loader:
        pred = model(x.to(device, non_blocking=True)).argmax(dim=1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)
