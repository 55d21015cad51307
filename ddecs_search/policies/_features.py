"""Per-exit features, computed identically for the cached table and for live inference.

Using one function for both is what makes table simulation and real early-exit inference agree
sample for sample. Two layouts exist:

- the *confidence* layout (default): the four columns of :data:`FEATURE_NAMES`, from one exit's logits
  and the previous exit's prediction (:func:`exit_features`);
- the *rich* layout (:class:`FeatureSpec`, ``policy.options.observation: rich``): the same four columns,
  then :meth:`FeatureSpec.names` — the top-k sorted probabilities, agreement and divergence with every
  earlier exit, and a fixed, seeded random projection of the branch's pooled hidden features
  (:func:`extra_features`). :func:`exit_feature_row` builds one row of either layout; the table
  (``ExitTable.from_model``) and early-exit inference (``ExitPolicy.exit_mask_from_outputs``) both call it.

The cost spent so far is not a table column: it depends only on the exit and the cost table, so
observations that use it read it from the policy's stored normalised path cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

FEATURE_NAMES: tuple[str, ...] = ("max_prob", "entropy", "margin", "agree_prev")
"""Columns of the feature vector: top-1 softmax probability, softmax entropy (nats), top-1 minus
top-2 probability, and whether this exit's prediction equals the previous exit's (0 at the first exit)."""

MAX_PROB, ENTROPY, MARGIN, AGREE_PREV = range(4)
NUM_BASE = len(FEATURE_NAMES)


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


@dataclass(frozen=True)
class FeatureSpec:
    """The rich feature layout: extra columns after the four confidence features.

    Attributes:
        topk: how many sorted top probabilities (``top1 .. topk``; zero-padded past the class count).
        hidden_dim: width of the projection of the branch's pooled hidden features (0 = none).
        seed: seed of the fixed projection matrices (one per exit and hidden width).
    """

    topk: int = 3
    hidden_dim: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.topk < 1 or self.hidden_dim < 0:
            raise ValueError(f"FeatureSpec needs topk >= 1 and hidden_dim >= 0, got {self}")

    def width(self, num_exits: int) -> int:
        """Number of extra columns for a network with ``num_exits`` exits (final included)."""
        return self.topk + 2 * (num_exits - 1) + self.hidden_dim

    def names(self, num_exits: int) -> tuple[str, ...]:
        """Names of the extra columns, in order."""
        return (
            *(f"top{i + 1}" for i in range(self.topk)),
            *(f"agree_{j}" for j in range(num_exits - 1)),
            *(f"tv_{j}" for j in range(num_exits - 1)),
            *(f"hidden_{i}" for i in range(self.hidden_dim)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FeatureSpec | None:
        return None if data is None else cls(**data)


_PROJECTIONS: dict[tuple[int, int, int, int], torch.Tensor] = {}


def projection(spec: FeatureSpec, exit_index: int, in_features: int) -> torch.Tensor:
    """The fixed ``(in_features, hidden_dim)`` float64 projection of exit ``exit_index`` (cached).

    Gaussian entries scaled by ``1 / sqrt(in_features)``, drawn from a generator seeded with
    ``(spec.seed, exit_index)``, so every process and device builds the same matrix.
    """
    key = (spec.seed, exit_index, in_features, spec.hidden_dim)
    if key not in _PROJECTIONS:
        gen = torch.Generator().manual_seed(1_000_003 * spec.seed + exit_index)
        w = torch.randn(in_features, spec.hidden_dim, generator=gen, dtype=torch.float64)
        _PROJECTIONS[key] = w / in_features**0.5
    return _PROJECTIONS[key]


def extra_features(
    exit_index: int,
    logits_so_far: Sequence[torch.Tensor],
    hidden: torch.Tensor | None,
    num_exits: int,
    spec: FeatureSpec,
) -> torch.Tensor:
    """The rich columns of exit ``exit_index``: ``(B, spec.width(num_exits))`` float32.

    Args:
        exit_index: ``k``.
        logits_so_far: ``k + 1`` tensors ``(B, C)``: the logits of exits ``0..k`` for the same rows.
        hidden: ``(B, H)`` pooled hidden features of branch ``k`` (the input of its classifier layer),
            or ``None`` at the final exit (its projection columns are 0).
        num_exits: exits of the network, final included.
        spec: the layout.

    Every column is a per-row function of the row's inputs (no reduction across rows), so a batch and
    its rows one at a time give bit-identical results.
    """
    return exit_feature_row(exit_index, logits_so_far, hidden, num_exits, spec)[:, NUM_BASE:]


def exit_feature_row(
    exit_index: int,
    logits_so_far: Sequence[torch.Tensor],
    hidden: torch.Tensor | None,
    num_exits: int,
    spec: FeatureSpec | None,
) -> torch.Tensor:
    """All feature columns of exit ``exit_index`` in the table's layout: ``(B, 4 [+ spec.width])``.

    The first four columns are :func:`exit_features` of exit ``exit_index`` (with the previous exit's
    prediction), computed by the same operations; the rest (``spec``) are described in
    :func:`extra_features`. Few operations, because at batch 1 each costs microseconds at every exit.
    """
    k = exit_index
    if spec is None:
        prev = logits_so_far[k - 1].argmax(dim=1) if k > 0 else None
        return exit_features(logits_so_far[k], prev)
    # the same operations as exit_features, sharing the softmax and top-k with the rich columns
    log_probs = torch.log_softmax(logits_so_far[k].float(), dim=1)
    probs = log_probs.exp()
    b, c = probs.shape
    top, idx = probs.topk(min(max(2, spec.topk), c), dim=1)
    entropy = -(probs * log_probs).sum(dim=1)
    pred = idx[:, 0]
    e1 = num_exits - 1
    hist = probs.new_zeros(b, 2 * e1 + 1)  # agree_0.., tv_0.., then agree_prev
    if k > 0:
        earlier = torch.stack(
            [torch.log_softmax(lg.float(), dim=1).exp() for lg in logits_so_far[:k]]
        )  # (k, B, C)
        hist[:, :k] = (earlier.argmax(dim=2) == pred).T.float()
        hist[:, e1 : e1 + k] = (0.5 * (probs - earlier).abs().sum(dim=2)).T  # total variation, in [0, 1]
        hist[:, 2 * e1] = (pred == logits_so_far[k - 1].argmax(dim=1)).float()
    base = torch.stack([top[:, 0], entropy, top[:, 0] - top[:, 1], hist[:, 2 * e1]], dim=1)
    cols = [base, top[:, : spec.topk]]
    if spec.topk > c:
        cols.append(probs.new_zeros(b, spec.topk - c))
    cols.append(hist[:, : 2 * e1])
    if spec.hidden_dim:
        if hidden is None:
            cols.append(probs.new_zeros(b, spec.hidden_dim))
        else:
            h = hidden.reshape(b, -1).to(torch.float64)
            w = projection(spec, k, h.shape[1]).to(h.device)
            # elementwise product and a per-row sum in float64, not a GEMM: a GEMM's blocking (and so
            # its rounding) depends on the batch size; this keeps rows bit-identical at any batch size
            cols.append(torch.tanh((h.unsqueeze(2) * w.unsqueeze(0)).sum(dim=1)).float())
    return torch.cat(cols, dim=1)


def num_features(num_exits: int, spec: FeatureSpec | None) -> int:
    """Width of a table's feature vector in ``spec``'s layout."""
    return NUM_BASE + (0 if spec is None else spec.width(num_exits))
