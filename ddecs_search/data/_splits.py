"""Deterministic index maths for splits and subsets (pure functions on index tensors).

Validation is carved from the training set; the test set is never an input here, so nothing can be
selected or tuned on it. Each random draw uses its own ``torch.Generator`` seeded from ``(seed, stream)``,
so the val split does not change when a subset size changes, and results do not depend on global RNG state.
"""

from __future__ import annotations

import numpy as np
import torch

# Independent streams derived from one ``split_seed``.
VAL_STREAM, TRAIN_SUBSET_STREAM, VAL_SUBSET_STREAM = 0, 1, 2
#: Seed of the test subset and of a test set carved from an image folder: fixed, so every split seed is
#: compared on the same test samples.
TEST_SEED = 0
TEST_SUBSET_STREAM, TEST_CARVE_STREAM = 3, 4


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for draw ``stream`` of ``seed`` (distinct pairs give distinct seeds)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + stream) % (1 << 63))


def split_indices(
    n: int, fraction: float, seed: int, stream: int = VAL_STREAM
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into ``(kept, carved)`` with ``round(n * fraction)`` carved samples (at least 1).

    Both parts are sorted (sequential memory access); which samples are carved depends only on
    ``(n, fraction, seed, stream)``.

    Raises:
        ValueError: fewer than two samples, or a fraction outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 samples to split, got {n}")
    n_carved = min(max(1, round(n * fraction)), n - 1)
    perm = torch.randperm(n, generator=generator(seed, stream))
    return perm[n_carved:].sort().values, perm[:n_carved].sort().values


def subset_indices(indices: torch.Tensor, k: int | None, seed: int, stream: int) -> torch.Tensor:
    """The first ``k`` of a seeded permutation of ``indices`` (sorted); all if ``k`` is None or >= len."""
    if k is None or k >= len(indices):
        return indices
    perm = torch.randperm(len(indices), generator=generator(seed, stream))
    return indices[perm[:k]].sort().values


def selection_indices(n: int, selection_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` validation rows into ``(fit, select)``, both sorted and disjoint.

    The one rule behind ``ExitTable.split_selection`` and :func:`validation_parts`: ``select`` holds
    ``round(selection_fraction * n)`` rows (at least 1, at most ``n - 1``), drawn with ``seed``.

    Raises:
        ValueError: fewer than two rows, or a fraction outside (0, 1).
    """
    if not 0.0 < selection_fraction < 1.0:
        raise ValueError(f"selection_fraction must be in (0, 1), got {selection_fraction}")
    if n < 2:
        raise ValueError(f"a validation split needs >= 2 samples to be split, got {n}")
    order = np.random.default_rng([seed, 0x5E1EC7]).permutation(n)
    n_select = min(n - 1, max(1, round(selection_fraction * n)))
    return np.sort(order[n_select:]), np.sort(order[:n_select])
