"""Plotly figures of the report: every function turns :class:`ReportData` (or plain arrays) into a figure.

Nothing here computes a front or a selection: that is ``_report``'s job (optuna's split between
``_get_pareto_front_info`` and ``_get_pareto_front_plot``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ddecs_search._imports import require
from ddecs_search.analysis._exit_figures import confusion_figure, exit_names, per_class_exit_figure
from ddecs_search.analysis._format import format_cell
from ddecs_search.analysis._pareto import ALL_GROUP
from ddecs_search.analysis._trials import Objective, parse_json_cell

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ddecs_search.analysis._report import ReportData

GREY = "rgba(140,140,140,0.45)"
FRONT_BLUE = "#1f77b4"
COLORSCALE = "Viridis"
_SYMBOLS_3D = ("circle", "diamond", "square", "cross", "x")  # one per device group
_MAX_CATEGORIES = 15  # a categorical config column with more values is left out of parallel coordinates
_MAX_HOVER = 200  # characters of one value in a hover label
_KEY_METRICS = (
    "val_accuracy",
    "accuracy",
    "expected_latency_ms",
    "latency_ms",
    "verified_latency_ms",
    "energy_mj",
    "macs",
    "speedup",
    "val_accuracy_drop",
    "accuracy_drop",
    "latency_source",
)


def _go() -> Any:
    return require("plotly.graph_objects")


def _palette() -> list[str]:
    return list(require("plotly.colors").qualitative.D3)


def axis_title(name: str, direction: str) -> str:
    return f"{name} ({'higher' if direction == 'max' else 'lower'} is better)"


def _fmt(value: Any, column: str) -> str:
    return format_cell(value, column, max_len=_MAX_HOVER)


def hover_text(df: pd.DataFrame, objectives: Sequence[Objective]) -> list[str]:
    """One HTML hover label per row: trial, objectives and key metrics, then the full config."""
    metrics = list(dict.fromkeys([n for n, _ in objectives] + [m for m in _KEY_METRICS if m in df.columns]))
    extra = [c for c in ("experiment", "group", "rank", "exit_fractions") if c in df.columns]
    if "group" in extra and set(df["group"]) <= {ALL_GROUP}:
        extra.remove("group")
    config = [c for c in df.columns if str(c).startswith("config/")]
    out = []
    for _, row in df.iterrows():
        lines = [f"<b>trial {row.get('trial_id', '?')}</b>"]
        if parse_json_cell(row.get("summary")) is not None:
            lines.append(html.escape(str(row["summary"])))
        lines += [f"{c}: {_fmt(row[c], c)}" for c in metrics + extra if parse_json_cell(row[c]) is not None]
        if "feasible" in df.columns and not row["feasible"]:
            lines.append("<i>violates a constraint</i>")
        lines += [f"{c.removeprefix('config/')}: {_fmt(row[c], c)}" for c in config]
        out.append("<br>".join(lines))
    return out


def _xy(objectives: Sequence[Objective]) -> tuple[Objective, Objective] | None:
    """2-D axes: y = the first "max" objective (accuracy), x = the first other one (latency)."""
    if len(objectives) < 2:
        return None
    y = next((o for o in objectives if o[1] == "max"), objectives[0])
    x = next(o for o in objectives if o != y)
    return x, y


def _marker_colors(data: ReportData, rows: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    metric = data.color_metric
    if metric is None or metric not in rows.columns or rows[metric].isna().all():
        return {"color": FRONT_BLUE, **extra}
    scale = data.ranked[metric].dropna()
    return {
        "color": rows[metric],
        "colorscale": COLORSCALE,
        "cmin": float(scale.min()),
        "cmax": float(scale.max()),
        "colorbar": {"title": {"text": metric}},
        **extra,
    }


def pareto_2d_figure(data: ReportData) -> go.Figure | None:
    """All trials in grey, the front (per device group) highlighted and coloured, the static baseline."""
    axes = _xy(data.objectives)
    if axes is None:
        return None
    (x, xdir), (y, ydir) = axes
    go, palette = _go(), _palette()
    fig = go.Figure()
    ranked = data.ranked
    fig.add_trace(
        go.Scatter(
            x=ranked[x],
            y=ranked[y],
            mode="markers",
            name="all trials",
            marker={"color": GREY, "size": 7, "symbol": np.where(ranked["feasible"], "circle", "x")},
            text=hover_text(ranked, data.objectives),
            hovertemplate="%{text}<extra></extra>",
        )
    )
    grouped = data.group_by is not None
    for i, (group, sub) in enumerate(data.front.groupby("group", sort=True)):
        sub = sub.sort_values(x, kind="stable")
        fig.add_trace(
            go.Scatter(
                x=sub[x],
                y=sub[y],
                mode="lines+markers",
                name=f"Pareto front ({group})" if grouped else "Pareto front",
                line={"color": palette[i % len(palette)], "width": 2},
                marker=_marker_colors(
                    data, sub, size=12, line={"width": 1, "color": "black"}, showscale=i == 0
                ),
                text=hover_text(sub, data.objectives),
                hovertemplate="%{text}<extra></extra>",
            )
        )
    for _, row in data.baseline.iterrows():
        if x in row and y in row and np.isfinite(row[x]) and np.isfinite(row[y]):
            fig.add_trace(
                go.Scatter(
                    x=[row[x]],
                    y=[row[y]],
                    mode="markers",
                    name=f"static baseline ({row['group']})"
                    if grouped
                    else "static baseline (no early exit)",
                    marker={
                        "symbol": "star",
                        "size": 18,
                        "color": "crimson",
                        "line": {"width": 1, "color": "black"},
                    },
                    hovertemplate=f"static baseline<br>{x}: %{{x:.4g}}<br>{y}: %{{y:.4g}}<extra></extra>",
                )
            )
    fig.update_layout(
        title=f"Pareto front: {y} vs {x}"
        + (
            f" (front on all {len(data.objectives)} objectives, projected)"
            if len(data.objectives) > 2
            else ""
        ),
        xaxis_title=axis_title(x, xdir),
        yaxis_title=axis_title(y, ydir),
        legend={"orientation": "h", "y": -0.18},
        height=600,
        margin={"t": 60},
    )
    return fig


def pareto_3d_figure(data: ReportData) -> go.Figure | None:
    """The first three objectives in 3-D (only with three or more objectives)."""
    if len(data.objectives) < 3:
        return None
    go = _go()
    (a, ad), (b, bd), (c, cd) = data.objectives[:3]
    ranked = data.ranked
    fig = go.Figure(
        go.Scatter3d(
            x=ranked[a],
            y=ranked[b],
            z=ranked[c],
            mode="markers",
            name="all trials",
            marker={"size": 3, "color": GREY},
            text=hover_text(ranked, data.objectives),
            hovertemplate="%{text}<extra></extra>",
        )
    )
    for i, (group, sub) in enumerate(data.front.groupby("group", sort=True)):
        fig.add_trace(
            go.Scatter3d(
                x=sub[a],
                y=sub[b],
                z=sub[c],
                mode="markers",
                name=f"Pareto front ({group})" if data.group_by else "Pareto front",
                marker=_marker_colors(
                    data, sub, size=6, symbol=_SYMBOLS_3D[i % len(_SYMBOLS_3D)], showscale=i == 0
                ),
                text=hover_text(sub, data.objectives),
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"Pareto front in 3-D: {a}, {b}, {c}",
        height=650,
        margin={"t": 60},
        legend={"orientation": "h", "y": -0.05},
        scene={
            "xaxis_title": axis_title(a, ad),
            "yaxis_title": axis_title(b, bd),
            "zaxis_title": axis_title(c, cd),
        },
    )
    return fig


def _dimension(label: str, values: pd.Series) -> dict[str, Any] | None:
    pd = require("pandas")
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum() and values.notna().any():
        return {"label": label, "values": numeric.to_numpy(dtype=float)}
    text = values.map(lambda v: _fmt(v, label))
    cats = sorted(text.unique())
    if len(cats) > _MAX_CATEGORIES:
        return None
    codes = {c: i for i, c in enumerate(cats)}
    ticks = [c if len(c) <= 24 else c[:23] + "…" for c in cats]
    return {
        "label": label,
        "values": text.map(codes).to_numpy(),
        "tickvals": list(range(len(cats))),
        "ticktext": ticks,
    }


def parallel_coordinates_figure(data: ReportData) -> go.Figure | None:
    """Configs (left) against objectives (right); front members in blue, the rest in grey."""
    ranked = data.ranked
    if len(ranked) == 0:
        return None
    go = _go()
    config = [c for c in ranked.columns if str(c).startswith("config/")]
    columns = config + [n for n, _ in data.objectives]
    dims = [d for c in columns if (d := _dimension(c.removeprefix("config/"), ranked[c])) is not None]
    on_front = ((ranked["rank"] == 0) & ranked["feasible"]).astype(int).to_numpy()
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": on_front,
                "colorscale": [[0, "rgb(190,190,190)"], [1, FRONT_BLUE]],
                "cmin": 0,
                "cmax": 1,
            },
        )
    )
    fig.update_layout(
        title="Configurations vs objectives (blue: Pareto front)",
        height=520,
        margin={"t": 90, "l": 60, "r": 60},
    )
    return fig


def _lists(series: pd.Series) -> list[list[Any]]:
    return [v if isinstance(v := parse_json_cell(x), list) else [] for x in series]


def exit_profile_figure(data: ReportData) -> go.Figure | None:
    """For each front member: where samples leave (stacked bars) and the accuracy at each exit."""
    front = data.front
    if len(front) == 0 or "exit_fractions" not in front.columns:
        return None
    go = _go()
    make_subplots = require("plotly.subplots").make_subplots
    fractions = _lists(front["exit_fractions"])
    accs = _lists(front["exit_accuracies"]) if "exit_accuracies" in front.columns else [[] for _ in fractions]
    width = max((len(f) for f in fractions), default=1)
    names = exit_names(width)
    labels = [
        f"{t} ({g})" if data.group_by else str(t)
        for t, g in zip(front["trial_id"], front["group"], strict=False)
    ]
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.55, 0.45],
        horizontal_spacing=0.14,
        subplot_titles=(
            "Where samples leave (fraction per exit)",
            "Accuracy of the samples leaving at each exit",
        ),
    )
    palette = _palette()
    for j, name in enumerate(names):  # align each trial's exits on the left, its final exit on "final"
        column = [
            (f[-1] if name == "final" else (f[j] if j < len(f) - 1 else 0.0)) if f else 0.0 for f in fractions
        ]
        fig.add_trace(
            go.Bar(
                y=labels,
                x=column,
                name=name,
                orientation="h",
                marker_color=palette[j % len(palette)],
                legendgroup="exits",
            ),
            row=1,
            col=1,
        )
    for label, acc in zip(labels, accs, strict=False):
        if acc:
            xs = exit_names(len(acc))
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[a if a is not None else None for a in acc],
                    mode="lines+markers",
                    name=label,
                    showlegend=False,
                    connectgaps=False,
                    hovertemplate=f"{label}<br>%{{x}}: %{{y:.4g}}<extra></extra>",
                ),
                row=1,
                col=2,
            )
    fig.update_layout(
        barmode="stack",
        height=max(420, 26 * len(front) + 180),
        title="Exit profile of the front",
        legend={"orientation": "h", "y": -0.12},
        margin={"t": 80},
    )
    fig.update_xaxes(title_text="fraction of test samples", range=[0, 1], row=1, col=1)
    fig.update_xaxes(categoryorder="array", categoryarray=names, row=1, col=2)
    fig.update_yaxes(title_text="accuracy (test)", row=1, col=2)
    return fig


def hypervolume_figure(data: ReportData) -> go.Figure | None:
    """Hypervolume of the feasible trials finished so far, per device group (search progress)."""
    hv = data.hv_history
    if len(hv) == 0:
        return None
    go = _go()
    fig = go.Figure()
    for group, sub in hv.groupby("group", sort=True):
        fig.add_trace(
            go.Scatter(
                x=sub["trial_index"],
                y=sub["hypervolume"],
                mode="lines+markers",
                line_shape="hv",
                name=str(group) if data.group_by else "hypervolume",
                text=sub["trial_id"],
                hovertemplate="trial %{text}<br>HV %{y:.4g}<extra></extra>",
            )
        )
    names = [n for n, _ in data.objectives]
    refs = "; ".join(
        (f"{g}: " if data.group_by else "")
        + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, ref, strict=False))
        for g, ref in data.reference_points.items()
    )
    fig.update_layout(
        title=f"Hypervolume over trials<br><sup>reference point: {refs} "
        "(worst observed value padded by 10 % of the range)</sup>",
        xaxis_title="trial index",
        yaxis_title="hypervolume",
        height=420,
        margin={"t": 80},
    )
    return fig


def report_figures(data: ReportData) -> dict[str, go.Figure]:
    """The report's figures in page order, keyed by a short name (absent ones skipped)."""
    figures = {
        "pareto_2d": pareto_2d_figure(data),
        "pareto_3d": pareto_3d_figure(data),
        "parallel_coordinates": parallel_coordinates_figure(data),
        "exit_profile": exit_profile_figure(data),
        "hypervolume": hypervolume_figure(data),
    }
    details = next(iter(data.exit_details.values()), None)  # the knee's, when it saved its exits
    if details is not None:
        figures["per_class_exits"] = per_class_exit_figure(
            details.class_names, details.exit_indices, details.labels, details.num_exits
        )
        figures["confusion"] = confusion_figure(details.predictions, details.labels, details.class_names)
        for key in ("per_class_exits", "confusion"):
            fig = figures[key]
            fig.update_layout(title=f"{fig.layout.title.text} — trial {details.trial_id}")
    return {k: v for k, v in figures.items() if v is not None}
