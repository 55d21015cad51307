"""Driver-side Tune callbacks: the trials table (written as trials finish) and live progress.

Tune pickles callbacks into ``tuner.pkl`` and restores them on ``Tuner.restore``; what may differ in a
resumed run (where the experiment now lives, whether to print) is therefore read from :data:`RUNTIME`,
which the runner sets before every ``fit()``. The values stored on the callbacks are the fallback (with
``ray://`` client mode ``fit()`` runs in a remote actor, where RUNTIME is unset).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback

from ddecs_search import _faults
from ddecs_search.config import Constraint, Objective
from ddecs_search.experiment import EVALUATED_KEY, REUSED_FROM_KEY, Experiment, stopped_early, trial_row
from ddecs_search.metrics import STATIC_TRIAL_ID
from ddecs_search.search._objectives import objective_values

RUNTIME: dict[str, Any] = {"exp_root": None, "quiet": None, "started": None, "verbosity": None}

PROGRESS_EVERY_S = 30.0


def trial_rows(
    trials: list[Any], objectives: tuple[Objective, ...], constraints: tuple[Constraint, ...]
) -> list[dict[str, Any]]:
    """Rows of the trials table for Tune's trial objects (in creation order)."""
    rows = []
    for index, trial in enumerate(trials):
        error = trial_error(trial) if trial.status == "ERROR" else None
        rows.append(
            trial_row(
                trial_id=trial.trial_id,
                index=index,
                state=trial.status,
                config=trial.config,
                result=trial.last_result,
                error=error,
                num_failures=trial.num_failures,
                objectives=objectives,
                constraints=constraints,
            )
        )
    return rows


def trial_error(trial: Any) -> str:
    """The exception line of a failed trial's last failure (the traceback stays in Tune's error.txt)."""
    try:
        text = str(trial.get_error() or "")
    except Exception as exc:  # the error file may be unreadable; keep what we know
        return f"(error file unreadable: {exc})"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "trial failed (no error text)"
    where = f" [traceback: {trial.error_file}]" if getattr(trial, "error_file", None) else ""
    return lines[-1][:1000] + where


def drop_finished_checkpoints(trial: Any, *, stopped: bool) -> int:
    """Delete the Tune checkpoints of ``trial`` if it is over for good (see ``_restore.drop_checkpoints``).

    Evaluated trials qualify at once. Trials stopped at a rung qualify only with ``stopped=True``, which the
    caller passes once Tune has saved the experiment state that records them finished (at the experiment's
    end): before that, a killed driver's resume would train them again from a checkpoint.
    """
    from ddecs_search.search._restore import drop_checkpoints

    result = trial.last_result or {}
    over = bool(result.get(EVALUATED_KEY)) or (stopped and stopped_early(trial.status, result))
    if trial.status != "TERMINATED" or not over:
        return 0
    storage = getattr(trial, "storage", None)
    if storage is None:
        return 0
    return drop_checkpoints(storage.storage_filesystem, storage.trial_fs_path)


class TrialsTableCallback(Callback):
    """Rewrites ``EXP/trials.csv`` / ``trials.parquet`` whenever a trial starts, finishes or fails.

    It also deletes the Tune checkpoints of trials that are over for good (evaluated: when they
    complete; stopped at a rung: at the experiment's end, after Tune's final state save), which nothing
    reads again; here rather than in a callback of its own because Tune restores the callbacks pickled
    in an experiment, and a search resumed with a newer version runs this class's methods.
    """

    def __init__(
        self, objectives: tuple[Objective, ...], constraints: tuple[Constraint, ...], exp_root: str
    ) -> None:
        self.objectives, self.constraints = tuple(objectives), tuple(constraints)
        self.exp_root = exp_root

    def _write(self, trials: list[Any]) -> None:
        root = RUNTIME["exp_root"] or self.exp_root
        Experiment(root).write_trials(trial_rows(trials, self.objectives, self.constraints))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trials)
        drop_finished_checkpoints(trial, stopped=False)
        _faults.point("trial-complete")  # crash tests: between two trials

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        _faults.point("trial-result")  # crash tests: mid-trial (an epoch was reported)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._write(trials)
        # tune.py saves the final state, then cleans up (which calls this); only when Tune's own loop raised
        # is there no save first, and a stopped trial whose stop was never saved trains to its rung again
        for trial in trials:
            drop_finished_checkpoints(trial, stopped=True)


class ProgressCallback(Callback):
    """A trials bar with ETA and front size, one line per finished trial, the current best front.

    Off a terminal the bar is replaced by a heartbeat line every 30 s; ``verbose`` adds a line per
    trial result (each training epoch). See :mod:`ddecs_search.search._progress`.
    """

    def __init__(
        self,
        objectives: tuple[Objective, ...],
        constraints: tuple[Constraint, ...],
        num_samples: int,
        quiet: bool,
    ) -> None:
        self.objectives, self.constraints = tuple(objectives), tuple(constraints)
        self.num_samples, self.quiet = num_samples, quiet
        self._last = 0.0
        self._started = time.time()
        self._bar: Any = None
        self._front_size = 0

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks: the live bar stays behind
        return {**self.__dict__, "_bar": None}

    def _verbosity(self) -> int:
        from ddecs_search.search._progress import VERBOSITY_NORMAL, VERBOSITY_QUIET

        if RUNTIME.get("verbosity") is not None:
            return int(RUNTIME["verbosity"])
        quiet = self.quiet if RUNTIME["quiet"] is None else RUNTIME["quiet"]
        return VERBOSITY_QUIET if quiet else VERBOSITY_NORMAL

    def _progress(self, trials: list) -> Any:
        if self._bar is None:
            from ddecs_search.search._progress import TrialsBar

            initial = sum(t.status in ("TERMINATED", "ERROR") for t in trials)  # finished before a resume
            self._bar = TrialsBar(self.num_samples, initial, verbosity=self._verbosity())
        return self._bar

    def _say(self, text: str) -> None:
        if self._bar is None and self._verbosity() == 0:
            return
        elapsed = time.time() - (RUNTIME["started"] or self._started)
        line = f"[{elapsed:6.0f}s] {text}"
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, file=sys.stdout, flush=True)

    def _counts(self, trials: list) -> str:
        done = sum(t.status == "TERMINATED" for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        failed = sum(t.status == "ERROR" for t in trials)
        return f"{done}/{self.num_samples} done, {running} running, {failed} failed"

    def _update(self, trials: list) -> None:
        bar = self._progress(trials)
        finished = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        bar.update(
            finished,
            front=self._front_size,
            running=sum(t.status == "RUNNING" for t in trials),
            failed=sum(t.status == "ERROR" for t in trials),
        )

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._update(trials)
        if not self._bar.drawn and time.time() - self._last >= PROGRESS_EVERY_S:
            from ddecs_search.search._progress import format_eta

            self._last = time.time()
            self._say(f"{self._counts(trials)}, front {self._front_size}, {format_eta(self._bar.eta_s())}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from ddecs_search.search._progress import VERBOSITY_VERBOSE

        if self._verbosity() >= VERBOSITY_VERBOSE and not result.get(EVALUATED_KEY):
            loss = result.get("train_loss")
            loss_text = f", train loss {_fmt(loss)}" if loss is not None else ""
            self._progress(trials)
            self._say(f"trial {trial.trial_id}: epoch {result.get('epoch')}{loss_text}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._progress(trials)
        result = trial.last_result or {}
        if result.get(EVALUATED_KEY):
            values = ", ".join(f"{o.name}={_fmt(result.get(o.name))}" for o in self.objectives)
            source = result.get(REUSED_FROM_KEY)
            again = f" (the candidate of trial {source}: its result, not trained again)" if source else ""
            self._say(f"trial {trial.trial_id} done{again}: {values} | {self._counts(trials)}")
        else:
            self._say(f"trial {trial.trial_id} stopped early | {self._counts(trials)}")
        self._last = time.time()
        front = front_points(trials, self.objectives, self.constraints)
        self._front_size = len(front)
        self._say("front: " + format_front(trials, self.objectives, self.constraints))
        self._update(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._progress(trials)
        error = trial_error(trial).split(" [traceback:")[0]
        self._say(
            f"trial {trial.trial_id} FAILED after {trial.num_failures} attempt(s): {error} | "
            f"{self._counts(trials)}"
        )
        self._update(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._bar is not None:
            self._update(trials)
            self._bar.close()
            self._bar = None


def front_points(
    trials: list, objectives: tuple[Objective, ...], constraints: tuple[Constraint, ...]
) -> list[tuple[str, list[float]]]:
    """The feasible non-dominated trials so far as ``(trial_id, objective values)``, best first.

    The static network is ranked with them (``trial_id`` ``static``, by the front's own rule:
    :func:`~ddecs_search.static_contender.static_values` over the evaluated results), so the live front
    never shows a trial it dominates, as ``pareto`` would not.
    """
    import numpy as np

    from ddecs_search.dominance import non_dominated_sort
    from ddecs_search.search._objectives import violations

    ids, values, evaluated = [], [], []
    for t in trials:
        result = t.last_result or {}
        if not result.get(EVALUATED_KEY):
            continue
        evaluated.append({**result, "trial_id": t.trial_id})
        vec = objective_values(result, objectives)
        if vec is not None and not violations(result, constraints):
            ids.append(t.trial_id)
            values.append(vec)
    if not values:
        return []
    static = _static_point(evaluated, objectives, constraints)
    if static is not None:
        ids.append(STATIC_TRIAL_ID)
        values.append(static)
    ranks = non_dominated_sort(np.asarray(values), [o.mode for o in objectives])
    front = [i for i in range(len(ids)) if ranks[i] == 0]
    front.sort(key=lambda i: values[i][0], reverse=objectives[0].mode == "max")
    return [(ids[i], values[i]) for i in front]


def _static_point(
    results: list[dict[str, Any]], objectives: tuple[Objective, ...], constraints: tuple[Constraint, ...]
) -> list[float] | None:
    """The static contender's objective vector from the evaluated results, or None (a value missing, a
    constraint it violates, or results it cannot be read from: a progress line must not stop a search;
    ``pareto`` reads the same rows from trials.csv and says what is wrong there)."""
    import pandas as pd

    from ddecs_search.search._objectives import violations
    from ddecs_search.static_contender import static_values

    try:
        _, static = static_values(pd.DataFrame(results))
    except (KeyError, TypeError, ValueError):
        return None
    vec = objective_values(static, objectives)
    return None if vec is None or violations(static, constraints) else vec


def format_front(
    trials: list, objectives: tuple[Objective, ...], constraints: tuple[Constraint, ...], limit: int = 5
) -> str:
    """The feasible non-dominated trials so far, one ``id(obj=value, ...)`` each."""
    front = front_points(trials, objectives, constraints)
    if not front:
        return "(no feasible trial yet)"
    parts = []
    for trial_id, vec in front[:limit]:
        values = ", ".join(f"{o.name}={_fmt(v)}" for o, v in zip(objectives, vec, strict=True))
        parts.append(f"{trial_id}({values})")
    more = f" +{len(front) - limit} more" if len(front) > limit else ""
    return f"{len(front)} point(s): " + "; ".join(parts) + more


def _fmt(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
