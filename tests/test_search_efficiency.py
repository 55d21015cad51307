"""Issue 14: worker reuse, the node-local data cache, multi-objective early stopping and warm start.

The rule of the rung scheduler is tested as a pure function on hand-made rung tables; the rest on real
Fashion-MNIST data, real Ray Tune and Optuna (slow tests, sized for a 2-core CPU).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pickle
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from ddecs_search.config import Objective
from ddecs_search.errors import ConfigError
from ddecs_search.spaces import load_space, parse_space

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "spaces" / "tiny.yaml"
QUICK = ROOT / "search_spaces" / "fashion_mnist_quick.yaml"


# ------------------------------------------------------------------------------- the stopping rule
ACC_COST = ("max", "min")  # (rung_val_accuracy, rung_expected_macs)


def test_rule_stops_a_dominated_point_and_never_a_non_dominated_one():
    from ddecs_search.search._scheduler import dominates, dominator_count, should_stop

    rung = {  # hand-made rung table: (val accuracy proxy, expected MACs / static)
        "a": (0.90, 0.50),
        "b": (0.85, 0.30),
        "c": (0.80, 0.70),  # dominated by a and b
        "d": (0.95, 0.90),  # best accuracy: non-dominated
        "e": (0.70, 0.20),  # cheapest: non-dominated
        "f": (0.87, 0.55),  # dominated by a only
    }
    front = {"a", "b", "d", "e"}
    for name, point in rung.items():
        peers = [p for other, p in rung.items() if other != name]
        count = dominator_count(point, peers, ACC_COST)
        assert (count == 0) == (name in front), (name, count)
        for k in (1, 2, 3):
            assert should_stop(point, peers, ACC_COST, k) == (count >= k), (name, k)
            if name in front:
                assert not should_stop(point, peers, ACC_COST, k)
    assert dominator_count(rung["c"], [rung["a"], rung["b"]], ACC_COST) == 2
    assert should_stop(rung["c"], list(rung.values()), ACC_COST, 2)
    assert not should_stop(rung["f"], list(rung.values()), ACC_COST, 2)
    assert not dominates((0.9, 0.5), (0.9, 0.5), ACC_COST)  # a tie is not domination
    assert not should_stop((0.9, 0.5), [(0.9, 0.5)] * 5, ACC_COST, 1)
    with pytest.raises(ValueError):
        should_stop((0.9, 0.5), [], ACC_COST, 0)


def test_epsilon_counts_a_no_dearer_peer_a_little_less_accurate_and_zero_is_plain_dominance():
    from ddecs_search.search._scheduler import dominates, dominator_count, should_stop

    tol = (0.01, 0.0)  # accuracy tolerance 1 pt, none on cost
    p = (0.900, 0.50)
    assert dominates((0.895, 0.40), p, ACC_COST, tol)  # cheaper, 0.5 pt less accurate: within epsilon
    assert not dominates((0.895, 0.40), p, ACC_COST)  # but not plainly
    assert not dominates((0.885, 0.40), p, ACC_COST, tol)  # 1.5 pt less accurate: beyond it
    assert not dominates((0.895, 0.55), p, ACC_COST, tol)  # dearer: never, whatever the accuracy
    # exactly epsilon below at equal cost: a tie, not domination (binary-exact values)
    assert not dominates((0.625, 0.5), (0.75, 0.5), ACC_COST, (0.125, 0.0))
    assert dominates((0.625, 0.25), (0.75, 0.5), ACC_COST, (0.125, 0.0))
    # an equal point counts (within epsilon, better so adjusted)
    assert dominates((0.900, 0.50), p, ACC_COST, tol)
    assert dominates((0.90, 0.40), p, ACC_COST, (0.0, 0.0)) == dominates((0.90, 0.40), p, ACC_COST)
    peers = [(0.895, 0.40), (0.893, 0.45), (0.95, 0.90)]
    assert dominator_count(p, peers, ACC_COST) == 0  # on the rung's front
    assert dominator_count(p, peers, ACC_COST, tol) == 2
    assert should_stop(p, peers, ACC_COST, 2, tol) and not should_stop(p, peers, ACC_COST, 3, tol)
    assert not should_stop(p, peers, ACC_COST, 1)  # epsilon 0: a non-dominated point never stops


def _rung_scheduler(monkeypatch, exp_root: Path, rungs: tuple[float, ...], min_dominators: int, **kwargs):
    """A scheduler on (accuracy, cost) rung points in its own folder, and ``report(trial_id, epoch, acc,
    cost, **result)`` -> its decision on that rung result."""
    from ddecs_search.search._callbacks import RUNTIME
    from ddecs_search.search._scheduler import RUNG_ACCURACY, RUNG_COST, RUNG_EPOCH, ParetoRungScheduler

    # a search run earlier in this process left its experiment in the driver's RUNTIME (the runner
    # sets it before every fit); this scheduler must use its own folder
    monkeypatch.setitem(RUNTIME, "exp_root", None)
    dims = ((RUNG_ACCURACY, "max"), (RUNG_COST, "min"))
    sched = ParetoRungScheduler(rungs, dims, min_dominators, str(exp_root), **kwargs)

    def report(trial_id: str, epoch: float, acc: float, cost: float, **extra) -> str:
        result = {RUNG_EPOCH: epoch, RUNG_ACCURACY: acc, RUNG_COST: cost, "epoch": epoch, **extra}
        return sched.on_trial_result(None, SimpleNamespace(trial_id=trial_id), result)

    return sched, report


def test_scheduler_applies_epsilon_at_intermediate_rungs_only(tmp_path, monkeypatch):
    from ray.tune.schedulers import TrialScheduler

    from ddecs_search.search._scheduler import RUNG_ACCURACY, RUNG_COST, RUNG_EPOCH, RUNG_FINAL, STATE_FILE

    sched, report = _rung_scheduler(monkeypatch, tmp_path, (1,), 2, final_rung=True, epsilon=0.01)
    for epoch, final in ((1, {}), (3, {RUNG_FINAL: True})):
        assert report(f"a{epoch}", epoch, 0.895, 0.40, **final) == TrialScheduler.CONTINUE
        assert report(f"b{epoch}", epoch, 0.893, 0.45, **final) == TrialScheduler.CONTINUE
    # the same non-dominated point: stopped within epsilon at rung 1, never at the final rung
    assert report("c1", 1, 0.900, 0.50) == TrialScheduler.STOP
    assert report("c3", 3, 0.900, 0.50, **{RUNG_FINAL: True}) == TrialScheduler.CONTINUE
    state = yaml.safe_load((tmp_path / STATE_FILE).read_text())
    assert state["stopped"] == {
        "c1": {
            "epoch": 1,
            "rung": "1",
            "dominators": 2,
            "plain_dominators": 0,
            "epsilon": 0.01,
            "static": False,
        }
    }
    # a scheduler pickled before the knob existed (no attribute) resumes with plain dominance
    old = pickle.loads(pickle.dumps(sched))
    del old.__dict__["epsilon"]
    assert old.tolerance(False) is None and "epsilon=0.0" in old.debug_string()
    result = {RUNG_EPOCH: 1, RUNG_ACCURACY: 0.901, RUNG_COST: 0.5}
    assert old.on_trial_result(None, SimpleNamespace(trial_id="d1"), result) == TrialScheduler.CONTINUE


def test_epsilon_reaches_the_scheduler_from_the_space():
    from ddecs_search.search._scheduler import make_rung_scheduler

    data = yaml.safe_load(QUICK.read_text())
    objectives = (Objective("val_accuracy", "max"), Objective("expected_latency_ms", "min"))
    assert make_rung_scheduler(parse_space(data, "q.yaml"), objectives, "/nowhere").epsilon == 0.0  # default
    data["search"]["early_stopping"] = {"epsilon": 0.01}
    sched = make_rung_scheduler(parse_space(data, "q.yaml"), objectives, "/nowhere")
    assert sched.epsilon == 0.01 and sched.tolerance(False) == [0.01, 0.0] and sched.tolerance(True) is None


def test_scheduler_decides_per_rung_persists_its_table_and_survives_pickling(tmp_path, monkeypatch):
    from ray.tune.schedulers import TrialScheduler

    from ddecs_search.search._scheduler import RUNG_ACCURACY, RUNG_COST, RUNG_EPOCH, STATE_FILE

    sched, report = _rung_scheduler(monkeypatch, tmp_path, (1, 2), 2)
    assert report("a", 1, 0.9, 0.5) == TrialScheduler.CONTINUE  # alone at its rung
    assert report("b", 1, 0.85, 0.3) == TrialScheduler.CONTINUE
    assert report("c", 1, 0.8, 0.7) == TrialScheduler.STOP  # dominated by a and b
    assert report("d", 2, 0.8, 0.7) == TrialScheduler.CONTINUE  # other rung: compared with nobody
    assert report("e", 3, 0.1, 0.99) == TrialScheduler.CONTINUE  # not a rung
    assert sched.on_trial_result(None, SimpleNamespace(trial_id="f"), {"epoch": 1}) == TrialScheduler.CONTINUE
    assert report("g", 1, 0.1, 0.99, evaluated=True) == TrialScheduler.CONTINUE  # a full result: never
    state = yaml.safe_load((tmp_path / STATE_FILE).read_text())
    assert set(state["points"]["1"]) == {"a", "b", "c"} and state["stopped"] == {
        "c": {"dominators": 2, "epoch": 1, "rung": "1", "static": False}
    }
    # resumed: the unpickled scheduler (tuner.pkl) reads the table back from the experiment
    again = pickle.loads(pickle.dumps(sched))
    assert again._state is None
    result = {RUNG_EPOCH: 1, RUNG_ACCURACY: 0.7, RUNG_COST: 0.8}
    assert again.on_trial_result(None, SimpleNamespace(trial_id="h"), result) == TrialScheduler.STOP


def test_a_rung_inside_an_epoch_has_its_own_table_and_key(tmp_path, monkeypatch):
    from ray.tune.schedulers import TrialScheduler

    from ddecs_search.search._scheduler import STATE_FILE, rung_key

    _, report = _rung_scheduler(monkeypatch, tmp_path, (0.5, 1), 2)
    assert report("a", 0.5, 0.9, 0.5) == TrialScheduler.CONTINUE
    assert report("b", 0.5, 0.85, 0.3) == TrialScheduler.CONTINUE
    assert report("c", 1, 0.8, 0.7) == TrialScheduler.CONTINUE  # rung 1: compared with nobody yet
    assert report("d", 0.5, 0.8, 0.7) == TrialScheduler.STOP  # dominated by a and b at rung 0.5
    assert report("e", 0.25, 0.1, 0.99) == TrialScheduler.CONTINUE  # not a rung
    state = yaml.safe_load((tmp_path / STATE_FILE).read_text())
    assert set(state["points"]) == {"0.5", "1"} and set(state["points"]["0.5"]) == {"a", "b", "d"}
    assert state["stopped"] == {"d": {"dominators": 2, "epoch": 0.5, "rung": "0.5", "static": False}}
    assert [rung_key(e) for e in (1, 1.0, 0.5, 2.25)] == ["1", "1", "0.5", "2.25"]


def test_rungs_inside_an_epoch_are_validated_and_whole_ones_stay_integers():
    from ddecs_search.search._scheduler import active_rungs

    data = yaml.safe_load(QUICK.read_text())
    data["search"]["early_stopping"] = {"rungs": [0.5, 1.0]}
    space = parse_space(data, "quick.yaml")
    assert space.search.early_stopping.rungs == (0.5, 1)
    assert [type(r) for r in space.search.early_stopping.rungs] == [float, int]
    assert active_rungs(space, space.objectives)[0] == (0.5, 1)
    for bad in ([0, 1], [-0.5], [0.5, 0.5], [1, 0.5], [0.5, True]):
        data["search"]["early_stopping"] = {"rungs": bad}
        with pytest.raises(ConfigError, match="rungs"):
            parse_space(data, "quick.yaml")


def test_final_rung_compares_end_of_training_points_and_the_static_network(tmp_path, monkeypatch):
    from ray.tune.schedulers import TrialScheduler

    from ddecs_search.search._callbacks import RUNTIME

    monkeypatch.setitem(RUNTIME, "exp_root", None)
    from ddecs_search.search._scheduler import (
        RUNG_ACCURACY,
        RUNG_COST,
        RUNG_EPOCH,
        RUNG_FINAL,
        RUNG_STATIC_ACCURACY,
        STATE_FILE,
        ParetoRungScheduler,
        dominator_count,
    )

    dims = ((RUNG_ACCURACY, "max"), (RUNG_COST, "min"))
    sched = ParetoRungScheduler((1,), dims, min_dominators=2, exp_root=str(tmp_path), final_rung=True)

    def report(trial_id, epoch, acc, cost, final=True, static=0.80):
        result = {RUNG_EPOCH: epoch, RUNG_ACCURACY: acc, RUNG_COST: cost, "epoch": epoch}
        if final:
            result[RUNG_FINAL] = True
        if static is not None:  # a frozen candidate reports the static network's accuracy (cost 1.0)
            result[RUNG_STATIC_ACCURACY] = static
        return sched.on_trial_result(None, SimpleNamespace(trial_id=trial_id), result)

    # hand-made end-of-training table; the static network is the point (0.80, 1.0)
    assert report("a", 2, 0.80, 0.90) == TrialScheduler.CONTINUE  # cheaper than static: non-dominated
    assert report("b", 2, 0.79, 1.10) == TrialScheduler.STOP  # dominated by a and by the static network
    assert report("c", 2, 0.79, 1.05, static=None) == TrialScheduler.CONTINUE  # joint: a alone dominates
    assert report("d", 5, 0.81, 1.20) == TrialScheduler.CONTINUE  # best accuracy: never, whatever epoch
    assert report("e", 2, 0.80, 1.00) == TrialScheduler.CONTINUE  # ties the static network: only a
    # the same points at an intermediate rung: the static network is no peer there
    assert report("f", 1, 0.79, 1.10, final=False) == TrialScheduler.CONTINUE
    assert report("g", 1, 0.78, 1.20, final=False) == TrialScheduler.CONTINUE  # dominated by f only
    assert report("h", 1, 0.77, 1.30, final=False) == TrialScheduler.STOP  # by f and g
    state = yaml.safe_load((tmp_path / STATE_FILE).read_text())
    assert state["order"] == {"final": ["a", "b", "c", "d", "e"], "1": ["f", "g", "h"]}
    assert state["static"] == {"final": [0.80, 1.0]}
    assert state["stopped"] == {
        "b": {"epoch": 2, "rung": "final", "dominators": 2, "static": True},
        "h": {"epoch": 1, "rung": "1", "dominators": 2, "static": False},
    }
    # never a point non-dominated at its rung, the static network included
    table = state["points"]["final"]
    for tid, point in table.items():
        peers = [p for other, p in table.items() if other != tid] + [state["static"]["final"]]
        if dominator_count(point, peers, [d for _, d in dims]) == 0:
            assert tid not in state["stopped"], tid
    # a trial that fails leaves the table: it no longer stops anyone
    (tmp_path / "err").mkdir()
    sched = ParetoRungScheduler((1,), dims, min_dominators=1, exp_root=str(tmp_path / "err"), final_rung=True)
    assert report("p", 2, 0.90, 0.50, static=None) == TrialScheduler.CONTINUE
    assert report("q", 2, 0.80, 0.60, static=None) == TrialScheduler.STOP  # dominated by p
    sched.on_trial_error(None, SimpleNamespace(trial_id="p"))
    assert report("r", 2, 0.80, 0.60, static=None) == TrialScheduler.CONTINUE  # the same point, p gone
    state = yaml.safe_load((tmp_path / "err" / STATE_FILE).read_text())
    assert set(state["points"]["final"]) == {"q", "r"} and state["dropped"] == ["p"]
    assert state["order"]["final"] == ["q", "r"]
    # final rung off: end-of-training points are not compared
    off = ParetoRungScheduler((1,), dims, min_dominators=1, exp_root=str(tmp_path / "off"))
    (tmp_path / "off").mkdir()
    result = {RUNG_EPOCH: 2, RUNG_ACCURACY: 0.1, RUNG_COST: 9.0, RUNG_FINAL: True, RUNG_STATIC_ACCURACY: 0.9}
    assert off.on_trial_result(None, SimpleNamespace(trial_id="z"), result) == TrialScheduler.CONTINUE


def _with(space, **search):
    return dataclasses.replace(space, search=dataclasses.replace(space.search, **search))


def test_rungs_are_on_for_multi_objective_spaces_only():
    from ddecs_search.config._space import EarlyStoppingConfig
    from ddecs_search.search._scheduler import active_rungs, final_rung_active, rung_dimensions

    space = load_space(QUICK)
    objectives = (
        Objective("val_accuracy", "max"),
        Objective("expected_latency_ms", "min"),
        Objective("macs", "min"),
    )
    assert space.search.early_stopping.enabled  # default on
    assert active_rungs(space, objectives) == ((1, 2), None)  # epochs [2, 3]: rungs before the last
    assert rung_dimensions(objectives) == (("rung_val_accuracy", "max"), ("rung_expected_macs", "min"))
    assert active_rungs(space, objectives[:1]) == ((), None)  # single objective: ASHA's job
    assert final_rung_active(space, objectives) and not final_rung_active(space, objectives[:1])
    off = _with(space, early_stopping=EarlyStoppingConfig(enabled=False))
    assert active_rungs(off, objectives) == ((), None) and not final_rung_active(off, objectives)
    no_final = _with(space, early_stopping=EarlyStoppingConfig(final_rung=False))
    assert not final_rung_active(no_final, objectives) and active_rungs(no_final, objectives)[0] == (1, 2)
    rungs, notice = active_rungs(space, (Objective("val_accuracy", "max"), Objective("train_time_s", "min")))
    assert rungs == () and "train_time_s" in notice
    long = dataclasses.replace(space, training=dataclasses.replace(space.training, epochs=(2, 5)))
    assert active_rungs(long, objectives)[0] == (1, 2, 3, 4)
    explicit = _with(long, early_stopping=EarlyStoppingConfig(rungs=(2, 5, 9)))
    assert active_rungs(explicit, objectives)[0] == (2,)  # no rung at or after the last epoch


def test_a_rung_pass_waits_at_the_trials_pause_point_and_scores_the_same(tmp_path):
    """A rung point is a pass over validation: it must pause while a neighbour times, like training."""
    import torch

    from ddecs_search.artifacts import build_model
    from ddecs_search.search._scheduler import RUNG_ACCURACY, RUNG_COST, RungProxy
    from ddecs_search.spaces import candidate_from_dict

    space = load_space(TINY)  # real Fashion-MNIST
    space = dataclasses.replace(space, dataset=dataclasses.replace(space.dataset, val_subset=1100))
    candidate = candidate_from_dict(space, {"training": {"epochs": 2}})
    torch.manual_seed(0)
    checkpoint = tmp_path / "branches_checkpoint.pt"
    torch.save({"model": build_model(candidate, 10).state_dict()}, checkpoint)
    calls: list[tuple] = []
    paused = RungProxy(space, candidate, (1,), final=True, on_batch=lambda *a: calls.append(a))
    plain = RungProxy(space, candidate, (1,), final=True)
    assert paused(1, checkpoint) and len(calls) == 3  # 1100 images in batches of 512: before each one
    assert all(epoch == -1 for epoch, *_ in calls)  # not a training step
    for epoch in (1, 2):  # an intermediate rung and the final one: the same point with or without pauses
        a, b = paused(epoch, checkpoint), plain(epoch, checkpoint)
        assert (a[RUNG_ACCURACY], a[RUNG_COST]) == (b[RUNG_ACCURACY], b[RUNG_COST])
    assert paused(3, checkpoint) == {} and len(calls) == 9  # off a rung: no pass at all


def test_the_evaluation_reuses_the_final_rungs_validation_table_only_for_the_same_weights(tmp_path):
    """The final rung scores the last epoch's checkpoint on validation; the evaluation reuses that table.

    Same weights and same loader give the same table, so a search with the final rung gets exactly the
    validation figures of a plain evaluation (and one pass over validation less per trial).
    """
    from ddecs_search.artifacts import build_model
    from ddecs_search.evaluation import evaluate_candidate
    from ddecs_search.search._scheduler import RungProxy
    from ddecs_search.spaces import candidate_from_dict

    space = load_space(TINY)
    # MAC costs: the measured latency table moves with the load between the two evaluations compared
    candidate = candidate_from_dict(space, {"training": {"epochs": 2}, "policy": {"cost": "macs"}})
    rung = RungProxy(space, candidate, (), final=True)
    lookups: list = []

    def on_epoch(epoch: int, stats: dict, checkpoint: Path) -> None:
        rung(epoch + 1, checkpoint)

    def known(model, spec):
        lookups.append(rung.val_table(model, spec))
        return lookups[-1]

    cache = tmp_path / "baselines"
    reused = evaluate_candidate(
        space, candidate, baseline_dir=cache, quiet=True, on_epoch=on_epoch, known_val_table=known
    )
    plain = evaluate_candidate(space, candidate, baseline_dir=cache, quiet=True)
    assert len(lookups) == 1 and lookups[0] is not None  # reused, not recomputed
    for key in ("val_accuracy", "val_accuracy_drop", "baseline_val_accuracy", "accuracy", "exit_fractions"):
        assert reused[key] == plain[key], key
    other = build_model(candidate, 10)  # different (random) weights: never the table of another model
    assert rung.val_table(other) is None
    assert RungProxy(space, candidate, (), final=True).val_table(other) is None  # nothing scored yet


def test_the_static_networks_outputs_are_computed_once_per_worker_for_the_same_weights(tmp_path, monkeypatch):
    """A reused worker scores a static network on test and validation once, not in every trial.

    The second trial against the same static network (the baseline: both candidates are frozen) makes
    no pass with it and reports the same numbers as a fresh process would; another static network (the
    baseline trained as long as a joint candidate) is scored; a trial stopped during training makes no
    pass at all.
    """
    import ddecs_search.evaluation as ev
    from ddecs_search.spaces import candidate_from_dict

    passes: list[str] = []
    real_accuracy, real_predictions = ev.accuracy, ev._predictions

    def counted_accuracy(*args, **kwargs):
        passes.append("test")
        return real_accuracy(*args, **kwargs)

    def counted_predictions(*args, **kwargs):
        passes.append("val")
        return real_predictions(*args, **kwargs)

    monkeypatch.setattr(ev, "accuracy", counted_accuracy)
    monkeypatch.setattr(ev, "_predictions", counted_predictions)
    monkeypatch.setattr(ev, "_STATIC_OUTPUTS", type(ev._STATIC_OUTPUTS)())  # a fresh worker
    space = load_space(TINY)
    cache = tmp_path / "baselines"
    keys = ("baseline_accuracy", "baseline_val_accuracy", "accuracy_drop", "val_accuracy_drop")

    class Stop(Exception):
        pass

    def stop(epoch: int, stats: dict, checkpoint: Path) -> None:
        raise Stop

    with pytest.raises(Stop):  # stopped at its first epoch: trains the baseline, never scores it
        ev.evaluate_candidate(
            space, candidate_from_dict(space, {}), baseline_dir=cache, quiet=True, on_epoch=stop
        )
    assert passes == []
    # MAC costs: with the measured latency table the policy's thresholds (and so the candidate's own
    # accuracy) follow the machine's load between two evaluations; the static network's figures do not
    macs = {"cost": "macs"}
    first = ev.evaluate_candidate(
        space, candidate_from_dict(space, {"policy": macs}), baseline_dir=cache, quiet=True
    )
    assert passes == ["test", "val"]
    other = candidate_from_dict(space, {"policy": {**macs, "cost_weight": 0.4}})
    second = ev.evaluate_candidate(space, other, baseline_dir=cache, quiet=True)
    assert passes == ["test", "val"]  # the same baseline: reused
    monkeypatch.setattr(ev, "_STATIC_OUTPUTS", type(ev._STATIC_OUTPUTS)())  # a fresh worker again
    fresh = ev.evaluate_candidate(space, other, baseline_dir=cache, quiet=True)
    assert passes == ["test", "val"] * 2
    for key in keys:
        assert second[key] == fresh[key], key
    assert first["baseline_accuracy"] == second["baseline_accuracy"]
    joint = candidate_from_dict(space, {"training": {"mode": "joint", "epochs": 1}})
    ev.evaluate_candidate(space, joint, baseline_dir=cache, quiet=True)
    assert passes == ["test", "val"] * 3  # another static network: scored


def test_early_stopping_keys_are_validated():
    data = yaml.safe_load(TINY.read_text())
    for bad, key in (
        ({"rungs": [2, 1]}, "rungs"),
        ({"min_dominators": 0}, "min_dominators"),
        ({"epsilon": -0.01}, "epsilon"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"epsilon": ".01"}, "epsilon"),
        ({"grace": 1}, "grace"),
    ):
        data["search"]["early_stopping"] = bad
        with pytest.raises(ConfigError, match=key):
            parse_space(data, "tiny.yaml")


# ---------------------------------------------------------------------------------------- warm start
def test_warm_start_maps_candidates_onto_the_define_by_run_space():
    from ray.tune.search.optuna.optuna_search import unflatten_dict

    from ddecs_search.search._space_fn import ConditionalSpace, build_candidate
    from ddecs_search.search._warm_start import check_warm_start, warm_start_points
    from ddecs_search.spaces import candidate_from_dict

    space = load_space(QUICK)
    entries = (
        {},
        {
            "exit_points": [2],
            "branches": [{"conv_layers": 1, "channels": 64, "pool": "max"}],
            "policy": {"cost_weight": 0.3},
        },
    )
    space = _with(space, warm_start=entries, encoding="conditional")  # (the flat one: test_search_space_fn)
    fn = ConditionalSpace.from_space(space)
    points = warm_start_points(space, fn)
    assert points[0]["exit_points/n1"] == "0" and points[1]["exit_points/n1"] == "2"
    for entry, params in zip(entries, points, strict=True):
        want = candidate_from_dict(space, entry)
        got = build_candidate(space, fn, unflatten_dict(params))
        assert got.exit_points == want.exit_points and got.branches == want.branches
        assert (
            got.policy.cost_weight == want.policy.cost_weight and got.training.epochs == want.training.epochs
        )
    for bad, where in (
        ({"branches": [{"channels": 8}]}, r"warm_start\[0\]\.branches\[0\]\.channels"),
        ({"policy": {"cost_weight": 0.9}}, r"warm_start\[0\]\.policy\.cost_weight"),
        ({"exit_points": [0, 1, 2], "branches": [{}, {}, {}]}, r"warm_start\[0\]\.exit_points"),
        ({"training": {"epochs": 4}}, r"warm_start\[0\]\.training\.epochs"),
    ):
        with pytest.raises(ConfigError, match=where):
            check_warm_start(_with(space, warm_start=(bad,)), "space.yaml")


# ----------------------------------------------------------------------------------- shared data cache
def _create_once(root: str, counter: str) -> None:
    from ddecs_search.data._shared_cache import cached_arrays

    def create():
        with open(counter, "a") as handle:
            handle.write("x")
        time.sleep(0.5)  # long enough for the other process to find the entry missing
        return {"a": np.arange(12, dtype=np.float32).reshape(3, 4)}, {"n": 3}

    arrays, meta = cached_arrays(Path(root), ("k", 1), create)
    assert meta == {"n": 3} and np.array_equal(arrays["a"], np.arange(12).reshape(3, 4))


def test_shared_cache_is_created_once_by_concurrent_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    counter = tmp_path / "created"
    procs = [ctx.Process(target=_create_once, args=(str(tmp_path / "cache"), str(counter))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert counter.read_text() == "x"  # one process decoded; the others mapped its entry
    assert not list((tmp_path / "cache").glob("*.tmp-*"))


@pytest.mark.slow
def test_shared_data_cache_is_identical_to_a_fresh_decode(tmp_path, monkeypatch):
    from ddecs_search.data import clear_cache, load_splits
    from ddecs_search.data._shared_cache import ENV

    cfg = load_space(TINY).dataset
    cfg = dataclasses.replace(cfg, train_subset=3000, val_subset=1000, test_subset=1000)

    def splits():
        clear_cache()
        s = load_splits(cfg, (3, 32, 32))  # a resized, channel-expanded view too
        return [getattr(s, part).tensors() for part in ("train", "val", "test")], s.class_names

    monkeypatch.delenv(ENV, raising=False)
    fresh, names = splits()
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    created, created_names = splits()  # this process decodes and writes the entry
    entries = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "train_images.npy").is_file()
    mapped, mapped_names = splits()  # now mapped from the .npy files
    clear_cache()
    assert names == created_names == mapped_names
    for (fx, fy), (cx, cy), (mx, my) in zip(fresh, created, mapped, strict=True):
        assert fx.dtype == mx.dtype and fx.shape == mx.shape
        assert torch_equal(fx, cx) and torch_equal(fx, mx) and torch_equal(fy, cy) and torch_equal(fy, my)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


# ------------------------------------------------------------------------------- real Ray searches
@pytest.fixture(scope="module")
def local_ray():
    from ddecs_search.ray_setup import init_ray

    init_ray(num_cpus=2)
    yield
    import ray

    ray.shutdown()


def _space(tmp_path: Path, name: str, search: dict, **sections) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["search"].update(verify=False, **search)
    data["policy"]["cost"] = "macs"  # decisions independent of measured latency: results comparable
    data.update(sections)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(space_file: Path, storage: Path, name: str, baseline_from: Path | None = None):
    from ddecs_search.search import Experiment, run_search

    if baseline_from is not None:  # same space -> same baseline (as benchmarks/search_efficiency.py)
        shutil.copytree(baseline_from / "baseline", storage / name / "baseline")
    outcome = run_search(load_space(space_file), name=name, storage=str(storage), quiet=True, verify=False)
    assert outcome.finished, outcome
    return Experiment.at(outcome.exp_root).read_trials()


def _points(row, n: int) -> list[int]:
    """Exit points of a trials-table row with ``n`` early exits (the CSV may read ``"2"`` as 2.0)."""
    return [int(float(p)) for p in str(row[f"config/exit_points/n{n}"]).split(",")]


DETERMINISTIC = (
    "accuracy",
    "val_accuracy",
    "table_accuracy",
    "macs",
    "oracle_accuracy",
    "baseline_accuracy",
    "num_exits",
)

A = {"exit_points": [2], "branches": [{"conv_layers": 1, "channels": 16, "pool": "max", "pool_size": 2}]}
B = {
    "exit_points": [0, 1],
    "branches": [
        {"conv_layers": 0, "channels": 8, "pool_size": 1},
        {"conv_layers": 1, "channels": 16, "pool_size": 2},
    ],
    "policy": {"cost_weight": 0.2},
}


def test_a_reused_workers_wait_splits_where_tune_hands_it_the_trial(monkeypatch):
    """``worker_reset_s`` is the part of ``worker_idle_s`` after the hand-over (all of it when the hand-over
    came while the previous body ran out, as for a trial stopped at a rung); none without a hand-over."""
    from ddecs_search.data import SHARED_CACHE_ENV
    from ddecs_search.search import _worker

    for name in ("DDECS_IN_TRIAL", SHARED_CACHE_ENV):  # begin_trial sets them: undone after the test
        monkeypatch.setenv(name, "")  # (delenv of an unset name records nothing: begin_trial's value
        monkeypatch.delenv(name)  # would leak into the next tests of this process)
    state = {"trials": 0, "last_finished_at": None, "handed_at": None, "handed_after": None}
    monkeypatch.setattr(_worker, "_STATE", state)
    first = _worker.begin_trial("x")
    assert first["worker_idle_s"] is None and first["worker_reset_s"] is None
    _worker.end_trial()
    time.sleep(0.05)  # the driver's part
    _worker.mark_handed_over()
    second = _worker.begin_trial("x")
    assert second["worker_trial_number"] == 2
    assert 0 <= second["worker_reset_s"] < second["worker_idle_s"]
    assert second["worker_idle_s"] - second["worker_reset_s"] >= 0.04
    # a trial stopped at a rung: Tune hands the worker the next trial while the body still runs out
    _worker.mark_handed_over()
    time.sleep(0.02)
    _worker.end_trial()
    third = _worker.begin_trial("x")
    assert third["worker_reset_s"] == pytest.approx(third["worker_idle_s"], abs=0.005)  # all the worker's
    _worker.end_trial()
    fourth = _worker.begin_trial("x")  # no hand-over marked since the third trial began
    assert fourth["worker_idle_s"] >= 0 and fourth["worker_reset_s"] is None


@pytest.mark.slow
def test_reused_worker_gives_the_same_result_as_a_fresh_one(local_ray, tmp_path):
    both = _run_in_order(tmp_path, "ab", [A, B])
    assert both["evaluated"].all()
    first, second = both.iloc[0], both.iloc[1]
    # warm-start candidates come first, in their order
    assert _points(first, 1) == [2] and _points(second, 2) == [0, 1]
    assert second["worker_pid"] == first["worker_pid"] and second["worker_trial_number"] == 2
    assert second["worker_idle_s"] >= 0
    # the actor's reset marked where the driver handed it the trial: the worker's part is inside its wait
    assert 0 <= second["worker_reset_s"] <= second["worker_idle_s"]
    assert np.isnan(float(first["worker_reset_s"]))  # a process's first trial has no previous one
    row = _run_in_order(tmp_path, "b", [B], baseline_from=tmp_path / "ab").iloc[0]
    assert row["worker_trial_number"] == 1 and _points(row, 2) == [0, 1]
    _assert_same_numbers(row, second)


def _run_in_order(tmp_path: Path, name: str, candidates: list[dict], baseline_from: Path | None = None):
    """A search of exactly ``candidates`` (its warm start), one trial at a time, no early stopping."""
    search = {
        "num_samples": len(candidates),
        "max_concurrent": 1,
        "warm_start": candidates,
        "early_stopping": {"enabled": False},
    }
    return _run(_space(tmp_path, name, search), tmp_path, name, baseline_from=baseline_from)


def _assert_same_numbers(row, other) -> None:
    """Two trials' rows give exactly the same deterministic numbers (accuracies, tables, exit fractions)."""
    for key in DETERMINISTIC:
        assert row[key] == pytest.approx(other[key], abs=0), key
    assert row["exit_fractions"] == other["exit_fractions"]


@pytest.mark.slow
def test_a_network_trained_before_is_loaded_and_gives_what_training_it_gives(local_ray, tmp_path):
    """B and B with another λ train the same network: the second trial loads the first one's weights
    (``network_from_trial``, nothing trained) and fits only its policy; its numbers are those of the same
    candidate trained from scratch in an experiment of its own."""
    other = {**B, "policy": {"cost_weight": 0.05}}
    both = _run_in_order(tmp_path, "bb", [B, other])
    first, second = both.iloc[0], both.iloc[1]
    assert first["cost_weight"] == pytest.approx(0.2) and second["cost_weight"] == pytest.approx(0.05)
    assert pd.isna(first["network_from_trial"]) and first["train_time_s"] > 0
    assert second["network_from_trial"] == first["trial_id"] and second["train_time_s"] == 0
    assert pd.isna(second.get("reused_from_trial"))  # another candidate: evaluated, not re-reported
    row = _run_in_order(tmp_path, "b2", [other], baseline_from=tmp_path / "bb").iloc[0]
    assert pd.isna(row["network_from_trial"]) and row["train_time_s"] > 0  # trained here
    _assert_same_numbers(row, second)


@pytest.mark.slow
def test_a_network_stopped_at_a_rung_is_continued_from_there_and_gives_what_training_it_gives(
    local_ray, tmp_path
):
    """Bs is stopped at rung 1 (a tolerance of 0.99 with one dominator: C, no dearer, stops it); Bc, the
    same network with another λ, continues from Bs's rung checkpoint instead of training epoch 1 again: it
    is judged at that rung with its own policy, then trains on, and its numbers are those of Bc trained
    from scratch in an experiment of its own."""
    from ddecs_search.experiment import Experiment
    from ddecs_search.search._scheduler import STATE_FILE

    network = {
        "exit_points": [0, 1],
        "branches": [
            {"conv_layers": 0, "channels": 8, "pool_size": 1},
            {"conv_layers": 1, "channels": 16, "pool_size": 2},
        ],
    }
    # C: one exit at point 0 with a dearer branch than the network's first: cheaper than Bs (λ 0.02, leaves
    # late), dearer than Bc (λ 0.5, leaves at point 0 through the cheaper branch)
    c_branch = {"conv_layers": 1, "channels": 16, "pool_size": 2}
    c = {"exit_points": [0], "branches": [c_branch], "policy": {"cost_weight": 0.5}}
    stopped, continued = ({**network, "policy": {"cost_weight": w}} for w in (0.02, 0.5))
    rule = {"min_dominators": 1, "epsilon": 0.99, "final_rung": False}
    search = {
        "num_samples": 3,
        "max_concurrent": 1,
        "warm_start": [c, stopped, continued],
        "early_stopping": rule,
    }
    trials = _run(_space(tmp_path, "es", search), tmp_path, "es").sort_values("trial_index")
    first, bs, bc = (trials.iloc[i] for i in range(3))
    state = yaml.safe_load((tmp_path / "es" / STATE_FILE).read_text())
    assert set(state["stopped"]) == {bs["trial_id"]}, state["stopped"]  # the set-up: Bs stopped, C and Bc not
    assert pd.isna(first["network_epochs_from_trial"]) and pd.isna(bs["network_epochs_from_trial"])
    assert bc["network_epochs_from_trial"] == bs["trial_id"] and bc["network_epochs_loaded"] == 1
    assert pd.isna(bc["network_from_trial"]) and bc["train_time_s"] > 0  # it trained epoch 2 itself
    assert 0 < bc["network_epochs_train_s"] < bs["time_total_s"]  # epoch 1, as long as Bs took for it
    rung = state["points"]["1"]  # Bc judged at rung 1 with its own policy: another point than Bs's
    assert bc["trial_id"] in rung and rung[bc["trial_id"]] != rung[bs["trial_id"]]
    exp = Experiment.at(str(tmp_path / "es"))
    keys = {name.split(".", 1)[0] for name in os.listdir(exp.path("networks"))}
    assert sorted(exp.network_of(key) for key in keys) == sorted([first["trial_id"], bc["trial_id"]])
    assert all(exp.network_epoch_of(key) is None for key in keys)  # each trained in full: none kept
    row = _run_in_order(tmp_path, "bc", [continued], baseline_from=tmp_path / "es").iloc[0]
    assert pd.isna(row["network_epochs_from_trial"]) and row["train_time_s"] > 0  # all of it trained here
    _assert_same_numbers(row, bc)


def test_the_experiment_keeps_a_networks_latest_rung_checkpoint_until_it_is_trained(tmp_path):
    """``networks/<key>.epoch.pt``: only a later epoch replaces the kept one; a checkpoint that is not the
    one its record names reads as none (train from the start); recording the trained network removes it."""
    from ddecs_search.experiment import Experiment
    from ddecs_search.search._trainable import _publish

    exp = Experiment(str(tmp_path / "exp"))
    assert exp.network_epoch_of("k") is None
    exp.record_network_epoch("k", 0, "t1", b"epoch-0", 1.5, 10.0)
    exp.record_network_epoch("k", 1, "t2", b"epoch-1", 1.2, 21.0)
    exp.record_network_epoch("k", 0, "t3", b"epoch-0 again", 1.5, 10.0)  # an earlier epoch: kept as it is
    kept = exp.network_epoch_of("k")
    assert (kept.trial_id, kept.epoch, kept.loss, kept.train_s) == ("t2", 1, 1.2, 21.0)
    assert kept.checkpoint == b"epoch-1"
    Path(exp.path("networks", "k.epoch.pt")).write_bytes(b"another file")
    assert exp.network_epoch_of("k") is None
    exp.record_network_epoch("k", 2, "t4", b"epoch-2", 1.0, 30.0)
    assert exp.network_epoch_of("k").epoch == 2
    _publish(exp, "t5", tmp_path / "no-artefacts", {"accuracy": 0.9})
    exp.record_network("k", "t5")
    assert exp.network_of("k") == "t5" and exp.network_epoch_of("k") is None
    assert not Path(exp.path("networks", "k.epoch.pt")).exists()


def test_the_trials_table_reads_trial_ids_that_look_like_numbers_as_text(tmp_path):
    """Trial ids are 8 hex digits: some are all digits (seen: "78220455", read back as 78220455.0) or read
    as a float ("1e345678"); every column that names a trial reads back as the text the search wrote."""
    from ddecs_search.experiment import Experiment

    exp = Experiment(str(tmp_path / "exp"))
    ids = ["78220455", "1e345678"]
    columns = ["trial_id", "reused_from_trial", "network_from_trial", "network_epochs_from_trial"]
    rows = [dict.fromkeys(columns, i) | {"trial_index": k, "state": "TERMINATED"} for k, i in enumerate(ids)]
    exp.write_trials(rows)
    table = exp.read_trials()
    assert [table[c].tolist() for c in columns] == [ids] * len(columns)


def test_the_experiment_names_the_trial_that_evaluated_a_candidate(tmp_path):
    """``candidates/<key>.json``: the first evaluation stays the named one; a named trial whose result is
    gone, or an unreadable index, means "not evaluated" (the candidate is trained again, nothing fails)."""
    from ddecs_search.experiment import Experiment, candidate_key
    from ddecs_search.search._trainable import _publish
    from ddecs_search.spaces import candidate_from_dict

    space = load_space(QUICK)
    exp = Experiment(str(tmp_path / "exp"))
    key = candidate_key(candidate_from_dict(space, {}))
    assert key == candidate_key(candidate_from_dict(space, {}))  # the same configuration, the same key
    assert key != candidate_key(candidate_from_dict(space, {"policy": {"cost_weight": 0.3}}))  # λ counts
    assert exp.evaluation_of(key) is None
    for trial_id in ("t1", "t2"):  # the trainable's writer: artefacts (none here), then metrics.json
        _publish(exp, trial_id, tmp_path / "no-artefacts", {"accuracy": 0.9})
    exp.record_candidate(key, "t1")
    exp.record_candidate(key, "t2")
    assert exp.evaluation_of(key) == ("t1", {"accuracy": 0.9})
    Path(exp.trial_dir("t1"), "metrics.json").unlink()
    assert exp.evaluation_of(key) is None
    Path(exp.path("candidates", f"{key}.json")).write_text("{not json")
    assert exp.evaluation_of(key) is None


def test_a_trials_publishing_and_reuse_folders_are_in_the_node_folders_scratch(tmp_path, monkeypatch):
    """The artefacts a trial publishes, and those a reused evaluation copies, pass through a folder next to
    the trial's work folder (the node folder's ``scratch/``), not loose in the temp folder: a trial killed
    while publishing (its clean-up never runs) leaves them where the finished search removes them."""
    from ddecs_search import storage
    from ddecs_search.experiment import Experiment
    from ddecs_search.search import _trainable

    exp = Experiment(str(tmp_path / "exp"))
    scratch = tmp_path / "node" / "scratch"
    workdir = scratch / "ddecs-trial-t1-x"
    workdir.mkdir(parents=True)
    (workdir / _trainable.ARTEFACTS[0]).write_text("artefact")
    staged: list[Path] = []  # the local folder of every upload and download, in order
    upload, download = storage.upload_dir, storage.download_dir

    def spy_up(src, dst):
        staged.append(Path(src))
        return upload(src, dst)

    def spy_down(src, dst):
        staged.append(Path(dst))
        return download(src, dst)

    monkeypatch.setattr(storage, "upload_dir", spy_up)
    monkeypatch.setattr(storage, "download_dir", spy_down)
    monkeypatch.setattr(_trainable, "_node_id", lambda: "node")  # (no Ray for this)
    _trainable._publish(exp, "t1", workdir, {"accuracy": 0.9})
    flat = _trainable._reuse(exp, "t2", "t1", {"accuracy": 0.9}, {"trial_started_at": time.time()}, scratch)
    assert flat["reused_from_trial"] == "t1" and flat["accuracy"] == 0.9
    assert [p.parent for p in staged] == [scratch] * 3, staged
    prefixes = [p.name.split("-")[1] for p in staged]
    assert prefixes == ["publish", "reuse", "publish"], staged  # t1's; t2's copy of t1's, then its own
    assert Path(exp.trial_dir("t2"), _trainable.ARTEFACTS[0]).read_text() == "artefact"
    assert sorted(p.name for p in scratch.iterdir()) == ["ddecs-trial-t1-x"]  # both removed again


@pytest.mark.slow
def test_a_candidate_drawn_again_re_reports_its_evaluation_instead_of_training(local_ray, tmp_path):
    """The same candidate twice (here both warm-start entries): the second trial trains nothing, names the
    first in ``reused_from_trial``, reports its numbers and holds its artefacts; the sampler sees both.
    The sampler's own draw of it (a space of two candidates) is told and drawn again: the third trial is
    the other candidate, and ``run.json`` counts the draws told in its place."""
    import torch

    from ddecs_search.artifacts import load_trained
    from ddecs_search.experiment import REDRAWN_KEY, Experiment
    from ddecs_search.study import TRIAL_ID_ATTR, load_study

    name = "again"
    off = {"enabled": False}
    search = {"num_samples": 3, "max_concurrent": 1, "warm_start": [A, A], "early_stopping": off}
    data = yaml.safe_load(TINY.read_text())
    exits = {**data["exits"], "count": [1, 1], "points": [2], "conv_layers": [1], "channels": [16]}
    exits.update(pool=["avg", "max"], pool_size=[2])  # A and A with average pooling
    policy = {**data["policy"], "cost_weight": [0.1, 0.1]}
    table = _run(_space(tmp_path, name, search, exits=exits, policy=policy), tmp_path, name)
    assert table["evaluated"].all() and len(table) == 3
    assert table["candidate"].nunique() == 2 and pd.isna(table.iloc[2]["reused_from_trial"])
    (searcher_file,) = (tmp_path / name).glob("searcher-state-*.pkl")
    drawn = pickle.loads(searcher_file.read_bytes())["_ot_study"].trials
    told = [t for t in drawn if "reused_from_trial" in t.user_attrs]
    assert told and len(drawn) == 3 + len(told)  # (seed 0 draws A again once before the other one)
    assert Experiment.at(str(tmp_path / name)).read_record().get(REDRAWN_KEY, 0) == len(told)
    first, second = table.iloc[0], table.iloc[1]
    assert pd.isna(first["reused_from_trial"]) and second["reused_from_trial"] == first["trial_id"]
    for key in (*DETERMINISTIC, "latency_ms", "expected_latency_ms", "train_time_s", "candidate"):
        assert second[key] == first[key], key
    assert second["trial_wall_s"] < first["trial_wall_s"] / 5  # nothing trained
    exp = Experiment.at(str(tmp_path / name))
    again, once = (load_trained(exp.trial_dir(t)) for t in (second["trial_id"], first["trial_id"]))
    assert again.spec == once.spec
    weights = once.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in again.model.state_dict().items())  # the same network
    assert len(list(Path(exp.path("candidates")).iterdir())) == 2
    study = {t.user_attrs[TRIAL_ID_ATTR]: t for t in load_study(exp.root).trials}  # the mirror names it
    assert study[second["trial_id"]].user_attrs["reused_from_trial"] == first["trial_id"]
    assert study[second["trial_id"]].values == study[first["trial_id"]].values


@pytest.mark.slow
def test_stopped_trials_keep_a_marked_partial_record_and_never_reach_the_front(local_ray, tmp_path, capsys):
    from ddecs_search.analysis import experiment_front
    from ddecs_search.metrics import STATIC_TRIAL_ID

    # one at a time (a fixed order of rung points) and a strict rule: some trials are dominated at rung 1
    search = {
        "num_samples": 6,
        "max_concurrent": 1,
        "seed": 2,
        "warm_start": [{}],
        "early_stopping": {"min_dominators": 1, "final_rung": False},  # rung 1 only (final: tested above)
    }
    trials = _run(_space(tmp_path, "es", search), tmp_path, "es")
    assert _points(trials.iloc[0], 1) == [0]  # the default candidate, first
    stopped = trials[trials["stopped_early"] == True]  # noqa: E712
    full = trials[trials["evaluated"] == True]  # noqa: E712
    assert len(stopped) >= 1 and len(full) >= 1 and len(stopped) + len(full) == 6
    assert set(trials["state"]) == {"TERMINATED"}
    assert not stopped["full_fidelity"].any() and (stopped["epoch"] == 1).all()
    assert stopped["rung_val_accuracy"].between(0, 1).all() and stopped["accuracy"].isna().all()
    state = yaml.safe_load((tmp_path / "es" / "early_stopping.json").read_text())
    assert set(state["stopped"]) == set(stopped["trial_id"])
    for trial_id in stopped["trial_id"]:  # each was dominated at its rung by an earlier point
        assert not (tmp_path / "es" / "trials" / trial_id / "metrics.json").exists()
    _, front = experiment_front(tmp_path / "es")
    front_ids = set(front.front["trial_id"]) - {STATIC_TRIAL_ID}  # the static network is ranked too
    assert front_ids and not front_ids & set(stopped["trial_id"])
    assert set(front.ranked["trial_id"]) - {STATIC_TRIAL_ID} <= set(full["trial_id"])
    # the sampler was told only full evaluations (stopped trials: PRUNED), the warm start as trial 0
    (searcher_file,) = (tmp_path / "es").glob("searcher-state-*.pkl")
    study = pickle.loads(searcher_file.read_bytes())["_ot_study"]
    # (a draw of a candidate evaluated before is told, not run: none expected here, λ is continuous)
    assert not any("reused_from_trial" in t.user_attrs for t in study.trials)
    states = [t.state.name for t in study.trials]
    assert states.count("PRUNED") == len(stopped) and states.count("COMPLETE") == len(full)
    assert study.trials[0].params["num_early_exits"] == 1 and study.trials[0].state.name == "COMPLETE"
    # benchmarks/search_efficiency.py --replay-from: the draws of this search, stopped ones included, in
    # order, as warm-start entries that give the sampler's parameters back
    from _fixtures import load_benchmark

    from ddecs_search.search._space_fn import ConditionalSpace
    from ddecs_search.search._warm_start import candidate_params

    bench = load_benchmark("search_efficiency")
    replay = bench.replay_candidates(tmp_path / "es")
    space = load_space(tmp_path / "es.yaml")
    fn = ConditionalSpace.from_space(space)
    assert len(replay) == len(study.trials) == 6
    for i, (entry, drawn) in enumerate(zip(replay, study.trials, strict=True)):
        params = candidate_params(space, fn, entry, f"replay[{i}]")
        assert params.keys() == drawn.params.keys(), i
        for name, value in drawn.params.items():
            assert params[name] == (pytest.approx(value) if isinstance(value, float) else value), (i, name)
    # --from-storage summarises finished searches without running anything: the summary's own wall and
    # machine load would describe the summary, not the searches, so they are null (not recorded there)
    storage = tmp_path / "bench"
    storage.mkdir()
    (storage / "nsga2-s2-es").symlink_to(tmp_path / "es", target_is_directory=True)
    args = ["--from-storage", "--algorithms", "nsga2", "--es-algorithms", "--seeds", "2", "--json"]
    assert bench.main([*args, "--space", str(tmp_path / "es.yaml"), "--storage", str(storage)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["from_storage"] is True
    assert summary["wall_s"] is None and summary["load_before"] is None and summary["load_after"] is None
    (run,) = summary["runs"]
    assert (run["n_trials"], run["n_stopped"], run["n_full"]) == (6, len(stopped), len(full))
    # the sampler each search ran, read from its own folder: a summary never pools two settings unnamed;
    # the summary searched no space file itself
    from ddecs_search.search import sampler_settings

    assert run["sampler"] == sampler_settings(space) and run["sampler"]["algorithm"] == "nsga2"
    assert summary["samplers"] == {"nsga2": [run["sampler"]]} and summary["space"] is None
    assert 0 < run["hv_floor"] <= run["hv"]  # the warm start (trial 0) and the static network alone
    assert run["resumed"] is False and summary["resumed_searches"] == []  # one driver: its times count
    assert 0 <= summary["overhead_share"] < 1 and summary["per_trial_vs_baseline_cost"] > 0


# ------------------------------------------------------------------ a draw of a candidate evaluated before
def _small_space(pools: list[str], algorithm: str = "random", **search):
    """The tiny space cut down to ``len(pools)`` candidates (one exit, one branch shape, one λ)."""
    data = yaml.safe_load(TINY.read_text())
    data["exits"].update(count=[1, 1], points=[2], conv_layers=[0], pool=pools, pool_size=[2])
    data["policy"]["cost_weight"] = [0.1, 0.1]
    data["search"].update(algorithm=algorithm, **search)
    return parse_space(data, "small.yaml")


def _searcher(space):
    from ddecs_search.search import effective_objectives
    from ddecs_search.search._searcher import make_search_alg

    objectives, _ = effective_objectives(space, energy_available=False)
    return make_search_alg(space, objectives).searcher, [o.name for o in objectives]


def _evaluated(names: list[str], values: list[float], drop: float) -> dict:
    from ddecs_search.experiment import EVALUATED_KEY

    return {EVALUATED_KEY: True, **dict(zip(names, values, strict=True)), "val_accuracy_drop": drop}


def test_a_draw_of_an_evaluated_candidate_is_told_its_result_and_drawn_again(tmp_path, monkeypatch):
    """No trial for a candidate the search evaluated: the searcher tells Optuna the earlier values and
    constraints for the draw (marked with the trial that evaluated it) and asks again; the run record
    counts it. After :data:`MAX_REDRAWS` known draws the trial gets the last one (its trainable then
    re-reports the earlier result), so a space the search has exhausted does not ask forever."""
    from ddecs_search.experiment import REDRAWN_KEY, REUSED_FROM_KEY, Experiment
    from ddecs_search.search._callbacks import RUNTIME
    from ddecs_search.search._optuna_search import MAX_REDRAWS
    from ddecs_search.search._space_fn import ConditionalSpace, config_key

    exp = Experiment(str(tmp_path / "exp"))
    monkeypatch.setitem(RUNTIME, "exp_root", exp.root)
    space = _small_space(["avg", "max"])
    fn = ConditionalSpace.from_space(space)
    searcher, names = _searcher(space)
    first = searcher.suggest("t1")
    searcher.on_trial_complete("t1", _evaluated(names, [0.8, 0.3, 1000.0], 0.05))
    second = searcher.suggest("t2")  # the other candidate, whatever the sampler drew in between
    assert config_key(space, fn, second) != config_key(space, fn, first)
    study = searcher._ot_study
    told = [t for t in study.get_trials(deepcopy=False) if REUSED_FROM_KEY in t.user_attrs]
    assert len(told) == len(study.trials) - 2 == exp.read_record().get(REDRAWN_KEY, 0)
    for t in told:
        assert t.state.name == "COMPLETE" and t.values == [0.8, 0.3, 1000.0]
        assert t.user_attrs[REUSED_FROM_KEY] == "t1" and t.params == study.trials[0].params
        assert t.system_attrs["constraints"] == [0.05 - 0.5]  # val_accuracy_drop <= 0.5, as t1's
    searcher.on_trial_complete("t2", _evaluated(names, [0.7, 0.2, 800.0], 0.15))
    # both candidates known: the third trial gets a known one after MAX_REDRAWS told draws
    before = len(study.trials)
    third = searcher.suggest("t3")
    assert config_key(space, fn, third) in {config_key(space, fn, c) for c in (first, second)}
    assert len(study.trials) - before == MAX_REDRAWS + 1
    assert exp.read_record()[REDRAWN_KEY] == len(told) + MAX_REDRAWS
    # Tune pickles the searcher with the experiment: a resumed search still knows what was evaluated
    restored = pickle.loads(pickle.dumps(searcher))
    restored.on_trial_complete("t3", _evaluated(names, [0.8, 0.3, 1000.0], 0.05))
    before = len(restored._ot_study.trials)
    restored.suggest("t4")
    assert len(restored._ot_study.trials) - before == MAX_REDRAWS + 1


def test_the_warm_start_is_never_replaced_by_another_draw(tmp_path, monkeypatch):
    """A candidate the user listed twice is evaluated as listed: both entries become trials (the second
    re-reports the first's result in its trainable), no draw is told in their place."""
    from ddecs_search.experiment import REUSED_FROM_KEY
    from ddecs_search.search._callbacks import RUNTIME

    monkeypatch.setitem(RUNTIME, "exp_root", None)
    entry = {"exit_points": [2], "branches": [{"conv_layers": 0, "pool": "avg", "pool_size": 2}]}
    space = _small_space(["avg", "max"], warm_start=[entry, entry])
    searcher, names = _searcher(space)
    first = searcher.suggest("t1")
    searcher.on_trial_complete("t1", _evaluated(names, [0.8, 0.3, 1000.0], 0.05))
    assert searcher.suggest("t2") == first
    assert len(searcher._ot_study.trials) == 2
    assert not any(REUSED_FROM_KEY in t.user_attrs for t in searcher._ot_study.trials)


def _resumable(space, tmp_path, monkeypatch):
    """An experiment folder holding ``space`` (where the run's searcher finds it) and that searcher."""
    from ddecs_search.experiment import Experiment
    from ddecs_search.search._callbacks import RUNTIME

    exp = Experiment(str(tmp_path / "exp"))
    exp.write_space(space)
    monkeypatch.setitem(RUNTIME, "exp_root", exp.root)
    monkeypatch.setitem(RUNTIME, "quiet", True)
    return (exp, *_searcher(space))


def _store(exp, space, trial_id: str, config: dict, result: dict) -> dict:
    """What a trial's trainable stores for ``config`` (the reported metrics, flat) with the product's
    writer; returns the metrics."""
    from ddecs_search.config import to_dict
    from ddecs_search.experiment import scalar
    from ddecs_search.search._space_fn import ConditionalSpace, build_candidate
    from ddecs_search.search._trainable import _publish

    candidate = build_candidate(space, ConditionalSpace.from_space(space), config)
    stored = {**result, "candidate": to_dict(candidate), "trial_finished_at": time.time()}
    _publish(exp, trial_id, Path(exp.root).parent / "no-artefacts", {k: scalar(v) for k, v in stored.items()})
    return stored


def test_a_resume_adopts_a_result_stored_after_tunes_last_save(tmp_path, monkeypatch):
    """Ray Tune saves its state (trials, searcher) every 10 s or after an epoch checkpoint, so a trial that
    trains nothing can be drawn, evaluated and stored in between; a driver killed then resumes a searcher
    that never drew it (seen in CI: the crash test's evaluation records named a fourth trial of three).
    The restored searcher enqueues that candidate first, so the trial Tune creates in its place re-reports
    the stored result (its trainable finds it in ``candidates/``), and tells a later draw of it as known:
    nothing evaluated is lost from the table or run again. A restore after a save that knew every stored
    result adopts nothing."""
    from ddecs_search.experiment import REUSED_FROM_KEY
    from ddecs_search.search._space_fn import ConditionalSpace, config_key

    space = _small_space(["avg", "max"])
    exp, searcher, names = _resumable(space, tmp_path, monkeypatch)
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", _evaluated(names, [0.8, 0.3, 1000.0], 0.05))
    saved = tmp_path / "state"  # Tune's last save of the searcher, before t2 was drawn
    saved.mkdir()
    searcher.save_to_dir(str(saved))
    drawn = searcher.suggest("t2")
    key = config_key(space, ConditionalSpace.from_space(space), drawn)
    stored = _store(exp, space, "t2", drawn, _evaluated(names, [0.7, 0.2, 800.0], 0.15))  # then killed
    assert exp.evaluation_of(key) is None  # killed before it named its candidate: adoption names it

    restored, _ = _searcher(space)
    restored.restore_from_dir(str(saved))
    assert restored.suggest("t3") == drawn  # Tune's next trial is the stored candidate, enqueued (a
    assert restored._enqueued(restored._ot_trials["t3"])  # restored random sampler may draw it again)...
    assert exp.evaluation_of(key)[0] == "t2"  # ...whose trainable re-reports t2's result
    assert restored._told[key] == ("t2", [0.7, 0.2, 800.0], {"val_accuracy_drop<=0.5": 0.15 - 0.5})
    restored.on_trial_complete("t3", {**stored, REUSED_FROM_KEY: "t2"})
    before = len(restored._ot_study.trials)
    restored.suggest("t4")  # (two candidates, both known: told draws, then the last one)
    told = restored._ot_study.trials[before:-1]
    assert told and all(t.user_attrs[REUSED_FROM_KEY] in {"t1", "t2"} for t in told)

    again, _ = _searcher(space)  # a save after t2 was drawn: nothing to adopt
    searcher.save_to_dir(str(saved))
    again.restore_from_dir(str(saved))
    assert again._told == searcher._told and len(again._ot_study.trials) == len(searcher._ot_study.trials)
    assert not [t for t in again._ot_study.get_trials(deepcopy=False) if "fixed_params" in t.system_attrs]


def test_an_unsaved_result_still_waiting_in_the_warm_start_is_not_enqueued_twice(tmp_path, monkeypatch):
    """The unsaved trial was a warm-start entry: the restored study still holds it, enqueued; the
    adoption leaves it there instead of adding a second copy (which would cost another trial)."""
    entry = {"exit_points": [2], "branches": [{"conv_layers": 0, "pool": "avg", "pool_size": 2}]}
    space = _small_space(["avg", "max"], warm_start=[entry])
    exp, searcher, names = _resumable(space, tmp_path, monkeypatch)
    saved = tmp_path / "state"
    saved.mkdir()
    searcher.save_to_dir(str(saved))  # before the warm start was drawn
    drawn = searcher.suggest("t1")
    _store(exp, space, "t1", drawn, _evaluated(names, [0.8, 0.3, 1000.0], 0.05))
    restored, _ = _searcher(space)
    restored.restore_from_dir(str(saved))
    waiting = [t for t in restored._ot_study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
    assert len(waiting) == 1 and restored.suggest("t2") == drawn  # adopted: told, named, not enqueued again
    assert exp.evaluation_of(next(iter(restored._told)))[0] == "t1"


@pytest.mark.slow
def test_a_rung_inside_the_first_epoch_stops_trials_there(local_ray, tmp_path):
    """``rungs: [0.5]``: every trial that trains reports its point halfway through its first epoch (tiny:
    4 steps an epoch, scored after the 2nd), before any epoch checkpoint; a dominated one stops there."""
    search = {
        "num_samples": 5,
        "max_concurrent": 1,
        "seed": 2,
        "early_stopping": {"rungs": [0.5], "min_dominators": 1, "final_rung": False},
    }
    trials = _run(_space(tmp_path, "half", search), tmp_path, "half")
    state = yaml.safe_load((tmp_path / "half" / "early_stopping.json").read_text())
    assert set(state["points"]) == {"0.5"}  # no whole-epoch rung: only the one inside epoch 1
    trained = trials[trials["network_from_trial"].isna()] if "network_from_trial" in trials else trials
    assert set(trained["trial_id"]) <= set(state["points"]["0.5"])
    stopped = trials[trials["stopped_early"] == True]  # noqa: E712
    full = trials[trials["evaluated"] == True]  # noqa: E712
    assert len(stopped) >= 1 and len(full) >= 1 and len(stopped) + len(full) == 5
    assert (stopped["epoch"] == 0.5).all() and (stopped["rung_epoch"] == 0.5).all()
    assert set(state["stopped"]) == set(stopped["trial_id"])
    assert all(s == {"epoch": 0.5, "rung": "0.5", "dominators": s["dominators"], "static": False}
               for s in state["stopped"].values())  # fmt: skip
    for trial_id in stopped["trial_id"]:
        assert not (tmp_path / "half" / "trials" / trial_id / "metrics.json").exists()
    assert (full["train_time_s"] > 0).any()  # the rest trained both epochs and were evaluated
