"""``make_loader``: the one place DataLoaders are built, so seeding and device settings agree everywhere."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order depends only on ``seed`` (never on global RNG state).

    Args:
        dataset: map-style dataset yielding ``(tensor, int)``.
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: reshuffle with a generator seeded by ``seed`` (pass a new seed per epoch).
        seed: seeds the shuffle and the workers' base seed.
        num_workers: 0 loads in the calling process; more keep persistent workers.
        device: where batches go; memory is pinned only for CUDA (pinning helps nothing on CPU).
        drop_last: drop a short last batch (training: a batch of 1 breaks BatchNorm on 1x1 features).

    Raises:
        ValueError: ``batch_size`` < 1 or ``num_workers`` < 0.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
    )
