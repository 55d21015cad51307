"""Reading experiment directories for analysis, through :mod:`ddecs_search.experiment`.

The experiment module owns the layout and the trials table; this module only turns what it reads into
the analysis' plain types (objectives as ``(name, "min"|"max")``, constraints as ``metric op value``)
and concatenates several experiments for comparison. Any location ``run --storage`` accepts works.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddecs_search._imports import require
from ddecs_search.analysis._constraints import Constraint, parse_constraint
from ddecs_search.errors import ConfigError, UserError
from ddecs_search.experiment import COMPLETED_STATE, TRIALS_FILE, Experiment

if TYPE_CHECKING:
    import pandas as pd

Objective = tuple[str, str]  # (metric name, "min" | "max")

DEFAULT_OBJECTIVES: tuple[Objective, ...] = (("val_accuracy", "max"), ("expected_latency_ms", "min"))
# columns holding JSON text in the trials table (config/ columns may too: see parse_json_cell)
JSON_COLUMNS = ("exit_fractions", "exit_accuracies")

__all__ = ["COMPLETED_STATE", "DEFAULT_OBJECTIVES", "Experiment", "Objective"]


def experiment_dirs(exp_dirs: str | Path | Sequence[str | Path]) -> list[Experiment]:
    """One location or a sequence of them (local paths or URIs) as a non-empty list of experiments."""
    if isinstance(exp_dirs, (str, Path)):
        return [Experiment.at(str(exp_dirs))]
    dirs = [Experiment.at(str(d)) for d in exp_dirs]
    if not dirs:
        raise ConfigError("no experiment directory given")
    return dirs


def _read_table(exp: Experiment) -> pd.DataFrame:
    pd = require("pandas")
    if not exp.has_trials():
        from ddecs_search import storage

        why = "does not exist" if not storage.exists(exp.root) else f"has no {TRIALS_FILE}"
        raise ConfigError(
            f"{exp.root}: not an experiment directory ({why}); pass the folder `ddecs-search run` created, "
            f"e.g. experiments/<name>"
        )
    try:
        return exp.read_trials()
    except pd.errors.ParserError as exc:
        raise ConfigError(f"{exp.path(TRIALS_FILE)}: not a readable trials table: {exc}") from None


def load_trials(exp_dirs: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read the trials table of one or several experiment directories.

    Works on finished and still-running experiments: every row of ``trials.csv`` is returned (any
    ``state``); :func:`completed_trials` selects the rows a front is built from. With several
    directories an ``experiment`` column names each row's directory (its name, or its path when two
    names collide), so runs can be compared.

    Raises:
        ConfigError: a location that does not exist or has no ``trials.csv``.
    """
    pd = require("pandas")
    dirs = experiment_dirs(exp_dirs)
    frames = [_read_table(d) for d in dirs]
    if len(dirs) == 1 and isinstance(exp_dirs, (str, Path)):
        return frames[0]
    names = [d.name for d in dirs]
    if len(set(names)) != len(names):
        names = [d.root for d in dirs]
    for name, frame in zip(names, frames, strict=False):
        frame.insert(0, "experiment", name)
    return pd.concat(frames, ignore_index=True, sort=False)


def completed_trials(df: pd.DataFrame, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """Rows with ``state == TERMINATED`` (all rows when there is no state column) and ``metrics`` set."""
    pd = require("pandas")
    mask = df["state"].eq(COMPLETED_STATE) if "state" in df.columns else pd.Series(True, index=df.index)
    for m in metrics:
        if m in df.columns:
            mask &= df[m].notna()
    return df[mask]


def _space_error(exp: Experiment, exc: UserError) -> ConfigError:
    return ConfigError(f"{exc}") if str(exp.root) in str(exc) else ConfigError(f"{exp.root}: {exc}")


def read_objectives(exp_dir: str | Path | Experiment) -> list[Objective]:
    """The objectives the search optimised (``run.json``, energy fallback applied; else ``space.yaml``).

    Default (neither file): val_accuracy (max), expected_latency_ms (min).
    """
    exp = exp_dir if isinstance(exp_dir, Experiment) else Experiment.at(str(exp_dir))
    try:
        objectives = exp.read_objectives()
    except UserError as exc:
        raise _space_error(exp, exc) from None
    return [(o.name, o.mode) for o in objectives] or list(DEFAULT_OBJECTIVES)


def read_constraints(exp_dir: str | Path | Experiment) -> list[Constraint]:
    """The ``constraints:`` of ``EXP/space.yaml`` (``{metric, max, min}``) as :class:`Constraint`."""
    exp = exp_dir if isinstance(exp_dir, Experiment) else Experiment.at(str(exp_dir))
    try:
        constraints = exp.read_constraints()
    except UserError as exc:
        raise _space_error(exp, exc) from None
    out = []
    for c in constraints:
        for bound, op in ((c.max, "<="), (c.min, ">=")):
            if bound is not None:
                out.append(parse_constraint(Constraint(c.metric, op, float(bound))))
    return out


def parse_json_cell(value: Any) -> Any:
    """A JSON list/object stored as text → Python; other values unchanged, NaN → None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
