"""Picking one configuration from a front: knee point, best under a budget, fastest above a floor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ddecs_search.analysis._constraints import check_columns
from ddecs_search.analysis._trials import Objective
from ddecs_search.dominance import to_minimization

if TYPE_CHECKING:
    import pandas as pd


def _normalised_loss(front: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """(N, M) objectives as minimisation, scaled to [0, 1] per column over ``front`` (0 = best)."""
    names = [n for n, _ in objectives]
    check_columns(front, names, what="knee point")
    loss = to_minimization(front[names].to_numpy(dtype=float), [d for _, d in objectives])
    lo, hi = loss.min(axis=0), loss.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (loss - lo) / span


def knee_point(front: pd.DataFrame, objectives: Sequence[Objective]) -> pd.Series | None:
    """The front member with the best trade-off (None for an empty front).

    Objectives are normalised to [0, 1] over the front (0 = best). With two objectives the knee is the
    member farthest from the straight line between the two extreme members, on the side of the ideal
    point (the "bend" of the front); with more objectives, or when the extremes coincide, it is the member
    closest to the ideal point (0, ..., 0).
    """
    if len(front) == 0:
        return None
    loss = _normalised_loss(front, objectives)  # (N, M)
    closest = int(np.argmin(np.linalg.norm(loss, axis=1)))
    if loss.shape[1] != 2 or len(front) < 3:
        return front.iloc[closest]
    a = loss[np.lexsort((loss[:, 1], loss[:, 0]))[0]]  # best on objective 0
    b = loss[np.lexsort((loss[:, 0], loss[:, 1]))[0]]  # best on objective 1
    line = b - a
    length = float(np.hypot(*line))
    if length == 0:
        return front.iloc[closest]
    # signed distance to the line, positive on the ideal point's side
    cross = line[0] * (loss[:, 1] - a[1]) - line[1] * (loss[:, 0] - a[0])
    ideal_side = np.sign(line[0] * (0 - a[1]) - line[1] * (0 - a[0])) or 1.0
    dist = cross * ideal_side / length
    best = int(np.argmax(dist))
    return front.iloc[best] if dist[best] > 0 else front.iloc[closest]


def _pick(
    rows: pd.DataFrame, primary: str, primary_max: bool, secondary: str, secondary_max: bool
) -> pd.Series | None:
    if len(rows) == 0:
        return None
    ordered = rows.sort_values(
        [primary, secondary], ascending=[not primary_max, not secondary_max], kind="stable"
    )
    return ordered.iloc[0]


def best_under_budget(
    df: pd.DataFrame, metric: str = "latency_ms", budget: float = 2.0, maximize: str = "val_accuracy"
) -> pd.Series | None:
    """The row with the highest ``maximize`` among rows with ``metric <= budget`` (ties: lower ``metric``).

    Returns None when no row fits the budget. Pass rows of one device when ``metric`` is device-bound.
    """
    check_columns(df, [metric, maximize], what="best_under_budget")
    rows = df[(df[metric] <= budget) & df[maximize].notna()]
    return _pick(rows, maximize, True, metric, False)


def best_for_accuracy_floor(
    df: pd.DataFrame, floor: float = 0.90, minimize: str = "latency_ms", accuracy: str = "val_accuracy"
) -> pd.Series | None:
    """The row with the lowest ``minimize`` among rows with ``accuracy >= floor`` (ties: higher accuracy).

    Returns None when no row reaches the floor.
    """
    check_columns(df, [minimize, accuracy], what="best_for_accuracy_floor")
    rows = df[(df[accuracy] >= floor) & df[minimize].notna()]
    return _pick(rows, minimize, False, accuracy, True)
