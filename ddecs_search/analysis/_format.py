"""Text renderings of a front (or any trials table): fixed-width table, CSV, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ddecs_search.analysis._pareto import ALL_GROUP
from ddecs_search.analysis._trials import parse_json_cell
from ddecs_search.errors import ConfigError
from ddecs_search.strict_json import json_safe

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "csv", "json")
CONFIG_PREFIX = "config/"
_INTERNAL_COLUMNS = ("feasible",)
# The figures a front row shows: chosen-on metrics (val_*, expected_*) first, then the test and
# measured ones shown beside them (the report's comparison table uses the same list).
FRONT_FIGURES = (
    "val_accuracy",
    "accuracy",
    "val_accuracy_drop",
    "expected_latency_ms",
    "latency_ms",
    "verified_latency_ms",
    "expected_over_verified",
    "expected_speedup",
    "speedup",
    "verified_speedup",
    "energy_mj",
    "macs",
)
TABLE_COLUMNS = ("experiment", "group", "trial_id", "summary", *FRONT_FIGURES, "crowding")
_MAX_CELL = 28  # table format: longer text is cut with an ellipsis
_WIDE_CELLS = {"summary": 72}


def _plain(value: Any) -> Any:
    """numpy scalars → Python, NaN/inf → None, JSON text → lists/dicts (so the output is strict JSON)."""
    return parse_json_cell(json_safe(value))


def front_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts: ``trial_id``, ``summary`` and ``config`` first, then the metrics under their
    trials-table names; JSON text parsed, NaN → None.

    ``config`` is the evaluated candidate (backbone, exit points, branches, training, policy) as the
    trial reported it; ``search_params`` holds the sampler's raw parameters (the ``config/`` columns).
    The static network's row has ``config`` ``{"static": true}``.
    """
    records = []
    for _, row in df.iterrows():
        rec: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for col, value in row.items():
            if col in _INTERNAL_COLUMNS:
                continue
            if str(col).startswith(CONFIG_PREFIX):
                if _plain(value) is not None:
                    params[str(col)[len(CONFIG_PREFIX) :]] = _plain(value)
            else:
                rec[str(col)] = _plain(value)
        candidate = rec.pop("candidate", None)
        if isinstance(candidate, dict):
            config = candidate
        else:
            config = {"static": True} if rec.get("static") else params
        ordered = {"trial_id": rec.pop("trial_id"), "summary": rec.pop("summary", None), "config": config}
        ordered.update(rec)
        ordered["search_params"] = params
        records.append(ordered)
    return records


def format_cell(value: Any, column: str, max_len: int = _MAX_CELL) -> str:
    """One value as short text: 4 significant digits, MACs in millions, '-' for missing."""
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        if column.endswith("macs") and abs(value) >= 1e5:
            return f"{value / 1e6:.2f}M"
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(",", ":"))
    text = str(value)
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


def table_columns(df: pd.DataFrame, columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return [c for c in columns if c in df.columns]
    cols = []
    for c in TABLE_COLUMNS:
        if c not in df.columns:
            continue
        if c == "group" and set(df[c].dropna().unique()) <= {ALL_GROUP}:
            continue
        if c in ("experiment", "energy_mj") and df[c].notna().sum() == 0:
            continue
        cols.append(c)
    return cols


def format_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A fixed-width text table of the key columns (numbers to 4 significant digits, '-' for missing)."""
    cols = table_columns(df, columns)
    header = [c[len(CONFIG_PREFIX) :] if c.startswith(CONFIG_PREFIX) else c for c in cols]
    rows = [
        [format_cell(v, c, _WIDE_CELLS.get(c, _MAX_CELL)) for c, v in zip(cols, r, strict=False)]
        for r in df[cols].itertuples(index=False)
    ]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(cols))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=False)
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if not rows:
        out.append("(no trials)")
    return "\n".join(out) + "\n"


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("M"))
    except ValueError:
        return text == "-"
    return True


def format_front(df: pd.DataFrame, fmt: str = "table", columns: Sequence[str] | None = None) -> str:
    """Render a front (or any trials table) as ``"table"``, ``"csv"`` or ``"json"``.

    Args:
        df: rows to render, e.g. :func:`pareto_front`'s result.
        fmt: ``table`` (fixed-width key columns), ``csv`` (every column, trials-table names, JSON text
            kept as text) or ``json`` (a list of :func:`front_records`: ``trial_id``, nested ``config``
            and the metrics under their trials-table names, JSON lists parsed, NaN → null).
        columns: the columns of the ``table`` format (default: :data:`TABLE_COLUMNS` that are present).

    Raises:
        ConfigError: an unknown format.
    """
    if fmt == "table":
        return format_table(df, columns)
    if fmt == "csv":
        return df.drop(columns=[c for c in _INTERNAL_COLUMNS if c in df.columns]).to_csv(index=False)
    if fmt == "json":
        return json.dumps(front_records(df), indent=2, allow_nan=False) + "\n"
    raise ConfigError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
