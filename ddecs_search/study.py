"""The search as an Optuna study on disk (``EXP/optuna.db``), for Optuna's own tools (no Ray here).

Ray's OptunaSearch keeps its study in memory and pickles it with Tune's state; that in-memory study is
what the sampler continues from after a resume. Handing it an RDB storage instead would split the truth:
after a kill, the SQLite file would hold trials asked after Tune's last state snapshot that the restored
searcher no longer knows. So the sampler keeps its own study, and the driver *mirrors* every finished
trial into a SQLite study beside the trials table: same parameters and distributions (replayed through
the define-by-run space), the objective values with their names (``study.set_metric_names``), the
search's trial id as the user attribute ``trial_id``. The mirror is rebuilt from Tune's trial list at
every trial end, so it is in step after a kill and ``resume``: ``optuna.load_study``,
``optuna-dashboard sqlite:///EXP/optuna.db`` and ``optuna.visualization`` open it.

Only local experiment folders get the file (SQLite does not live on ``s3://``).
"""

from __future__ import annotations

import datetime
import sys
import warnings
from pathlib import Path
from typing import Any

from ddecs_search.config import Constraint, Objective
from ddecs_search.experiment import (
    EVALUATED_KEY,
    REUSED_FROM_KEY,
    constraint_values,
    objective_values,
    violations,
)

STUDY_FILE = "optuna.db"
TRIAL_ID_ATTR = "trial_id"


def study_url(exp_root: str | Path) -> str | None:
    """``sqlite:///EXP/optuna.db`` for a local experiment folder, None for a URI."""
    root = str(exp_root)
    if "://" in root and not root.startswith("file://"):
        return None
    path = Path(root.removeprefix("file://")).resolve() / STUDY_FILE
    return f"sqlite:///{path}"


def load_study(exp_dir: str | Path) -> Any:
    """The experiment's Optuna study (read it with any Optuna tool).

    Raises:
        FileNotFoundError: the experiment has no ``optuna.db`` (a remote one, or made before it existed),
            or no study in it yet.
    """
    import optuna

    url = study_url(exp_dir)
    if url is None or not Path(url.removeprefix("sqlite:///")).is_file():
        raise FileNotFoundError(
            f"{exp_dir}: no {STUDY_FILE} (written by `ddecs-search run` for local experiment folders)"
        )
    names = optuna.get_all_study_names(storage=url)  # one per experiment (named after it when created)
    if not names:  # the file exists but the driver stopped before it created the study
        raise FileNotFoundError(f"{exp_dir}: {STUDY_FILE} holds no study yet (no trial finished)")
    return optuna.load_study(study_name=names[0] if len(names) == 1 else None, storage=url)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Tune's nested trial config back to Optuna's ``a/b`` parameter names."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}/"))
        else:
            out[name] = value
    return out


def trial_distributions(space_fn: Any, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replay the define-by-run space on ``params``: the parameters it samples and their distributions."""
    import optuna

    fixed = optuna.trial.FixedTrial(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FixedTrial warns about params the replay does not ask for
        space_fn(fixed)
    return fixed.params, fixed.distributions


def _frozen_trial(
    trial: Any, space_fn: Any, objectives: tuple[Objective, ...], constraints: tuple[Constraint, ...]
) -> Any:
    """The Optuna trial of one finished Tune trial (COMPLETE, PRUNED or FAIL)."""
    import optuna
    from optuna.trial import TrialState

    result = trial.last_result or {}
    params, distributions = trial_distributions(space_fn, flat_params(dict(trial.config or {})))
    attrs: dict[str, Any] = {TRIAL_ID_ATTR: trial.trial_id}
    values = None
    if trial.status == "ERROR":
        state = TrialState.FAIL
    elif not result.get(EVALUATED_KEY):
        state = TrialState.PRUNED  # stopped early (ASHA) or interrupted
    else:
        values = objective_values(result, objectives)
        state = TrialState.COMPLETE if values is not None else TrialState.FAIL
        problems = violations(result, constraints)
        attrs["feasible"] = not problems
        if problems:
            attrs["violations"] = "; ".join(problems)
        if result.get(REUSED_FROM_KEY):  # a repeat: its values are that trial's evaluation
            attrs[REUSED_FROM_KEY] = str(result[REUSED_FROM_KEY])
    start, end = result.get("trial_started_at"), result.get("trial_finished_at")
    when = datetime.datetime.fromtimestamp
    now = datetime.datetime.now()
    frozen = optuna.trial.FrozenTrial(
        number=0,
        trial_id=0,
        state=state,
        value=None,
        values=values,
        datetime_start=when(start) if start else now,
        datetime_complete=when(end) if end else now,
        params=params,
        distributions=distributions,
        user_attrs=attrs,
        system_attrs={},
        intermediate_values={},
    )
    if state == TrialState.COMPLETE:
        # the sampler's rule (search/_optuna_search.py), so that Optuna's tools agree with `pareto`:
        # ``study.best_trials`` and the dashboard leave infeasible trials off the front. Finite for
        # SQLite's JSON and the dashboard's browser (a missing metric is infinitely violated)
        for key, excess in constraint_values(result, constraints).items():
            frozen.set_constraint(key, min(excess, sys.float_info.max))
    return frozen


def _same(mirrored: Any, wanted: Any) -> bool:
    return (
        mirrored.state == wanted.state
        and mirrored.values == wanted.values
        and mirrored.constraints == wanted.constraints  # a mirror written before constraints: rebuilt
    )


class StudyMirror:
    """Keeps ``EXP/optuna.db`` equal to the finished trials of a search (see the module docstring)."""

    def __init__(
        self,
        exp_root: str,
        study_name: str,
        space_fn: Any,
        objectives: tuple[Objective, ...],
        constraints: tuple[Constraint, ...],
    ) -> None:
        self.exp_root, self.study_name, self.space_fn = exp_root, study_name, space_fn
        self.objectives, self.constraints = tuple(objectives), tuple(constraints)
        self._storage: Any = None

    def __getstate__(self) -> dict[str, Any]:  # pickled with Tune's state: no open database
        return {**self.__dict__, "_storage": None}

    def _study(self, url: str, *, fresh: bool = False) -> Any:
        import optuna

        if self._storage is None or self._storage.url != url:
            self._storage = optuna.storages.RDBStorage(url)
        if fresh:
            optuna.delete_study(study_name=self.study_name, storage=self._storage)
        level = optuna.logging.get_verbosity()  # Optuna says "Using an existing study" at every sync of a
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # resumed search: noise in its output
        try:
            study = optuna.create_study(
                storage=self._storage,
                study_name=self.study_name,
                load_if_exists=True,
                directions=["maximize" if o.mode == "max" else "minimize" for o in self.objectives],
            )
        finally:
            optuna.logging.set_verbosity(level)
        if study.metric_names is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([o.name for o in self.objectives])
        return study

    def sync(self, trials: list[Any], exp_root: str | None = None) -> int:
        """Add the finished trials the study lacks (rebuild it if one changed); returns trials added."""
        url = study_url(exp_root or self.exp_root)
        if url is None:
            return 0
        finished = [t for t in trials if t.status in ("TERMINATED", "ERROR")]
        wanted = {
            t.trial_id: _frozen_trial(t, self.space_fn, self.objectives, self.constraints) for t in finished
        }
        study = self._study(url)
        mirrored = {t.user_attrs.get(TRIAL_ID_ATTR): t for t in study.get_trials(deepcopy=False)}
        if any(tid not in wanted or not _same(t, wanted[tid]) for tid, t in mirrored.items()):
            study, mirrored = self._study(url, fresh=True), {}  # e.g. a failed trial retried by resume
        new = [frozen for tid, frozen in wanted.items() if tid not in mirrored]
        if new:
            study.add_trials(new)
        return len(new)
