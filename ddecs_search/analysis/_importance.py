"""Which search parameters mattered, per objective: Optuna's parameter importances on the experiment's
study (``EXP/optuna.db``, see :mod:`ddecs_search.study`).

Compute (:func:`parameter_importances`, a NamedTuple) is kept apart from drawing
(:func:`importance_figure`), as optuna's own ``visualization/_param_importances.py`` does. Optuna's
default evaluator is used (PED-ANOVA in Optuna 5: how much each parameter's distribution among the
best trials differs from its distribution overall; it ranks low values best, so maximised objectives
are negated). Only COMPLETE trials count, and only parameters every one of them has (a conditional
parameter such as ``branch1/channels`` exists only for two-exit candidates).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import plotly.graph_objects as go

MIN_TRIALS = 2


class ParamImportances(NamedTuple):
    """Importances of one study.

    Attributes:
        objectives: objective names, in the study's order.
        params: parameter names, most important (summed over objectives) first.
        importances: objective -> parameter -> importance (each objective's sum is 1).
        evaluator: the evaluator's class name.
        num_trials: COMPLETE trials the importances come from.
        notes: why an objective or the whole study has none (too few trials, no common parameter).
    """

    objectives: list[str]
    params: list[str]
    importances: dict[str, dict[str, float]]
    evaluator: str
    num_trials: int
    notes: list[str]


def parameter_importances(study_or_exp: Any, *, evaluator: Any = None) -> ParamImportances:
    """Parameter importances for every objective of a study (or of an experiment folder's study).

    Raises:
        FileNotFoundError: an experiment folder without ``optuna.db``.
    """
    import warnings

    import optuna

    from ddecs_search.study import load_study

    study = load_study(study_or_exp) if isinstance(study_or_exp, (str, Path)) else study_or_exp
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    evaluator = evaluator or optuna.importance.PedAnovaImportanceEvaluator()
    result: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    if len(complete) < MIN_TRIALS:
        notes.append(f"importances need {MIN_TRIALS} complete trials; the study has {len(complete)}")
    else:
        for index, (name, direction) in enumerate(zip(names, study.directions, strict=True)):
            sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0

            def target(trial: Any, i: int = index, s: float = sign) -> float:
                return s * trial.values[i]

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the evaluator's note on low targets (handled above)
                    values = optuna.importance.get_param_importances(
                        study, evaluator=evaluator, target=target, normalize=True
                    )
            except (RuntimeError, ValueError) as exc:  # e.g. no parameter shared by every trial
                notes.append(f"{name}: no importances ({exc})")
                continue
            result[name] = {p: float(v) for p, v in values.items()}
    totals: dict[str, float] = {}
    for per_param in result.values():
        for param, value in per_param.items():
            totals[param] = totals.get(param, 0.0) + value
    params = sorted(totals, key=lambda p: -totals[p])
    return ParamImportances(list(names), params, result, type(evaluator).__name__, len(complete), notes)


def importance_figure(info: ParamImportances) -> go.Figure | None:
    """Grouped horizontal bars: one bar per parameter and objective (None when nothing was computed)."""
    if not info.importances:
        return None
    from ddecs_search._imports import require

    go = require("plotly.graph_objects")
    params = list(reversed(info.params))  # plotly draws the first category at the bottom
    fig = go.Figure()
    for objective, per_param in info.importances.items():
        fig.add_trace(
            go.Bar(
                name=objective,
                orientation="h",
                y=params,
                x=[per_param.get(p, 0.0) for p in params],
                hovertemplate="%{y}: %{x:.3f}<extra>" + objective + "</extra>",
            )
        )
    fig.update_layout(
        title=f"Parameter importances per objective ({info.evaluator}, {info.num_trials} complete trials)",
        barmode="group",
        xaxis_title="importance (sums to 1 per objective)",
        height=max(320, 60 + 28 * len(params) * max(1, len(info.importances)) // 2),
        legend_title="objective",
    )
    return fig


def report_importance_figures(exp_dirs: Any) -> tuple[dict[str, go.Figure], list[str]]:
    """The report's importance figure of each experiment that has a study, and notes for the others."""
    figures: dict[str, go.Figure] = {}
    notes: list[str] = []
    dirs = [str(getattr(d, "root", d)) for d in exp_dirs]  # Experiment objects or paths
    for exp_dir in dirs:
        try:
            info = parameter_importances(exp_dir)
        except FileNotFoundError:  # no study: a remote experiment, or one from before optuna.db
            continue
        fig = importance_figure(info)
        name = exp_dir.rstrip("/").rsplit("/", 1)[-1]
        notes.extend(f"{name}: {n}" if len(dirs) > 1 else n for n in info.notes)
        if fig is not None:
            key = "param_importances" if len(dirs) == 1 else f"param_importances_{len(figures)}"
            if len(dirs) > 1:
                fig.update_layout(title=f"{fig.layout.title.text} — {name}")
            figures[key] = fig
    return figures, notes
