"""The search as an Optuna study (EXP/optuna.db) and its parameter importances in the report.

Fast tests drive the mirror with Tune-like trial records and a real Optuna; the slow ones run real
searches on a loopback Ray: the study after a run (readable by ``optuna.load_study``, in step with the
trials table), after SIGKILL of the driver and a resume, and ``make demo``'s rerun
(``run --resume-if-exists``) with the progress output of ``--verbose`` and ``--quiet``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import test_search as ts
from _trials_fixture import make_experiment

from ddecs_search.analysis import write_report
from ddecs_search.analysis._importance import importance_figure, parameter_importances
from ddecs_search.cli import main
from ddecs_search.search import ConditionalSpace, Experiment
from ddecs_search.spaces import load_space
from ddecs_search.study import STUDY_FILE, StudyMirror, flat_params, load_study

TINY = ts.TINY
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _config(space_fn: ConditionalSpace, seed: int) -> dict:
    """A nested trial config as Tune passes it (sampled through the define-by-run space)."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    space_fn(trial)
    nested: dict = {}
    for name, value in trial.params.items():
        *parents, leaf = name.split("/")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _trial(trial_id: str, status: str, config: dict, **result) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status, config=config, last_result=result)


def test_mirror_adds_finished_trials_once_and_rebuilds_when_one_changes(tmp_path):
    space = load_space(TINY)
    space_fn = ConditionalSpace.from_space(space)
    objectives = space.objectives[:2]  # val_accuracy (max), expected_latency_ms (min)
    acc, lat = (o.name for o in objectives)
    mirror = StudyMirror(str(tmp_path), "exp", space_fn, objectives, space.constraints)
    configs = [_config(space_fn, seed) for seed in range(3)]
    trials = [
        _trial(
            "t0", "TERMINATED", configs[0], evaluated=True, **{acc: 0.8, lat: 1.5, "val_accuracy_drop": 0.01}
        ),
        _trial("t1", "ERROR", configs[1]),
        _trial("t2", "RUNNING", configs[2]),
    ]
    assert mirror.sync(trials) == 2 and mirror.sync(trials) == 0  # running trials wait; nothing twice
    url = f"sqlite:///{tmp_path.resolve() / STUDY_FILE}"
    study = optuna.load_study(study_name=None, storage=url)
    assert study.metric_names == [acc, lat]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    t0, t1 = study.trials
    assert (t0.state, t0.values, t0.user_attrs) == (
        optuna.trial.TrialState.COMPLETE,
        [0.8, 1.5],
        {"trial_id": "t0", "feasible": True},
    )
    assert t0.params == flat_params(configs[0]) and set(t0.distributions) == set(t0.params)
    assert t1.state == optuna.trial.TrialState.FAIL
    # resume retried the failed trial and it completed; the third finished infeasible
    trials[1] = _trial(
        "t1", "TERMINATED", configs[1], evaluated=True, **{acc: 0.7, lat: 1.0, "val_accuracy_drop": 0.9}
    )
    trials[2] = _trial("t2", "TERMINATED", configs[2], evaluated=False)  # stopped early
    assert mirror.sync(trials) == 3  # rebuilt
    study = load_study(tmp_path)
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert by_id["t1"].values == [0.7, 1.0] and by_id["t1"].user_attrs["feasible"] is False
    assert "val_accuracy_drop=0.9 > max 0.5" in by_id["t1"].user_attrs["violations"]
    assert by_id["t2"].state == optuna.trial.TrialState.PRUNED
    # Optuna's own front agrees with `pareto`: t1 is faster than t0 but breaks the space's bound
    assert by_id["t1"].constraints == {"val_accuracy_drop<=0.5": pytest.approx(0.4)}
    assert by_id["t0"].constraints == {"val_accuracy_drop<=0.5": pytest.approx(-0.49)}
    assert by_id["t2"].constraints == {}
    assert [t.user_attrs["trial_id"] for t in study.best_trials] == ["t0"]
    # a mirror written without constraint values (before they were mirrored) is rebuilt with them
    before = tmp_path / "before"
    before.mkdir()
    assert StudyMirror(str(before), "exp", space_fn, objectives, ()).sync(trials) == 3
    assert not any(t.constraints for t in load_study(before).trials)
    assert StudyMirror(str(before), "exp", space_fn, objectives, space.constraints).sync(trials) == 3
    assert [t.user_attrs["trial_id"] for t in load_study(before).best_trials] == ["t0"]
    with pytest.raises(FileNotFoundError, match=STUDY_FILE):
        load_study(tmp_path / "elsewhere")
    # optuna-dashboard serves it with the objectives' names and our trial ids
    served = _dashboard_study(url)
    assert served["objective_names"] == [acc, lat] and len(served["trials"]) == 3
    assert {a["value"] for t in served["trials"] for a in t["user_attrs"] if a["key"] == "trial_id"} == {
        "t0",
        "t1",
        "t2",
    }


def _dashboard_study(url: str) -> dict:
    """What optuna-dashboard's web API answers for the only study in ``url`` (its WSGI app, no server)."""
    import json
    from wsgiref.util import setup_testing_defaults

    import optuna_dashboard

    app = optuna_dashboard.wsgi(url)

    def get(path: str, query: str = "") -> dict:
        environ: dict = {}
        setup_testing_defaults(environ)
        environ.update(PATH_INFO=path, QUERY_STRING=query)
        status: list[str] = []
        body = b"".join(app(environ, lambda code, headers, exc=None: status.append(code)))
        assert status[0].startswith("200"), (path, status, body[:500])
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    return get(f"/api/studies/{summary['study_id']}", "after=0")


def _toy_study(storage: str | None = None) -> optuna.Study:
    """x drives the first objective, y the second; c matters for neither."""
    study = optuna.create_study(
        directions=["maximize", "minimize"],
        storage=storage,
        study_name="toy",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.set_metric_names(["accuracy", "latency_ms"])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        trial.suggest_categorical("c", ["a", "b"])
        return x, y

    study.optimize(objective, n_trials=40)
    return study


def test_importances_name_the_parameter_that_drives_each_objective():
    info = parameter_importances(_toy_study())
    assert info.objectives == ["accuracy", "latency_ms"] and info.num_trials == 40
    assert max(info.importances["accuracy"], key=info.importances["accuracy"].get) == "x"
    assert max(info.importances["latency_ms"], key=info.importances["latency_ms"].get) == "y"
    assert all(sum(v.values()) == pytest.approx(1.0) for v in info.importances.values())
    fig = importance_figure(info)
    assert [t.name for t in fig.data] == ["accuracy", "latency_ms"] and set(fig.data[0].y) == {"x", "y", "c"}
    empty = optuna.create_study(directions=["maximize", "minimize"])
    none = parameter_importances(empty)
    assert none.importances == {} and "need 2 complete trials" in none.notes[0]
    assert importance_figure(none) is None


def test_report_shows_importances_when_the_experiment_has_a_study(tmp_path):
    plain = make_experiment(tmp_path / "plain", n=12)
    assert 'data-figure="param_importances"' not in write_report(plain).read_text()
    exp = make_experiment(tmp_path / "with-study", n=12)
    _toy_study(f"sqlite:///{exp.resolve() / STUDY_FILE}")
    html = write_report(exp).read_text()
    assert 'data-figure="param_importances"' in html and "Optuna importances" in html


# ------------------------------------------------------------------------------ real searches (slow)
def _study_matches_table(exp_dir: Path) -> tuple[optuna.Study, pd.DataFrame]:
    """Read the study as Optuna's users do, and check it against the trials table."""
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{exp_dir.resolve() / STUDY_FILE}")
    trials = Experiment.at(exp_dir).read_trials().set_index("trial_id")
    objectives = [o["name"] for o in Experiment.at(exp_dir).read_record()["objectives"]]
    assert study.metric_names == objectives
    finished = trials[trials["state"].isin(["TERMINATED", "ERROR"])]
    ids = [t.user_attrs["trial_id"] for t in study.trials]
    assert sorted(ids) == sorted(finished.index) and len(set(ids)) == len(ids)
    for t in study.trials:
        row = finished.loc[t.user_attrs["trial_id"]]
        if row["state"] == "TERMINATED" and row["evaluated"]:
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.values == pytest.approx([row[name] for name in objectives])
            assert t.params and all(
                k.startswith(("num_", "exit_points/", "branch", "policy/", "training/")) for k in t.params
            )
        else:
            assert t.state != optuna.trial.TrialState.COMPLETE
    return study, trials


@pytest.mark.slow
def test_run_writes_a_study_and_make_demo_reruns(local_ray, tmp_path, capsys):
    space = ts._space(tmp_path, "demo", search={"num_samples": 3, "max_concurrent": 2, "seed": 5})
    argv = ["run", str(space), "--storage", str(tmp_path), "--name", "demo", "--resume-if-exists"]
    assert main([*argv, "--verbose", "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "baseline lenet: epoch 1/1, loss" in out  # the baseline's epochs (lines: not a terminal)
    assert "epoch 1, train loss" in out and "epoch 2, train loss" in out  # --verbose: trials' epochs
    assert "front:" in out
    exp_dir = tmp_path / "demo"
    study, _ = _study_matches_table(exp_dir)
    assert len(study.trials) == 3
    served = _dashboard_study(f"sqlite:///{exp_dir.resolve() / STUDY_FILE}")
    assert served["objective_names"] == study.metric_names and len(served["trials"]) == 3
    counts = Experiment.at(exp_dir).evaluation_counts()

    # make demo, second time: the finished experiment is shown, nothing runs again
    assert main([*argv, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "is finished already" in out and "front:" not in out
    assert Experiment.at(exp_dir).evaluation_counts() == counts
    assert main(["report", str(exp_dir)]) == 0
    html = (exp_dir / "report.html").read_text()
    # a trial stopped early by the scheduler is TERMINATED but not evaluated (PRUNED in the study):
    # importances come from COMPLETE trials only, and the report says why when there are too few
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if complete >= 2:
        assert 'data-figure="param_importances"' in html
    else:
        assert 'data-figure="param_importances"' not in html and "importances need 2 complete trials" in html


@pytest.mark.slow
def test_study_in_step_after_sigkill_and_resume(local_ray, tmp_path, capsys):
    space = ts._resume_space(tmp_path, "kill")
    exp_dir = tmp_path / "killed"
    log = tmp_path / "driver.log"
    proc = ts._start_driver(space, tmp_path, "killed", log)
    try:
        before, _ = ts._wait_mid_search(exp_dir, proc, timeout=900.0)  # a busy shared machine
        time.sleep(0.5)  # let the driver's callbacks finish with the evaluated trial
        os.kill(proc.pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        ts._cleanup(proc)
    # written after the trials table by the driver: at most what the table shows as evaluated
    evaluated, _ = ts._state(exp_dir)
    try:  # absent (or empty) only if the kill came before the first mirrored trial
        killed = load_study(exp_dir)
    except FileNotFoundError:
        killed = None
    if killed is not None:
        assert {t.user_attrs["trial_id"] for t in killed.trials} <= set(evaluated), "a trial the table lacks"
    capsys.readouterr()

    # `make demo` after a crash: run --resume-if-exists continues the unfinished experiment, quietly
    argv = ["run", str(space), "--storage", str(tmp_path), "--name", "killed", "--resume-if-exists"]
    assert main([*argv, "--quiet", "--no-verify"]) == 0, log.read_text()
    out = capsys.readouterr().out
    assert "resuming it" in out and "front:" not in out and " done: " not in out  # no progress lines
    ts._check_resumed(exp_dir, 3, before)
    study, _ = _study_matches_table(exp_dir)
    assert len(study.trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_resumed_mirror_loads_its_study_without_optunas_info_line(tmp_path, caplog):
    """Every sync of a resumed search opens the existing study: Optuna's "Using an existing study" line
    (INFO) printed once per finished trial on `resume`. The mirror opens it quietly and leaves Optuna's
    verbosity as it found it."""
    space = load_space(TINY)
    space_fn = ConditionalSpace.from_space(space)
    objectives = space.objectives[:2]
    acc, lat = (o.name for o in objectives)
    done = _trial("t0", "TERMINATED", _config(space_fn, 0), evaluated=True, **{acc: 0.8, lat: 1.5})
    later = _trial("t1", "TERMINATED", _config(space_fn, 1), evaluated=True, **{acc: 0.7, lat: 1.0})
    StudyMirror(str(tmp_path), "exp", space_fn, objectives, ()).sync([done])
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)  # (another test may have lowered it)
    optuna.logging.enable_propagation()  # (Optuna's own handler writes to the stderr it first saw)
    try:
        with caplog.at_level(logging.INFO, logger="optuna"):
            resumed = StudyMirror(str(tmp_path), "exp", space_fn, objectives, ())
            assert resumed.sync([done, later]) == 1  # the resumed search's next finished trial
        assert not [r for r in caplog.records if "Using an existing study" in r.getMessage()]
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.disable_propagation()
        optuna.logging.set_verbosity(before)
