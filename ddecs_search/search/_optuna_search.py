"""OptunaSearch that tells Optuna only full-fidelity evaluations (imports Ray: load it lazily)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from ddecs_search.config import Constraint
from ddecs_search.experiment import EVALUATED_KEY, REUSED_FROM_KEY, Experiment, constraint_values

# Draws of candidates evaluated before that one trial's suggestion tells and replaces before it gives up
# and lets the trial re-report the earlier result (search/_trainable.py): a sampler that keeps drawing
# known candidates (a small discrete space, or one it has learnt) must not ask forever.
MAX_REDRAWS = 10


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

    A draw of a candidate already evaluated (``candidate_key`` of the trial config equal to a finished
    trial's) costs no trial: the searcher tells Optuna that trial's values and constraints for the draw
    (marked with the user attr ``reused_from_trial``) and asks again, up to :data:`MAX_REDRAWS` times per
    trial; Tune never sees the draw. Seen with ``algorithm: gp``, whose flat encoding lets draws differ
    only where the network reads nothing: 1-8 of 24 trials re-reported an earlier evaluation (none in
    three 48-trial searches once the GP sees those parameters pinned, ``search.gp.pin_unused``). The
    warm start (enqueued, fixed parameters) is never replaced: the user listed those candidates. Each
    replaced draw is counted in ``run.json`` (``redrawn_repeats``, :meth:`Experiment.record_redraws`).

    Defined at module level because Tune pickles the searcher into the experiment state.
    """

    def __init__(
        self,
        *args: Any,
        constraints: Sequence[Constraint] = (),
        candidate_key: Callable[[dict[str, Any]], str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._constraints = tuple(constraints)
        self._candidate_key = candidate_key
        self._trial_keys: dict[str, str] = {}  # Tune trial id -> its candidate's key
        # candidate key -> (the Tune trial that evaluated it, the values and constraints Optuna was told)
        self._told: dict[str, tuple[str, list[float], dict[str, float]]] = {}

    def suggest(self, trial_id: str) -> dict | None:
        keyed = getattr(self, "_candidate_key", None)  # a searcher pickled before redraws has none
        if keyed is None or not callable(self._space) or trial_id in self._ot_trials:
            return super().suggest(trial_id)
        for draw in range(MAX_REDRAWS + 1):
            config = super().suggest(trial_id)
            key = keyed(config)
            known = self._told.get(key)
            ot_trial = self._ot_trials[trial_id]
            if known is None or draw == MAX_REDRAWS or self._enqueued(ot_trial):
                break
            del self._ot_trials[trial_id]
            self._tell_known(ot_trial, *known)
        self._trial_keys[trial_id] = key
        from ddecs_search.search._callbacks import RUNTIME  # the experiment's current place (resume)

        if draw and RUNTIME["exp_root"]:  # one run.json write for this suggestion's told draws
            Experiment(RUNTIME["exp_root"]).record_redraws(draw)
        return config

    def _enqueued(self, ot_trial: Any) -> bool:
        """A warm-start point (``study.enqueue_trial`` stores its parameters as ``fixed_params``)."""
        frozen = self._ot_study.get_trials(deepcopy=False)[ot_trial.number]
        return "fixed_params" in frozen.system_attrs

    def _tell_known(
        self, ot_trial: Any, source: str, values: list[float], constraints: dict[str, float]
    ) -> None:
        for name, value in constraints.items():
            ot_trial.set_constraint(name, value)
        ot_trial.set_user_attr(REUSED_FROM_KEY, source)
        self._ot_study.tell(ot_trial, values if isinstance(self.metric, list) else values[0])

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
        limits: dict[str, float] = {}
        if result is not None and constraints and not told and trial_id in self._ot_trials:
            trial = self._ot_trials[trial_id]
            limits = constraint_values(result, constraints)
            for key, value in limits.items():
                trial.set_constraint(key, value)
        super().on_trial_complete(trial_id, result, error)
        key = getattr(self, "_trial_keys", {}).get(trial_id)
        if result is not None and not told and key is not None and key not in self._told:
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            values = [result.get(m) for m in metrics]
            if all(isinstance(v, int | float) and math.isfinite(v) for v in values):
                source = str(result.get(REUSED_FROM_KEY) or trial_id)  # a repeat names the evaluation
                self._told[key] = (source, [float(v) for v in values], limits)
