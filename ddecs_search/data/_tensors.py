"""A map-style dataset over preprocessed image tensors held in memory.

The torchvision sets are adapted once into one float tensor; the train, val and test splits are index
views of it (no copy), so one process can hold several candidates' data cheaply. Grey images served to a
3-channel backbone are stored with one channel and expanded on access (a view, not a copy).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset


class InMemoryImages(Dataset):
    """Samples ``(float32 (C, H, W), int label)`` read from shared tensors.

    Args:
        images: normalised ``(N, c, H, W)`` float32, shared (never written to).
        labels: ``(N,)`` int64.
        channels: channels served; ``c`` must equal it or be 1 (then it is expanded, a read-only view).
        indices: positions in ``images`` that make up this dataset (``None`` = all, in order).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        channels: int | None = None,
        indices: torch.Tensor | None = None,
    ) -> None:
        channels = images.shape[1] if channels is None else channels
        assert images.dim() == 4 and images.shape[1] in (1, channels), (images.shape, channels)
        assert labels.shape == (images.shape[0],), (labels.shape, images.shape)
        self.images = images
        self.labels = labels
        self.channels = channels
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images) if self.indices is None else len(self.indices)

    def _positions(self, idx: torch.Tensor) -> torch.Tensor:
        return idx if self.indices is None else self.indices[idx]

    def _serve(self, x: torch.Tensor) -> torch.Tensor:
        # (..., 1, H, W) -> (..., C, H, W) without copying when the backbone wants more channels
        return x if x.shape[-3] == self.channels else x.expand(*x.shape[:-3], self.channels, *x.shape[-2:])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} samples")
        j = i % len(self) if self.indices is None else int(self.indices[i])
        return self._serve(self.images[j]), int(self.labels[j])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """Batched fetch for DataLoader: one gather instead of one indexing call per sample."""
        j = self._positions(torch.as_tensor(indices, dtype=torch.long))
        x = self._serve(self.images[j])  # (B, C, H, W)
        return list(zip(x.unbind(0), self.labels[j].tolist(), strict=False))

    @property
    def targets(self) -> torch.Tensor:
        """Labels of this dataset's samples, in order, ``(len(self),)`` int64."""
        return self.labels if self.indices is None else self.labels[self.indices]

    def subset(self, positions: torch.Tensor | Sequence[int]) -> InMemoryImages:
        """The samples at ``positions`` (indices into this dataset), sharing the same storage."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        return InMemoryImages(
            self.images, self.labels, channels=self.channels, indices=self._positions(positions)
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All samples as ``(images (N, C, H, W), labels (N,))`` (a copy when it is a subset or expanded)."""
        x = self.images if self.indices is None else self.images[self.indices]
        return self._serve(x).contiguous(), self.targets

    def __repr__(self) -> str:
        shape = (self.channels, *self.images.shape[-2:])
        return f"InMemoryImages(n={len(self)}, shape={shape})"
