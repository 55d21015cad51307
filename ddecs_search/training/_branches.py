"""Exit-branch training: ``frozen`` (only branches learn) or ``joint`` (BranchyNet weighted loss).

Both start from the trained baseline. In frozen mode the backbone stays in eval mode with gradients
off, so the final exit's accuracy is exactly the baseline's and each epoch costs one backbone forward
plus the branches' forward/backward.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddecs_search.config import TrainingConfig
from ddecs_search.models import MultiExitNet
from ddecs_search.training._loop import BatchCallback, EpochCallback, LoopSettings, PartialEpochs, run_epochs


def _loss_weights(cfg: TrainingConfig, num_exits: int) -> list[float]:
    if cfg.loss_weights is not None:
        return list(cfg.loss_weights)
    return [1.0] * num_exits


def exit_losses(
    outs: list[torch.Tensor], y: torch.Tensor, cfg: TrainingConfig, weights: list[float]
) -> torch.Tensor:
    """The branch-training loss over the exits' logits ``outs`` (the final exit last).

    ``sum_k w_k * loss_k``: cross-entropy with the labels, and for early exits with ``cfg.distill`` > 0
    ``(1 - a) * CE + a * T^2 * KL(softmax(final / T) || softmax(exit / T))``, the final exit detached
    (it teaches; its own loss stays plain CE). ``T^2`` keeps the soft term's gradient scale independent
    of ``T`` (Hinton et al., 2015). In frozen mode ``weights`` has one entry per early exit: ``outs`` is
    the early exits, plus the final logits (which then only teach) when ``distill`` is on.
    """
    a, temp = cfg.distill, cfg.distill_temperature
    teacher = F.softmax(outs[-1].detach().float() / temp, dim=1) if a > 0 else None
    total = outs[0].new_zeros(())
    for k, (w, logits) in enumerate(zip(weights, outs, strict=False)):
        ce = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if teacher is not None and k < len(outs) - 1:
            log_student = F.log_softmax(logits.float() / temp, dim=1)
            kl = F.kl_div(log_student, teacher, reduction="batchmean") * temp**2
            ce = (1 - a) * ce + a * kl
        total = total + w * ce
    return total


def train_branches(
    model: MultiExitNet,
    train_set: Any,
    cfg: TrainingConfig,
    *,
    device: torch.device,
    checkpoint_path: Path,
    seed: int = 0,
    num_workers: int = 0,
    quiet: bool = False,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
    partial: PartialEpochs | None = None,
) -> dict[str, Any]:
    """Train ``model``'s branches (and, in joint mode, its backbone) in place; resumable per epoch.

    Returns:
        ``{"train_time_s": ..., "epochs_run": ..., "resumed_from": ..., "last_loss": ...}``.
    """
    from ddecs_search.data import make_loader

    start = time.perf_counter()
    model.to(device)
    frozen = cfg.mode == "frozen"
    weights = _loss_weights(cfg, model.num_exits)
    if frozen:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        params = [p for p in model.branches.parameters()]
    else:
        params = [p for p in model.parameters()]

    def train_mode(m: nn.Module) -> None:
        m.train()
        if frozen:
            model.backbone.eval()  # BN statistics of the frozen backbone must not move

    def loss_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if frozen:
            outs, h = [], x
            for k in range(model.num_exits - 1):
                with torch.no_grad():
                    h = model.run_stage(k, h)
                outs.append(model.exit_logits(k, h))
            if cfg.distill > 0:  # the frozen backbone's own output teaches (no gradient reaches it)
                with torch.no_grad():
                    outs.append(model.run_stage(model.num_exits - 1, h))
            return exit_losses(outs, y, cfg, weights[: model.num_exits - 1])
        return exit_losses(model(x), y, cfg, weights)  # weights: one per exit (validated)

    def batches(epoch: int) -> Any:
        return make_loader(
            train_set,
            batch_size=cfg.batch_size,
            shuffle=True,
            seed=seed * 1000 + epoch,
            num_workers=num_workers,
            device=device,
            drop_last=len(train_set) > cfg.batch_size,
        )

    settings = LoopSettings.from_config(cfg, seed=seed, quiet=quiet, desc=f"branches ({cfg.mode})")
    info = run_epochs(
        model,
        params,
        batches,
        loss_fn,
        settings,
        device,
        checkpoint_path,
        train_mode=train_mode,
        on_epoch=on_epoch,
        on_batch=on_batch,
        partial=partial,
    )
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    info["train_time_s"] = time.perf_counter() - start
    return info
