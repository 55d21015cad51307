"""CIFAR-10 and CIFAR-100, read from the standard "python version" batches.

We read the pickled batches ourselves instead of through ``torchvision.datasets.CIFAR10``: torchvision
re-checks every file's md5 on each load (slow, and it rejects any copy that is not byte-identical to the
original archive, e.g. a subset prepared for a smoke run). The format is simple and documented on
https://www.cs.toronto.edu/~kriz/cifar.html: each batch is a pickled dict with ``data`` (``uint8``
``(N, 3072)``, red, green then blue planes of 32x32) and ``labels`` (``fine_labels`` for CIFAR-100).
torchvision is still what downloads (and verifies) the archive on a user's machine.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddecs_search.data._locations import fetch_or_fail
from ddecs_search.data._registry import DatasetInfo, DatasetSource, RawSplit, register_dataset
from ddecs_search.errors import DataError


@dataclass(frozen=True)
class _Layout:
    """Files of one CIFAR variant inside ``<root>/<folder>``."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str

    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


CIFAR10_LAYOUT = _Layout(
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "batches.meta",
    "labels",
    "label_names",
)
CIFAR100_LAYOUT = _Layout(
    "cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names"
)


def _unpickle(path: Path) -> dict[str, Any]:
    """Load one batch; keys are ``str`` (the original Python 2 pickles) or ``bytes`` (Python 3 writers)."""
    with open(path, "rb") as f:
        entry = pickle.load(
            f, encoding="latin1"
        )  # the files are pickles by design; same trust as torchvision
    if not isinstance(entry, dict):
        raise ValueError(f"expected a pickled dict, got {type(entry).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _decode(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def read_cifar(folder: Path, layout: _Layout, train: bool) -> RawSplit:
    """Read the train or test batches of one CIFAR variant from ``folder``.

    Raises:
        DataError: a file is missing or does not follow the CIFAR python format.
    """
    files = layout.train_files if train else layout.test_files
    images, labels = [], []
    try:
        for name in files:
            entry = _unpickle(folder / name)
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))  # (N, 3, 32, 32)
            labels.append(np.asarray(entry[layout.label_key], dtype=np.int64).reshape(-1))
        class_names = tuple(_decode(n) for n in _unpickle(folder / layout.meta_file)[layout.names_key])
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(
            f"could not read CIFAR batches from {folder} ({type(exc).__name__}: {exc}); expected the "
            f"python version ({', '.join(layout.files())}); delete the folder and try again"
        ) from None
    x, y = np.concatenate(images), np.concatenate(labels)
    if len(x) != len(y) or (len(y) and not 0 <= y.min() <= y.max() < len(class_names)):
        raise DataError(
            f"CIFAR batches in {folder} are inconsistent: {len(x)} images, {len(y)} labels, "
            f"{len(class_names)} classes"
        )
    return RawSplit(torch.from_numpy(x), torch.from_numpy(y), class_names)


def _source(layout: _Layout, info: DatasetInfo, tv_class: str) -> DatasetSource:
    """A registry entry for one CIFAR variant; ``tv_class`` names the torchvision class that downloads it."""

    def locate(root: Path) -> Path | None:
        folder = root / layout.folder
        return folder if all((folder / f).is_file() for f in layout.files()) else None

    def load(root: Path, train: bool, allow_download: bool) -> RawSplit:
        if locate(root) is None:
            import torchvision.datasets

            cls = getattr(torchvision.datasets, tv_class)
            missing = (
                f"{info.description.split(',')[0]} not found in {root / layout.folder}; allow torchvision "
                f"to download it (needs internet) or extract the python version archive into {root}"
            )
            fetch_or_fail(
                lambda: cls(str(root), train=train, download=True), allowed=allow_download, missing=missing
            )
        return read_cifar(root / layout.folder, layout, train)

    return DatasetSource(info, locate, load)


@register_dataset("cifar10")
def cifar10() -> DatasetSource:
    """CIFAR-10, 50k train / 10k test, 32x32 RGB, 10 classes."""
    info = DatasetInfo(
        "cifar10",
        10,
        3,
        (32, 32),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        "CIFAR-10, 50k train / 10k test, 32x32 RGB, 10 classes",
        how="downloaded by torchvision on first use (needs internet, 163 MB)",
    )
    return _source(CIFAR10_LAYOUT, info, "CIFAR10")


@register_dataset("cifar100")
def cifar100() -> DatasetSource:
    """CIFAR-100 (fine labels), 50k train / 10k test, 32x32 RGB, 100 classes."""
    info = DatasetInfo(
        "cifar100",
        100,
        3,
        (32, 32),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        "CIFAR-100, 50k train / 10k test, 32x32 RGB, 100 fine classes",
        how="downloaded by torchvision on first use (needs internet, 161 MB)",
    )
    return _source(CIFAR100_LAYOUT, info, "CIFAR100")
