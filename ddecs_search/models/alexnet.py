"""AlexNet for 32×32 RGB inputs (CIFAR-10/100), as in the early-exit reference, plus a BatchNorm variant.

The reference network is five conv3×3 layers (64, 192, 384, 256, 256 channels; max-pool after the
1st, 2nd and 5th) and a three-layer classifier 4096 → 1024 → 1024 → classes with ReLU and dropout 0.5
between the fully connected layers (256 · 4 · 4 = 4096). Each conv layer is one segment, so a candidate
exit point follows every conv layer; the hidden FC layers form the last segment and the final Linear is
the head:

=====  ========  ====================  ================================
index  name      features at the exit  segment
=====  ========  ====================  ================================
0      ``conv1``  (64, 16, 16)         conv(3→64) + ReLU + max-pool
1      ``conv2``  (192, 8, 8)          conv(64→192) + ReLU + max-pool
2      ``conv3``  (384, 8, 8)          conv(192→384) + ReLU
3      ``conv4``  (256, 8, 8)          conv(384→256) + ReLU
4      ``conv5``  (256, 4, 4)          conv(256→256) + ReLU + max-pool
–      –          (1024,)              FC 4096→1024→1024 (feeds the head)
=====  ========  ====================  ================================

The reference places its two exits after ``conv1`` and ``conv4``: :data:`REFERENCE_EXIT_POINTS`.
"""

from __future__ import annotations

from torch import nn

from ddecs_search.config import BranchSpec
from ddecs_search.models._backbone import Backbone
from ddecs_search.models._registry import register_backbone

_INPUT_SHAPE = (3, 32, 32)
_EXIT_POINT_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")

REFERENCE_EXIT_POINTS: tuple[int, int] = (0, 3)
"""Indices of the reference's two early exits: after ``conv1`` (64, 16, 16) and ``conv4`` (256, 8, 8)."""


def reference_branch_spec(in_channels: int) -> BranchSpec:
    """The reference's exit branch for features with ``in_channels`` channels, as a :class:`BranchSpec`.

    The reference branch is conv3×3(C → C/2) + ReLU → adaptive avg-pool 4×4 → FC(→256) + ReLU +
    dropout 0.5 → FC(→classes). :func:`~ddecs_search.models.build_branch` builds exactly that except
    that it puts a BatchNorm between the conv and the ReLU (our branches always have one); that
    difference is accepted. The reference's exits are ::

        specs = [reference_branch_spec(64), reference_branch_spec(256)]
        MultiExitNet(alexnet(), REFERENCE_EXIT_POINTS, specs)

    Args:
        in_channels: channels of the backbone features at the exit point (64 after conv1, 256 after conv4).
    """
    return BranchSpec(
        conv_layers=1, channels=max(1, in_channels // 2), pool="avg", pool_size=4, hidden=256, dropout=0.5
    )


def _conv(c_in: int, c_out: int, *, batch_norm: bool, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _alexnet(*, num_classes: int, batch_norm: bool) -> Backbone:
    segments = [
        _conv(3, 64, batch_norm=batch_norm, pool=True),  # (64, 16, 16)
        _conv(64, 192, batch_norm=batch_norm, pool=True),  # (192, 8, 8)
        _conv(192, 384, batch_norm=batch_norm),  # (384, 8, 8)
        _conv(384, 256, batch_norm=batch_norm),  # (256, 8, 8)
        _conv(256, 256, batch_norm=batch_norm, pool=True),  # (256, 4, 4)
        nn.Sequential(  # the classifier's hidden layers; an exit here would sit next to the head
            nn.Flatten(),  # (4096,)
            nn.Linear(256 * 4 * 4, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        ),  # (1024,)
    ]
    head = nn.Linear(1024, num_classes)
    return Backbone(
        segments, head, exit_point_names=_EXIT_POINT_NAMES, input_shape=_INPUT_SHAPE, num_classes=num_classes
    )


@register_backbone(
    "alexnet",
    input_shape=_INPUT_SHAPE,
    exit_point_names=_EXIT_POINT_NAMES,
    description="AlexNet, 32x32x3 (early-exit reference): conv3x3 64/192/384/256/256, FC 1024-1024; no BN",
)
def alexnet(*, num_classes: int = 10) -> Backbone:
    """The reference's AlexNet (no BatchNorm); exits may follow each of its five conv layers."""
    return _alexnet(num_classes=num_classes, batch_norm=False)


@register_backbone(
    "alexnet_bn",
    input_shape=_INPUT_SHAPE,
    exit_point_names=_EXIT_POINT_NAMES,
    description="AlexNet, 32x32x3, with BatchNorm after every conv (easier to train than the reference)",
)
def alexnet_bn(*, num_classes: int = 10) -> Backbone:
    """AlexNet with conv-BN-ReLU layers; same exit points as ``alexnet``."""
    return _alexnet(num_classes=num_classes, batch_norm=True)
