"""OptunaSearch that tells Optuna only full-fidelity evaluations (imports Ray: load it lazily)."""

from __future__ import annotations

import json
import math
import sys
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

    A resume adopts evaluations Tune's state does not name (:meth:`restore`): Ray Tune saves the
    experiment state (its trials and this searcher) every 10 s or more, and at once only after a trial's
    epoch checkpoint, so a trial that trains nothing (it loads a network trained before) can be drawn,
    evaluated and stored between two saves. A driver killed then leaves a stored result that the resumed
    search knows nothing of: Tune creates another trial in its place, and the sampler, restored from before
    the draw, may draw another candidate, which would drop the stored result from the table and the front
    (seen twice in CI: the crash test's evaluation records named a fourth trial of three). Each such
    result is enqueued first, its values told as a known draw's: the trial Tune creates for it re-reports
    the stored result (``reused_from_trial``, _trainable.py), so nothing evaluated is lost or redone.

    Defined at module level because Tune pickles the searcher into the experiment state.
    """

    def __init__(
        self,
        *args: Any,
        constraints: Sequence[Constraint] = (),
        candidate_key: Callable[[dict[str, Any]], str] | None = None,
        exp_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._constraints = tuple(constraints)
        self._candidate_key = candidate_key
        self._exp_root = exp_root  # where the experiment was created (a resume reads RUNTIME's first)
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

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore of the pickled searcher, then the adoption of evaluations it never saw."""
        super().restore(checkpoint_path)
        from ddecs_search.search._callbacks import RUNTIME

        root = RUNTIME["exp_root"] or getattr(self, "_exp_root", None)
        if root and getattr(self, "_candidate_key", None) is not None and callable(self._space):
            for trial_id in self._adopt_unsaved(Experiment(root)):
                if not RUNTIME["quiet"]:
                    print(
                        f"ddecs-search: trial {trial_id} finished after Ray Tune last saved the search's "
                        "state; the next trial re-reports its result (reused_from_trial)",
                        file=sys.stderr,
                    )

    def _adopt_unsaved(self, exp: Experiment) -> list[str]:
        """Enqueue the candidates of stored evaluations this searcher never drew (see the class); return
        their trial ids, oldest first. A stored re-report (``reused_from_trial``) holds no work of its own
        and is left alone, as is an evaluation that cannot be read or mapped onto the space (said)."""
        from optuna.trial import TrialState

        from ddecs_search.config import Candidate, from_dict
        from ddecs_search.errors import UserError
        from ddecs_search.experiment import candidate_key
        from ddecs_search.search._warm_start import candidate_params

        unsaved = [t for t in exp.trial_ids() if t not in self._ot_trials]
        if not unsaved:
            return []
        space = exp.read_space()  # (checked before Ray started: a broken one never gets here)
        found = []
        for trial_id in unsaved:
            try:
                stored = exp.read_trial_metrics(trial_id) or {}
                if not stored.get(EVALUATED_KEY) or stored.get(REUSED_FROM_KEY):
                    continue
                data = json.loads(stored["candidate"])
                params = candidate_params(space, self._space, data, f"trials/{trial_id} candidate")
                key = candidate_key(from_dict(Candidate, data, "candidate"))
            except (KeyError, TypeError, ValueError, UserError) as exc:
                print(f"ddecs-search: trial {trial_id}: stored result not adopted ({exc})", file=sys.stderr)
                continue
            found.append((float(stored.get("trial_finished_at") or 0.0), trial_id, key, params, stored))
        waiting = [  # enqueued and not drawn yet (a warm-start entry): drawn anyway, not enqueued twice
            t.system_attrs.get("fixed_params")
            for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        ]
        adopted = []
        for _, trial_id, key, params, stored in sorted(found):
            exp.record_candidate(key, trial_id)  # (a driver killed before its trial named it)
            if key in self._told:  # another trial of the candidate finished before the save: in the table
                continue
            values = self._known_values(stored)
            if values is not None:  # a later draw: told
                limits = constraint_values(stored, getattr(self, "_constraints", ()))
                self._told[key] = (trial_id, values, limits)
            if params not in waiting:
                self._ot_study.enqueue_trial(params)
                waiting.append(params)
            adopted.append(trial_id)
        return adopted

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
            values = self._known_values(result)
            if values is not None:
                source = str(result.get(REUSED_FROM_KEY) or trial_id)  # a repeat names the evaluation
                self._told[key] = (source, values, limits)

    def _known_values(self, result: dict) -> list[float] | None:
        """The objective values a later draw of this result's candidate is told (None: one not finite)."""
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [result.get(m) for m in metrics]
        if all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            return [float(v) for v in values]
        return None
