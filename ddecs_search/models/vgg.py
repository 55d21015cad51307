"""VGG-16 with BatchNorm for 32×32 RGB inputs (the usual CIFAR variant).

Thirteen conv3×3-BN-ReLU layers in five blocks (64,64 | 128,128 | 256×3 | 512×3 | 512×3), each block
followed by a 2×2 max-pool, so the fifth block leaves (512, 1, 1); then a classifier
Linear(512→512) + ReLU + Dropout(0.5) + Linear(512→classes). The classifier's hidden layer is its own
last segment, so an exit point can follow each of the five conv blocks (``block1``..``block5``)
without any exit sitting at the depth of the final classifier.

The conv and BN layers are tagged with torchvision's ``vgg16_bn`` names (``features.<i>``), so ImageNet
weights load through :func:`~ddecs_search.models._pretrained.load_torchvision_weights`; the classifier's
shapes differ from ImageNet's 25088→4096→4096→1000 and is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ddecs_search.models._backbone import Backbone
from ddecs_search.models._pretrained import tag_torchvision
from ddecs_search.models._registry import register_backbone

_INPUT_SHAPE = (3, 32, 32)
_VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
_EXIT_POINT_NAMES = ("block1", "block2", "block3", "block4", "block5")


def _vgg_bn(blocks: Sequence[Sequence[int]], *, num_classes: int) -> Backbone:
    segments: list[nn.Module] = []
    c_in, tv_index = 3, 0  # tv_index: position in torchvision's ``features`` Sequential
    for widths in blocks:
        layers: list[nn.Module] = []
        for c_out in widths:
            layers += [
                tag_torchvision(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), f"features.{tv_index}"),
                tag_torchvision(nn.BatchNorm2d(c_out), f"features.{tv_index + 1}"),
                nn.ReLU(inplace=True),
            ]
            c_in, tv_index = c_out, tv_index + 3
        layers.append(nn.MaxPool2d(2))
        tv_index += 1
        segments.append(nn.Sequential(*layers))  # block b: (widths[-1], 32 / 2^b, 32 / 2^b)
    segments.append(
        nn.Sequential(
            nn.Flatten(),  # (512,)
            tag_torchvision(nn.Linear(c_in, 512), "classifier.0"),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )  # (512,)
    )
    head = tag_torchvision(nn.Linear(512, num_classes), "classifier.6")
    backbone = Backbone(
        segments, head, exit_point_names=_EXIT_POINT_NAMES, input_shape=_INPUT_SHAPE, num_classes=num_classes
    )
    _init_weights(backbone)
    return backbone


def _init_weights(model: nn.Module) -> None:
    # torchvision's VGG initialisation.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register_backbone(
    "vgg16_bn",
    input_shape=_INPUT_SHAPE,
    exit_point_names=_EXIT_POINT_NAMES,
    description="VGG-16 with BN, 32x32x3 (CIFAR variant): 13 conv3x3 in 5 blocks, FC 512-512",
)
def vgg16_bn(*, num_classes: int = 10) -> Backbone:
    """VGG-16-BN for 32×32 inputs; exits may follow each of its five conv blocks."""
    return _vgg_bn(_VGG16, num_classes=num_classes)
