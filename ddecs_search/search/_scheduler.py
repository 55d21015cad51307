"""Multi-objective early stopping at epoch rungs (``search.early_stopping``).

Rule. After each rung epoch ``r`` (``rungs``; default every epoch before the last of the space's
longest training; a fraction is a point inside an epoch, ``0.5`` halfway through the first, scored from
the weights at that training step) a trial reports its *rung point*:

- ``rung_val_accuracy`` (max): accuracy of a threshold policy fitted on the *fit* part of the validation
  exit table of the epoch-``r`` model and scored on the disjoint *selection* part (validation only;
  ``dataset.selection_fraction`` / ``split_seed``, the same parts every choice of the search uses);
- ``rung_expected_macs`` (min): that policy's expected MACs per sample on the selection part, normalised
  to the static network (1.0), from the MAC counts of the candidate's modules (known before training)
  weighted by where the selection samples leave.

Only the dimensions the space's objectives need are compared: accuracy-type objectives use the first,
cost-type ones (latency, energy, MACs, speedups) the second. A trial whose point is dominated (no worse
in every dimension, better in one) by at least ``min_dominators`` points that other trials reported at
the *same* rung is stopped; a point on the rung's non-dominated front is never stopped.

Tolerance (``epsilon``, default 0). At intermediate rungs a peer may count as a dominator while up to
``epsilon`` less accurate (epsilon-dominance: no dearer, at most ``epsilon`` below in accuracy, better in one
of the two so adjusted). Why: the rung proxy is one epoch into a cosine decay and the front's hypervolume
barely moves for a sliver of accuracy bought with more cost; behind the GP sampler the plain rule left
0.78 of the trial time (session 35) while only front members past rung 1 would have left 0.53. It trades
the guarantee above for stops: with ``epsilon > 0`` a point on its rung's front whose lead over cheaper
peers is within ``epsilon`` can stop. The final rung always compares by plain dominance (its points are
at the front's fidelity: a tolerance there would drop front members outright).

The *final rung* (``final_rung``, default on): every candidate also reports its point at the end of its
training, before the evaluation (exit tables on val and test, latency table, energy, inference timing),
which is most of a trial's time on a CPU. Its points are compared with the other trials' end-of-training
points (trained for the candidate's full budget: the same fidelity as the front) and, for ``frozen``
candidates, with the static network's point (its selection-part accuracy, cost 1.0): the static network
is a member of every front (``analysis.compute_front``), and a frozen candidate's last exit is the static
network itself, so that point is exact. At intermediate rungs the static network is not a peer: there
the branches are under-trained and a candidate's proxy is pessimistic (on the default space's quick
benchmark, candidates whose epoch-1 point the static network dominated reached the final front).

A stopped trial keeps its partial record (``stopped_early``, ``rung_*`` values and its last epoch in
``trials.csv``), is told to the sampler as pruned, and never reaches the front: only full evaluations
do. Spaces with an objective outside both families (e.g. ``train_time_s``) or with a single objective
(ASHA's job, ``search.asha``) run without it.

The rung table lives in ``EXP/early_stopping.json`` (rewritten atomically at every rung point: points per
rung, their arrival order, the static point, every stop with its dominator count), so a resumed search
compares against the points of the interrupted run too. A trial that fails leaves the table (``dropped``):
a candidate that never finishes must not stop the others.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ddecs_search.config import Candidate, Objective, SearchSpace, rung_epoch

RUNG_ACCURACY = "rung_val_accuracy"
RUNG_COST = "rung_expected_macs"
RUNG_EPOCH = "rung_epoch"
RUNG_FINAL = "rung_final"  # true on a candidate's end-of-training point
RUNG_STATIC_ACCURACY = "rung_static_val_accuracy"  # the static network at the final rung (frozen only)
FINAL_RUNG = "final"  # the final rung's key in the rung table
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
def dominates(
    a: Sequence[float],
    b: Sequence[float],
    directions: Sequence[str],
    tolerance: Sequence[float] | None = None,
) -> bool:
    """Does point ``a`` dominate ``b`` (``directions``: ``"max"``/``"min"`` per dimension)?

    ``tolerance`` (>= 0 per dimension): how much worse ``a`` may be there and still count as no worse,
    its advantage shifted by as much when telling "better" (epsilon-dominance); None: plain dominance.
    """
    sign = np.array([1.0 if d == "max" else -1.0 for d in directions])
    x, y = np.asarray(a, dtype=float) * sign, np.asarray(b, dtype=float) * sign
    if tolerance is not None:
        x = x + np.asarray(tolerance, dtype=float)
    return bool(np.all(x >= y) and np.any(x > y))


def dominator_count(
    point: Sequence[float],
    peers: Sequence[Sequence[float]],
    directions: Sequence[str],
    tolerance: Sequence[float] | None = None,
) -> int:
    """How many of ``peers`` dominate ``point`` (within ``tolerance``, see :func:`dominates`)."""
    return sum(dominates(p, point, directions, tolerance) for p in peers)


def should_stop(
    point: Sequence[float],
    peers: Sequence[Sequence[float]],
    directions: Sequence[str],
    min_dominators: int,
    tolerance: Sequence[float] | None = None,
) -> bool:
    """Stop when at least ``min_dominators`` (>= 1) peers at the same rung dominate ``point``."""
    if min_dominators < 1:
        raise ValueError(f"min_dominators must be >= 1, got {min_dominators}")
    return dominator_count(point, peers, directions, tolerance) >= min_dominators


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


def active_rungs(space: SearchSpace, objectives: Sequence[Objective]) -> tuple[tuple[float, ...], str | None]:
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


def final_rung_active(space: SearchSpace, objectives: Sequence[Objective]) -> bool:
    """Is there a rung at the end of every candidate's training (``early_stopping.final_rung``)?"""
    cfg = space.search.early_stopping
    return bool(
        cfg.enabled
        and cfg.final_rung
        and not space.search.asha
        and len(objectives) >= 2
        and rung_dimensions(objectives) is not None
    )


def rung_key(epoch: float) -> str:
    """A rung's key in the rung table: the epoch as text, ``"1"`` for whole epochs, ``"0.5"`` inside one."""
    return str(rung_epoch(epoch))


# ------------------------------------------------------------------------------------ trial side
class RungProxy:
    """``(epoch, checkpoint_path) -> rung metrics`` of one trial ({} off a rung); loads val data once."""

    def __init__(
        self,
        space: SearchSpace,
        candidate: Candidate,
        rungs: Sequence[float],
        final: bool = False,
        on_batch: Any = None,
    ) -> None:
        from ddecs_search.search._fidelity import CheckpointScorer

        self.last = candidate.training.epochs
        # intermediate rungs: before this candidate's last epoch; that one is the final rung (if on)
        self.rungs = {r for r in rungs if r < self.last}
        #: rungs inside an epoch, scored from the weights at that step (training's ``PartialEpochs``)
        self.partial = tuple(sorted(r for r in self.rungs if not float(r).is_integer()))
        self.final = final
        self.frozen = candidate.training.mode == "frozen"
        self._score = CheckpointScorer(space, candidate, on_batch)  # on_batch: the trial's pause point

    def __call__(self, epoch: float, checkpoint_path: Path) -> dict[str, Any]:
        final = self.final and epoch == self.last
        if epoch not in self.rungs and not final:
            return {}
        from ddecs_search.search._worker import current_trial

        accuracy, cost = self._score(checkpoint_path, reusable=final)  # the evaluation reuses the final's
        point: dict[str, Any] = {RUNG_EPOCH: rung_epoch(epoch), RUNG_ACCURACY: accuracy, RUNG_COST: cost}
        if final:
            point[RUNG_FINAL] = True
            if self.frozen:  # the last exit is the static network: its exact point at this rung
                point[RUNG_STATIC_ACCURACY] = self._score.final_exit_accuracy
        return {**point, **current_trial()}

    def val_table(self, model: Any, feature_spec: Any = None) -> Any:
        """The validation ExitTable of the last rung point if ``model`` has its weights, else None.

        After the final rung this is the trained model's table: the evaluation uses it instead of a
        second pass over validation (``known_val_table`` of ``evaluate_candidate``).
        """
        return self._score.table_for(model, feature_spec)


# ----------------------------------------------------------------------------------- driver side
class ParetoRungScheduler(FIFOScheduler):
    """Tune scheduler applying :func:`should_stop` to every rung result (picklable; state in a file)."""

    def __init__(
        self,
        rungs: Sequence[float],
        dimensions: Sequence[tuple[str, str]],
        min_dominators: int,
        exp_root: str,
        final_rung: bool = False,
        epsilon: float = 0.0,
    ) -> None:
        super().__init__()
        self.rungs = tuple(rungs)
        self.dimensions = tuple(dimensions)
        self.min_dominators = min_dominators
        self.exp_root = exp_root
        self.final_rung = final_rung
        self.epsilon = float(epsilon)
        self._state: dict[str, Any] | None = None

    def tolerance(self, final: bool) -> list[float] | None:
        """The accuracy tolerance at a rung: ``epsilon`` on accuracy at intermediate rungs, else none."""
        epsilon = getattr(self, "epsilon", 0.0)  # a scheduler pickled before the knob existed: 0
        if final or epsilon <= 0.0:
            return None
        return [epsilon if key == RUNG_ACCURACY else 0.0 for key, _ in self.dimensions]

    # state: {"points": {rung: {trial_id: [values]}}, "order": {rung: [trial_id, ...]} (arrival),
    #         "static": {rung: [values]},
    #         "stopped": {trial_id: {"epoch", "rung", "dominators", "static",
    #                                "epsilon", "plain_dominators" (only for a stop within epsilon)}}}
    # rung keys: the epoch as text (rung_key: "1", "0.5"), or "final" (end of training)
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
        try:
            epoch = rung_epoch(result[RUNG_EPOCH])
        except (KeyError, TypeError, ValueError):
            return TrialScheduler.CONTINUE
        if result.get("evaluated"):
            return TrialScheduler.CONTINUE
        final = bool(result.get(RUNG_FINAL))
        if (final and not getattr(self, "final_rung", False)) or (not final and epoch not in self.rungs):
            return TrialScheduler.CONTINUE
        try:
            point = [float(result[key]) for key, _ in self.dimensions]
        except (KeyError, TypeError, ValueError):
            return TrialScheduler.CONTINUE
        rung = FINAL_RUNG if final else rung_key(epoch)
        state = self.state()
        table = state["points"].setdefault(rung, {})
        peers = [p for tid, p in table.items() if tid != trial.trial_id]
        table[trial.trial_id] = point
        order = state.setdefault("order", {}).setdefault(rung, [])
        if trial.trial_id not in order:
            order.append(trial.trial_id)
        static = static_point(result, self.dimensions) if final else None
        if static is not None:
            state.setdefault("static", {})[rung] = static
            peers.append(static)
        directions = [d for _, d in self.dimensions]
        tolerance = self.tolerance(final)
        stop = should_stop(point, peers, directions, self.min_dominators, tolerance)
        if stop:
            state["stopped"][trial.trial_id] = {
                "epoch": epoch,
                "rung": rung,
                "dominators": dominator_count(point, peers, directions, tolerance),
                "static": static is not None and dominates(static, point, directions),
            }
            if tolerance is not None:  # how many of them dominate it outright (the rest: within epsilon)
                stop_record = state["stopped"][trial.trial_id]
                stop_record["epsilon"] = self.epsilon
                stop_record["plain_dominators"] = dominator_count(point, peers, directions)
        self._save()
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """A trial that fails (or is retried) stops counting as a peer: drop its rung points.

        Its points were real, but a candidate that never finishes never reaches the front, so it must not
        stop others (seen: candidates whose policy cannot drive inference report their end-of-training
        point and then fail in the evaluation). A retried trial re-reports only the rungs it trains again.
        """
        state = self.state()
        dropped = False
        for rung, table in state["points"].items():
            if table.pop(trial.trial_id, None) is not None:
                dropped = True
                order = state.get("order", {}).get(rung, [])
                if trial.trial_id in order:
                    order.remove(trial.trial_id)
        if dropped:
            state.setdefault("dropped", []).append(trial.trial_id)
            self._save()
        super().on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:
        return (
            f"ParetoRungScheduler(rungs={list(self.rungs)}, final_rung={getattr(self, 'final_rung', False)}, "
            f"min_dominators={self.min_dominators}, epsilon={getattr(self, 'epsilon', 0.0)})"
        )


def static_point(result: dict, dimensions: Sequence[tuple[str, str]]) -> list[float] | None:
    """The static network's point in the rung dimensions, from a final-rung result (None if not reported).

    Accuracy: ``rung_static_val_accuracy`` (a frozen candidate's last exit on the selection part); cost:
    1.0, the static network's expected MACs normalised to itself.
    """
    value = result.get(RUNG_STATIC_ACCURACY)
    try:
        accuracy = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(accuracy):
        return None
    return [accuracy if key == RUNG_ACCURACY else 1.0 for key, _ in dimensions]


def make_rung_scheduler(space: SearchSpace, objectives: Sequence[Objective], exp_root: str) -> Any:
    """The scheduler for a multi-objective space with early stopping on, else None."""
    rungs, notice = active_rungs(space, objectives)
    if notice:
        print(f"notice: {notice}", file=sys.stderr)
    final = final_rung_active(space, objectives)
    if not rungs and not final:
        return None
    cfg = space.search.early_stopping
    return ParetoRungScheduler(
        rungs, rung_dimensions(objectives), cfg.min_dominators, exp_root, final, cfg.epsilon
    )
