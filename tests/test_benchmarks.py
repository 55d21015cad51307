"""Benchmarks: every script starts and knows its flags; reference_alexnet's building blocks and JSON contract.

Running a benchmark's ``--quick`` takes up to 5 minutes on a 2-core CPU, too long for the suite, except
``early_exit_speedup.py`` (LeNet). ``reference_alexnet.py`` is run end to end with ``--smoke`` (tiny
sizes, same code path); its pieces are tested on synthetic inputs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _fixtures import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
ROW_KEYS = {"accuracy", "latency_ms", "speedup", "energy_mj", "energy_source", "macs"}


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "DDECS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    # its dataclasses resolve annotations through sys.modules
    return load_benchmark("reference_alexnet", sys.modules.__setitem__)


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"dataset": "fashion-mnist", "device": "cpu", "trials": None, **kw})


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_benchmark_starts_and_has_quick_and_json(script: Path) -> None:
    proc = _run([str(script), "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--quick" in proc.stdout and "--json" in proc.stdout


def test_readme_lists_every_benchmark() -> None:
    text = (BENCH / "README.md").read_text()
    for script in SCRIPTS:
        assert f"benchmarks/{script.name}" in text, f"{script.name} is missing from benchmarks/README.md"


# ------------------------------------------------------------------------------------ reference_alexnet
def test_the_found_networks_training_time_is_its_trainers_when_it_loaded_the_network(
    ref: ModuleType, tmp_path: Path
) -> None:
    """A found trial that loaded a network another trial trained reports train_time_s 0 (it trained
    nothing): the row's branch training time is then the trainer's, not 0; a trial that continued a
    network from another's rung checkpoint adds the seconds those epochs took there."""
    from ddecs_search.experiment import Experiment
    from ddecs_search.search._trainable import _publish

    exp = Experiment(str(tmp_path / "exp"))
    _publish(exp, "t1", tmp_path / "none", {"train_time_s": 41.5})
    _publish(exp, "t2", tmp_path / "none", {"train_time_s": 0.0, "network_from_trial": "t1"})
    _publish(exp, "t3", tmp_path / "none", {"train_time_s": 20.0, "network_epochs_train_s": 21.0})
    _publish(exp, "t4", tmp_path / "none", {"train_time_s": 0.0, "network_from_trial": "t3"})
    trials = Path(exp.root) / "trials"
    for trial, expected in (("t1", 41.5), ("t2", 41.5), ("t3", 41.0), ("t4", 41.0)):
        metrics = json.loads((trials / trial / "metrics.json").read_text())
        assert ref._branch_train_time(trials / trial, metrics) == expected


def test_search_space_shares_data_baseline_and_budget_with_the_reference(ref: ModuleType) -> None:
    preset = ref.PRESETS["quick"]
    bench, search = ref.build_spaces(_args(), preset)
    assert search.dataset == bench.dataset  # same splits ...
    assert search.backbone == bench.backbone  # ... and the same cached static AlexNet
    assert bench.dataset.train_subset == preset.train
    assert bench.backbone.baseline.epochs == preset.baseline_epochs  # the cap ...
    assert bench.backbone.baseline.patience == preset.patience  # ... of an early-stopped static network
    assert bench.backbone.baseline.optimizer == "adam" and bench.backbone.baseline.label_smoothing == 0.1
    assert search.training.epochs == (preset.branch_epochs,)
    assert (search.training.optimizer, search.training.lr, search.training.batch_size) == ("adam", 1e-3, 32)
    assert search.training.loss_weights == (0.15, 0.15, 0.70)
    assert bench.default_candidate["training"]["epochs"] == preset.branch_epochs
    # the search is steered by validation accuracy only; test accuracy never enters it
    names = [o.name for o in search.objectives]
    assert names[0] == "val_accuracy" and "accuracy" not in names and "accuracy_drop" not in names
    assert not search.constraints
    assert search.search.num_samples == preset.trials and not search.search.verify
    assert search.resources.gpu == 0 and bench.measurement.device == "cpu"
    assert ref.build_spaces(_args(trials=5), preset)[1].search.num_samples == 5


def test_reference_candidate_is_the_published_configuration(ref: ModuleType) -> None:
    from ddecs_search.models.alexnet import REFERENCE_EXIT_POINTS, reference_branch_spec

    bench, _ = ref.build_spaces(_args(), ref.PRESETS["quick"])
    cand = ref.reference_candidate(bench)
    assert cand.backbone == "alexnet" and cand.exit_points == REFERENCE_EXIT_POINTS
    assert cand.branches == (reference_branch_spec(64), reference_branch_spec(256))
    t = cand.training
    assert (t.mode, t.optimizer, t.lr, t.batch_size, t.label_smoothing) == ("joint", "adam", 1e-3, 32, 0.1)
    assert t.loss_weights == (0.15, 0.15, 0.70) and t.epochs == ref.PRESETS["quick"].branch_epochs


def _fake_experiment(path: Path, space: Any) -> None:
    from ddecs_search.search import Experiment

    Experiment.at(str(path)).write_space(space)
    rows = [  # (id, val_accuracy, table latency, test accuracy)
        ("slow", 0.90, 5.0, 0.99),
        ("mid", 0.86, 2.0, 0.80),
        ("fast_val_poor", 0.80, 1.0, 0.97),  # best test accuracy for its speed: must not tempt selection
        ("dominated", 0.85, 3.0, 0.85),
    ]
    pd.DataFrame(
        [
            {
                "trial_id": t,
                "state": "TERMINATED",
                "val_accuracy": v,
                "latency_ms": lat,
                "expected_latency_ms": lat,
                "accuracy": a,
                "macs": 1e6 * lat,
                "energy_mj": np.nan,
                "energy_source": "unavailable: test",
            }
            for t, v, lat, a in rows
        ]
    ).to_csv(path / "trials.csv", index=False)


def test_found_is_the_fastest_trial_at_the_reference_val_accuracy(ref: ModuleType, tmp_path: Path) -> None:
    _, search = ref.build_spaces(_args(), ref.PRESETS["quick"])
    _fake_experiment(tmp_path, search)
    row, how, trials = ref.select_found(str(tmp_path), val_floor=0.85)
    assert row["trial_id"] == "mid" and "fastest" in how
    assert len(trials) == 4
    row, how, _ = ref.select_found(str(tmp_path), val_floor=0.95)  # nothing qualifies: the knee, flagged
    assert row["trial_id"] in {"slow", "mid", "fast_val_poor"} and "knee" in how


def _rows() -> list[dict[str, Any]]:
    common = {
        "baseline_latency_ms": 10.0,
        "baseline_macs": 172e6,
        "energy_mj": None,
        "energy_source": "unavailable: test",
        "device": "cpu:test",
        "batched_throughput_speedup": 1.2,
        "val_accuracy": 0.8,
        "policy_kind": "qtable",
        "cost_weight": 0.1,
        "exit_points": [0, 3],
    }
    early = {
        **common,
        "exit_fractions": [0.5, 0.2, 0.3],
        "exit_accuracies": [0.9, 0.7, None],
        "oracle_accuracy": 0.9,
        "oracle_expected_latency_ms": 3.0,
        "oracle_macs": 40e6,
        "expected_latency_ms": 4.5,
        "accuracy_drop": 0.01,
    }
    return [
        {
            **common,
            "row": "static",
            "accuracy": 0.82,
            "latency_ms": 10.0,
            "speedup": 1.0,
            "macs": 172e6,
            "mac_speedup": 1.0,
            "accuracy_drop": 0.0,
            "policy_kind": "static",
            "exit_points": [],
        },
        {
            **early,
            "row": "reference/qtable",
            "accuracy": 0.81,
            "latency_ms": 5.0,
            "speedup": 2.0,
            "macs": 60e6,
            "mac_speedup": 172 / 60,
        },
        {
            **early,
            "row": "found",
            "accuracy": 0.815,
            "latency_ms": 4.0,
            "speedup": 2.5,
            "macs": 50e6,
            "mac_speedup": 172 / 50,
            "trial_id": "mid",
            "config": {"config/training/mode": "frozen"},
        },
    ]


def test_tables_json_rows_and_report_files(ref: ModuleType, tmp_path: Path) -> None:
    rows = _rows()
    shown = ref.display(rows)
    assert [r["row"] for r in shown] == ["static", "reference/qtable", "found"]
    assert shown[1]["exit_fractions"] == [50.0, 20.0, 30.0] and shown[1]["drop_pt"] == pytest.approx(1.0)
    bound = ref.bounds(rows)
    assert [b["row"] for b in bound] == ["reference/qtable", "found"]  # the static row has no exits
    assert bound[0]["acc_gap_pt"] == pytest.approx(9.0) and bound[0]["oracle_MMAC"] == pytest.approx(40.0)
    for r in rows:
        assert ROW_KEYS <= set(ref.json_row(r))
    trials = pd.DataFrame({"trial_id": ["mid", "x"], "val_accuracy": [0.86, 0.8], "latency_ms": [2.0, 1.0]})
    paths = ref.write_outputs(tmp_path, rows, trials, "mid", 0.85, {"static": ref.json_row(rows[0])})
    names = {"rows.csv", "search_trials.csv", "result.json", "reference_alexnet.html"}
    assert {p.name for p in paths} == names
    table = pd.read_csv(tmp_path / "rows.csv")
    assert list(table["row"]) == ["static", "reference/qtable", "found"]
    assert json.loads(table.loc[1, "exit_fractions"]) == [0.5, 0.2, 0.3]
    html = (tmp_path / "reference_alexnet.html").read_text()
    assert "Plotly" in html and 'src="https://cdn' not in html  # self-contained: opens offline


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_reference_alexnet_smoke_run_ends_with_the_json_contract(tmp_path: Path) -> None:
    proc = _run(
        [str(BENCH / "reference_alexnet.py"), "--smoke", "--json", "--device", "cpu", "--out", str(tmp_path)],
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = _last_json(proc.stdout)
    assert {"static", "reference", "found", "dataset", "device"} <= set(out)
    assert out["dataset"] == "fashion-mnist" and out["device"].startswith("cpu")
    for name in ("static", "reference", "reference_threshold", "found"):
        assert ROW_KEYS <= set(out[name]), name
        assert out[name]["energy_mj"] is not None or out[name]["energy_source"].startswith("unavailable: ")
    assert out["static"]["speedup"] == 1.0 and out["found"]["trial_id"]
    assert len(out["reference"]["exit_fractions"]) == 3
    assert "how this benchmark avoids the reference's pitfalls" in proc.stdout
    assert (tmp_path / "reference_alexnet.html").is_file() and (tmp_path / "rows.csv").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_early_exit_speedup_quick_json() -> None:
    args = ["--quick", "--json", "--device", "cpu", "--seeds", "1"]  # not the candidate's own seed (0)
    proc = _run([str(BENCH / "early_exit_speedup.py"), *args], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = _last_json(proc.stdout)
    assert {"speedup", "accuracy", "baseline_accuracy", "energy_source", "device"} <= set(out)
    assert out["speedup"] > 0 and 0.0 <= out["accuracy"] <= 1.0
    # the policy is chosen on validation over lambdas and the threshold's max_drop bounds, by the larger drop
    grid = out["policy_choice"]["grid"]
    assert "max_drop" in out and {r["max_drop"] for r in grid} > {None}
    assert all(r["val_drop_for_rule"] >= r["val_accuracy_drop"] for r in grid)
    # the test-split drop comes with its paired standard error (> 0 unless the exits never change a
    # prediction's correctness; far below 5 pt on the quick test subset)
    ort = out["runtimes"]["onnxruntime"]
    assert 0.0 <= ort["accuracy_drop_se"] < 0.05
    se_pt = out["goals"]["ort_accuracy_drop_vs_own_backbone_se_pt"]
    assert se_pt == pytest.approx(100 * ort["accuracy_drop_se"])
    # the training seed asked for is the one trained, and its goal line is the seeds summary's
    (seed,) = out["seeds"]
    assert out["seed"] == seed["seed"] == 1 and out["goals_over_seeds"]["seeds"] == [1]
    assert seed["ort_batch1_speedup"] == out["goals"]["ort_batch1_speedup"]
    assert out["goals_over_seeds"]["ort_accuracy_drop_pt_median"] == out["goals"]["ort_accuracy_drop_pt"]
    assert out["goals_over_seeds"]["met_seeds"] == int(out["goals"]["met"])


@pytest.mark.skipif(not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_compute_layout_measures_both_layouts_side_by_side() -> None:
    """Both arms train the same seeded epochs on the same images: their losses agree to float rounding
    (not bit for bit); the benchmark's figures are ratios of the two arms in one run."""
    args = ["--quick", "--json", "--device", "cpu", "--repeats", "1", "--train", "512"]
    proc = _run([str(BENCH / "compute_layout.py"), *args], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = _last_json(proc.stdout)
    assert out["train_images"] == 512 and out["repeats"] == 1 and out["threads"] == 1
    rows = {r["row"].split(",")[0]: r for r in out["rows"]}
    assert len(out["rows"]) == 3 and "rung pass (validation exit table)" in rows
    for row in out["rows"]:
        assert row["default_s"] > 0 and row["channels_last_s"] > 0
        assert row["speedup"] == pytest.approx(row["default_s"] / row["channels_last_s"])
        if "loss_default" in row:
            assert row["loss_default"] == pytest.approx(row["loss_channels_last"], rel=1e-2)


@pytest.mark.parametrize("seeds", [["1", "1"], ["-1"]])
def test_early_exit_speedup_rejects_bad_seeds_before_any_work(seeds: list[str]) -> None:
    proc = _run([str(BENCH / "early_exit_speedup.py"), "--seeds", *seeds], timeout=120)
    assert proc.returncode == 2 and "--seeds must be distinct integers >= 0" in proc.stderr
    assert "early_exit_speedup" not in proc.stdout  # the banner: no work started


def test_timing_rounds_give_each_row_a_median_and_spread_and_the_statics_their_epochs(
    ref: ModuleType,
) -> None:
    import types

    import torch

    from ddecs_search.config import BranchSpec, to_dict
    from ddecs_search.models import MultiExitNet, create_backbone
    from ddecs_search.policies import ThresholdPolicy
    from ddecs_search.spaces import parse_space

    torch.manual_seed(0)
    net = MultiExitNet(create_backbone("lenet", num_classes=10), [0], [BranchSpec(conv_layers=0)]).eval()
    test = [(torch.randn(1, 28, 28), 0) for _ in range(4)]
    bench, _ = ref.build_spaces(_args(), ref.PRESETS["smoke"])
    data = to_dict(bench)
    data["measurement"].update(latency_samples=4, warmup=1, runtime="torch")
    space = parse_space(data, "test")
    cand = types.SimpleNamespace(training=types.SimpleNamespace(mode="frozen"))
    splits = types.SimpleNamespace(test=test)
    prepared = types.SimpleNamespace(model=net, device=torch.device("cpu"), splits=splits, candidate=cand)
    entries = [
        (name, prepared, ThresholdPolicy(thresholds=[t]), None) for name, t in (("a", 0.0), ("b", 1.1))
    ]
    timing = ref.timing_rounds(entries, space, rounds=5)
    assert timing["rounds"] == 5 and len(timing["static_ms"]) == 10 and timing["source"].startswith("torch")
    first = {
        "row": "a",
        "baseline_macs": 1e6,
        "baseline_energy_mj": None,
        "energy_source": "x",
        "device": "cpu",
    }
    rows = [first, {"row": "b"}]
    for r in rows:
        ref.apply_timing(r, timing)
        t = timing["rows"][r["row"]]
        assert len(t["speedup"]) == 5 and r["speedup_min"] <= r["speedup"] <= r["speedup_max"]
        assert r["latency_ms"] == pytest.approx(float(np.median(t["ms"]))) and r["timing_rounds"] == 5
    assert rows[0]["speedup"] > rows[1]["speedup"]  # "a" leaves at the first exit, "b" never does
    static = ref.Static("static", net.backbone, 0.8, 0.79, 6, 8, 1.0)
    row = ref.static_row(rows, static, timing)
    assert (row["epochs"], row["epochs_trained"], row["static_epochs"], row["speedup"]) == (6, 8, 6, 1.0)
    assert row["latency_ms"] == pytest.approx(float(np.median(timing["static_ms"])))
    assert {"epochs", "epochs_trained", "speedup_min", "speedup_max", "timing_rounds"} <= set(
        ref.json_row(row)
    )


def _search_efficiency() -> ModuleType:
    """``benchmarks/search_efficiency.py`` as a module (a script, not a package member)."""
    return load_benchmark("search_efficiency")


def test_search_efficiency_pairs_full_trials_by_configuration() -> None:
    """The rung points' cost: the same configurations, full in both arms, with / without early stopping."""
    se = _search_efficiency()
    on = {"full_s_by_candidate": {"a": 11.0, "b": 24.0, "only-on": 50.0}}
    off = {"full_s_by_candidate": {"a": 10.0, "b": 20.0, "only-off": 40.0}}
    other_seed = ({"full_s_by_candidate": {"a": 5.0}}, {"full_s_by_candidate": {"a": 5.0}})
    got = se.paired_full_cost([(on, off), other_seed])
    assert got == {"full_trial_cost_ratio": pytest.approx(40.0 / 35.0), "full_trial_pairs": 3}
    assert se.paired_full_cost([(on, {"full_s_by_candidate": {}})]) == {
        "full_trial_cost_ratio": None,
        "full_trial_pairs": 0,
    }


def test_search_efficiency_floor_is_the_volume_of_the_static_network_and_the_warm_start() -> None:
    """``hv_floor``: on the benchmark's own box, the static network and the warm-start points alone; a
    search's ``hv`` holds it (its points are among the search's) and adds what its sampled trials reach."""
    se = _search_efficiency()
    objectives = [("val_accuracy", "max"), ("expected_latency_ms", "min")]
    static = np.array([0.90, 1.0])
    warm = np.array([[0.88, 0.5]])
    searched = {  # two searches: the same warm start, different sampled points
        "a": np.vstack([warm, [[0.89, 0.3], [0.80, 0.2]]]),
        "b": np.vstack([warm, [[0.70, 0.9]]]),
    }
    runs = [
        {"values": v, "warm_values": warm, "static": static, "objectives": objectives}
        for v in searched.values()
    ]
    se.hypervolumes(runs)
    a, b = runs
    assert a["hv_floor"] == pytest.approx(b["hv_floor"]) and 0 < a["hv_floor"]
    assert b["hv"] == pytest.approx(b["hv_floor"])  # b's sampled point is dominated by the warm start
    assert a["hv"] > a["hv_floor"]
    floor = a["hv_floor"]
    alone = [dict(a, values=warm), a, b]  # the floor is the hv of a search that sampled nothing (same box)
    se.hypervolumes(alone)
    assert alone[0]["hv"] == pytest.approx(floor)


def _summary_run(algorithm: str, early_stopping: bool, values: list[list[float]]) -> dict:
    """A run as ``collect`` returns it, with only what ``summarise`` reads (hand-made points)."""
    return {
        "algorithm": algorithm,
        "seed": 0,
        "early_stopping": early_stopping,
        "exp": f"/x/{algorithm}-s0-{'es' if early_stopping else 'full'}",
        "space_name": "s",
        "sampler": {"algorithm": algorithm},
        "resumed": False,
        "handover_s": 0.0,
        "tail_s": 0.0,
        "actor_start_s": 0.0,
        "values": np.array(values),
        "warm_values": np.array(values[:1]),
        "static": None,
        "rung_stops": {},
        "objectives": [("val_accuracy", "max"), ("expected_latency_ms", "min")],
        "fit_s": 10.0,
        "wall_s": 10.0,
        "body_s": 18.0,
        "n_trials": len(values),
        "n_full": len(values),
        "n_stopped": 0,
        "n_feasible": len(values),
        "n_repeats": 0,
        "n_network_loads": 0,
        "n_network_epoch_loads": 0,
        "network_epochs_loaded": 0,
        "n_redrawn": 0,
        "max_concurrent": 2,
        "baseline_train_s": 5.0,
        "mean_full_trial_s": 6.0,
        "workers": 2,
        "reused_start_s": [],
        "reused_worker_s": [],
        "reused_driver_s": [],
        "full_s_by_candidate": {},
    }


def test_search_efficiency_compares_the_samplers_without_early_stopping_apart() -> None:
    """``without_early_stopping``: the samplers' ratio over the searches where every trial was full, beside
    ``hv_vs_random`` (early stopping on), which it never changes; null without such a random search."""
    se = _search_efficiency()
    warm = [0.80, 0.5]
    on = [_summary_run("tpe", True, [warm, [0.85, 0.4]]), _summary_run("random", True, [warm, [0.82, 0.45]])]
    off = [_summary_run("tpe", False, [warm, [0.9, 0.3]]), _summary_run("random", False, [warm, [0.81, 0.5]])]
    both = se.summarise(on + off)
    hv = {(r["algorithm"], r["early_stopping"]): r["hv"] for r in both["runs"]}
    assert both["hv_vs_random"]["tpe"] == pytest.approx(hv[("tpe", True)] / hv[("random", True)])
    without = both["without_early_stopping"]
    assert without["hv_vs_random"]["tpe"] == pytest.approx(hv[("tpe", False)] / hv[("random", False)])
    assert without["hv_vs_random"]["tpe"] > both["hv_vs_random"]["tpe"] > 1  # the points above
    assert without["hv_per_seed"]["random"] == [hv[("random", False)]]
    # the usual plan (only the default algorithm's searches without stopping): nothing to compare
    assert se.summarise(on + off[:1])["without_early_stopping"] is None


def test_search_efficiency_reports_the_reused_start_per_algorithm_too() -> None:
    """A sampler that thinks in the driver (gp) keeps a freed worker waiting: pooled with random's starts its
    wait is hidden in the median, so the summary gives each algorithm's starts apart as well."""
    se = _search_efficiency()
    warm = [0.80, 0.5]
    gp = dict(_summary_run("gp", True, [warm, [0.85, 0.4]]), reused_start_s=[0.9, 1.1, 1.3])
    rnd = dict(
        _summary_run("random", True, [warm, [0.82, 0.45]]), reused_start_s=[0.05, 0.08, 0.09, 0.1, 0.12]
    )
    summary = se.summarise([gp, rnd])
    pooled = summary["reused_worker_start_s"]  # gp's wait unseen in the pooled median
    assert pooled == {"median": pytest.approx(0.11), "max": 1.3, "n": 8}
    by = summary["reused_worker_start_s_by_algorithm"]
    assert by["gp"] == {"median": 1.1, "max": 1.3, "n": 3}
    assert by["random"] == {"median": 0.09, "max": 0.12, "n": 5}
    assert se.summarise([dict(gp, reused_start_s=[])])["reused_worker_start_s_by_algorithm"] == {
        "gp": {"median": None, "max": None, "n": 0}
    }


def test_search_efficiency_splits_the_reused_start_into_the_workers_and_the_drivers_part() -> None:
    """Worker reuse is judged on the worker's own part of a start; the driver's (gp's model fit) beside it,
    per algorithm; folders written before ``worker_reset_s`` give counts of 0, not a made-up split."""
    se = _search_efficiency()
    warm = [0.80, 0.5]
    gp = dict(
        _summary_run("gp", True, [warm, [0.85, 0.4]]),
        reused_start_s=[0.9, 1.1, 1.3],
        reused_worker_s=[0.03, 0.05, 0.04],
        reused_driver_s=[0.87, 1.05, 1.26],
    )
    old = dict(_summary_run("random", True, [warm, [0.82, 0.45]]), reused_start_s=[0.05, 0.08])
    parts = se.summarise([gp, old])["reused_worker_start_parts"]
    assert parts["gp"]["worker_s"] == {"median": 0.04, "max": 0.05, "n": 3}
    assert parts["gp"]["driver_s"] == {"median": 1.05, "max": 1.26, "n": 3}
    assert parts["random"] == {p: {"median": None, "max": None, "n": 0} for p in ("worker_s", "driver_s")}


def test_search_efficiency_trials_run_the_drivers_checkout(monkeypatch) -> None:
    """The script runs the package of its own checkout; the local Ray's workers inherit ``PYTHONPATH``, so
    that checkout goes first there too, ahead of another one named in it (kept after it, once)."""
    se = _search_efficiency()
    root = str(Path(se.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere/worktree", root, "/other"]))
    assert se.workers_import_this_checkout().split(os.pathsep) == [root, "/elsewhere/worktree", "/other"]
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == root
    monkeypatch.delenv("PYTHONPATH")
    assert se.workers_import_this_checkout() == root


def test_search_efficiency_refuses_an_empty_plan(capsys) -> None:
    """``--algorithms`` alone (no algorithm) runs only the searches without early stopping (the sources of
    a later ``--replay-from``); with ``--es-algorithms`` empty too there is nothing to run: a usage error
    (exit 2) before any data is loaded or Ray started."""
    se = _search_efficiency()
    with pytest.raises(SystemExit) as exc:
        se.main(["--algorithms", "--es-algorithms"])
    assert exc.value.code == 2
    assert "no search to run" in capsys.readouterr().err


def test_search_efficiency_stops_on_an_interrupted_search(tmp_path: Path, monkeypatch, capsys) -> None:
    """A search that ends before its trials (Ctrl-C: ``finished`` false) ends the benchmark with exit 130
    and a line naming what finished, instead of summarising a part of a search (it used to crash reading
    the unfinished folder). Only the search is replaced: its interruption cannot be timed in a test."""
    from ddecs_search.search import SearchOutcome

    se = _search_efficiency()
    calls: list[str] = []

    def interrupted(space, *, name, storage, **_):
        calls.append(name)
        return SearchOutcome(exp_root=str(Path(storage) / name), finished=False, counts={}, wall_s=1.0)

    monkeypatch.setattr(se, "run_search", interrupted)
    monkeypatch.setattr(se, "init_ray", lambda *a, **k: None)
    code = se.main(["--quick", "--algorithms", "random", "--es-algorithms", "--storage", str(tmp_path)])
    assert code == 130
    assert calls == ["random-s0-es"]  # nothing after the interrupted search ran
    err = capsys.readouterr().err
    assert "interrupted" in err and "random-s0-es" in err and "nothing summarised" in err


def test_search_efficiency_es_epsilon_reaches_the_searched_space(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--es-epsilon`` sets ``search.early_stopping.epsilon`` of the space the search runs (read by the
    arm with early stopping); a value outside [0, 1) is a usage error before anything runs."""
    from ddecs_search.search import SearchOutcome

    se = _search_efficiency()
    seen: list[tuple[str, bool, float]] = []

    def interrupted(space, *, name, storage, **_):
        es = space.search.early_stopping
        seen.append((name, es.enabled, es.epsilon))
        return SearchOutcome(exp_root=str(Path(storage) / name), finished=False, counts={}, wall_s=1.0)

    monkeypatch.setattr(se, "run_search", interrupted)
    monkeypatch.setattr(se, "init_ray", lambda *a, **k: None)
    argv = ["--quick", "--algorithms", "random", "--es-algorithms", "--storage", str(tmp_path)]
    assert se.main([*argv, "--es-epsilon", "0.01"]) == 130
    assert se.main(argv) == 130  # default: the space's (the default job: 0)
    assert seen == [("random-s0-es", True, 0.01), ("random-s0-es", True, 0.0)]
    capsys.readouterr()
    for bad in ("-0.1", "1", "nan"):
        with pytest.raises(SystemExit) as exc:
            se.main([*argv, "--es-epsilon", bad])
        assert exc.value.code == 2 and "--es-epsilon" in capsys.readouterr().err
    assert len(seen) == 2


def test_search_efficiency_es_rungs_reach_the_searched_space(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--es-rungs`` sets ``search.early_stopping.rungs`` (fractions too) of the space the search runs; a
    list the space refuses is a usage error before anything runs or any folder is written."""
    from ddecs_search.search import SearchOutcome

    se = _search_efficiency()
    seen: list[tuple[float, ...] | None] = []

    def interrupted(space, *, name, storage, **_):
        seen.append(space.search.early_stopping.rungs)
        return SearchOutcome(exp_root=str(Path(storage) / name), finished=False, counts={}, wall_s=1.0)

    monkeypatch.setattr(se, "run_search", interrupted)
    monkeypatch.setattr(se, "init_ray", lambda *a, **k: None)
    argv = ["--quick", "--algorithms", "random", "--es-algorithms", "--storage", str(tmp_path / "s")]
    assert se.main([*argv, "--es-rungs", "0.5", "1"]) == 130
    assert seen == [(0.5, 1)]
    capsys.readouterr()
    for bad in (["0", "1"], ["1", "0.5"]):
        with pytest.raises(SystemExit) as exc:
            se.main([*argv[:-1], str(tmp_path / "never"), "--es-rungs", *bad])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "--es-rungs" in err and "rungs" in err.split("--es-rungs", 1)[1]
    assert len(seen) == 1 and not (tmp_path / "never").exists()


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_policy_comparison_builds_its_candidates(mode: str, tmp_path: Path, monkeypatch) -> None:
    """Both candidates of ``policy_comparison.py`` build from the shipped spaces, with the rich gate.

    The benchmark died here (session 15) when the default job's threshold ``max_drop`` leaked into the
    gate's options; its runs take minutes, so this checks the part no run reaches otherwise.
    """
    # its dataclasses look their module up in sys.modules
    pc = load_benchmark("policy_comparison", functools.partial(monkeypatch.setitem, sys.modules))
    for name, build in pc.CANDIDATES.items():
        (space, cand), what = build(pc.MODES[mode], "cpu", tmp_path)
        assert cand.policy.kind == "gate" and cand.policy.options == pc.RICH, name
        assert space.measurement.device == "cpu" and what, name
