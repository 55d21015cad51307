"""Load torchvision's ImageNet weights into a backbone whose modules mirror a torchvision model.

Builders mark the modules that have a torchvision counterpart with :func:`tag_torchvision` (for example
our ResNet-18's second block gets ``"layer1.1"``, a VGG conv gets ``"features.7"``); the loader maps
state-dict keys through those tags, so the segment layout (per stage, per block) does not matter.
Tensors whose shapes differ — the 3×3 CIFAR stem against ImageNet's 7×7, the classifiers — are
skipped and reported. Nothing is ever downloaded: the user supplies the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import torch
from torch import nn

from ddecs_search.errors import DataError

logger = logging.getLogger(__name__)

_TAG = "torchvision_name"
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def tag_torchvision(module: ModuleT, name: str) -> ModuleT:
    """Record that ``module`` corresponds to torchvision's submodule ``name``; returns ``module``."""
    setattr(module, _TAG, name)
    return module


class SkippedTensor(NamedTuple):
    """A tensor of the file left out because its shape differs from ours."""

    key: str  # ours
    torchvision_key: str
    file_shape: tuple[int, ...]
    shape: tuple[int, ...]  # ours

    def __str__(self) -> str:
        return f"{self.key} <- {self.torchvision_key}: shape {self.file_shape} in the file, {self.shape} here"


@dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_torchvision_weights` did, by key.

    Attributes:
        loaded: our state-dict keys that received a tensor from the file.
        skipped: tensors whose shapes differ (ours are left as they were).
        missing: our keys whose torchvision counterpart is not in the file (left as they were).
        unused: keys of the file that no module of ours corresponds to.
    """

    loaded: tuple[str, ...]
    skipped: tuple[SkippedTensor, ...]
    missing: tuple[str, ...]
    unused: tuple[str, ...]


def torchvision_key_map(backbone: nn.Module) -> dict[str, str]:
    """Our state-dict key -> torchvision state-dict key, for every tensor of a tagged module."""
    mapping: dict[str, str] = {}
    for prefix, module in backbone.named_modules():
        tv_name = getattr(module, _TAG, None)
        if tv_name is None:
            continue
        for key in module.state_dict():
            ours = f"{prefix}.{key}" if prefix else key
            assert ours not in mapping, f"nested torchvision tags at {ours}"  # builders tag disjoint modules
            mapping[ours] = f"{tv_name}.{key}"
    return mapping


def load_torchvision_weights(backbone: nn.Module, path: str | Path) -> PretrainedReport:
    """Copy the tensors of a torchvision state-dict file (``resnet18``, ``vgg16_bn``) into ``backbone``.

    The file is what ``torch.save(torchvision.models.resnet18(weights="IMAGENET1K_V1").state_dict(), path)``
    writes (torchvision's own cache files, ``~/.cache/torch/hub/checkpoints/resnet18-*.pth``, are the same
    format). It is read with ``weights_only=True``. Tensors whose shapes differ from ours are skipped.

    Args:
        backbone: a backbone built by a builder that tags its torchvision counterparts
            (``resnet18``, ``resnet18_blocks``, ``vgg16_bn``).
        path: the state-dict file.

    Returns:
        A :class:`PretrainedReport`; skipped tensors are also logged at INFO level.

    Raises:
        DataError: the file does not exist, is not a state dict, or none of its keys fit the backbone.
        ValueError: the backbone has no torchvision counterpart.
    """
    mapping = torchvision_key_map(backbone)
    if not mapping:
        raise ValueError(
            f"{type(backbone).__name__} has no modules tagged with a torchvision name, so torchvision "
            "weights cannot be mapped onto it; pretrained weights fit resnet18, resnet18_blocks, vgg16_bn"
        )
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"pretrained weights file {str(path)!r} does not exist. ddecs-search never downloads weights: "
            "on a machine with internet run e.g. torch.save(torchvision.models.resnet18("
            "weights='IMAGENET1K_V1').state_dict(), 'resnet18.pth') (or copy torchvision's cached "
            "~/.cache/torch/hub/checkpoints/*.pth) and pass that file"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # training checkpoints that wrap the state dict
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{str(path)!r} is not a state dict (a mapping of names to tensors)")

    ours = backbone.state_dict()
    new: dict[str, torch.Tensor] = {}
    skipped: list[SkippedTensor] = []
    missing: list[str] = []
    for key, tv_key in mapping.items():
        if tv_key not in state:
            missing.append(key)
        elif state[tv_key].shape != ours[key].shape:
            skipped.append(SkippedTensor(key, tv_key, tuple(state[tv_key].shape), tuple(ours[key].shape)))
        else:
            new[key] = state[tv_key]
    if not any(t.dim() > 0 for t in new.values()):  # BN's scalar batch counters fit anything
        example = next(iter(mapping.values()))
        raise DataError(
            f"{str(path)!r} holds no tensor that fits this backbone (expected torchvision keys such as "
            f"{example!r}); is it the state dict of the matching torchvision model?"
        )
    result = backbone.load_state_dict(new, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # keys come from our own state dict
    used = set(mapping.values())
    report = PretrainedReport(
        loaded=tuple(new),
        skipped=tuple(skipped),
        missing=tuple(missing),
        unused=tuple(k for k in state if k not in used),
    )
    for item in skipped:
        logger.info("pretrained weights: skipped %s", item)
    return report
