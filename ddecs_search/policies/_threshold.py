"""BranchyNet's confidence thresholds, tuned on the validation table for a cost weight."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from ddecs_search.config import PolicyConfig
from ddecs_search.policies._base import ExitPolicy
from ddecs_search.policies._features import ENTROPY, MAX_PROB
from ddecs_search.policies._registry import register_policy
from ddecs_search.policies._table import ExitTable

_GRID = 41  # candidate thresholds per exit (quantiles of the validation scores, plus "never")
_EXHAUSTIVE_MAX_EXITS = 2  # search the full grid up to this many early exits, else coordinate descent


class ThresholdPolicy(ExitPolicy):
    """Leave at exit ``k`` when its confidence passes ``thresholds[k]``.

    ``metric="max_prob"``: leave when the top-1 probability is >= the threshold. ``metric="entropy"``:
    leave when the softmax entropy is <= the threshold. Internally both become a score ``s`` (max-prob,
    or minus entropy) compared with ``s >= t``; ``t = +inf`` means the exit never fires.
    """

    kind = "threshold"

    def __init__(
        self, metric: str = "max_prob", thresholds: list[float] | None = None, max_drop: float | None = None
    ) -> None:
        if metric not in ("max_prob", "entropy"):
            raise ValueError(f"metric must be 'max_prob' or 'entropy', got {metric!r}")
        if max_drop is not None and not 0.0 <= max_drop <= 1.0:
            raise ValueError(f"max_drop must be in [0, 1], got {max_drop!r}")
        self.metric = metric
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.max_drop = max_drop

    # score s: larger = more confident
    def _score(self, features: np.ndarray | torch.Tensor) -> Any:
        return features[..., MAX_PROB] if self.metric == "max_prob" else -features[..., ENTROPY]

    def _score_thresholds(self) -> list[float]:
        assert self.thresholds is not None, "policy is not fitted"
        return self.thresholds if self.metric == "max_prob" else [-t for t in self.thresholds]

    def exit_mask(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        t = self._score_thresholds()[exit_index]
        return self._score(features) >= t

    def exit_mask_from_logits(
        self, exit_index: int, logits: torch.Tensor, prev_pred: torch.Tensor | None
    ) -> torch.Tensor:
        """Only the one score this policy reads, computed exactly as :func:`exit_features` does."""
        log_probs = torch.log_softmax(logits.float(), dim=1)
        if self.metric == "max_prob":
            score = log_probs.exp().amax(dim=1)
        else:
            score = (log_probs.exp() * log_probs).sum(dim=1)  # = -entropy
        return score >= self._score_thresholds()[exit_index]

    def fit(
        self,
        table: ExitTable,
        path_cost: np.ndarray,
        cost_weight: float,
        *,
        select: ExitTable | None = None,
    ) -> ThresholdPolicy:
        """Maximise ``accuracy - cost_weight * mean normalised cost`` on ``table`` over a threshold grid;
        with ``max_drop``, only over thresholds whose accuracy on ``table`` stays within ``max_drop`` of
        the network's own final exit (see :func:`tune_thresholds`)."""
        score_ts = tune_thresholds(
            self._score(table.features), table.correct, path_cost, cost_weight, max_drop=self.max_drop
        )
        self.thresholds = score_ts if self.metric == "max_prob" else [-t for t in score_ts]
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "thresholds": self.thresholds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metric = state["metric"]
        self.thresholds = [float(t) for t in state["thresholds"]]


def tune_thresholds(
    scores: np.ndarray,
    correct: np.ndarray,
    path_cost: np.ndarray,
    cost_weight: float,
    *,
    max_drop: float | None = None,
) -> list[float]:
    """Per early exit, the score threshold (leave when ``score >= t``; ``inf`` = never) that maximises
    ``accuracy - cost_weight * mean path cost`` on the rows of ``scores`` ``(N, E or E-1)``.

    ``max_drop``: only thresholds whose accuracy on these rows is at least the final exit's minus
    ``max_drop`` count ("never exit early" always does). Why: a weighted sum reaches only the convex
    hull of the accuracy-cost curve, so the exit fraction jumps between neighbouring ``cost_weight``
    values where the curve bends (the default candidate: 78 % -> 90 % at conv1 for +1.5 pt between
    two λ). The bound reaches the points in between: a large ``cost_weight`` then leaves as early as the
    bound allows.

    Candidates sit between the scores at ``_GRID`` quantiles (see :func:`_candidates`), plus ``inf``;
    the full grid is searched up to two early exits, coordinate descent beyond.
    """
    n_early = correct.shape[1] - 1
    scores = scores[:, :n_early]
    grids = [_candidates(scores[:, k]) for k in range(n_early)]
    rows = np.arange(scores.shape[0])
    floor = -np.inf if max_drop is None else float(correct[:, -1].mean()) - max_drop - 1e-12

    def objective(ts: tuple[float, ...]) -> float:
        exits = _first_exit(scores, ts)
        accuracy = float(correct[rows, exits].mean())
        if accuracy < floor:
            return -np.inf
        return accuracy - cost_weight * float(path_cost[exits].mean())

    if n_early <= _EXHAUSTIVE_MAX_EXITS:
        best = max(itertools.product(*grids), key=objective)
    else:
        best = _coordinate_descent(grids, objective)
    return [float(t) for t in best]


def _candidates(scores: np.ndarray) -> np.ndarray:
    """Thresholds for one exit: just below the lowest score (every row leaves), float32 midpoints between
    consecutive distinct scores at ``_GRID`` sample-quantile positions, and ``inf`` (never leave).

    Midpoints rather than the scores themselves: no fitted threshold equals a sample's score, so the last
    bits of a score (which can differ between a batch and batch 1) cannot flip a decision on the table, and
    float32 values, so torch's float32 comparison online matches numpy's here exactly.
    """
    u = np.unique(scores.astype(np.float32))
    below = np.nextafter(u[0], np.float32(-np.inf))
    q = np.quantile(scores.astype(np.float32), np.linspace(0, 1, _GRID)).astype(np.float32)
    idx = np.unique(np.clip(np.searchsorted(u, q, side="left"), 1, max(1, u.size - 1)))
    idx = idx[idx < u.size]
    lo, hi = u[idx - 1], u[idx]
    mid = ((lo.astype(np.float64) + hi) / 2).astype(np.float32)
    mid = np.where(mid > lo, mid, hi)  # adjacent floats: no midpoint exists
    return np.concatenate([[below], np.unique(mid), [np.inf]]).astype(np.float64)


def _first_exit(scores: np.ndarray, ts: tuple[float, ...] | list[float]) -> np.ndarray:
    """Index of the first early exit whose score passes its threshold, else the final exit (``len(ts)``)."""
    n = scores.shape[0]
    fires = scores[:, : len(ts)] >= np.asarray(ts)[None, :]
    fires = np.concatenate([fires, np.ones((n, 1), dtype=bool)], axis=1)
    return fires.argmax(axis=1)


def _coordinate_descent(grids: list[np.ndarray], objective: Any, sweeps: int = 4) -> tuple[float, ...]:
    current = [g[-1] for g in grids]  # start from "never exit early"
    best_val = objective(tuple(current))
    for _ in range(sweeps):
        improved = False
        for k, grid in enumerate(grids):
            for t in grid:
                trial = current.copy()
                trial[k] = t
                val = objective(tuple(trial))
                if val > best_val + 1e-12:
                    best_val, current, improved = val, trial, True
        if not improved:
            break
    return tuple(current)


_OPTIONS = ("max_drop", "thresholds")


@register_policy("threshold")
def _threshold(config: PolicyConfig) -> ExitPolicy:
    from ddecs_search.errors import ConfigError

    unknown = set(config.options) - set(_OPTIONS)
    if unknown:
        raise ConfigError(
            f"'policy.options': threshold policy takes no option(s) {sorted(unknown)}; "
            f"valid: {list(_OPTIONS)}"
        )
    max_drop = config.options.get("max_drop")
    if max_drop is not None and (
        isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not 0 <= max_drop <= 1
    ):
        raise ConfigError(
            "'policy.options.max_drop': must be a number in [0, 1] (a fraction: 0.01 = 1 pt), "
            f"got {max_drop!r}"
        )
    return ThresholdPolicy(
        metric=config.metric,
        thresholds=config.options.get("thresholds"),
        max_drop=None if max_drop is None else float(max_drop),
    )
