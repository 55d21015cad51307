"""A node-local cache of decoded, adapted datasets that several processes map instead of decoding again.

Decoding Fashion-MNIST's ``.gz`` files and adapting 70k images costs seconds per process; the per-process
LRU (``data/_load.py``) serves later candidates of the *same* process only. When the environment variable
:data:`ENV` names a folder (the search sets it in its trials, one folder per experiment and node), the
first process that needs a dataset writes its adapted tensors there as ``.npy`` files and every process
maps them (``np.load(mmap_mode="c")``: the pages are shared through the OS page cache, copy-on-write, and
nothing ever writes to them). Creation holds an exclusive ``flock`` on ``<entry>.lock`` and publishes the
finished folder with one ``rename``, so a reader sees a complete entry or none; a process that dies
mid-write leaves only a ``.tmp-*`` folder, which the next writer ignores.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Folder of the shared cache for this process (unset: no shared cache, the per-process LRU only).
ENV = "DDECS_SHARED_DATA_CACHE"
#: Bumped when the stored layout or the preprocessing changes (old entries are then never read).
FORMAT = 1


def folder() -> Path | None:
    """The shared cache folder this process uses, or None."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def entry_name(key: tuple) -> str:
    """A stable file-system name for ``key`` (a tuple of str/int)."""
    return hashlib.sha1(repr((FORMAT, *key)).encode()).hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(entry: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    meta = json.loads((entry / "meta.json").read_text())
    arrays = {
        name: np.load(entry / f"{name}.npy", mmap_mode="c", allow_pickle=False) for name in meta["arrays"]
    }
    return arrays, meta["meta"]


def cached_arrays(
    root: Path,
    key: tuple,
    create: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays stored under ``key`` in ``root`` (memory-mapped), created once by ``create()``.

    ``create`` returns ``(arrays by name, JSON-able metadata)``. Returns the mapped arrays (writable
    copy-on-write views; writes never reach the file) and the metadata.
    """
    entry = Path(root) / entry_name(key)
    if (entry / "meta.json").is_file():
        return _read(entry)
    with _locked(entry.with_suffix(".lock")):
        if (entry / "meta.json").is_file():  # another process created it while we waited
            return _read(entry)
        arrays, meta = create()
        tmp = Path(tempfile.mkdtemp(prefix=f"{entry.name}.tmp-", dir=entry.parent))
        try:
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
            (tmp / "meta.json").write_text(
                json.dumps({"key": [str(k) for k in key], "arrays": list(arrays), "meta": meta})
            )
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _read(entry)


def shared_prepared(key: tuple, prepare: Callable[[], Any]) -> Any:
    """``prepare()`` (a ``data._load._Prepared``) through the shared cache of :func:`folder`."""
    import torch

    from ddecs_search.data._load import _Prepared
    from ddecs_search.data._tensors import InMemoryImages

    root = folder()
    if root is None:
        return prepare()

    def create() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        p = prepare()
        arrays = {
            f"{split}_{part}": getattr(getattr(p, split), part).numpy()
            for split in ("train", "test")
            for part in ("images", "labels")
        }
        return arrays, {"class_names": list(p.class_names), "channels": p.train.channels}

    arrays, meta = cached_arrays(root, ("prepared", *key), create)

    def images(split: str) -> InMemoryImages:
        return InMemoryImages(
            torch.from_numpy(arrays[f"{split}_images"]),
            torch.from_numpy(arrays[f"{split}_labels"]),
            channels=meta["channels"],
        )

    return _Prepared(images("train"), images("test"), tuple(meta["class_names"]))
