"""Pareto maths on numpy arrays (optuna's ``study/_multi_objective.py`` style): a leaf below search, analysis.

Every public function takes ``values`` of shape (N, M) and ``directions`` ("min"/"max" per column).
"max" columns are negated once, in :func:`to_minimization`; everything below works on minimisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_DIRECTION_ALIASES = {"min": 1.0, "minimize": 1.0, "max": -1.0, "maximize": -1.0}

# Padding of the default hypervolume reference point, as a fraction of each objective's observed range.
REFERENCE_PADDING = 0.1


def direction_signs(directions: Sequence[str], n_objectives: int) -> np.ndarray:
    """+1 for "min", -1 for "max" (shape (M,)); ValueError for anything else or a length mismatch."""
    if len(directions) != n_objectives:
        raise ValueError(f"got {len(directions)} directions for {n_objectives} objective columns")
    try:
        return np.array([_DIRECTION_ALIASES[str(d).lower()] for d in directions])
    except KeyError as exc:
        raise ValueError(f"direction must be 'min' or 'max', got {exc.args[0]!r}") from None


def to_minimization(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Return a float copy of ``values`` (N, M) with the "max" columns negated."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (N, M), got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite; drop rows with missing objectives first")
    return values * direction_signs(directions, values.shape[1])


def _dominates_matrix(loss: np.ndarray) -> np.ndarray:
    """``d[i, j]`` is True when row i dominates row j (no worse everywhere, better somewhere)."""
    le = np.all(loss[:, None, :] <= loss[None, :, :], axis=2)  # (N, N)
    lt = np.any(loss[:, None, :] < loss[None, :, :], axis=2)
    return le & lt


def non_dominated_sort(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Front index of every row: 0 for the non-dominated rows, 1 for those left after removing them, ...

    Args:
        values: (N, M) objective values.
        directions: "min" or "max" per column.

    Returns:
        (N,) int array of ranks. Identical rows share a rank.
    """
    loss = to_minimization(values, directions)
    n = loss.shape[0]
    ranks = np.full(n, -1, dtype=int)
    if n == 0:
        return ranks
    dom = _dominates_matrix(loss)  # (N, N)
    dominated_by = dom.sum(axis=0)  # how many rows dominate each row
    rank = 0
    current = np.flatnonzero(dominated_by == 0)
    while current.size:
        ranks[current] = rank
        dominated_by = dominated_by - dom[current].sum(axis=0)
        dominated_by[ranks >= 0] = -1  # never pick an assigned row again
        current = np.flatnonzero(dominated_by == 0)
        rank += 1
    return ranks


def crowding_distance(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """NSGA-II crowding distance of each row within the given set (usually one front).

    Boundary rows of every objective get ``inf``; an objective with zero range adds nothing.
    """
    loss = to_minimization(values, directions)
    n, m = loss.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(loss[:, k], kind="stable")
        col = loss[order, k]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def default_reference_point(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """The worst observed value of each objective, padded by 10 % of its observed range.

    Returned in the objectives' own units and directions (a "max" objective's reference lies below its
    minimum). An objective with zero range is padded by 10 % of its magnitude (or 1.0 when that is 0),
    so every observed point has a positive contribution.
    """
    signs = direction_signs(directions, np.shape(values)[1])
    loss = to_minimization(values, directions)
    if loss.shape[0] == 0:
        raise ValueError("the default reference point needs at least one point")
    worst, best = loss.max(axis=0), loss.min(axis=0)
    span = worst - best
    span = np.where(span > 0, span, np.where(np.abs(worst) > 0, np.abs(worst), 1.0))
    return (worst + REFERENCE_PADDING * span) * signs


def _hv_2d(loss: np.ndarray, ref: np.ndarray) -> float:
    order = np.lexsort((loss[:, 1], loss[:, 0]))
    hv, best_y = 0.0, ref[1]
    for x, y in loss[order]:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(hv)


def _hv_slicing(loss: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume by slicing along the last objective (fallback when optuna is unavailable)."""
    if loss.shape[0] == 0:
        return 0.0
    if loss.shape[1] == 1:
        return float(ref[0] - loss[:, 0].min())
    if loss.shape[1] == 2:
        return _hv_2d(loss, ref)
    order = np.argsort(loss[:, -1], kind="stable")
    loss = loss[order]
    hv = 0.0
    for i in range(loss.shape[0]):
        upper = loss[i + 1, -1] if i + 1 < loss.shape[0] else ref[-1]
        height = upper - loss[i, -1]
        if height > 0:
            hv += height * _hv_slicing(loss[: i + 1, :-1], ref[:-1])
    return float(hv)


def _hv_loss(loss: np.ndarray, ref: np.ndarray) -> float:
    inside = np.all(loss < ref, axis=1)  # points not strictly better than ref everywhere add nothing
    loss = loss[inside]
    if loss.shape[0] == 0:
        return 0.0
    try:
        from optuna._hypervolume import compute_hypervolume  # private, but stable since optuna 4
    except ImportError:  # pragma: no cover - optuna is a dependency; keep a pure-numpy path anyway
        return _hv_slicing(loss, ref)
    return float(compute_hypervolume(loss, ref))


def _reference_loss(
    values: np.ndarray, directions: Sequence[str], reference: np.ndarray | None
) -> np.ndarray:
    if reference is None:
        reference = default_reference_point(values, directions)
    reference = np.asarray(reference, dtype=float)
    if reference.shape != (np.shape(values)[1],) or not np.all(np.isfinite(reference)):
        raise ValueError(f"reference must be {np.shape(values)[1]} finite numbers, got {reference}")
    return reference * direction_signs(directions, reference.shape[0])


def hypervolume(values: np.ndarray, directions: Sequence[str], reference: np.ndarray | None = None) -> float:
    """Hypervolume dominated by ``values`` (N, M) and bounded by ``reference``.

    Exact for any M (optuna's ``compute_hypervolume``: a sweep for 2 objectives, an O(N^2) method for 3,
    WFG beyond). Points that do not strictly dominate the reference contribute nothing.

    Args:
        values: (N, M) objective values in their own units.
        directions: "min" or "max" per column.
        reference: (M,) reference point in the objectives' own units; default
            :func:`default_reference_point` of ``values`` (worst value padded by 10 % of the range).
            Pass it explicitly to compare runs or to use the static baseline as reference.
    """
    loss = to_minimization(values, directions)
    if loss.shape[0] == 0:
        return 0.0
    return _hv_loss(loss, _reference_loss(values, directions, reference))


def hypervolume_history(
    values: np.ndarray, directions: Sequence[str], reference: np.ndarray | None = None
) -> np.ndarray:
    """``out[k]`` = hypervolume of the first ``k + 1`` rows (search progress, in row order).

    The reference defaults to :func:`default_reference_point` of *all* rows, so the curve is
    non-decreasing and its last value equals :func:`hypervolume` of all rows.
    """
    loss = to_minimization(values, directions)
    out = np.zeros(loss.shape[0])
    if loss.shape[0] == 0:
        return out
    ref = _reference_loss(values, directions, reference)
    front = np.empty((0, loss.shape[1]))
    hv = 0.0
    for k, point in enumerate(loss):
        # a point weakly dominated by the current front cannot change the hypervolume: skip the recompute
        if not np.any(np.all(front <= point, axis=1)):
            front = np.vstack([front[~np.all(point <= front, axis=1)], point])
            hv = _hv_loss(front, ref)
        out[k] = hv
    return out
