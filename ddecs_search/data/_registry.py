"""Dataset registry (timm style): ``@register_dataset`` on thin builders, lookup by name.

A registered dataset is a :class:`DatasetSource`: what is known about it without touching the disk
(:class:`DatasetInfo`), how to find its files without downloading (``locate``) and how to read one split
as raw ``uint8`` images (``load``). Preprocessing, caching and splitting are shared by every source and
live elsewhere, so a new dataset only has to say where its bytes are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ddecs_search.errors import ConfigError

IMAGEFOLDER_PREFIX = "imagefolder:"


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset (no file is read to produce them).

    ``image_size`` is ``(H, W)``, or ``None`` for an image folder whose images may have any size.
    ``mean``/``std`` are per native channel, on pixel values scaled to [0, 1].
    """

    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    how: str = ""


@dataclass(frozen=True)
class RawSplit:
    """One split as read from disk, before any adaptation to a backbone.

    ``images`` is ``uint8`` ``(N, C, H, W)``, ``labels`` is ``int64`` ``(N,)``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.dim() == 4, self.images.shape
        assert self.labels.shape == (self.images.shape[0],), (self.labels.shape, self.images.shape)


@dataclass(frozen=True)
class DatasetSource:
    """A registered dataset: its info, where its files are, and how to read a split.

    ``locate(root)`` returns the folder holding the files, or ``None``; it never downloads.
    ``load(root, train, allow_download)`` returns the raw split or raises ``DataError`` saying how to get it.
    """

    info: DatasetInfo
    locate: Callable[[Path], Path | None]
    load: Callable[[Path, bool, bool], RawSplit]


_REGISTRY: dict[str, Callable[[], DatasetSource]] = {}


def register_dataset(name: str) -> Callable[[Callable[[], DatasetSource]], Callable[[], DatasetSource]]:
    """Register ``builder() -> DatasetSource`` under ``name`` (the builder runs on lookup, so it is cheap)."""

    def decorator(builder: Callable[[], DatasetSource]) -> Callable[[], DatasetSource]:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is already registered")
        if name.startswith(IMAGEFOLDER_PREFIX):
            raise ValueError(f"dataset names may not start with {IMAGEFOLDER_PREFIX!r}: {name!r}")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted (``imagefolder:<path>`` is accepted besides these)."""
    return sorted(_REGISTRY)


def get_source(name: str, *, path: str = "dataset.name") -> DatasetSource:
    """The registered source of ``name``; unknown names raise a ConfigError listing the valid ones."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        valid = ", ".join([*list_datasets(), f"{IMAGEFOLDER_PREFIX}<path>"])
        raise ConfigError(f"'{path}': unknown dataset {name!r}; valid: {valid}") from None
    source = builder()
    assert source.info.name == name, (source.info.name, name)
    return source
