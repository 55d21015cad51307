"""The exit-policy interface shared by thresholds, the oracle, the static network and RL agents."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ddecs_search._atomic import write_text_atomic
from ddecs_search.policies._features import FeatureSpec, exit_feature_row, exit_features
from ddecs_search.policies._table import ExitTable


class ExitPolicy(ABC):
    """Decides, per sample, at which exit to leave.

    ``exit_mask`` is the online decision used by real early-exit inference; ``decide`` is the same
    decision vectorised over a whole table (it calls ``exit_mask`` exit by exit, so both paths agree).
    ``fit`` tunes the policy on the *fit* part of validation for an objective
    ``accuracy - cost_weight * normalised_cost``.

    ``feature_spec`` is ``None`` for policies that read the four confidence features only; a policy with
    the rich observation sets it, needs tables built with the same spec, and is driven online through
    :meth:`exit_mask_from_outputs` (which also sees earlier exits' logits and the branch's hidden features).
    """

    kind: ClassVar[str] = ""
    deployable: ClassVar[bool] = True
    feature_spec: FeatureSpec | None = None

    def fit(
        self,
        table: ExitTable,
        path_cost: np.ndarray,
        cost_weight: float,
        *,
        select: ExitTable | None = None,
    ) -> ExitPolicy:
        """Tune on ``table`` (the fit part of validation) given ``path_cost`` ((E,) normalised).

        ``select`` (the disjoint selection part), where given, is what iterative learners choose their
        stopping point on; the default policy ignores both. Default: nothing to fit.
        """
        return self

    def check_table(self, table: ExitTable) -> None:
        """Raise ValueError when ``table``'s feature layout is not the one this policy reads."""
        if self.feature_spec is not None and table.feature_spec != self.feature_spec:
            raise ValueError(
                f"the {self.kind} policy reads the rich features {self.feature_spec}, but the exit table "
                f"was built with {table.feature_spec or 'the four confidence features'}: build it with "
                "ExitTable.from_model(..., feature_spec=policy.feature_spec)"
            )

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

    def exit_mask_from_outputs(
        self, exit_index: int, logits_so_far: Sequence[torch.Tensor], hidden: torch.Tensor | None
    ) -> torch.Tensor:
        """The online decision from every exit's logits so far and branch ``exit_index``'s pooled hidden
        features: the table's feature row (:func:`exit_feature_row`, same function) fed to :meth:`exit_mask`.

        Early-exit inference calls this instead of :meth:`exit_mask_from_logits` when ``feature_spec`` is set.
        """
        num_exits = 0 if self.feature_spec is None else self._num_exits_for_features()
        row = exit_feature_row(exit_index, logits_so_far, hidden, num_exits, self.feature_spec)
        return self.exit_mask(exit_index, row)

    def _num_exits_for_features(self) -> int:
        """Exits of the network this policy was fitted for (the rich layout's width depends on it)."""
        n = int(getattr(self, "num_exits", 0))
        if n < 2:
            raise RuntimeError(f"the {self.kind} policy is not fitted: call fit() or load_policy()")
        return n

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
