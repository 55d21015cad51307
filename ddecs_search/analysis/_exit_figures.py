"""Figures of one trial's per-sample exits (``test_exits.npz``): pure functions on arrays.

Hooks for the model-based views (issue 8): the report includes them when the recommended trial saved
``EXP/trials/<trial_id>/test_exits.npz``; callers with a model can pass arrays directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ddecs_search._imports import require
from ddecs_search.analysis._exit_stats import confusion_matrices, per_class_exit_fractions

if TYPE_CHECKING:
    import plotly.graph_objects as go


def exit_names(num_exits: int) -> list[str]:
    """``["exit 1", ..., "exit E-1", "final"]``."""
    return [f"exit {i + 1}" for i in range(num_exits - 1)] + ["final"]


def per_class_exit_figure(
    class_names: Sequence[str], exit_indices: np.ndarray, labels: np.ndarray, num_exits: int
) -> go.Figure:
    """Heatmap: for each class (rows), the fraction of its test samples leaving at each exit."""
    go = require("plotly.graph_objects")
    frac = per_class_exit_fractions(exit_indices, labels, len(class_names), num_exits)  # (C, E)
    fig = go.Figure(
        go.Heatmap(
            z=frac,
            x=exit_names(num_exits),
            y=list(class_names),
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=np.round(frac * 100).astype(int),
            texttemplate="%{text}%",
            hovertemplate="%{y} → %{x}: %{z:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Where each class leaves (fraction of the class's test samples)",
        height=max(360, 28 * len(class_names) + 140),
        yaxis={"autorange": "reversed"},
    )
    return fig


def confusion_figure(
    predictions_per_exit: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> go.Figure:
    """One row-normalised confusion matrix per exit (all test samples, whichever exit they took)."""
    go = require("plotly.graph_objects")
    make_subplots = require("plotly.subplots").make_subplots
    mats = confusion_matrices(predictions_per_exit, labels, len(class_names)).astype(float)  # (E, C, C)
    rows = mats.sum(axis=2, keepdims=True)
    norm = np.divide(mats, rows, out=np.zeros_like(mats), where=rows > 0)
    accs = [np.trace(m) / max(m.sum(), 1) for m in mats]
    names = exit_names(mats.shape[0])
    fig = make_subplots(
        rows=1,
        cols=len(names),
        shared_yaxes=True,
        horizontal_spacing=0.02,
        subplot_titles=[f"{n} (acc {a:.1%})" for n, a in zip(names, accs, strict=False)],
    )
    for e in range(len(names)):
        fig.add_trace(
            go.Heatmap(
                z=norm[e],
                x=list(class_names),
                y=list(class_names),
                coloraxis="coloraxis",
                hovertemplate="true %{y}, predicted %{x}: %{z:.1%}<extra></extra>",
            ),
            row=1,
            col=e + 1,
        )
    fig.update_layout(
        title="Confusion matrix of every exit (rows: true class, row-normalised)",
        coloraxis={"colorscale": "Blues", "cmin": 0, "cmax": 1},
        height=460,
    )
    fig.update_yaxes(autorange="reversed")
    return fig
