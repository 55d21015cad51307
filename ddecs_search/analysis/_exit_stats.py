"""Per-sample exit statistics of one trial (``EXP/trials/<trial_id>/test_exits.npz``): pure numpy."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

EXITS_FILE = "test_exits.npz"


class ExitDetails(NamedTuple):
    """The test-set exits of one trial.

    Attributes:
        trial_id: the trial the arrays belong to.
        exit_indices: (N,) exit each test sample left at (0 = first exit, E-1 = final).
        labels: (N,) true class.
        predictions: (N, E) prediction of every exit for every sample.
        class_names: (C,) names; ``class <i>`` when the file has none.
    """

    trial_id: str
    exit_indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    class_names: list[str]

    @property
    def num_exits(self) -> int:
        return int(self.predictions.shape[1])


def load_exit_details(trial_dir: str | Path, trial_id: str) -> ExitDetails | None:
    """Read ``trial_dir/test_exits.npz``; None when the file does not exist.

    Raises:
        ValueError: the file exists but lacks ``exit_indices``/``labels``/``predictions`` or their
            shapes disagree.
    """
    from ddecs_search import storage

    path = storage.join(str(trial_dir), EXITS_FILE)
    if not storage.exists(path):
        return None
    with np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False) as npz:
        missing = [k for k in ("exit_indices", "labels", "predictions") if k not in npz.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}; has {npz.files}")
        exit_indices = npz["exit_indices"].astype(int)
        labels = npz["labels"].astype(int)
        predictions = npz["predictions"].astype(int)
        names = [str(n) for n in npz["class_names"]] if "class_names" in npz.files else []
    if predictions.ndim != 2 or not (len(exit_indices) == len(labels) == predictions.shape[0]):
        raise ValueError(
            f"{path}: expected exit_indices (N,), labels (N,), predictions (N, E); got "
            f"{exit_indices.shape}, {labels.shape}, {predictions.shape}"
        )
    num_classes = int(max(labels.max(initial=-1), predictions.max(initial=-1)) + 1)
    if len(names) < num_classes:
        names = [f"class {i}" for i in range(num_classes)]
    return ExitDetails(trial_id, exit_indices, labels, predictions, names)


def per_class_exit_fractions(
    exit_indices: np.ndarray, labels: np.ndarray, num_classes: int, num_exits: int
) -> np.ndarray:
    """(C, E): the fraction of each class's samples that leave at each exit (rows sum to 1; 0 if empty)."""
    counts = np.zeros((num_classes, num_exits))
    np.add.at(counts, (np.asarray(labels, dtype=int), np.asarray(exit_indices, dtype=int)), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def confusion_matrices(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(E, C, C) counts: ``out[e, true, predicted]`` for the prediction of every exit ``e``."""
    predictions = np.asarray(predictions, dtype=int)  # (N, E)
    labels = np.asarray(labels, dtype=int)  # (N,)
    num_exits = predictions.shape[1]
    out = np.zeros((num_exits, num_classes, num_classes), dtype=int)
    for e in range(num_exits):
        np.add.at(out[e], (labels, predictions[:, e]), 1)
    return out
