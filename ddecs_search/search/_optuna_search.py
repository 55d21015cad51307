"""OptunaSearch that tells Optuna only full-fidelity evaluations (imports Ray: load it lazily)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from ddecs_search.config import Constraint
from ddecs_search.experiment import EVALUATED_KEY, constraint_values


class FullFidelityOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, told only about full evaluations, and about the space's constraints.

    Per-epoch results carry no objectives: they are skipped instead of raising a KeyError (stock
    OptunaSearch reads the metric from every result of a single-objective study). A trial that ends
    without a full evaluation (stopped early) is told as pruned, not as complete with partial values.

    A full evaluation is told with its constraint values (``Trial.set_constraint``), which Optuna's TPE
    and NSGA-II samplers rank by: an infeasible trial is never among the "good" trials TPE models
    nor constrained-dominates a feasible one in NSGA-II. Without them a trial that breaks the accuracy
    bound but exits early enough to be fast sits on the sampler's front and draws the search towards
    configurations the front can never contain. Random sampling ignores them.

    Defined at module level because Tune pickles the searcher into the experiment state.
    """

    def __init__(self, *args: Any, constraints: Sequence[Constraint] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._constraints = tuple(constraints)

    def _suggest_from_define_by_run_func(self, func: Callable[..., Any], ot_trial: Any) -> dict:
        # A trial's first suggest runs the sampler's relative sampling (``algorithm: gp`` fits its Gaussian
        # processes there: about a second on a busy 2-core CPU), which Ray times as the space function's
        # own and warns to move "computation" into the trainable: wrong advice here, so it is not shown.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space`")
            return super()._suggest_from_define_by_run_func(func, ot_trial)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, str) and self.metric in result and result.get(EVALUATED_KEY):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result is not None and not result.get(EVALUATED_KEY):
            result = None  # -> PRUNED (or FAIL when error)
        # getattr: a searcher pickled before constraints were told has no such attribute
        constraints = getattr(self, "_constraints", ())
        told = trial_id in self._completed_trials  # a repeated completion: Optuna's trial is finished
        if result is not None and constraints and not told and trial_id in self._ot_trials:
            trial = self._ot_trials[trial_id]
            for key, value in constraint_values(result, constraints).items():
                trial.set_constraint(key, value)
        super().on_trial_complete(trial_id, result, error)
