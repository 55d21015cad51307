"""The cached exit-output table that policies are fitted and scored on (costs: ``profiling.ExitCosts``).

Exit outputs on val/test are computed once per candidate; policies (thresholds, RL agents, the oracle)
are then learned and scored on this table without running the network again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ddecs_search._atomic import atomic_open
from ddecs_search.policies._features import FEATURE_NAMES, FeatureSpec, exit_feature_row, num_features

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from ddecs_search.models import MultiExitNet


@dataclass
class ExitTable:
    """Outputs of every exit for every sample of one split.

    Attributes:
        features: ``(N, E, F)`` float32: the four columns of :data:`FEATURE_NAMES`, then, when
            ``feature_spec`` is set, the rich columns of :meth:`FeatureSpec.names` (see ``_features.py``).
        predictions: ``(N, E)`` int64 predicted class per exit.
        labels: ``(N,)`` int64 ground truth.
        feature_spec: the rich layout the table was built with, or ``None`` (four columns).
    """

    features: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    feature_spec: FeatureSpec | None = None

    def __post_init__(self) -> None:
        n, e, f = self.features.shape
        if (
            self.predictions.shape != (n, e)
            or self.labels.shape != (n,)
            or f != num_features(e, self.feature_spec)
        ):
            raise ValueError(
                f"inconsistent exit table: features {self.features.shape}, predictions "
                f"{self.predictions.shape}, labels {self.labels.shape}, feature layout "
                f"{self.feature_spec or 'confidence'} ({num_features(e, self.feature_spec)} columns)"
            )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the feature columns, in order."""
        extra = () if self.feature_spec is None else self.feature_spec.names(self.num_exits)
        return (*FEATURE_NAMES, *extra)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_exits(self) -> int:
        return int(self.predictions.shape[1])

    @property
    def correct(self) -> np.ndarray:
        """``(N, E)`` bool: is exit ``k`` right on sample ``i``."""
        return self.predictions == self.labels[:, None]

    def subset(self, index: np.ndarray) -> ExitTable:
        """Rows ``index`` of the table."""
        return ExitTable(self.features[index], self.predictions[index], self.labels[index], self.feature_spec)

    def split_selection(self, selection_fraction: float, seed: int) -> tuple[ExitTable, ExitTable]:
        """Two disjoint parts of a validation table: ``(fit, select)`` (see :func:`selection_split`).

        Policies are fitted on ``fit``; objectives, constraints, picks and λ sweeps are scored on
        ``select``, so that what is chosen is never judged on the samples it was fitted on.
        """
        fit, select = selection_split(self.num_samples, selection_fraction, seed)
        return self.subset(fit), self.subset(select)

    def save(self, path: str | Path) -> None:
        """Write atomically as ``.npz``."""
        spec = json.dumps(None if self.feature_spec is None else self.feature_spec.to_dict())
        with atomic_open(path, "wb") as fh:
            arrays = {"features": self.features, "predictions": self.predictions, "labels": self.labels}
            np.savez(fh, **arrays, feature_spec=spec)

    @classmethod
    def load(cls, path: str | Path) -> ExitTable:
        with np.load(path, allow_pickle=False) as data:
            spec = json.loads(str(data["feature_spec"])) if "feature_spec" in data.files else None
            return cls(data["features"], data["predictions"], data["labels"], FeatureSpec.from_dict(spec))

    @classmethod
    @torch.no_grad()
    def from_model(
        cls,
        model: MultiExitNet,
        loader: DataLoader,
        device: torch.device,
        feature_spec: FeatureSpec | None = None,
        *,
        channels_last: bool = False,
    ) -> ExitTable:
        """Run every exit of ``model`` over ``loader`` once and collect the table.

        With ``feature_spec`` the table carries the rich columns too (computed from the branches'
        pooled hidden features by :func:`exit_feature_row`, as early-exit inference computes them).

        By default the model runs as early-exit inference runs it, so a table row equals what live
        inference computes for that sample, bit for bit (policies are fitted on the table and then
        decide live). ``channels_last=True`` runs it in the CPU's faster layout
        (:func:`ddecs_search.models.compute_layout`: 1.7x a rung pass here, values equal to float rounding
        only): for the search's per-epoch proxies, never for a table the evaluation fits or scores on.
        """
        from ddecs_search.models import compute_layout

        model.eval()
        feats, preds, labels = [], [], []
        e = model.num_exits
        with compute_layout(model, device, enabled=channels_last) as to_layout:
            for x, y in loader:
                x = to_layout(x.to(device, non_blocking=True))
                if feature_spec is None:
                    outs = [(logits, None) for logits in model(x)]
                else:
                    outs = model.forward_with_hidden(x)
                logits = [lg for lg, _ in outs]
                f_k = [exit_feature_row(k, logits[: k + 1], outs[k][1], e, feature_spec) for k in range(e)]
                p_k = [lg.argmax(dim=1) for lg in logits]
                feats.append(torch.stack(f_k, dim=1).cpu())
                preds.append(torch.stack(p_k, dim=1).cpu())
                labels.append(y.cpu())
        return cls(
            torch.cat(feats).numpy().astype(np.float32),
            torch.cat(preds).numpy().astype(np.int64),
            torch.cat(labels).numpy().astype(np.int64),
            feature_spec,
        )


def selection_split(n: int, selection_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(fit, select)`` of a validation split of ``n`` samples, disjoint and sorted.

    ``select`` holds ``selection_fraction`` of the rows (at least one row each side). Seeded: the same
    ``(n, fraction, seed)`` always gives the same parts, so every trial of a search chooses on the same
    samples and the static network is scored on them too. The rule lives in
    :func:`ddecs_search.data.selection_indices` (below training, whose baseline early-stops on ``fit``).
    """
    from ddecs_search.data import selection_indices

    return selection_indices(n, selection_fraction, seed)


@dataclass(frozen=True)
class DecisionStats:
    """What a set of exit decisions achieves on a table."""

    accuracy: float
    cost: float  # mean normalised cost per sample (static network = 1.0)
    exit_fractions: tuple[float, ...]
    exit_accuracies: tuple[float | None, ...]  # accuracy of the samples that left at each exit


def score_decisions(table: ExitTable, exits: np.ndarray, path_cost: np.ndarray) -> DecisionStats:
    """Accuracy, mean normalised cost and per-exit breakdown of ``exits`` ((N,) exit indices)."""
    rows = np.arange(table.num_samples)
    correct = table.correct[rows, exits]
    fractions, accs = [], []
    for k in range(table.num_exits):
        sel = exits == k
        fractions.append(float(sel.mean()))
        accs.append(float(correct[sel].mean()) if sel.any() else None)
    return DecisionStats(float(correct.mean()), float(path_cost[exits].mean()), tuple(fractions), tuple(accs))
