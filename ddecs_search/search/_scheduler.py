"""Multi-objective early stopping at epoch rungs (``search.early_stopping``).

Rule. After each rung epoch ``r`` (``rungs``; default every epoch before the last of the space's
longest training) a trial reports its *rung point*:

- ``rung_val_accuracy`` (max): accuracy of a threshold policy fitted on the *fit* part of the validation
  exit table of the epoch-``r`` model and scored on the disjoint *selection* part (validation only;
  ``dataset.selection_fraction`` / ``split_seed``, the same parts every choice of the search uses);
- ``rung_expected_macs`` (min): that policy's expected MACs per sample on the selection part, normalised
  to the static network (1.0), from the MAC counts of the candidate's modules (known before training)
  weighted by where the selection samples leave.

Only the dimensions the space's objectives need are compared: accuracy-type objectives use the first,
cost-type ones (latency, energy, MACs, speedups) the second. A trial whose point is dominated (no worse
in every dimension, better in one) by at least ``min_dominators`` points that other trials reported at
the *same* rung is stopped; a point on the rung's non-dominated front is never stopped. A stopped trial
keeps its partial record (``stopped_early``, ``rung_*`` values and its last epoch in ``trials.csv``),
is told to the sampler as pruned, and never reaches the front: only full evaluations do. Spaces with an
objective outside both families (e.g. ``train_time_s``) or with a single objective (ASHA's job,
``search.asha``) run without it.

The rung table lives in ``EXP/early_stopping.json`` (rewritten atomically at every rung point), so a
resumed search compares against the points of the interrupted run too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ddecs_search.config import Candidate, Objective, SearchSpace

RUNG_ACCURACY = "rung_val_accuracy"
RUNG_COST = "rung_expected_macs"
RUNG_EPOCH = "rung_epoch"
STATE_FILE = "early_stopping.json"

#: Objectives the rung's validation-accuracy proxy stands in for (accuracy-type, either direction).
ACCURACY_OBJECTIVES = ("val_accuracy", "val_accuracy_drop", "accuracy", "accuracy_drop", "table_accuracy")
#: Objectives the rung's expected-MAC proxy stands in for (cost-type, whatever their direction).
COST_OBJECTIVES = (
    "latency_ms",
    "latency_p95_ms",
    "expected_latency_ms",
    "energy_mj",
    "macs",
    "expected_cost",
    "speedup",
    "expected_speedup",
    "batched_throughput_speedup",
)


# ------------------------------------------------------------------------------------------ the rule
def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Does point ``a`` dominate ``b`` (``directions``: ``"max"``/``"min"`` per dimension)?"""
    sign = np.array([1.0 if d == "max" else -1.0 for d in directions])
    x, y = np.asarray(a, dtype=float) * sign, np.asarray(b, dtype=float) * sign
    return bool(np.all(x >= y) and np.any(x > y))


def dominator_count(
    point: Sequence[float], peers: Sequence[Sequence[float]], directions: Sequence[str]
) -> int:
    """How many of ``peers`` dominate ``point``."""
    return sum(dominates(p, point, directions) for p in peers)


def should_stop(
    point: Sequence[float], peers: Sequence[Sequence[float]], directions: Sequence[str], min_dominators: int
) -> bool:
    """Stop when at least ``min_dominators`` (>= 1) peers at the same rung dominate ``point``."""
    if min_dominators < 1:
        raise ValueError(f"min_dominators must be >= 1, got {min_dominators}")
    return dominator_count(point, peers, directions) >= min_dominators


def rung_dimensions(objectives: Sequence[Objective]) -> tuple[tuple[str, str], ...] | None:
    """The rung point's ``(key, direction)`` dimensions for these objectives, or None (no proxy for one)."""
    keys = []
    for o in objectives:
        if o.name in ACCURACY_OBJECTIVES:
            keys.append((RUNG_ACCURACY, "max"))
        elif o.name in COST_OBJECTIVES:
            keys.append((RUNG_COST, "min"))
        else:
            return None
    return tuple(dict.fromkeys(keys))


def active_rungs(space: SearchSpace, objectives: Sequence[Objective]) -> tuple[tuple[int, ...], str | None]:
    """The rung epochs the search stops at (empty: scheduler off) and a notice when it is off by necessity."""
    cfg = space.search.early_stopping
    if not cfg.enabled or space.search.asha or len(objectives) < 2:
        return (), None
    if rung_dimensions(objectives) is None:
        names = [o.name for o in objectives]
        return (), (
            f"search.early_stopping: off, objective(s) {names} include one without a per-epoch proxy "
            f"(accuracy-type: {', '.join(ACCURACY_OBJECTIVES)}; cost-type: {', '.join(COST_OBJECTIVES)})"
        )
    longest = max(space.training.epochs)
    rungs = tuple(r for r in (cfg.rungs or range(1, longest)) if r < longest)
    return rungs, None


# ------------------------------------------------------------------------------------ trial side
class RungProxy:
    """``(epoch, checkpoint_path) -> rung metrics`` of one trial ({} off a rung); loads val data once."""

    def __init__(self, space: SearchSpace, candidate: Candidate, rungs: Sequence[int]) -> None:
        from ddecs_search.search._fidelity import CheckpointScorer

        # the last epoch of this candidate goes on to its full evaluation: no rung there
        self.rungs = {r for r in rungs if r < candidate.training.epochs}
        self._score = CheckpointScorer(space, candidate)

    def __call__(self, epoch: int, checkpoint_path: Path) -> dict[str, float]:
        if epoch not in self.rungs:
            return {}
        from ddecs_search.search._worker import current_trial

        accuracy, cost = self._score(checkpoint_path)
        return {RUNG_EPOCH: epoch, RUNG_ACCURACY: accuracy, RUNG_COST: cost, **current_trial()}


# ----------------------------------------------------------------------------------- driver side
class ParetoRungScheduler(FIFOScheduler):
    """Tune scheduler applying :func:`should_stop` to every rung result (picklable; state in a file)."""

    def __init__(
        self, rungs: Sequence[int], dimensions: Sequence[tuple[str, str]], min_dominators: int, exp_root: str
    ) -> None:
        super().__init__()
        self.rungs = tuple(rungs)
        self.dimensions = tuple(dimensions)
        self.min_dominators = min_dominators
        self.exp_root = exp_root
        self._state: dict[str, Any] | None = None

    # state: {"points": {rung: {trial_id: [values]}}, "stopped": {trial_id: {"epoch", "dominators"}}}
    def _path(self) -> str:
        from ddecs_search import storage as _io
        from ddecs_search.search._callbacks import RUNTIME

        return _io.join(RUNTIME.get("exp_root") or self.exp_root, STATE_FILE)

    def state(self) -> dict[str, Any]:
        if self._state is None:
            from ddecs_search import storage as _io

            path = self._path()
            self._state = (
                json.loads(_io.read_text(path)) if _io.exists(path) else {"points": {}, "stopped": {}}
            )
        return self._state

    def _save(self) -> None:
        from ddecs_search import storage as _io

        _io.write_text(self._path(), json.dumps(self.state(), indent=1, sort_keys=True))

    def __getstate__(self) -> dict[str, Any]:  # the table is in the experiment's file, not in tuner.pkl
        return {**self.__dict__, "_state": None}

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        epoch = result.get(RUNG_EPOCH)
        if epoch is None or int(epoch) not in self.rungs or result.get("evaluated"):
            return TrialScheduler.CONTINUE
        try:
            point = [float(result[key]) for key, _ in self.dimensions]
        except (KeyError, TypeError, ValueError):
            return TrialScheduler.CONTINUE
        state = self.state()
        table = state["points"].setdefault(str(int(epoch)), {})
        peers = [p for tid, p in table.items() if tid != trial.trial_id]
        table[trial.trial_id] = point
        directions = [d for _, d in self.dimensions]
        stop = should_stop(point, peers, directions, self.min_dominators)
        if stop:
            state["stopped"][trial.trial_id] = {
                "epoch": int(epoch),
                "dominators": dominator_count(point, peers, directions),
            }
        self._save()
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"ParetoRungScheduler(rungs={list(self.rungs)}, min_dominators={self.min_dominators})"


def make_rung_scheduler(space: SearchSpace, objectives: Sequence[Objective], exp_root: str) -> Any:
    """The scheduler for a multi-objective space with early stopping on, else None."""
    rungs, notice = active_rungs(space, objectives)
    if notice:
        print(f"notice: {notice}", file=sys.stderr)
    if not rungs:
        return None
    return ParetoRungScheduler(
        rungs, rung_dimensions(objectives), space.search.early_stopping.min_dominators, exp_root
    )
