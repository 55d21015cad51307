"""MNIST and Fashion-MNIST (idx files read by torchvision), with Fashion-MNIST available offline.

Debian's ``dataset-fashion-mnist`` package ships the four ``.gz`` idx files in
``/usr/share/datasets/fashion-mnist``. They were recompressed, so their md5 differs from torchvision's list
and torchvision would refuse them as a download. The *uncompressed* files are byte-identical, and
torchvision only checks that those exist, so we decompress them into ``<root>/FashionMNIST/raw/`` and load
with ``download=False``: the real 60k/10k split, with no network.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

from ddecs_search.data._locations import fetch_or_fail, gunzip_atomic
from ddecs_search.data._registry import DatasetInfo, DatasetSource, RawSplit, register_dataset
from ddecs_search.errors import DataError

#: Where Debian's ``dataset-fashion-mnist`` installs the files (module attribute so tests can redirect it).
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _raw_folder(root: Path, folder: str) -> Path:
    """torchvision's layout: ``<root>/<ClassName>/raw``."""
    return root / folder / "raw"


def _idx_present(raw: Path) -> bool:
    return all((raw / name).is_file() for name in IDX_FILES)


def _system_present() -> bool:
    return all((SYSTEM_FASHION_MNIST / f"{name}.gz").is_file() for name in IDX_FILES)


def _read_idx(cls: Any, root: Path, train: bool, allow_download: bool, missing: str) -> RawSplit:
    """Read one split with torchvision class ``cls`` (MNIST or FashionMNIST), downloading only if allowed."""
    raw = _raw_folder(root, cls.__name__)
    if not _idx_present(raw):
        fetch_or_fail(
            lambda: cls(str(root), train=train, download=True), allowed=allow_download, missing=missing
        )
    try:
        ds = cls(str(root), train=train, download=False)
    except Exception as exc:  # truncated or foreign files: torchvision raises assorted errors
        raise DataError(
            f"could not read {cls.__name__} from {raw} ({type(exc).__name__}: {exc}); "
            f"delete that folder and try again"
        ) from None
    images = ds.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
    if tuple(images.shape[1:]) != (1, 28, 28):
        raise DataError(
            f"{cls.__name__} files in {raw} hold images of shape {tuple(ds.data.shape[1:])}, "
            f"expected 28x28; delete that folder and try again"
        )
    return RawSplit(images.contiguous(), ds.targets.long(), tuple(ds.classes))


def _mnist_missing(root: Path) -> str:
    return (
        f"MNIST not found in {_raw_folder(root, 'MNIST')}; allow torchvision to download it (needs internet) "
        f"or copy {', '.join(IDX_FILES)} there"
    )


@register_dataset("mnist")
def mnist() -> DatasetSource:
    """MNIST handwritten digits, 60k train / 10k test, 28x28 grey."""

    def locate(root: Path) -> Path | None:
        raw = _raw_folder(root, "MNIST")
        return raw if _idx_present(raw) else None

    def load(root: Path, train: bool, allow_download: bool) -> RawSplit:
        from torchvision.datasets import MNIST

        return _read_idx(MNIST, root, train, allow_download, _mnist_missing(root))

    info = DatasetInfo(
        "mnist",
        10,
        1,
        (28, 28),
        (0.1307,),
        (0.3081,),
        "MNIST handwritten digits, 60k train / 10k test, 28x28 grey",
        how="downloaded by torchvision on first use (needs internet)",
    )
    return DatasetSource(info, locate, load)


def _fashion_missing(root: Path) -> str:
    return (
        f"Fashion-MNIST not found in {root} or {SYSTEM_FASHION_MNIST}; install it with "
        f"`sudo apt-get install dataset-fashion-mnist` or allow torchvision to download it (needs internet)"
    )


def stage_system_fashion_mnist(root: Path) -> bool:
    """Decompress Debian's Fashion-MNIST files into ``<root>/FashionMNIST/raw`` if needed and possible.

    Returns:
        True if the raw folder now holds the four idx files.

    Raises:
        DataError: the root is not writable or a system file is corrupt.
    """
    raw = _raw_folder(root, "FashionMNIST")
    if _idx_present(raw):
        return True
    if not _system_present():
        return False
    try:
        for name in IDX_FILES:
            if not (raw / name).is_file():
                gunzip_atomic(SYSTEM_FASHION_MNIST / f"{name}.gz", raw / name)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(
            f"{SYSTEM_FASHION_MNIST} holds a corrupt file ({exc}); reinstall it with "
            f"`sudo apt-get install --reinstall dataset-fashion-mnist`"
        ) from None
    except OSError as exc:
        raise DataError(
            f"cannot write Fashion-MNIST into {raw} ({exc}); point dataset.root or $DDECS_DATA "
            f"to a writable folder"
        ) from None
    return True


@register_dataset("fashion-mnist")
def fashion_mnist() -> DatasetSource:
    """Zalando's Fashion-MNIST, 60k train / 10k test, 28x28 grey; offline via Debian's package."""

    def locate(root: Path) -> Path | None:
        raw = _raw_folder(root, "FashionMNIST")
        if _idx_present(raw):
            return raw
        return SYSTEM_FASHION_MNIST if _system_present() else None

    def load(root: Path, train: bool, allow_download: bool) -> RawSplit:
        from torchvision.datasets import FashionMNIST

        stage_system_fashion_mnist(root)
        return _read_idx(FashionMNIST, root, train, allow_download, _fashion_missing(root))

    info = DatasetInfo(
        "fashion-mnist",
        10,
        1,
        (28, 28),
        (0.2860,),
        (0.3530,),
        "Fashion-MNIST clothing images, 60k train / 10k test, 28x28 grey",
        how="`sudo apt-get install dataset-fashion-mnist` (offline), or downloaded by torchvision",
    )
    return DatasetSource(info, locate, load)
