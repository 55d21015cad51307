"""The backbone interface: a network cut into sequential segments, with candidate exit points.

Exit point ``i`` sits after ``segments[i]``. There is no exit point after the last segment, because an
exit there would sit at the same depth as the final classifier (``head``). Everything downstream — branch
shape inference, MAC and latency tables, early-exit inference — uses only this interface.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Backbone(nn.Module):
    """A static classifier expressed as ``head(segments[-1](...segments[0](x)))``.

    Args:
        segments: the feature stages, applied in order.
        head: the final classifier on the last segment's output (flattening included).
        exit_point_names: one readable name per candidate exit point (``len(segments) - 1`` names).
        input_shape: the natural input ``(C, H, W)``; datasets are adapted to it.
        num_classes: number of output classes.
    """

    def __init__(
        self,
        segments: Sequence[nn.Module],
        head: nn.Module,
        *,
        exit_point_names: Sequence[str],
        input_shape: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        if len(exit_point_names) != len(segments) - 1:
            raise ValueError(
                f"{len(segments)} segments need {len(segments) - 1} exit point names, "
                f"got {len(exit_point_names)}"
            )
        self.segments = nn.ModuleList(segments)
        self.head = head
        self.exit_point_names = tuple(exit_point_names)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        for segment in self.segments:
            x = segment(x)
        return self.head(x)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every segment, in order (the last one feeds the head)."""
        outs = []
        for segment in self.segments:
            x = segment(x)
            outs.append(x)
        return outs

    @torch.no_grad()
    def feature_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample output shape of every segment, from a dummy forward pass on CPU."""
        was_training = self.training
        self.eval()
        try:
            param = next(self.parameters())
            x = torch.zeros(1, *self.input_shape, device=param.device, dtype=param.dtype)
            return [tuple(t.shape[1:]) for t in self.forward_intermediates(x)]
        finally:
            self.train(was_training)
