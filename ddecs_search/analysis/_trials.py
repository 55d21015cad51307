"""Reading experiment directories: the trials table and the objectives of ``space.yaml``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ddecs_search._imports import require
from ddecs_search.analysis._constraints import Constraint, constraints_from_space
from ddecs_search.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

Objective = tuple[str, str]  # (metric name, "min" | "max")

DEFAULT_OBJECTIVES: tuple[Objective, ...] = (("accuracy", "max"), ("latency_ms", "min"))
TRIALS_FILE = "trials.csv"
SPACE_FILE = "space.yaml"
COMPLETED_STATE = "TERMINATED"
# columns holding JSON text in the trials table (config/ columns may too: see parse_json_cell)
JSON_COLUMNS = ("exit_fractions", "exit_accuracies")
_TEXT_COLUMNS = ("trial_id", "state", "device", "node_id", "energy_source", "policy_kind", "error")


def experiment_dirs(exp_dirs: str | Path | Sequence[str | Path]) -> list[Path]:
    """One path or a sequence of paths as a non-empty list of Paths."""
    if isinstance(exp_dirs, (str, Path)):
        return [Path(exp_dirs)]
    dirs = [Path(d) for d in exp_dirs]
    if not dirs:
        raise ConfigError("no experiment directory given")
    return dirs


def _check_experiment(path: Path) -> Path:
    trials = path / TRIALS_FILE
    if not trials.is_file():
        why = "does not exist" if not path.exists() else f"has no {TRIALS_FILE}"
        raise ConfigError(
            f"{path}: not an experiment directory ({why}); pass the folder `ddecs-search run` created, "
            f"e.g. experiments/<name>"
        )
    return trials


def _read_table(path: Path) -> pd.DataFrame:
    pd = require("pandas")
    trials = _check_experiment(path)
    try:  # text columns stay text even when they look numeric (trial ids like "00012")
        return pd.read_csv(trials, dtype={c: str for c in _TEXT_COLUMNS})
    except pd.errors.EmptyDataError:  # created but no trial reported yet
        return pd.DataFrame(columns=["trial_id", "state"])
    except pd.errors.ParserError as exc:
        raise ConfigError(f"{trials}: not a readable trials table: {exc}") from None


def load_trials(exp_dirs: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read the trials table of one or several experiment directories.

    Works on finished and still-running experiments: every row of ``trials.csv`` is returned (any
    ``state``); :func:`completed_trials` selects the rows a front is built from. With several
    directories an ``experiment`` column names each row's directory (its name, or its path when two
    names collide), so runs can be compared.

    Raises:
        ConfigError: a path that does not exist or has no ``trials.csv``.
    """
    pd = require("pandas")
    dirs = experiment_dirs(exp_dirs)
    frames = [_read_table(d) for d in dirs]
    if len(dirs) == 1 and isinstance(exp_dirs, (str, Path)):
        return frames[0]
    names = [d.name for d in dirs]
    if len(set(names)) != len(names):
        names = [str(d) for d in dirs]
    for name, frame in zip(names, frames):
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


def _read_space(exp_dir: str | Path) -> tuple[dict[str, Any], Path]:
    path = Path(exp_dir) / SPACE_FILE
    if not path.is_file():
        return {}, path
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data, path


def read_objectives(exp_dir: str | Path) -> list[Objective]:
    """The ``objectives:`` of ``EXP/space.yaml`` as ``(name, "min"|"max")``.

    Default (no file or no list): accuracy (max), latency_ms (min).
    """
    data, path = _read_space(exp_dir)
    entries = data.get("objectives")
    if not entries:
        return list(DEFAULT_OBJECTIVES)
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("mode") not in ("min", "max") or not entry.get("name"):
            raise ConfigError(
                f"{path}: objectives[{i}] must be {{name: METRIC, mode: min|max}}, got {entry!r}"
            )
        out.append((str(entry["name"]), str(entry["mode"])))
    return out


def read_constraints(exp_dir: str | Path) -> list[Constraint]:
    """The ``constraints:`` of ``EXP/space.yaml`` (``{metric, max, min}``) as :class:`Constraint`."""
    data, path = _read_space(exp_dir)
    return constraints_from_space(data.get("constraints") or (), str(path))


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
