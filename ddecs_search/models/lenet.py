"""LeNet-style CNN for 28×28 greyscale inputs (Fashion-MNIST, MNIST): the default job's backbone."""

from __future__ import annotations

from torch import nn

from ddecs_search.models._backbone import Backbone
from ddecs_search.models._registry import register_backbone


def _conv_block(c_in: int, c_out: int, kernel: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@register_backbone(
    "lenet",
    input_shape=(1, 28, 28),
    exit_point_names=("conv1", "conv2", "conv3"),
    description="LeNet-style CNN, 28x28x1: conv5x5(32)+pool, conv3x3(64)+pool, conv3x3(128)+pool, fc256",
)
def lenet(*, num_classes: int = 10) -> Backbone:
    """LeNet-style network; exits may follow each of its three conv blocks."""
    segments = [
        _conv_block(1, 32, 5, pool=True),  # (B, 32, 14, 14)
        _conv_block(32, 64, 3, pool=True),  # (B, 64, 7, 7)
        _conv_block(64, 128, 3, pool=True),  # (B, 128, 3, 3)
        nn.Sequential(nn.Flatten(), nn.Linear(128 * 3 * 3, 256), nn.ReLU(inplace=True), nn.Dropout(0.2)),
    ]
    head = nn.Linear(256, num_classes)
    return Backbone(
        segments,
        head,
        exit_point_names=("conv1", "conv2", "conv3"),
        input_shape=(1, 28, 28),
        num_classes=num_classes,
    )
