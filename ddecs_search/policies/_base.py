"""The exit-policy interface shared by thresholds, the oracle, the static network and RL agents."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ddecs_search._atomic import write_text_atomic
from ddecs_search.policies._features import exit_features
from ddecs_search.policies._table import ExitTable


class ExitPolicy(ABC):
    """Decides, per sample, at which exit to leave.

    ``exit_mask`` is the online decision used by real early-exit inference; ``decide`` is the same
    decision vectorised over a whole table (it calls ``exit_mask`` exit by exit, so both paths agree).
    ``fit`` tunes the policy on a *validation* table for an objective
    ``accuracy - cost_weight * normalised_cost``.
    """

    kind: ClassVar[str] = ""
    deployable: ClassVar[bool] = True

    def fit(self, table: ExitTable, path_cost: np.ndarray, cost_weight: float) -> ExitPolicy:
        """Tune on ``table`` (validation split) given ``path_cost`` ((E,) normalised). Default: nothing."""
        return self

    @abstractmethod
    def exit_mask(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` features at early exit ``exit_index`` -> ``(B,)`` bool, True = leave now."""

    def exit_mask_from_logits(
        self, exit_index: int, logits: torch.Tensor, prev_pred: torch.Tensor | None
    ) -> torch.Tensor:
        """The online decision straight from an exit's logits (what early-exit inference calls).

        The default computes all :func:`exit_features`; policies that need fewer override this to save
        per-exit overhead, using the same arithmetic so decisions match the table bit for bit.
        """
        return self.exit_mask(exit_index, exit_features(logits, prev_pred))

    def decide(self, features: np.ndarray) -> np.ndarray:
        """``(N, E, F)`` features -> ``(N,)`` exit index (the final exit when no earlier one fires)."""
        n, e, _ = features.shape
        exits = np.full(n, e - 1, dtype=np.int64)
        open_ = np.ones(n, dtype=bool)
        feats = torch.from_numpy(np.ascontiguousarray(features))
        for k in range(e - 1):
            idx = np.flatnonzero(open_)
            if idx.size == 0:
                break
            mask = self.exit_mask(k, feats[idx, k]).cpu().numpy().astype(bool)
            exits[idx[mask]] = k
            open_[idx[mask]] = False
        return exits

    def decide_table(self, table: ExitTable) -> np.ndarray:
        """Exit index per row of ``table``."""
        return self.decide(table.features)

    # Persistence: a JSON-able state, so policies travel with exported models without pickle.
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state, got keys {sorted(state)}")

    def save(self, path: str | Path) -> None:
        """Write ``{"kind": ..., "state": ...}`` atomically as JSON."""
        write_text_atomic(json.dumps({"kind": self.kind, "state": self.state_dict()}), path)
