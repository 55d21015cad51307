"""OptunaSearch that tells Optuna only full-fidelity evaluations (imports Ray: load it lazily)."""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch

from ddecs_search.experiment import EVALUATED_KEY


class FullFidelityOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, told only about full evaluations.

    Per-epoch results carry no objectives: they are skipped instead of raising a KeyError (stock
    OptunaSearch reads the metric from every result of a single-objective study). A trial that ends
    without a full evaluation (stopped by ASHA) is told as pruned, not as complete with partial values.
    Defined at module level because Tune pickles the searcher into the experiment state.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, str) and self.metric in result and result.get(EVALUATED_KEY):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result is not None and not result.get(EVALUATED_KEY):
            result = None  # -> PRUNED (or FAIL when error)
        super().on_trial_complete(trial_id, result, error)
