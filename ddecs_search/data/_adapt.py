"""Adapting images to a backbone's input shape: resize, channel conversion, normalisation.

Any dataset must run with any backbone (Fashion-MNIST on a CIFAR ResNet, CIFAR on LeNet), so inputs are
resized to the backbone's ``H x W`` (bilinear, antialiased when shrinking), grey images are repeated to
three channels and RGB images are turned to grey by luminance (ITU-R 601-2 weights, as PIL's
``convert("L")``). In-memory sets are adapted once, vectorised, in chunks: per-item PIL transforms cost
minutes per epoch on a small CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddecs_search.errors import ConfigError

#: ITU-R 601-2 luma weights for R, G, B (what PIL's ``convert("L")`` uses).
LUMA = (0.299, 0.587, 0.114)


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate a backbone input shape ``(C, H, W)``: C is 1 or 3, H and W positive."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or shape[1] < 1 or shape[2] < 1:
        raise ConfigError(
            f"input_shape must be (C, H, W) with C in (1, 3) and H, W >= 1, got {tuple(input_shape)}"
        )
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class ChannelPlan:
    """How native channels become the backbone's channels.

    ``stored`` channels are kept in memory and ``served`` ones are returned: a grey image for a 3-channel
    backbone is stored once and expanded on access (a view), which keeps a 60k-image set 3x smaller.
    ``mean``/``std`` normalise the stored channels.
    """

    stored: int
    served: int
    luma: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]


def channel_plan(native: int, served: int, mean: Sequence[float], std: Sequence[float]) -> ChannelPlan:
    """Plan the channel conversion from ``native`` to ``served`` channels with the dataset's mean/std.

    RGB→grey normalises with the luma-weighted mean (exact, the map is linear) and the luma-weighted std
    (the exact value when channels are perfectly correlated and an upper bound otherwise; close for
    natural images, and it keeps normalisation a per-dataset constant).
    """
    mean, std = tuple(mean), tuple(std)
    if native == served:
        return ChannelPlan(native, served, False, mean, std)
    if native == 1:
        return ChannelPlan(1, served, False, mean, std)
    if native == 3 and served == 1:
        weighted = lambda v: (sum(w * x for w, x in zip(LUMA, v, strict=False)),)  # noqa: E731
        return ChannelPlan(1, 1, True, weighted(mean), weighted(std))
    raise ConfigError(f"cannot adapt images with {native} channels to a backbone with {served} channels")


def adapt_images(
    images: torch.Tensor, size: tuple[int, int], plan: ChannelPlan, *, chunk: int = 4096
) -> torch.Tensor:
    """Turn ``uint8`` images ``(N, C, h, w)`` into normalised ``float32`` ``(N, plan.stored, H, W)``.

    Works in chunks of ``chunk`` images so the float intermediate stays small.
    """
    n, _, h, w = images.shape
    out = torch.empty((n, plan.stored, *size), dtype=torch.float32)
    mean = torch.tensor(plan.mean, dtype=torch.float32).view(1, -1, 1, 1)
    inv_std = 1.0 / torch.tensor(plan.std, dtype=torch.float32).view(1, -1, 1, 1)
    luma = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    shrink = size[0] < h or size[1] < w
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.float32).div_(255.0)  # (B, C, h, w) in [0, 1]
        if plan.luma:
            x = (x * luma).sum(1, keepdim=True)  # (B, 1, h, w)
        if (h, w) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        out[start : start + chunk] = (x - mean) * inv_std
    return out


def pil_transform(input_shape: tuple[int, int, int], mean: float = 0.5, std: float = 0.5) -> Callable:
    """Per-image transform for folders of PIL images (already RGB): resize, grey if needed, normalise.

    Built from torchvision transforms only, so it pickles into DataLoader workers.
    """
    from torchvision import transforms

    c, h, w = input_shape
    ops: list[Callable] = [transforms.Resize((h, w), antialias=True)]
    if c == 1:
        ops.append(transforms.Grayscale(num_output_channels=1))
    ops += [transforms.ToTensor(), transforms.Normalize([mean] * c, [std] * c)]
    return transforms.Compose(ops)
