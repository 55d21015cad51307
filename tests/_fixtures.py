"""Small real-format datasets written on disk by tests, and the benchmark scripts loaded as modules
(plain functions, reusable by any test module).

Import with ``from _fixtures import write_cifar10_fixture`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_cifar10_fixture(
    root: str | Path, n_per_batch: int = 20, *, seed: int = 0, bytes_keys: bool = False
) -> Path:
    """Write ``<root>/cifar-10-batches-py`` in the CIFAR "python version" format, with random pixels.

    Five ``data_batch_i`` and one ``test_batch`` of ``n_per_batch`` images each (labels cycle through the
    10 classes) and ``batches.meta``. Each batch is a pickled dict with ``data`` (``uint8`` ``(N, 3072)``,
    R, G, B planes) and ``labels``. The original files were written by Python 2: loaded with
    ``encoding="latin1"`` their keys are ``str`` (what torchvision sees); ``bytes_keys=True`` writes them
    as ``bytes`` instead, as the CIFAR web page shows them when loaded with ``encoding="bytes"``.

    Returns:
        The ``cifar-10-batches-py`` folder.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        labels = [(b + i) % 10 for i in range(n_per_batch)]
        batch = {
            key("batch_label"): f"fixture batch {b}",
            key("labels"): labels,
            key("data"): rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            key("filenames"): [f"img_{b}_{i}.png" for i in range(n_per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {
        key("label_names"): list(CIFAR10_CLASSES),
        key("num_cases_per_batch"): n_per_batch,
        key("num_vis"): 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


def class_level(c: int) -> int:
    """The mean grey level of class ``c``'s fixture images (lets tests check labels through pixels)."""
    return 30 + 60 * c


def write_imagefolder_fixture(
    root: str | Path,
    classes: int = 3,
    per_class: int = 6,
    size: tuple[int, int] = (40, 36),
    *,
    test_per_class: int = 0,
    test_classes: int | None = None,
    mode: str = "RGB",
    seed: int = 0,
) -> Path:
    """Write real PNGs as ``<root>/images/{train,test}/class_<c>/img_<i>.png``.

    Class ``c``'s images are noise (±20) around grey level :func:`class_level` (``c``), so a loader's
    labels can be checked against pixel means.

    Args:
        root: parent folder.
        classes: number of class sub-folders in ``train/``.
        per_class: training images per class.
        size: ``(height, width)`` of every image.
        test_per_class: images per class in ``test/`` (0 = no ``test/`` folder).
        test_classes: classes present in ``test/`` (the first ones; default all).
        mode: PIL mode, ``"RGB"`` or ``"L"`` (grey).
        seed: seed of the pixel noise.

    Returns:
        The dataset folder (``<root>/images``): pass ``f"imagefolder:{path}"`` as dataset name.
    """
    from PIL import Image

    path = Path(root) / "images"
    rng = np.random.default_rng(seed)
    h, w = size
    splits = [("train", per_class, classes), ("test", test_per_class, test_classes or classes)]
    for split, n, n_classes in splits:
        for c in range(n_classes if n else 0):
            folder = path / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (h, w) if mode == "L" else (h, w, 3)
                pixels = np.clip(class_level(c) + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return path


def load_benchmark(name: str, register: Callable[[str, ModuleType], None] | None = None) -> ModuleType:
    """``benchmarks/<name>.py`` as a fresh module (a script, not a package member).

    Not put in ``sys.modules`` unless ``register`` is given: a benchmark whose dataclasses resolve their
    annotations through ``sys.modules`` must be registered before its body runs, e.g. with
    ``sys.modules.__setitem__`` or, undone after the test, ``partial(monkeypatch.setitem, sys.modules)``.
    """
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if register is not None:
        register(name, module)
    spec.loader.exec_module(module)
    return module
