"""Backbones with candidate exit points, exit branches and the multi-exit network.

Importing this package registers every built-in backbone (one module per family).
"""

from ddecs_search.models import lenet as _lenet  # noqa: F401  (registers)
from ddecs_search.models._backbone import Backbone
from ddecs_search.models._branch import build_branch
from ddecs_search.models._digest import weights_digest
from ddecs_search.models._layout import compute_layout
from ddecs_search.models._multi_exit import EarlyExitOutput, MultiExitNet, OnlineExitPolicy
from ddecs_search.models._pretrained import load_torchvision_weights
from ddecs_search.models._registry import (
    BackboneInfo,
    backbone_info,
    create_backbone,
    list_backbones,
    register_backbone,
)

for _family in ("alexnet", "resnet", "vgg"):
    try:  # families added as separate modules; each registers itself on import
        __import__(f"ddecs_search.models.{_family}")
    except ModuleNotFoundError as _exc:  # pragma: no cover - only while a family is not written yet
        if _exc.name != f"ddecs_search.models.{_family}":
            raise

__all__ = [
    "Backbone",
    "BackboneInfo",
    "EarlyExitOutput",
    "MultiExitNet",
    "OnlineExitPolicy",
    "backbone_info",
    "build_branch",
    "compute_layout",
    "create_backbone",
    "list_backbones",
    "load_torchvision_weights",
    "register_backbone",
    "weights_digest",
]
