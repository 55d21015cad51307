"""``imagefolder:<path>``: the user's own images, one sub-folder per class.

Layout: ``<path>/train/<class>/*.png`` (any format PIL reads, any size) and optionally
``<path>/test/<class>/...`` with the same class names (a test folder may lack some classes). Without a
``test/`` folder, :data:`TEST_FRACTION` of ``train/`` is carved off as the test set with a fixed seed
(independent of ``split_seed``, so every split seed is scored on the same test images); validation is then
carved from the rest like for any dataset.

Images are decoded lazily (the folder may not fit in memory), resized to the backbone's ``H x W``,
converted to grey for 1-channel backbones and normalised with mean 0.5 / std 0.5 per channel: a fixed,
documented choice that needs no pass over the data and maps [0, 1] to [-1, 1].
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from ddecs_search.data._adapt import pil_transform
from ddecs_search.data._registry import IMAGEFOLDER_PREFIX, DatasetInfo
from ddecs_search.data._splits import TEST_CARVE_STREAM, TEST_SEED, split_indices
from ddecs_search.errors import ConfigError, DataError

LAYOUT = (
    "<path>/train/<class>/<image> with one sub-folder per class (png, jpg, ...), "
    "and optionally <path>/test/<class>/<image>"
)
TEST_FRACTION = 0.2
MEAN, STD = 0.5, 0.5


def folder_path(name: str) -> Path:
    """The folder named by ``imagefolder:<path>`` (``~`` expanded; relative paths are relative to the cwd)."""
    if not name.startswith(IMAGEFOLDER_PREFIX) or not name[len(IMAGEFOLDER_PREFIX) :].strip():
        raise ConfigError(f"'dataset.name': expected {IMAGEFOLDER_PREFIX}<path>, got {name!r}")
    return Path(name[len(IMAGEFOLDER_PREFIX) :].strip()).expanduser()


def _class_folders(folder: Path) -> list[str]:
    return sorted(
        entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")
    )


def _train_classes(path: Path) -> list[str]:
    """Class names under ``<path>/train``; DataError naming the path and the layout when absent."""
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist; expected {LAYOUT}")
    train = path / "train"
    if not train.is_dir():
        raise DataError(f"image folder {path} has no train/ sub-folder; expected {LAYOUT}")
    classes = _class_folders(train)
    if not classes:
        raise DataError(f"{train} holds no class sub-folders; expected {LAYOUT}")
    return classes


def imagefolder_info(name: str) -> DatasetInfo:
    """Facts about an image folder (classes are counted; images may have any size, so none is given)."""
    path = folder_path(name)
    classes = _train_classes(path)
    return DatasetInfo(
        name,
        len(classes),
        3,
        None,
        (MEAN,) * 3,
        (STD,) * 3,
        f"image folder {path} with {len(classes)} classes",
        how=f"your own data: {LAYOUT}",
    )


class ImageFiles(Dataset):
    """Images of ``folder/<class>/...`` labelled with the indices of a given class list, decoded on access.

    torchvision's ``ImageFolder`` derives classes from the folder itself, so a test folder lacking a class
    would shift every label; here the class list is train's. File discovery and decoding (PIL, RGB) are
    torchvision's (``make_dataset``, ``default_loader``).
    """

    def __init__(
        self, folder: Path, classes: list[str], transform: Callable, *, allow_empty: bool = False
    ) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

        self.folder = folder
        self.classes = list(classes)
        self.transform = transform
        self.samples = make_dataset(
            str(folder),
            {c: i for i, c in enumerate(classes)},
            extensions=IMG_EXTENSIONS,
            allow_empty=allow_empty,
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[index]
        return self.transform(default_loader(path)), label

    def __repr__(self) -> str:
        return f"ImageFiles({self.folder}, n={len(self)}, classes={len(self.classes)})"


def _image_files(folder: Path, classes: list[str], transform: Callable, *, allow_empty: bool) -> ImageFiles:
    """:class:`ImageFiles` or a DataError (every train class needs images; a test folder may lack some)."""
    try:
        ds = ImageFiles(folder, classes, transform, allow_empty=allow_empty)
    except OSError as exc:
        raise DataError(f"cannot read image folder {folder} ({exc}); expected {LAYOUT}") from None
    if len(ds) == 0:
        raise DataError(
            f"{folder} holds no images with a supported extension (png, jpg, ...); expected {LAYOUT}"
        )
    return ds


def load_imagefolder(name: str, input_shape: tuple[int, int, int]) -> tuple[Dataset, Dataset, list[str]]:
    """Read ``imagefolder:<path>`` as ``(train pool, test, class names)``; val is carved later from the pool.

    Raises:
        DataError: missing folder, missing ``train/``, no classes or no images, or test classes unknown
            to ``train/``; the message names the path and the expected layout.
    """
    path = folder_path(name)
    classes = _train_classes(path)
    transform = pil_transform(input_shape, MEAN, STD)
    train = _image_files(path / "train", classes, transform, allow_empty=False)
    test_dir = path / "test"
    if test_dir.is_dir():
        unknown = sorted(set(_class_folders(test_dir)) - set(classes))
        if unknown:
            raise DataError(
                f"{test_dir} has classes that train/ lacks: {', '.join(unknown)}; expected {LAYOUT}"
            )
        return train, _image_files(test_dir, classes, transform, allow_empty=True), classes
    if len(train) < 3:
        raise DataError(
            f"{path / 'train'} holds {len(train)} images; without a test/ folder at least 3 are "
            f"needed (train, val and test are carved from it)"
        )
    kept, carved = split_indices(len(train), TEST_FRACTION, TEST_SEED, TEST_CARVE_STREAM)
    return Subset(train, kept.tolist()), Subset(train, carved.tolist()), classes
