"""Backbone registry (timm style): ``@register_backbone`` on thin builders, lookup by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ddecs_search.errors import ConfigError
from ddecs_search.models._backbone import Backbone

BackboneBuilder = Callable[..., Backbone]


@dataclass(frozen=True)
class BackboneInfo:
    """What is known about a registered backbone without building it."""

    name: str
    input_shape: tuple[int, int, int]
    exit_point_names: tuple[str, ...]
    description: str
    builder: BackboneBuilder


_REGISTRY: dict[str, BackboneInfo] = {}


def register_backbone(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    exit_point_names: tuple[str, ...],
    description: str = "",
) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Register ``builder(num_classes=..., **kwargs) -> Backbone`` under ``name``."""

    def decorator(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = BackboneInfo(
            name, input_shape, exit_point_names, description or (builder.__doc__ or ""), builder
        )
        return builder

    return decorator


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    return sorted(_REGISTRY)


def backbone_info(name: str, *, path: str = "backbone") -> BackboneInfo:
    """The registration record of ``name``; unknown names raise a ConfigError listing valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"'{path}': unknown backbone {name!r}; valid: {', '.join(list_backbones())}"
        ) from None


def create_backbone(name: str, *, num_classes: int, **kwargs: object) -> Backbone:
    """Build backbone ``name`` for ``num_classes`` classes and check it matches its registration."""
    info = backbone_info(name)
    model = info.builder(num_classes=num_classes, **kwargs)
    if model.exit_point_names != info.exit_point_names or model.input_shape != info.input_shape:
        raise AssertionError(f"backbone {name!r} does not match its registration")  # programming error
    return model
