"""The self-contained HTML report: one file, plotly.js inlined, opens with no network."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ddecs_search._atomic import write_text_atomic
from ddecs_search._imports import require
from ddecs_search.analysis._constraints import Constraint
from ddecs_search.analysis._figures import report_figures
from ddecs_search.analysis._format import format_cell, table_columns
from ddecs_search.analysis._report import ReportData, build_report_data, comparison_table
from ddecs_search.analysis._trials import COMPLETED_STATE, Objective, experiment_dirs

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

REPORT_FILE = "report.html"
FIGURE_TITLES = {
    "pareto_2d": "Pareto front",
    "pareto_3d": "Pareto front in 3-D",
    "parallel_coordinates": "Configurations against objectives",
    "exit_profile": "Exit profile of the front",
    "hypervolume": "Search progress",
    "per_class_exits": "Exits per class (recommended trial)",
    "confusion": "Confusion per exit (recommended trial)",
    "param_importances": "Which parameters mattered (Optuna importances)",
}
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1320px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 4px; } h2 { font-size: 1.2em; margin-top: 28px; }
.meta { color: #555; font-size: 0.92em; }
.howto { background: #f4f7fb; border-left: 4px solid #1f77b4; padding: 8px 16px; }
.notices { background: #fff8e6; border-left: 4px solid #e6a700; padding: 8px 16px; }
table.data { border-collapse: collapse; font-size: 0.88em; margin: 8px 0; }
table.data th, table.data td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
table.data th { background: #f0f0f0; } table.data td.text, table.data th.text { text-align: left; }
table.data td:first-child { min-width: 17em; }
.scroll { overflow-x: auto; }
section.figure { margin-top: 18px; border-top: 1px solid #eee; }
"""
_HOW_TO_READ = (
    "Each point is one trial: an early-exit network (exit points, branches, training mode) with an exit "
    "policy. A trial is on the <b>Pareto front</b> when no other trial is at least as good on every "
    "objective and strictly better on one; grey points are dominated (an × violates a constraint). The "
    "red star is the static baseline, the backbone with no early exit. Hover a point for its full "
    "configuration. The parallel-coordinates view shows which settings the front members share; the exit "
    "profile shows where their test samples leave and how accurate each exit is; the hypervolume curve "
    "(area dominated by the front up to a reference point) stops rising when the search stops finding "
    "better trade-offs. The table recommends a configuration for common needs and compares it with the "
    "static baseline and with an oracle policy (every sample leaves at its earliest correct exit), the "
    "best any policy could do on the same exits."
)


def _html_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    cols = list(columns) if columns is not None else list(df.columns)
    text_cols = {c for c in cols if df[c].dtype == object or str(df[c].dtype) in ("str", "string")}

    def cls(c: str) -> str:
        return ' class="text"' if c in text_cols else ""

    head = "".join(f"<th{cls(c)}>{html.escape(c.removeprefix('config/'))}</th>" for c in cols)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{cls(c)}>{html.escape(format_cell(v, c, max_len=90))}</td>"
            for c, v in zip(cols, row, strict=False)
        )
        + "</tr>"
        for row in df[cols].itertuples(index=False)
    )
    table = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def _summary(data: ReportData) -> str:
    trials = data.trials
    states = trials["state"].value_counts().to_dict() if "state" in trials.columns else {}
    done = states.get(COMPLETED_STATE, len(trials) if not states else 0)
    others = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()) if s != COMPLETED_STATE)
    objectives = ", ".join(f"{n} ({d})" for n, d in data.objectives)
    constraints = ", ".join(map(str, data.constraints)) or "none"
    parts = [
        f"Experiments: {', '.join(d.root for d in data.exp_dirs)}",
        f"{len(trials)} trials ({done} finished{', ' + others if others else ''})",
        f"{len(data.front)} on the front",
        f"objectives: {objectives}",
        f"constraints: {constraints}",
        f"generated {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
    ]
    return " · ".join(html.escape(p) for p in parts)


def render_html(data: ReportData, figures: Mapping[str, go.Figure]) -> str:
    """The whole report page as one string (plotly.js inlined once, in the head)."""
    plotlyjs = require("plotly.offline").get_plotlyjs()
    notices = "".join(f"<li>{html.escape(n)}</li>" for n in data.notices)
    sections = [
        f'<section class="howto"><h2>How to read this</h2><p>{_HOW_TO_READ}</p></section>',
        f'<section class="notices"><h2>Notices</h2><ul>{notices}</ul></section>' if notices else "",
        "<section><h2>Recommended configurations</h2>" + _html_table(comparison_table(data)) + "</section>",
    ]
    for name, fig in figures.items():
        height = fig.layout.height or 500
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"fig-{name}",
            default_height=f"{height}px",
            config={"displaylogo": False, "responsive": True},
        )
        title = html.escape(FIGURE_TITLES.get(name, name))
        sections.append(f'<section class="figure" data-figure="{name}"><h2>{title}</h2>{div}</section>')
    front_cols = table_columns(data.front, None)
    sections.append(
        f"<section><h2>Pareto front members ({len(data.front)})</h2>"
        + _html_table(data.front, front_cols)
        + "</section>"
    )
    title = html.escape(data.title)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{plotlyjs}</script>\n</head>\n<body>\n'
        f'<h1>{title}</h1>\n<p class="meta">{_summary(data)}</p>\n'
        + "\n".join(s for s in sections if s)
        + "\n</body>\n</html>\n"
    )


def write_report(
    exp_dir: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    png_dir: str | Path | None = None,
    *,
    objectives: Sequence[Objective] | None = None,
    constraints: Sequence[str | Constraint] = (),
    budget: float | None = None,
) -> Path:
    """Build the report of one experiment (or several, compared) and write one self-contained HTML file.

    Args:
        exp_dir: experiment directory, or a list of them.
        out: the HTML path; default ``<first exp_dir>/report.html``.
        png_dir: also write one PNG per figure there (needs kaleido and a Chromium, see
            :func:`export_pngs`); the HTML is written first either way.
        objectives, constraints, budget: see :func:`build_report_data`.

    Returns:
        The HTML path.

    Raises:
        ConfigError: not an experiment directory, unknown objective or constraint metric.
        UserError: ``png_dir`` given but no Chromium (message says how to install it).
    """
    from ddecs_search import storage

    data = build_report_data(exp_dir, objectives, constraints, budget=budget)
    figures = report_figures(data)
    from ddecs_search.analysis._importance import report_importance_figures

    importance, notes = report_importance_figures(data.exp_dirs)  # experiments with an optuna.db
    figures.update(importance)
    data.notices.extend(notes)
    html = render_html(data, figures)
    if out is None:  # next to the (first) experiment, wherever it lives
        location = experiment_dirs(exp_dir)[0].path(REPORT_FILE)
        storage.write_text(location, html)
        return Path(location) if not storage.is_uri(location) else location  # type: ignore[return-value]
    path = Path(out)
    write_text_atomic(html, path)
    if png_dir is not None:
        from ddecs_search.analysis._png import export_pngs

        export_pngs(figures, png_dir)
    return path
