"""The Tune callback that keeps ``EXP/optuna.db`` in step with the search (imports Ray: load lazily).

Defined at module level because Tune pickles callbacks into the experiment state and restores them on
``resume``; what may differ in a resumed run (where the experiment now lives) comes from
:data:`ddecs_search.search._callbacks.RUNTIME`.
"""

from __future__ import annotations

import sys
from typing import Any

from ray.tune import Callback

from ddecs_search.search._callbacks import RUNTIME
from ddecs_search.study import STUDY_FILE, StudyMirror


class StudyCallback(Callback):
    """Mirrors every finished trial into the experiment's Optuna study (see :mod:`ddecs_search.study`)."""

    def __init__(self, mirror: StudyMirror) -> None:
        self.mirror = mirror
        self._warned = False

    def _sync(self, trials: list) -> None:
        try:
            self.mirror.sync(trials, RUNTIME.get("exp_root"))
        except Exception as exc:  # the trials table stays the record: say so once, keep searching
            if not self._warned:
                print(
                    f"warning: the Optuna study file {STUDY_FILE} could not be updated ({exc}); "
                    "the trials table is complete",
                    file=sys.stderr,
                )
                self._warned = True

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._sync(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._sync(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._sync(trials)
