"""The static contender: which static network a search's trials are ranked against, chosen on validation.

One owner for a rule two layers apply: the Pareto analyzer's static row (``analysis.static_rows``: the
front, ``pareto``, the report) and the search's verification picks (``search.pick_front``), so the search
never verifies a trial that the front then calls dominated.

A space's trials can be compared with several static networks, all of the backbone's architecture (one
latency, one MAC count), trained differently:

- the baseline: what ``frozen`` candidates keep as their backbone;
- the baseline trained further for a ``joint`` candidate's branch epochs (``training.static_reference``):
  the static network "trained as long", each joint trial's ``baseline_*`` columns;
- a ``joint`` candidate's own backbone with its exits switched off (``backbone_val_accuracy``,
  ``backbone_accuracy``): trained with its exits for the same budget, it is a static network a user can
  deploy, and it can validate better than both (the default job, 2026-12-02: a joint trial's backbone
  0.9112 on validation against 0.9056 for the baseline and 0.9048 for the baseline trained 3 epochs
  further).

The contender is the one with the best accuracy on the selection part of validation; its test accuracy
is reported beside it, never used to choose (ties: the baseline, then the further-trained baselines,
then own backbones in trial order).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

BASELINE = "baseline"
#: the group column when trials timed on one device ran in more than one runtime (torch, onnxruntime)
DEVICE_RUNTIME = "device_runtime"
#: the trials-table columns the contender's accuracies come from: a trial's static reference ...
REFERENCE_COLUMNS = ("baseline_val_accuracy", "baseline_accuracy")
#: ... and its own backbone with the exits switched off
BACKBONE_COLUMNS = ("backbone_val_accuracy", "backbone_accuracy")


@dataclass(frozen=True)
class StaticChoice:
    """The chosen static network: its name (``None`` when every trial has the same one: nothing to
    name), its selection-part accuracy and its test accuracy (NaN where the table has none)."""

    name: str | None
    val_accuracy: float
    accuracy: float


def static_variant(candidate: object) -> str | None:
    """Which static network a trial's ``baseline_*`` columns describe: the baseline, or the baseline
    trained further.

    ``frozen`` candidates (and joint ones with 0 epochs) compare with the baseline itself; ``joint``
    ones with the baseline continued for their branch epochs (``training.static_reference``).
    ``candidate`` is the trials table's ``candidate`` cell (a dict or its JSON); ``None`` if unreadable.
    """
    if isinstance(candidate, str):
        try:
            candidate = json.loads(candidate)
        except json.JSONDecodeError:
            return None
    training = candidate.get("training") if isinstance(candidate, dict) else None
    if not isinstance(training, dict):
        return None
    try:
        extra = int(training.get("epochs") or 0)
    except (TypeError, ValueError):
        return None
    return f"{BASELINE} +{extra} ep" if training.get("mode") == "joint" and extra > 0 else BASELINE


def own_backbone_name(trial_id: object) -> str:
    """How the static row names a trial's backbone with its exits switched off."""
    return f"backbone of trial {trial_id} without its exits"


def _median(frame: pd.DataFrame, col: str) -> float:
    """The column's median as a float (NaN when absent or empty)."""
    import pandas as pd

    if col not in frame.columns:
        return math.nan
    values = pd.to_numeric(frame[col], errors="coerce").dropna()
    return float(values.median()) if len(values) else math.nan


def static_values(trials: pd.DataFrame) -> tuple[StaticChoice, dict[str, float]]:
    """The contender (:func:`choose_static`) and its value of each ``STATIC_VALUES`` metric the table can
    give: the chosen network's accuracies, the other ``baseline_*`` columns' medians (same architecture,
    so every trial's), the fixed values of a network without exits. NaN where a column has no value; a
    metric whose column is absent is left out."""
    from ddecs_search.metrics import STATIC_VALUES

    choice = choose_static(trials)
    chosen = dict(zip(REFERENCE_COLUMNS, (choice.val_accuracy, choice.accuracy), strict=True))
    values: dict[str, float] = {}
    for metric, source in STATIC_VALUES.items():
        if not isinstance(source, str):
            values[metric] = float(source)
        elif source in chosen:
            values[metric] = chosen[source]
        elif source in trials.columns:
            values[metric] = _median(trials, source)
    return choice, values


def choose_static(trials: pd.DataFrame) -> StaticChoice:
    """The static network ``trials`` (one group: same backbone, device) are ranked against.

    Without a ``candidate`` column (an older table) every trial's ``baseline_*`` columns are taken as
    one static network (medians), as before the variants existed.
    """
    import pandas as pd

    val_col, test_col = REFERENCE_COLUMNS
    if "candidate" not in trials.columns or val_col not in trials.columns:
        return StaticChoice(None, _median(trials, val_col), _median(trials, test_col))
    names = pd.Series([static_variant(c) for c in trials["candidate"]], index=trials.index, dtype=object)
    if names.isna().any():
        return StaticChoice(None, _median(trials, val_col), _median(trials, test_col))
    options: list[StaticChoice] = [
        StaticChoice(str(name), _median(rows, val_col), _median(rows, test_col))
        for name, rows in sorted(trials.groupby(names), key=lambda kv: (kv[0] != BASELINE, kv[0]))
    ]
    bb_val, bb_test = BACKBONE_COLUMNS
    if bb_val in trials.columns:
        trained = trials[names != BASELINE]  # frozen trials' backbone is the baseline itself
        ids = trained["trial_id"] if "trial_id" in trained.columns else trained.index.to_series()
        for index, tid in ids.items():
            row = trained.loc[[index]]
            options.append(StaticChoice(own_backbone_name(tid), _median(row, bb_val), _median(row, bb_test)))
    valid = [o for o in options if math.isfinite(o.val_accuracy)]
    if not valid:
        return StaticChoice(None, _median(trials, val_col), _median(trials, test_col))
    best = max(valid, key=lambda o: o.val_accuracy)  # max keeps the first of equal values
    if len(options) == 1:
        return StaticChoice(None, best.val_accuracy, best.accuracy)
    return best


def timing_groups(trials: pd.DataFrame, metric_names: Sequence[str]) -> tuple[str | None, list[str]]:
    """The column that splits ``trials`` into groups ranked apart (None: one group), and the groups.

    Timings and energy are comparable only on one device in one runtime: when a compared metric is
    device-bound (``metrics.DEVICE_BOUND_METRICS``) and the trials ran on several devices, or in several
    runtimes (``measurement.runtime``), each group gets its own front and its own static contender. The
    groups are devices, or device and runtime when more than one runtime appears (the column
    ``device_runtime`` is then added to ``trials``, which is modified in place). One owner for the
    analyzer's fronts (``analysis.compute_front``) and the search's verification picks.
    """
    from ddecs_search.metrics import DEVICE_BOUND_METRICS

    if not any(n in DEVICE_BOUND_METRICS for n in metric_names) or "device" not in trials.columns:
        return None, []
    column = "device"
    if "runtime" in trials.columns and trials["runtime"].dropna().nunique() > 1:
        column = DEVICE_RUNTIME
        runtime = trials["runtime"].fillna("unknown runtime").astype(str)
        trials[column] = trials["device"].astype(str) + " " + runtime
        trials.loc[trials["device"].isna(), column] = None
    groups = sorted(map(str, trials[column].dropna().unique()))
    return (column, groups) if len(groups) > 1 else (None, [])
