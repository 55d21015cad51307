"""Exit-branch builder: a small :class:`~ddecs_search.config.BranchSpec` becomes a module.

Shapes are inferred from the backbone's feature shape at the exit point, so one spec fits any exit.
"""

from __future__ import annotations

from torch import nn

from ddecs_search.config import BranchSpec


def build_branch(spec: BranchSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Build an exit branch for features of per-sample shape ``in_shape``.

    Spatial features ``(C, H, W)`` get ``spec.conv_layers`` conv3×3-BN-ReLU blocks, an adaptive pool to
    ``min(pool_size, H, W)`` (never up-sampling) and a flatten. Flat features ``(F,)`` (an exit after a
    fully connected layer) skip the conv/pool part. Then an optional hidden FC layer and the classifier.
    """
    layers: list[nn.Module] = []
    if len(in_shape) == 3:
        channels, height, width = in_shape
        for _ in range(spec.conv_layers):
            layers += [
                nn.Conv2d(channels, spec.channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(spec.channels),
                nn.ReLU(inplace=True),
            ]
            channels = spec.channels
        size = max(1, min(spec.pool_size, height, width))
        pool = nn.AdaptiveAvgPool2d(size) if spec.pool == "avg" else nn.AdaptiveMaxPool2d(size)
        layers += [pool, nn.Flatten()]
        features = channels * size * size
    elif len(in_shape) == 1:
        features = in_shape[0]
    else:
        raise ValueError(f"exit branches take (C, H, W) or (F,) features, got shape {in_shape}")
    if spec.hidden > 0:
        layers += [nn.Linear(features, spec.hidden), nn.ReLU(inplace=True)]
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        features = spec.hidden
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)
