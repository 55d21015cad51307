"""Per-exit confidence features, computed identically for the cached table and for live inference.

Using one function for both is what makes table simulation and real early-exit inference agree
sample for sample.
"""

from __future__ import annotations

import torch

FEATURE_NAMES: tuple[str, ...] = ("max_prob", "entropy", "margin", "agree_prev")
"""Columns of the feature vector: top-1 softmax probability, softmax entropy (nats), top-1 minus
top-2 probability, and whether this exit's prediction equals the previous exit's (0 at the first exit)."""

MAX_PROB, ENTROPY, MARGIN, AGREE_PREV = range(4)


def exit_features(logits: torch.Tensor, prev_pred: torch.Tensor | None) -> torch.Tensor:
    """Features of one exit: ``(B, num_classes)`` logits -> ``(B, 4)`` float32."""
    # Few, fused-friendly ops: at batch 1 on a CPU this runs at every exit and its overhead counts.
    log_probs = torch.log_softmax(logits.float(), dim=1)
    probs = log_probs.exp()
    top2, idx = probs.topk(2, dim=1)  # (B, 2)
    entropy = -(probs * log_probs).sum(dim=1)
    if prev_pred is None:
        agree = torch.zeros_like(entropy)
    else:
        agree = (idx[:, 0] == prev_pred).float()
    return torch.stack([top2[:, 0], entropy, top2[:, 0] - top2[:, 1], agree], dim=1)
