"""Atomic, weights-only checkpoints: a crash mid-write never leaves a corrupt file behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ddecs_search._atomic import atomic_open


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`~ddecs_search._atomic.atomic_open` (temp, fsync, rename)."""
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary unpickling) onto the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)
