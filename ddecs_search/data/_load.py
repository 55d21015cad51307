"""``load_splits``: a dataset name and a backbone input shape in, train/val/test datasets out.

Registered (torchvision) sets are read once, adapted to the input shape once and kept in memory; a small
per-process LRU keyed on ``(name, root, input_shape)`` lets one process evaluate several candidates
without reading or resizing again. Splits and subsets are index views of those tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset, Subset

from ddecs_search.data._adapt import adapt_images, channel_plan, check_input_shape
from ddecs_search.data._cache import LRU
from ddecs_search.data._imagefolder import imagefolder_info, load_imagefolder
from ddecs_search.data._locations import downloads_allowed, resolve_root
from ddecs_search.data._registry import IMAGEFOLDER_PREFIX, DatasetInfo, DatasetSource, RawSplit, get_source
from ddecs_search.data._shared_cache import shared_prepared
from ddecs_search.data._splits import (
    TEST_SEED,
    TEST_SUBSET_STREAM,
    TRAIN_SUBSET_STREAM,
    VAL_SUBSET_STREAM,
    selection_indices,
    split_indices,
    subset_indices,
)
from ddecs_search.data._tensors import InMemoryImages
from ddecs_search.errors import DataError

if TYPE_CHECKING:
    from ddecs_search.config import DataConfig

#: Preprocessed datasets kept per process (a 60k-image set at 3x32x32 float32 is ~0.7 GB).
CACHE_SIZE = 2


@dataclass(frozen=True)
class DataSplits:
    """The three splits of one dataset, adapted to one backbone input shape.

    Each split yields ``(float32 tensor (C, H, W) normalised, int label)``. ``val`` is carved from the
    training set; ``test`` is the dataset's own test set (or, for an image folder without ``test/``, a
    fixed-seed carve of ``train/``).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    class_names: tuple[str, ...]
    name: str
    input_shape: tuple[int, int, int]


@dataclass(frozen=True)
class _Prepared:
    train: InMemoryImages
    test: InMemoryImages
    class_names: tuple[str, ...]


#: Raw uint8 splits of the last dataset read (55 MB for Fashion-MNIST, 180 MB for CIFAR): a second
#: input shape on the same dataset skips the file read.
_RAW = LRU[tuple[RawSplit, RawSplit]](1)
#: Adapted float32 datasets per (name, root, input shape).
_PREPARED = LRU[_Prepared](CACHE_SIZE)


def clear_cache() -> None:
    """Drop the datasets held in memory (tests, or to free memory)."""
    _RAW.clear()
    _PREPARED.clear()


def _read_raw(source: DatasetSource, root: Path, allow_download: bool) -> tuple[RawSplit, RawSplit]:
    """Both raw splits of ``source``, checked against its registration."""
    info = source.info
    splits = (source.load(root, True, allow_download), source.load(root, False, allow_download))
    for raw in splits:
        if raw.images.shape[1] != info.channels or len(raw.class_names) != info.num_classes:
            raise DataError(
                f"{info.name} files under {root} hold {raw.images.shape[1]}-channel images of "
                f"{len(raw.class_names)} classes, expected {info.channels} channels and "
                f"{info.num_classes} classes; delete them and try again"
            )
    return splits


def _prepared(
    source: DatasetSource, root: Path, shape: tuple[int, int, int], allow_download: bool
) -> _Prepared:
    """Both splits of ``source`` adapted to ``shape`` (vectorised, once per process and key)."""
    info = source.info

    def prepare() -> _Prepared:
        raw_train, raw_test = _RAW.get_or_create(
            (info.name, str(root)), lambda: _read_raw(source, root, allow_download)
        )
        plan = channel_plan(info.channels, shape[0], info.mean, info.std)

        def adapt(raw: RawSplit) -> InMemoryImages:
            images = adapt_images(raw.images, (shape[1], shape[2]), plan)  # (N, stored C, H, W) float32
            return InMemoryImages(images, raw.labels, channels=plan.served)

        return _Prepared(adapt(raw_train), adapt(raw_test), raw_train.class_names)

    key = (info.name, str(root), shape)
    # a node-wide decoded copy when a search set one up (data/_shared_cache.py), else decode here
    return _PREPARED.get_or_create(key, lambda: shared_prepared(key, prepare))


def _take(dataset: Dataset, positions: torch.Tensor) -> Dataset:
    """``positions`` of ``dataset``: a view for in-memory sets, a flat ``Subset`` otherwise."""
    if isinstance(dataset, InMemoryImages):
        return dataset.subset(positions)
    if isinstance(dataset, Subset):
        base = torch.as_tensor(dataset.indices, dtype=torch.long)
        return Subset(dataset.dataset, base[positions].tolist())
    return Subset(dataset, positions.tolist())


def dataset_info(name: str) -> DatasetInfo:
    """What is known about dataset ``name`` (registered or ``imagefolder:<path>``) without loading it.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
        DataError: an image folder that does not exist or lacks ``train/``.
    """
    if name.startswith(IMAGEFOLDER_PREFIX):
        return imagefolder_info(name)
    return get_source(name).info


def load_splits(
    cfg: DataConfig,
    input_shape: Sequence[int],
    *,
    allow_download: bool | None = None,
) -> DataSplits:
    """Load dataset ``cfg.name`` adapted to ``input_shape`` and split it deterministically.

    Val is carved from train with ``cfg.val_fraction`` and ``cfg.split_seed``; ``cfg.train_subset`` and
    ``cfg.val_subset`` then keep the first k of a permutation seeded by ``cfg.split_seed``, and
    ``cfg.test_subset`` the first k of a permutation with a fixed seed (the same test samples whatever
    the split seed).

    Args:
        cfg: dataset name, root (``None`` = ``$DDECS_DATA`` or ``~/.cache/ddecs_search/data``), split.
        input_shape: the backbone's ``(C, H, W)``; images are resized and their channels converted.
        allow_download: may torchvision download missing files? ``None`` = yes unless ``DDECS_OFFLINE=1``.

    Raises:
        ConfigError: unknown dataset name or invalid input shape.
        DataError: data missing (the message says how to get it) or malformed.
    """
    shape = check_input_shape(input_shape)
    if cfg.name.startswith(IMAGEFOLDER_PREFIX):
        pool, test, names = load_imagefolder(cfg.name, shape)
        class_names = tuple(names)
    else:
        source = get_source(cfg.name)
        prepared = _prepared(source, resolve_root(cfg.root), shape, downloads_allowed(allow_download))
        pool, test, class_names = prepared.train, prepared.test, prepared.class_names
    if len(pool) < 2:
        raise DataError(f"dataset {cfg.name!r} has {len(pool)} training samples; at least 2 are needed")
    seed = cfg.split_seed
    train_idx, val_idx = split_indices(len(pool), cfg.val_fraction, seed)
    train_idx = subset_indices(train_idx, cfg.train_subset, seed, TRAIN_SUBSET_STREAM)
    val_idx = subset_indices(val_idx, cfg.val_subset, seed, VAL_SUBSET_STREAM)
    if cfg.test_subset is not None and cfg.test_subset < len(test):
        test = _take(
            test, subset_indices(torch.arange(len(test)), cfg.test_subset, TEST_SEED, TEST_SUBSET_STREAM)
        )
    return DataSplits(
        _take(pool, train_idx), _take(pool, val_idx), test, len(class_names), class_names, cfg.name, shape
    )


def validation_parts(splits: DataSplits, selection_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """``(fit, select)``: the two disjoint parts of ``splits.val``, row for row the parts
    ``ExitTable.split_selection(selection_fraction, seed)`` makes of a table computed over ``splits.val``.

    Training (baseline early stopping) and policies use ``fit``; choices are scored on ``select``.
    """
    fit, select = selection_indices(len(splits.val), selection_fraction, seed)
    return _take(splits.val, torch.as_tensor(fit)), _take(splits.val, torch.as_tensor(select))
