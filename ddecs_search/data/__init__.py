"""Datasets for the search: registry, offline Fashion-MNIST, torchvision sets, image folders, splits, loaders.

``load_splits(cfg, input_shape)`` returns train/val/test datasets adapted to a backbone's input shape;
``make_loader`` wraps any of them in a seeded DataLoader. Missing data raises
:class:`~ddecs_search.errors.DataError` saying how to get it; ``DDECS_OFFLINE=1`` forbids downloads.
"""

from ddecs_search.data import _cifar, _mnist  # noqa: F401  (registers the torchvision datasets)
from ddecs_search.data._availability import availability, require_available
from ddecs_search.data._load import DataSplits, clear_cache, dataset_info, load_splits, validation_parts
from ddecs_search.data._loader import make_loader
from ddecs_search.data._locations import default_root
from ddecs_search.data._registry import DatasetInfo, DatasetSource, RawSplit, list_datasets, register_dataset
from ddecs_search.data._shared_cache import ENV as SHARED_CACHE_ENV
from ddecs_search.data._splits import selection_indices
from ddecs_search.data._tensors import InMemoryImages

__all__ = [
    "SHARED_CACHE_ENV",
    "DataSplits",
    "DatasetInfo",
    "DatasetSource",
    "InMemoryImages",
    "RawSplit",
    "availability",
    "clear_cache",
    "dataset_info",
    "default_root",
    "list_datasets",
    "load_splits",
    "make_loader",
    "register_dataset",
    "require_available",
    "selection_indices",
    "validation_parts",
]
