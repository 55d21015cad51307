"""A backbone with exit branches: all-exit training forward and early-exit inference."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch
from torch import nn

from ddecs_search.config import BranchSpec
from ddecs_search.models._backbone import Backbone
from ddecs_search.models._branch import build_branch

_T = TypeVar("_T")


class OnlineExitPolicy(Protocol):
    """What early-exit inference needs from a policy: a per-exit, vectorised exit decision."""

    def exit_mask_from_logits(
        self, exit_index: int, logits: torch.Tensor, prev_pred: torch.Tensor | None
    ) -> torch.Tensor:
        """Early exit ``exit_index``'s ``(B, C)`` logits (and the previous exit's predictions) ->
        ``(B,)`` bool, True = leave now. Must equal ``exit_mask(k, exit_features(logits, prev_pred))``."""
        ...


class HiddenExitPolicy(OnlineExitPolicy, Protocol):
    """A policy that also reads earlier exits' logits and the branch's pooled hidden features.

    Early-exit inference uses :meth:`exit_mask_from_outputs` instead of ``exit_mask_from_logits`` when
    the policy's ``feature_spec`` is not ``None`` (the rich observation, see ``policies/_features.py``).
    """

    feature_spec: object

    def exit_mask_from_outputs(
        self, exit_index: int, logits_so_far: Sequence[torch.Tensor], hidden: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits of exits ``0..exit_index`` and branch ``exit_index``'s ``(B, H)`` pooled hidden
        features -> ``(B,)`` bool, True = leave now."""
        ...


@dataclass
class EarlyExitOutput:
    """Result of early-exit inference for a batch, in input order."""

    predictions: torch.Tensor  # (N,) int64
    exit_indices: torch.Tensor  # (N,) int64, num_exits - 1 = final classifier


class MultiExitNet(nn.Module):
    """``backbone`` plus one branch per exit point.

    Exit ``k`` (``k < len(exit_points)``) reads the output of ``backbone.segments[exit_points[k]]``;
    exit ``num_exits - 1`` is the backbone's own head. The computation between consecutive exits is a
    *stage*; stage ``k`` ends at exit ``k``.
    """

    def __init__(
        self, backbone: Backbone, exit_points: Sequence[int], branch_specs: Sequence[BranchSpec]
    ) -> None:
        super().__init__()
        n_points = len(backbone.exit_point_names)
        points = list(exit_points)
        increasing = all(a < b for a, b in itertools.pairwise(points))
        if not points or not increasing or points[0] < 0 or points[-1] >= n_points:
            raise ValueError(
                f"exit points must be strictly increasing within 0..{n_points - 1}, got {points}"
            )
        if len(branch_specs) != len(points):
            raise ValueError(
                f"{len(points)} exit points need {len(points)} branch specs, got {len(branch_specs)}"
            )
        self.backbone = backbone
        self.exit_points = tuple(points)
        self.branch_specs = tuple(branch_specs)
        shapes = backbone.feature_shapes()
        self.branches = nn.ModuleList(
            build_branch(spec, shapes[p], backbone.num_classes)
            for p, spec in zip(points, branch_specs, strict=False)
        )
        ends = [p + 1 for p in points] + [len(backbone.segments)]
        starts = [0, *ends[:-1]]
        self._stage_ranges = list(zip(starts, ends, strict=False))

    @property
    def num_exits(self) -> int:
        """Exits including the final classifier."""
        return len(self.exit_points) + 1

    def run_stage(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Backbone computation from exit ``k - 1`` (or the input) up to exit ``k``.

        For the last stage this includes the head, so its output is the final logits.
        """
        start, end = self._stage_ranges[k]
        for i in range(start, end):
            x = self.backbone.segments[i](x)
        if k == self.num_exits - 1:
            x = self.backbone.head(x)
        return x

    def exit_logits(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Logits of exit ``k`` from the stage-``k`` output ``h`` (identity for the final exit)."""
        return self.branches[k](h) if k < len(self.branches) else h

    def exit_logits_and_hidden(self, k: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Exit ``k``'s logits and the pooled hidden features its classifier layer reads.

        The hidden features are the output of branch ``k`` without its last (``Linear``) layer: the
        pooled, flattened stage output, after the optional hidden FC layer; ``None`` at the final exit.
        The logits are bit-identical to :meth:`exit_logits`.
        """
        if k >= len(self.branches):
            return h, None
        branch = self.branches[k]
        hidden = branch[:-1](h)
        return branch[-1](hidden), hidden

    def forward_with_hidden(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Like :meth:`forward`, with each exit's pooled hidden features (:meth:`exit_logits_and_hidden`)."""
        return self._at_every_exit(x, self.exit_logits_and_hidden)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All exits' logits, ``num_exits`` tensors of shape ``(B, num_classes)`` (for training)."""
        return self._at_every_exit(x, self.exit_logits)

    def _at_every_exit(self, x: torch.Tensor, at_exit: Callable[[int, torch.Tensor], _T]) -> list[_T]:
        """Run every stage in turn and ``at_exit(k, h)`` on each exit's input (one loop for both passes)."""
        outs = []
        h = x
        for k in range(self.num_exits):
            h = self.run_stage(k, h)
            outs.append(at_exit(k, h))
        return outs

    @torch.no_grad()
    def early_exit(self, x: torch.Tensor, policy: OnlineExitPolicy) -> EarlyExitOutput:
        """Dynamic inference: samples leave at the first exit whose policy says so.

        Samples that exit are removed from the batch and the rest continue, so batch 1 and any batch
        size give the same decisions (up to the numerics of the kernels, which the tests check).
        A policy with a ``feature_spec`` (rich observation) gets every earlier exit's logits and the
        branch's pooled hidden features (:meth:`HiddenExitPolicy.exit_mask_from_outputs`).
        """
        if getattr(policy, "feature_spec", None) is not None:
            return self._early_exit_rich(x, policy)  # type: ignore[arg-type]
        if x.shape[0] == 1:
            return self._early_exit_one(x, policy)
        n = x.shape[0]
        device = x.device
        predictions = torch.empty(n, dtype=torch.long, device=device)
        exits = torch.empty(n, dtype=torch.long, device=device)
        index = torch.arange(n, device=device)
        prev_pred: torch.Tensor | None = None
        h = x
        last = self.num_exits - 1
        for k in range(self.num_exits):
            h = self.run_stage(k, h)
            logits = self.exit_logits(k, h)
            pred = logits.argmax(dim=1)
            if k == last:
                predictions[index] = pred
                exits[index] = k
                break
            mask = policy.exit_mask_from_logits(k, logits, prev_pred).to(device=device, dtype=torch.bool)
            if bool(mask.any()):
                predictions[index[mask]] = pred[mask]
                exits[index[mask]] = k
                keep = ~mask
                if not bool(keep.any()):
                    break
                h, index, pred = h[keep], index[keep], pred[keep]
            prev_pred = pred
        return EarlyExitOutput(predictions, exits)

    def _early_exit_one(self, x: torch.Tensor, policy: OnlineExitPolicy) -> EarlyExitOutput:
        """Batch-1 path: the same decisions as the batched path without its index bookkeeping."""
        prev_pred: torch.Tensor | None = None
        h = x
        last = self.num_exits - 1
        for k in range(self.num_exits):
            h = self.run_stage(k, h)
            logits = self.exit_logits(k, h)
            if k == last or bool(policy.exit_mask_from_logits(k, logits, prev_pred)[0]):
                break
            prev_pred = logits.argmax(dim=1)
        return EarlyExitOutput(logits.argmax(dim=1), torch.full((1,), k, dtype=torch.long, device=x.device))

    def _early_exit_rich(self, x: torch.Tensor, policy: HiddenExitPolicy) -> EarlyExitOutput:
        """Early exit for policies that read earlier logits and hidden features (batch 1 or batched)."""
        n = x.shape[0]
        device = x.device
        predictions = torch.empty(n, dtype=torch.long, device=device)
        exits = torch.empty(n, dtype=torch.long, device=device)
        index = torch.arange(n, device=device)
        so_far: list[torch.Tensor] = []
        h = x
        last = self.num_exits - 1
        for k in range(self.num_exits):
            h = self.run_stage(k, h)
            logits, hidden = self.exit_logits_and_hidden(k, h)
            so_far.append(logits)
            if k == last:
                predictions[index] = logits.argmax(dim=1)
                exits[index] = k
                break
            mask = policy.exit_mask_from_outputs(k, so_far, hidden).to(device=device, dtype=torch.bool)
            if bool(mask.any()):
                predictions[index[mask]] = logits[mask].argmax(dim=1)
                exits[index[mask]] = k
                keep = ~mask
                if not bool(keep.any()):
                    break
                h, index = h[keep], index[keep]
                so_far = [lg[keep] for lg in so_far]
        return EarlyExitOutput(predictions, exits)
