"""Which registered datasets are present on this machine (for ``ddecs-search datasets``); never downloads."""

from __future__ import annotations

import os
from typing import Any

from ddecs_search.data._locations import downloads_allowed, resolve_root
from ddecs_search.data._registry import IMAGEFOLDER_PREFIX, get_source, list_datasets
from ddecs_search.errors import DataError


def availability(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """One row per registered dataset, checked on disk only.

    Args:
        root: data root (``None`` = ``$DDECS_DATA`` or ``~/.cache/ddecs_search/data``).

    Returns:
        Rows with ``name``, ``available`` (bool), ``location`` (folder where found, or ``None``), ``how``
        (how to get it), ``num_classes``, ``channels`` and ``image_size`` (``[H, W]``), in name order.
    """
    data_root = resolve_root(root)
    rows = []
    for name in list_datasets():
        source = get_source(name)
        location = source.locate(data_root)
        info = source.info
        rows.append(
            {
                "name": name,
                "available": location is not None,
                "location": None if location is None else str(location),
                "how": f"{info.how}; data root {data_root}",
                "num_classes": info.num_classes,
                "channels": info.channels,
                "image_size": None if info.image_size is None else list(info.image_size),
            }
        )
    return rows


def require_available(cfg: Any, *, allow_download: bool | None = None) -> None:
    """Raise :class:`DataError` unless ``cfg``'s dataset (a ``DataConfig``) can be loaded here.

    An image folder must exist with its ``train/`` classes; a registered dataset must be on disk under the
    data root, or downloads must be allowed (then the first load fetches it). Checks the disk only.
    """
    if cfg.name.startswith(IMAGEFOLDER_PREFIX):
        from ddecs_search.data._load import dataset_info

        dataset_info(cfg.name)
        return
    source = get_source(cfg.name)
    data_root = resolve_root(cfg.root)
    if source.locate(data_root) is None and not downloads_allowed(allow_download):
        raise DataError(
            f"'dataset.name': {cfg.name} is not under the data root {data_root} and downloads are disabled; "
            f"{source.info.how}"
        )
