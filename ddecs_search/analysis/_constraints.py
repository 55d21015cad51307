"""Feasibility constraints on trial metrics: ``val_accuracy_drop<=0.01``, ``latency_ms<2``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ddecs_search.errors import ConfigError
from ddecs_search.metrics import selection_error

if TYPE_CHECKING:
    import pandas as pd

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_PATTERN = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")
_FORM = "METRIC OP VALUE with OP one of <=, >=, <, > (e.g. 'val_accuracy_drop<=0.01')"


class Constraint(NamedTuple):
    """``metric op value``; a trial is feasible when the comparison holds (NaN is infeasible)."""

    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def mask(self, df: pd.DataFrame) -> np.ndarray:
        """(N,) bool: rows of ``df`` satisfying the constraint."""
        check_columns(df, [self.metric], what=f"constraint '{self}'")
        col = df[self.metric].to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            return np.asarray(_OPS[self.op](col, self.value)) & ~np.isnan(col)


def parse_constraint(text: str | Constraint) -> Constraint:
    """Parse ``"val_accuracy_drop<=0.01"`` into a :class:`Constraint`.

    A constraint chooses (it decides which trials may be on the front and be picked), so a metric
    computed with test labels (``accuracy_drop``, ``accuracy``, ...) is refused with its selection-part
    partner named, as objectives are: choose on validation, report on test.

    Raises:
        ConfigError: naming the constraint and the valid form, or why its metric may not choose.
    """
    if isinstance(text, Constraint):
        return text
    match = _PATTERN.match(str(text))
    if not match:
        raise ConfigError(f"constraint {text!r}: expected {_FORM}")
    metric, op, raw = match.groups()
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"constraint {text!r}: value {raw!r} is not a number; expected {_FORM}") from None
    if not np.isfinite(value):
        raise ConfigError(f"constraint {text!r}: value must be finite; expected {_FORM}")
    why = selection_error(metric)
    if why:
        raise ConfigError(f"constraint {text!r}: {why}")
    return Constraint(metric, op, value)


def feasible_mask(df: pd.DataFrame, constraints: Sequence[str | Constraint]) -> np.ndarray:
    """(N,) bool: rows satisfying every constraint (all True without constraints)."""
    mask = np.ones(len(df), dtype=bool)
    for c in constraints:
        mask &= parse_constraint(c).mask(df)
    return mask


def check_columns(df: pd.DataFrame, names: Iterable[str], *, what: str) -> None:
    """ConfigError listing the table's columns when a name is not one of them."""
    missing = [n for n in names if n not in df.columns]
    if missing:
        cols = ", ".join(str(c) for c in df.columns)
        raise ConfigError(f"{what}: unknown metric {', '.join(map(repr, missing))}; trial columns: {cols}")
