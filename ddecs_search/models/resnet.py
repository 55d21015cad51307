"""Residual networks for 32×32 RGB inputs: He et al.'s CIFAR ResNets and a CIFAR-stem ResNet-18.

- ``resnet20`` / ``resnet56``: the CIFAR ResNets of He et al. (2016, §4.2): a conv3×3(16) stem, three
  stages of n basic blocks (16/32/64 channels, n = 3 / 9), zero-padding identity shortcuts where the
  shape changes (option A), global average pool and a linear classifier. An exit point follows every
  residual block except the last one (``"layer1.0"``, ..., ``"layer3.<n-2>"``).
- ``resnet18``: torchvision's ResNet-18 adapted to 32×32 (3×3 stride-1 stem, no max-pool; 64/128/256/512,
  2 blocks per stage, projection shortcuts). Exit points follow the stages ``layer1``..``layer3``
  (``layer4`` feeds the head). ``resnet18_blocks`` is the same network with a point after every block
  but the last (7 points). Both take torchvision ImageNet weights through
  :func:`~ddecs_search.models._pretrained.load_torchvision_weights` (stem conv and fc are skipped).

The stem always shares the first segment with the first block (or stage), since an exit right after the
stem would be too shallow to be useful.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ddecs_search.models._backbone import Backbone
from ddecs_search.models._pretrained import tag_torchvision
from ddecs_search.models._registry import register_backbone

_INPUT_SHAPE = (3, 32, 32)
Shortcut = Literal["pad", "projection"]


class _PadShortcut(nn.Module):
    """He et al.'s option A: subsample spatially and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra = extra_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C + extra, H/s, W/s)
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class BasicBlock(nn.Module):
    """Two conv3×3-BN layers and a shortcut; child names follow torchvision so its weights map on."""

    def __init__(self, c_in: int, c_out: int, *, stride: int, shortcut: Shortcut) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            if shortcut == "pad":
                self.downsample = _PadShortcut(c_out - c_in, stride)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Not in place on x: the input may also feed an exit branch.
        return self.relu(out + identity)


def _block_names(blocks_per_stage: Sequence[int]) -> list[str]:
    return [f"layer{s}.{j}" for s, n in enumerate(blocks_per_stage, start=1) for j in range(n)]


def _resnet(
    *,
    widths: Sequence[int],
    blocks_per_stage: Sequence[int],
    shortcut: Shortcut,
    per_block: bool,
    num_classes: int,
    torchvision: bool,
) -> Backbone:
    """A 32×32 ResNet cut after every block (``per_block``) or after every stage.

    ``torchvision``: tag the modules with torchvision's ResNet names (for ImageNet weights).
    """

    def tag(module: nn.Module, name: str) -> nn.Module:
        return tag_torchvision(module, name) if torchvision else module

    stem = nn.Sequential(
        tag(nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False), "conv1"),
        tag(nn.BatchNorm2d(widths[0]), "bn1"),
        nn.ReLU(inplace=True),
    )  # (w0, 32, 32)
    stages: list[list[nn.Module]] = []  # stage s outputs (widths[s-1], 32 / 2^(s-1), 32 / 2^(s-1))
    c_in = widths[0]
    for s, (c_out, n) in enumerate(zip(widths, blocks_per_stage, strict=False), start=1):
        stride = 1 if s == 1 else 2
        blocks = [
            BasicBlock(c_in if j == 0 else c_out, c_out, stride=stride if j == 0 else 1, shortcut=shortcut)
            for j in range(n)
        ]
        stages.append([tag(block, f"layer{s}.{j}") for j, block in enumerate(blocks)])
        c_in = c_out
    if per_block:
        units: list[nn.Module] = [block for stage in stages for block in stage]
        names = _block_names(blocks_per_stage)[:-1]
    else:
        units = [nn.Sequential(*stage) for stage in stages]
        names = [f"layer{s}" for s in range(1, len(stages))]
    segments = [nn.Sequential(stem, units[0]), *units[1:]]
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),  # (w_last,)
        tag(nn.Linear(widths[-1], num_classes), "fc"),
    )
    backbone = Backbone(
        segments, head, exit_point_names=names, input_shape=_INPUT_SHAPE, num_classes=num_classes
    )
    _init_weights(backbone)
    return backbone


def _init_weights(model: nn.Module) -> None:
    # He initialisation for convs, as in the paper and torchvision; BN starts as the identity.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _cifar_resnet(depth: int, num_classes: int) -> Backbone:
    n = (depth - 2) // 6
    return _resnet(
        widths=(16, 32, 64),
        blocks_per_stage=(n, n, n),
        shortcut="pad",
        per_block=True,
        num_classes=num_classes,
        torchvision=False,
    )


@register_backbone(
    "resnet20",
    input_shape=_INPUT_SHAPE,
    exit_point_names=tuple(_block_names((3, 3, 3))[:-1]),
    description="CIFAR ResNet-20 (He et al.), 32x32x3: 3 stages x 3 basic blocks, 16/32/64 channels",
)
def resnet20(*, num_classes: int = 10) -> Backbone:
    """He et al.'s ResNet-20 for CIFAR; exits may follow each residual block but the last (8 points)."""
    return _cifar_resnet(20, num_classes)


@register_backbone(
    "resnet56",
    input_shape=_INPUT_SHAPE,
    exit_point_names=tuple(_block_names((9, 9, 9))[:-1]),
    description="CIFAR ResNet-56 (He et al.), 32x32x3: 3 stages x 9 basic blocks, 16/32/64 channels",
)
def resnet56(*, num_classes: int = 10) -> Backbone:
    """He et al.'s ResNet-56 for CIFAR; exits may follow each residual block but the last (26 points)."""
    return _cifar_resnet(56, num_classes)


def _resnet18(*, per_block: bool, num_classes: int) -> Backbone:
    return _resnet(
        widths=(64, 128, 256, 512),
        blocks_per_stage=(2, 2, 2, 2),
        shortcut="projection",
        per_block=per_block,
        num_classes=num_classes,
        torchvision=True,
    )


@register_backbone(
    "resnet18",
    input_shape=_INPUT_SHAPE,
    exit_point_names=("layer1", "layer2", "layer3"),
    description="ResNet-18 for 32x32x3 (3x3 stem, no max-pool), exit points after stages layer1..layer3",
)
def resnet18(*, num_classes: int = 10) -> Backbone:
    """ResNet-18 with a CIFAR stem; exits may follow each of its first three stages."""
    return _resnet18(per_block=False, num_classes=num_classes)


@register_backbone(
    "resnet18_blocks",
    input_shape=_INPUT_SHAPE,
    exit_point_names=tuple(_block_names((2, 2, 2, 2))[:-1]),
    description="ResNet-18 for 32x32x3 (3x3 stem, no max-pool), exit points after every block but the last",
)
def resnet18_blocks(*, num_classes: int = 10) -> Backbone:
    """ResNet-18 with a CIFAR stem; exits may follow each residual block but the last (7 points)."""
    return _resnet18(per_block=True, num_classes=num_classes)
