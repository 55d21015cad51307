"""Pareto maths (property tests against brute force), selection helpers, trials loading and formats."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from _trials_fixture import make_experiment
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ddecs_search.analysis import (
    Constraint,
    best_for_accuracy_floor,
    best_under_budget,
    compute_front,
    crowding_distance,
    default_reference_point,
    experiment_front,
    format_front,
    hypervolume,
    hypervolume_history,
    knee_point,
    load_trials,
    non_dominated_sort,
    pareto_front,
    parse_constraint,
    parse_objective,
    rank_trials,
    read_objectives,
)
from ddecs_search.dominance import _hv_slicing, to_minimization
from ddecs_search.errors import ConfigError

# database=None: no .hypothesis/ folder in the checkout (examples are derandomised below instead)
PROPERTY = settings(max_examples=100, deadline=None, database=None, derandomize=True)


@st.composite
def problems(draw, max_rows: int = 24, grid: bool = True):
    """(values (N, M), directions): small integer grids make ties and duplicates common."""
    m = draw(st.integers(2, 3))
    n = draw(st.integers(1, max_rows))
    elements = st.integers(0, 6).map(float) if grid else st.floats(-1e3, 1e3, allow_nan=False, width=32)
    values = draw(arrays(np.float64, (n, m), elements=elements))
    directions = draw(st.lists(st.sampled_from(["min", "max"]), min_size=m, max_size=m))
    return values, directions


def dominates(a: np.ndarray, b: np.ndarray, directions: list[str]) -> bool:
    """Brute force, straight from the definition, in the objectives' own directions."""
    better_or_equal = all(
        (x <= y) if d == "min" else (x >= y) for x, y, d in zip(a, b, directions, strict=False)
    )
    strictly = any((x < y) if d == "min" else (x > y) for x, y, d in zip(a, b, directions, strict=False))
    return better_or_equal and strictly


# --- non-dominated sorting ------------------------------------------------------------------------


@PROPERTY
@given(problems())
def test_no_front_member_is_dominated(problem) -> None:
    values, directions = problem
    ranks = non_dominated_sort(values, directions)
    for i in np.flatnonzero(ranks == 0):
        assert not any(dominates(values[j], values[i], directions) for j in range(len(values)))


@PROPERTY
@given(problems())
def test_every_non_member_is_dominated_by_a_member(problem) -> None:
    values, directions = problem
    ranks = non_dominated_sort(values, directions)
    members = np.flatnonzero(ranks == 0)
    assert members.size >= 1
    for i in np.flatnonzero(ranks > 0):
        assert any(dominates(values[j], values[i], directions) for j in members)


@PROPERTY
@given(problems())
def test_later_fronts_are_dominated_by_the_previous_one_only(problem) -> None:
    values, directions = problem
    ranks = non_dominated_sort(values, directions)
    assert ranks.min() == 0 and set(ranks) == set(range(ranks.max() + 1))
    for i in range(len(values)):
        dominators = [ranks[j] for j in range(len(values)) if dominates(values[j], values[i], directions)]
        if ranks[i] > 0:
            assert ranks[i] - 1 in dominators
        assert all(r < ranks[i] for r in dominators)


@PROPERTY
@given(problems(), st.randoms(use_true_random=False))
def test_ranks_and_hypervolume_do_not_depend_on_row_order(problem, rnd) -> None:
    values, directions = problem
    perm = list(range(len(values)))
    rnd.shuffle(perm)
    ranks = non_dominated_sort(values, directions)
    assert np.array_equal(non_dominated_sort(values[perm], directions), ranks[perm])
    ref = default_reference_point(values, directions)
    assert hypervolume(values[perm], directions, ref) == pytest.approx(hypervolume(values, directions, ref))


@PROPERTY
@given(problems(grid=False))
def test_flipping_a_direction_with_the_sign_changes_nothing(problem) -> None:
    values, directions = problem
    flipped_values = values.copy()
    flipped_values[:, 0] *= -1
    flipped = ["max" if directions[0] == "min" else "min", *directions[1:]]
    assert np.array_equal(non_dominated_sort(values, directions), non_dominated_sort(flipped_values, flipped))
    ref = default_reference_point(values, directions)
    flipped_ref = ref.copy()
    flipped_ref[0] *= -1
    assert hypervolume(flipped_values, flipped, flipped_ref) == pytest.approx(
        hypervolume(values, directions, ref), rel=1e-9, abs=1e-9
    )


def test_directions_mean_what_they_say() -> None:
    values = np.array([[0.9, 2.0], [0.8, 1.0], [0.7, 3.0]])  # (accuracy, latency)
    assert non_dominated_sort(values, ["max", "min"]).tolist() == [0, 0, 1]
    assert non_dominated_sort(values, ["min", "max"]).tolist() == [1, 1, 0]
    assert non_dominated_sort(values, ["minimize", "maximize"]).tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="'min' or 'max'"):
        non_dominated_sort(values, ["max", "up"])
    with pytest.raises(ValueError, match="finite"):
        non_dominated_sort(np.array([[np.nan, 1.0]]), ["max", "min"])


def test_crowding_distance_boundaries_are_infinite() -> None:
    values = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    dist = crowding_distance(values, ["min", "min"])
    assert np.isinf(dist[[0, 3]]).all()
    assert dist[1] == pytest.approx(2 / 4 + 3 / 4) and dist[2] == pytest.approx(3 / 4 + 2 / 4)


# --- hypervolume ----------------------------------------------------------------------------------


@PROPERTY
@given(problems())
def test_hypervolume_matches_cell_counting(problem) -> None:
    """On an integer grid with an integer reference the hypervolume is the number of dominated unit cells."""
    values, directions = problem
    loss = to_minimization(values, directions)
    ref_loss = np.full(loss.shape[1], 7.0)
    lo = np.floor(loss.min(axis=0))
    cells = itertools.product(*[np.arange(lo[k], ref_loss[k]) for k in range(loss.shape[1])])
    expected = sum(1 for c in cells if np.any(np.all(loss <= np.array(c), axis=1)))
    ref = ref_loss * np.where(np.array(directions) == "max", -1.0, 1.0)
    assert hypervolume(values, directions, ref) == pytest.approx(expected)
    assert _hv_slicing(loss, ref_loss) == pytest.approx(expected)


@PROPERTY
@given(problems(grid=False))
def test_hypervolume_never_decreases_when_points_are_added(problem) -> None:
    values, directions = problem
    ref = default_reference_point(values, directions)
    prefix = [hypervolume(values[: k + 1], directions, ref) for k in range(len(values))]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(prefix))
    history = hypervolume_history(values, directions, ref)
    assert history == pytest.approx(prefix)
    assert hypervolume_history(values, directions)[-1] == pytest.approx(hypervolume(values, directions))


def test_default_reference_point_pads_the_worst_value() -> None:
    values = np.array([[0.9, 1.0], [0.7, 3.0]])  # accuracy max, latency min
    ref = default_reference_point(values, ["max", "min"])
    assert ref == pytest.approx([0.7 - 0.02, 3.0 + 0.2])
    assert hypervolume(values, ["max", "min"]) > 0
    # a reference that no point beats gives zero; a wrong-sized one is an error
    assert hypervolume(values, ["max", "min"], np.array([1.0, 0.5])) == 0.0
    with pytest.raises(ValueError, match="reference"):
        hypervolume(values, ["max", "min"], np.array([1.0]))


# --- selection helpers ----------------------------------------------------------------------------

FRONT = pd.DataFrame(
    {
        "trial_id": ["a", "b", "c", "d"],
        "latency_ms": [1.0, 2.0, 3.0, 4.0],
        "val_accuracy": [0.50, 0.85, 0.90, 0.92],
        "macs": [1.0, 2.0, 2.5, 5.0],
    }
)
OBJ2 = [("val_accuracy", "max"), ("latency_ms", "min")]


def test_knee_point_is_the_bend_of_the_front() -> None:
    assert knee_point(FRONT, OBJ2)["trial_id"] == "b"
    assert knee_point(FRONT.iloc[::-1], OBJ2)["trial_id"] == "b"
    assert knee_point(FRONT.iloc[:1], OBJ2)["trial_id"] == "a"
    assert knee_point(FRONT.iloc[:0], OBJ2) is None
    # three objectives: closest to the normalised ideal point
    obj3 = [*OBJ2, ("macs", "min")]
    norm = FRONT[["val_accuracy", "latency_ms", "macs"]].to_numpy()
    loss = to_minimization(norm, ["max", "min", "min"])
    loss = (loss - loss.min(0)) / (loss.max(0) - loss.min(0))
    expected = FRONT["trial_id"][int(np.argmin(np.linalg.norm(loss, axis=1)))]
    assert knee_point(FRONT, obj3)["trial_id"] == expected


def test_best_under_budget_and_accuracy_floor() -> None:
    assert best_under_budget(FRONT, "latency_ms", 2.5, "val_accuracy")["trial_id"] == "b"
    assert best_under_budget(FRONT, budget=10.0)["trial_id"] == "d"
    assert best_under_budget(FRONT, budget=0.5) is None
    assert best_for_accuracy_floor(FRONT, floor=0.88)["trial_id"] == "c"
    assert best_for_accuracy_floor(FRONT, floor=0.5)["trial_id"] == "a"
    assert best_for_accuracy_floor(FRONT, floor=0.99) is None
    ties = pd.DataFrame({"trial_id": ["x", "y"], "latency_ms": [2.0, 1.0], "val_accuracy": [0.9, 0.9]})
    assert best_under_budget(ties, budget=3.0)["trial_id"] == "y"  # equal accuracy: the faster one
    with pytest.raises(ConfigError, match="latency_p99"):
        best_under_budget(FRONT, metric="latency_p99")


# --- constraints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("val_accuracy_drop<=0.01", Constraint("val_accuracy_drop", "<=", 0.01)),
        ("  latency_ms < 2 ", Constraint("latency_ms", "<", 2.0)),
        ("val_accuracy>=0.9", Constraint("val_accuracy", ">=", 0.9)),
        ("speedup>1e0", Constraint("speedup", ">", 1.0)),
        ("config/cost_weight<=-0.5", Constraint("config/cost_weight", "<=", -0.5)),
    ],
)
def test_parse_constraint(text: str, expected: Constraint) -> None:
    assert parse_constraint(text) == expected


@pytest.mark.parametrize(
    "text", ["val_accuracy=0.9", "val_accuracy<=abc", "", "<=0.1", "val_accuracy<=0.1<=2", "acc<=nan"]
)
def test_parse_constraint_errors_name_the_constraint_and_the_form(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_constraint(text)
    assert repr(text) in str(info.value) and "<=, >=, <, >" in str(info.value)


def test_parse_objective() -> None:
    assert parse_objective("latency_ms:min") == ("latency_ms", "min")
    assert parse_objective(" val_accuracy:MAXIMIZE") == ("val_accuracy", "max")
    for bad in ("latency_ms", "latency_ms:fast", ":min"):
        with pytest.raises(ConfigError, match="METRIC:min or METRIC:max"):
            parse_objective(bad)


@pytest.mark.parametrize(
    "text, partner",
    [
        ("accuracy_drop<=0.01", "val_accuracy_drop"),
        ("accuracy>=0.9", "val_accuracy"),
        ("oracle_macs<1", "macs"),
        ("wall_time_s<10", None),
    ],
)
def test_a_constraint_on_a_test_metric_is_refused_with_its_validation_partner(text, partner) -> None:
    """A constraint decides what may be on the front and be picked: test labels may not (rule 1)."""
    with pytest.raises(ConfigError) as info:
        parse_constraint(text)
    message = str(info.value)
    assert repr(text) in message and "choose on validation, report on test" in message
    assert (f"; use {partner!r}" in message) if partner else ("; use " not in message)


def test_pareto_refuses_a_test_constraint_before_ranking(tmp_path, capsys) -> None:
    from ddecs_search.cli import main

    exp = make_experiment(tmp_path / "e", n=10)
    assert main(["pareto", str(exp), "--constraint", "accuracy_drop<=0.01"]) == 2
    err = capsys.readouterr().err
    assert "'accuracy_drop<=0.01'" in err and "val_accuracy_drop" in err and "Traceback" not in err
    assert main(["report", str(exp), "--constraint", "accuracy<0.99", "--out", str(tmp_path / "r.html")]) == 2
    assert "val_accuracy" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_the_static_network_is_ranked_on_p95_latency_and_an_objective_it_lacks_is_refused(tmp_path) -> None:
    """``latency_p95_ms`` has the static network's own p95 (measured in the same run); an objective the
    static network has no value of is refused rather than ranked without it (rule 2)."""
    df = load_trials(make_experiment(tmp_path / "e", n=30))
    result = compute_front(df, [("val_accuracy", "max"), ("latency_p95_ms", "min")])
    static = result.ranked[result.ranked["static"] == True]  # noqa: E712
    assert len(static) == 1 and not any("static network is not ranked" in n for n in result.notices)
    want = pd.to_numeric(df["baseline_latency_p95_ms"]).median()
    assert static["latency_p95_ms"].iloc[0] == pytest.approx(want)
    with pytest.raises(ConfigError, match="objective 'cost_weight': the static network has no value"):
        compute_front(df, [("val_accuracy", "max"), ("cost_weight", "min")])
    alone = compute_front(df, [("val_accuracy", "max"), ("cost_weight", "min")], include_static=False)
    assert not alone.ranked["static"].any()


def test_experiment_front_reads_the_space_defaults(tmp_path) -> None:
    exp = make_experiment(
        tmp_path / "e",
        n=30,
        objectives=[("val_accuracy", "max"), ("macs", "min")],
        constraints=[{"metric": "val_accuracy_drop", "max": 0.1}],
    )
    trials, result = experiment_front(exp, constraints=["latency_ms<3"])
    assert len(trials) == 32 and "experiment" not in trials.columns
    assert result.objectives == [("val_accuracy", "max"), ("macs", "min")]
    assert [str(c) for c in result.constraints] == ["val_accuracy_drop<=0.1", "latency_ms<3"]
    assert (result.front["val_accuracy_drop"] <= 0.1).all()
    _, explicit = experiment_front([exp], objectives=[("val_accuracy", "max"), ("latency_ms", "min")])
    assert explicit.objectives == [("val_accuracy", "max"), ("latency_ms", "min")]


def test_constraints_filter_the_front(tmp_path) -> None:
    df = load_trials(make_experiment(tmp_path / "e", n=40))
    result = compute_front(df, constraints=["val_accuracy_drop<=0.05"])
    assert (result.front["val_accuracy_drop"] <= 0.05).all()
    ranked = result.ranked
    assert (ranked.loc[~ranked["feasible"], "rank"] == -1).all()
    assert any("violate val_accuracy_drop<=0.05" in n for n in result.notices)
    with pytest.raises(ConfigError, match="unknown metric 'acc_drop'.*trial columns: trial_id"):
        pareto_front(df, constraints=["acc_drop<=0.05"])
    with pytest.raises(ConfigError, match="objectives: unknown metric 'latency'"):
        pareto_front(df, [("val_accuracy", "max"), ("latency", "min")])
    with pytest.raises(ConfigError, match="direction"):
        pareto_front(df, [("accuracy", "up"), ("latency_ms", "min")])


# --- trials tables --------------------------------------------------------------------------------


def test_load_trials_rejects_non_experiments(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not an experiment directory .*does not exist"):
        load_trials(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not an experiment directory .*has no trials.csv"):
        load_trials(tmp_path / "empty")


def test_running_experiment_ranks_only_finished_trials(tmp_path) -> None:
    exp = make_experiment(tmp_path / "run", n=12, n_error=2, n_running=3)
    df = load_trials(exp)
    assert len(df) == 17 and df["trial_id"].map(type).eq(str).all()
    result = compute_front(df, read_objectives(exp))
    # the 12 finished trials and the static network they were measured against
    assert set(result.ranked["state"]) == {"TERMINATED"} and len(result.ranked) == 13
    assert result.ranked["trial_id"].tolist().count("static") == 1
    assert "5 of 17 trials are not ranked (2 ERROR, 3 RUNNING)." in result.notices
    # a table with only a header (search just started) gives an empty front, not an error
    (tmp_path / "new").mkdir()
    df.iloc[:0].to_csv(tmp_path / "new" / "trials.csv", index=False)
    assert len(pareto_front(load_trials(tmp_path / "new"))) == 0


def test_front_is_the_rank_zero_rows_sorted_by_the_first_objective(tmp_path) -> None:
    df = load_trials(make_experiment(tmp_path / "e", n=30, seed=3))
    front = pareto_front(df)
    ranked = rank_trials(df)
    assert sorted(front["trial_id"]) == sorted(ranked.loc[ranked["rank"] == 0, "trial_id"])
    assert front["val_accuracy"].is_monotonic_decreasing
    assert front["expected_latency_ms"].is_monotonic_decreasing
    assert {"rank", "crowding", "group"} <= set(front.columns)


def test_several_experiments_are_compared(tmp_path) -> None:
    a = make_experiment(tmp_path / "a", n=10, seed=1)
    b = make_experiment(tmp_path / "b", n=15, seed=2)
    df = load_trials([a, b])
    assert df["experiment"].value_counts().to_dict() == {"a": 12, "b": 17}
    front = pareto_front(df)
    ranked = rank_trials(df)  # every finished trial and one static network per experiment
    assert (ranked["trial_id"] == "static").sum() == 2
    values = ranked[["val_accuracy", "expected_latency_ms"]].to_numpy()
    assert len(front) == int((non_dominated_sort(values, ["max", "min"]) == 0).sum())
    # two directories with the same name are told apart by their paths
    c = make_experiment(tmp_path / "x" / "a", n=5, seed=4)
    assert set(load_trials([a, c])["experiment"]) == {str(a), str(c)}


def test_mixed_devices_get_one_front_each(tmp_path) -> None:
    exp = make_experiment(tmp_path / "e", n=40, devices=("cpu:slow", "cuda:fast"))
    df = load_trials(exp)
    result = compute_front(df)
    assert result.group_by == "device"
    assert any("2 devices (cpu:slow, cuda:fast)" in n and "per device" in n for n in result.notices)
    for device in ("cpu:slow", "cuda:fast"):
        alone = pareto_front(df[df["device"] == device])
        assert sorted(result.front.loc[result.front["group"] == device, "trial_id"]) == sorted(
            alone["trial_id"]
        )
    # MACs do not depend on the device: one front, no split
    macs = compute_front(df, [("val_accuracy", "max"), ("macs", "min")])
    assert macs.group_by is None and set(macs.front["group"]) == {"all"}


def test_experiments_timed_in_different_runtimes_get_one_front_each(tmp_path) -> None:
    """Two experiments on one device, one timed in eager torch and one in ONNX Runtime: their latencies
    are not comparable (rule 3), so each runtime gets its own front and its own static contender."""
    eager = make_experiment(tmp_path / "eager", n=20, seed=1)
    ort = make_experiment(tmp_path / "ort", n=20, seed=2, runtime="onnxruntime")
    _, result = experiment_front([eager, ort])
    assert result.group_by == "device_runtime"
    assert set(result.front["group"]) == {"cpu:test torch", "cpu:test onnxruntime"}
    split = "one front per device and runtime"
    assert any("2 device/runtime pairs" in n and split in n for n in result.notices)
    statics = result.ranked[result.ranked["static"] == True]  # noqa: E712
    assert sorted(statics["group"]) == ["cpu:test onnxruntime", "cpu:test torch"]
    for name, group in (("eager", "cpu:test torch"), ("ort", "cpu:test onnxruntime")):
        _, alone = experiment_front(tmp_path / name)
        assert alone.group_by is None
        mine = result.front[result.front["group"] == group]
        assert sorted(mine["trial_id"]) == sorted(alone.front["trial_id"])
    # MACs do not depend on the runtime: one front
    macs = compute_front(load_trials([eager, ort]), [("val_accuracy", "max"), ("macs", "min")])
    assert macs.group_by is None


def test_energy_objective_falls_back_to_macs(tmp_path) -> None:
    objectives = [("val_accuracy", "max"), ("energy_mj", "min")]
    exp = make_experiment(tmp_path / "e", n=20, objectives=objectives)
    # the search recorded its own fallback (run.json): analysis follows it and repeats its notice
    _, recorded = experiment_front(exp)
    assert read_objectives(exp) == recorded.objectives == [("val_accuracy", "max"), ("macs", "min")]
    assert any("replaced by 'macs'" in n for n in recorded.notices)
    # objectives asked for explicitly on a table without energy fall back the same way
    result = compute_front(load_trials(exp), objectives)
    assert result.objectives == [("val_accuracy", "max"), ("macs", "min")]
    assert any("energy_mj is missing" in n and "unavailable: no NVIDIA driver" in n for n in result.notices)
    measured = make_experiment(tmp_path / "m", n=20, objectives=objectives, energy=True)
    assert compute_front(load_trials(measured), objectives).objectives == objectives


def test_read_objectives(tmp_path) -> None:
    exp = make_experiment(tmp_path / "e", n=3, objectives=[("val_accuracy", "max"), ("macs", "min")])
    assert read_objectives(exp) == [("val_accuracy", "max"), ("macs", "min")]
    (exp / "space.yaml").unlink()  # run.json's record of what the search optimised is enough
    assert read_objectives(exp) == [("val_accuracy", "max"), ("macs", "min")]
    (exp / "run.json").unlink()
    assert read_objectives(exp) == [("val_accuracy", "max"), ("expected_latency_ms", "min")]
    (exp / "space.yaml").write_text("objectives:\n  - {name: accuracy, mode: up}\n")
    with pytest.raises(ConfigError, match=r"space.yaml"):
        read_objectives(exp)


# --- formats --------------------------------------------------------------------------------------


def test_json_format_keeps_trials_table_names(tmp_path) -> None:
    front = pareto_front(load_trials(make_experiment(tmp_path / "e", n=20)))
    records = json.loads(format_front(front, "json"))
    assert [r["trial_id"] for r in records] == front["trial_id"].tolist()
    first = records[0]
    assert isinstance(first["trial_id"], str)
    trial = next(r for r in records if r["trial_id"] != "static")
    assert isinstance(trial["config"]["exit_points"], list) and isinstance(trial["config"]["branches"], list)
    assert {"training", "policy"} <= set(trial["config"]) and trial["summary"].startswith(trial["exits"])
    assert trial["search_params"]["policy/kind"] == trial["config"]["policy"]["kind"]
    static = next(r for r in records if r["trial_id"] == "static")
    assert static["config"] == {"static": True}
    # the fixture mixes frozen and joint trials with equal static accuracies: the baseline is named
    assert static["summary"] == "static lenet (no early exit), baseline"
    assert isinstance(trial["exit_fractions"], list) and isinstance(trial["exit_accuracies"], list)
    assert trial["energy_mj"] is None  # NaN → null
    for key in (
        "val_accuracy",
        "accuracy",
        "latency_ms",
        "expected_latency_ms",
        "latency_source",
        "macs",
        "speedup",
        "device",
        "rank",
        "crowding",
    ):
        assert key in first
    assert not any(k.startswith("config/") for k in first)


def test_csv_and_table_formats(tmp_path) -> None:
    front = pareto_front(load_trials(make_experiment(tmp_path / "e", n=20)))
    csv = tmp_path / "front.csv"
    csv.write_text(format_front(front, "csv"))
    back = pd.read_csv(csv, dtype={"trial_id": str})
    assert back["trial_id"].tolist() == front["trial_id"].tolist()
    assert "config/policy/kind" in back.columns and "summary" in back.columns
    assert "feasible" not in back.columns
    table = format_front(front, "table")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["trial_id", "summary", "val_accuracy", "accuracy"]
    assert "conv" in lines[2] or "static" in lines[2]  # every row names its configuration
    assert len(lines) == len(front) + 2 and all(t in table for t in front["trial_id"])
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule line up
    assert "energy_mj" not in lines[0]  # all missing: not shown
    with pytest.raises(ConfigError, match="table, csv, json"):
        format_front(front, "xml")


def test_the_static_network_is_always_shown_beside_the_front(tmp_path, capsys) -> None:
    from ddecs_search.cli import main

    df = load_trials(make_experiment(tmp_path / "e", n=12, seed=5))
    # a trial that dominates the static network: more accurate on validation and faster in the table
    best = df.index[df["state"] == "TERMINATED"][0]
    df.loc[best, "val_accuracy"] = 1.0
    df.loc[best, "expected_latency_ms"] = 1e-6
    result = compute_front(df)
    shown = result.with_static()
    assert "static" not in result.front["trial_id"].tolist()
    assert shown["trial_id"].tolist() == [*result.front["trial_id"], "static"]
    assert int(shown["rank"].iloc[-1]) >= 1 and bool(shown["static"].iloc[-1])
    notice = next(n for n in result.notices if n.startswith("the static network"))
    assert "of 12 ranked trials" in notice and "it is not on the front (rank 1: dominated)" in notice

    # the static network dominating every trial: it is the front, shown once
    df = load_trials(make_experiment(tmp_path / "f", n=12, seed=5))
    df["baseline_val_accuracy"] = 1.0
    df["baseline_expected_latency_ms"] = 1e-6
    result = compute_front(df)
    assert result.front["trial_id"].tolist() == ["static"]
    assert result.with_static()["trial_id"].tolist() == ["static"]
    notice = next(n for n in result.notices if n.startswith("the static network"))
    assert "dominates 12 of 12 ranked trials" in notice and "it is on the front" in notice

    # the CLI's json always carries the static row, with the rank that says whether it is on the front
    assert main(["pareto", str(tmp_path / "e"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    statics = [r for r in rows if r["trial_id"] == "static"]
    assert len(statics) == 1 and statics[0]["config"] == {"static": True}
    ranked = rank_trials(load_trials(tmp_path / "e"))
    assert statics[0]["rank"] == int(ranked.loc[ranked["trial_id"] == "static", "rank"].iloc[0])


def test_the_static_contender_is_the_static_network_best_on_validation(tmp_path) -> None:
    """Frozen trials compare with the baseline, joint ones with the baseline trained further: the
    static row is the variant with the best validation accuracy, its own test accuracy beside it."""
    df = load_trials(make_experiment(tmp_path / "e", n=16, seed=3))
    modes = df["candidate"].map(lambda c: json.loads(c)["training"]["mode"] if isinstance(c, str) else c)
    joint = (modes == "joint") & (df["state"] == "TERMINATED")
    assert 0 < joint.sum() < (df["state"] == "TERMINATED").sum()  # the fixture mixes both modes
    df.loc[joint, "baseline_val_accuracy"] = 0.97  # the further-trained static network validates better
    df.loc[joint, "baseline_accuracy"] = 0.91  # ... and its own test accuracy, reported beside
    static = compute_front(df).with_static().set_index("trial_id").loc["static"]
    assert static["val_accuracy"] == static["baseline_val_accuracy"] == 0.97
    assert static["accuracy"] == 0.91 and static["static_variant"] == "baseline +2 ep"
    assert static["summary"].endswith("(no early exit), baseline +2 ep")

    # the baseline validating better wins instead (test accuracy never chooses)
    df.loc[joint, "baseline_val_accuracy"] = 0.5
    df.loc[joint, "baseline_accuracy"] = 0.99
    static = compute_front(df).with_static().set_index("trial_id").loc["static"]
    assert static["static_variant"] == "baseline" and static["accuracy"] < 0.99

    # a joint trial's own backbone (its exits switched off) validating best is the contender, named
    first = df.index[joint][0]
    df.loc[first, "backbone_val_accuracy"] = 0.98
    df.loc[first, "backbone_accuracy"] = 0.93
    static = compute_front(df).with_static().set_index("trial_id").loc["static"]
    tid = df.loc[first, "trial_id"]
    assert static["val_accuracy"] == 0.98 and static["accuracy"] == 0.93
    assert static["static_variant"] == f"backbone of trial {tid} without its exits"
    assert static["summary"].endswith(f"(no early exit), backbone of trial {tid} without its exits")
    df.loc[first, "backbone_val_accuracy"] = 0.5  # ... and only when it validates best
    assert compute_front(df).with_static().set_index("trial_id").loc["static", "static_variant"] == "baseline"

    # one static network for all trials: nothing named, as before
    frozen_only = df[~joint & (df["state"] == "TERMINATED")]
    static = compute_front(frozen_only).with_static().set_index("trial_id").loc["static"]
    assert "static_variant" not in static.index or pd.isna(static["static_variant"])
    assert static["summary"].endswith("(no early exit)")


def test_verify_picks_and_the_front_rank_against_the_same_static_contender(tmp_path) -> None:
    """A trial that only a joint trial's own backbone (exits off) dominates is on neither the front nor
    the search's verify picks: both take the contender from ``static_contender.choose_static``."""
    from ddecs_search.config import Objective
    from ddecs_search.search._verify import pick_front

    df = load_trials(make_experiment(tmp_path / "e", n=16, seed=3))
    modes = df["candidate"].map(lambda c: json.loads(c)["training"]["mode"] if isinstance(c, str) else c)
    done = (df["state"] == "TERMINATED") & (df["feasible"] == True)  # noqa: E712
    joint = df.index[(modes == "joint") & done]
    slow = df.index[done & (df.index != joint[0])][0]
    # the most accurate trial on validation, but slower than the static network
    df.loc[slow, "val_accuracy"] = 0.99
    df.loc[slow, "latency_ms"] = 10 * float(pd.to_numeric(df["baseline_latency_ms"]).max())
    objectives = [Objective("val_accuracy", "max"), Objective("latency_ms", "min")]
    names = [(o.name, o.mode) for o in objectives]
    tid = df.loc[slow, "trial_id"]
    assert tid in set(compute_front(df, names).front["trial_id"])
    assert tid in pick_front(df, objectives, top=100)

    df.loc[joint[0], "backbone_val_accuracy"] = 0.999  # that trial's backbone alone validates better
    front = set(compute_front(df, names).front["trial_id"])
    picks = pick_front(df, objectives, top=100)
    assert tid not in front and tid not in picks
    assert set(picks) == front - {"static"}


def test_verify_picks_are_chosen_per_device_and_runtime_as_the_fronts_are(tmp_path) -> None:
    """Trials timed on different devices (or runtimes) are not comparable: the search's verify picks come
    from each group's own front, against each group's own static network, as ``pareto`` computes them."""
    from ddecs_search.config import Objective
    from ddecs_search.search._verify import _on_node, pick_front

    df = load_trials(make_experiment(tmp_path / "e", n=40, devices=("cpu:slow", "cuda:fast")))
    objectives = [Objective("val_accuracy", "max"), Objective("latency_ms", "min")]
    names = [(o.name, o.mode) for o in objectives]
    result = compute_front(df, names)
    assert result.group_by == "device"
    picks = pick_front(df, objectives, top=100)
    assert set(picks) == set(result.front["trial_id"]) - {"static"}
    by_device = dict(zip(df["trial_id"], df["device"], strict=True))
    assert {by_device[t] for t in picks} == {"cpu:slow", "cuda:fast"}  # each device has its own picks
    # ranked together, the fast device's trials would dominate the slow one's: no pick there at all
    pooled = df.assign(device="one device")
    assert {by_device[t] for t in pick_front(pooled, objectives, top=100)} == {"cuda:fast"}
    # at most `top` per group
    one = pick_front(df, objectives, top=1)
    assert len(one) == 2 and {by_device[t] for t in one} == {"cpu:slow", "cuda:fast"}
    # verify runs a pick on the node it was timed on while that node lives (soft), else anywhere
    node = "ab" * 28  # a Ray node id: 28 bytes in hex
    strategy = _on_node(node)
    assert (strategy.node_id, strategy.soft) == (node, True)
    assert _on_node(float("nan")) == _on_node(None) == _on_node("not-a-node-id") == "DEFAULT"


def test_the_live_front_ranks_the_static_network_as_pareto_does(tmp_path) -> None:
    """The front the search prints while it runs is the one ``pareto`` computes afterwards: the static
    network ranked with the trials, nothing it dominates shown."""
    from types import SimpleNamespace

    from ddecs_search.config import Constraint as SpaceConstraint
    from ddecs_search.config import Objective
    from ddecs_search.experiment import EVALUATED_KEY
    from ddecs_search.search._callbacks import front_points

    exp = make_experiment(tmp_path / "e", n=30, constraints=[{"metric": "val_accuracy_drop", "max": 0.1}])
    trials, result = experiment_front(exp)
    done = trials[trials["state"] == "TERMINATED"]
    live = [
        SimpleNamespace(trial_id=row["trial_id"], last_result={**row.to_dict(), EVALUATED_KEY: True})
        for _, row in done.iterrows()
    ]
    objectives = tuple(Objective(n, m) for n, m in result.objectives)
    constraints = (SpaceConstraint("val_accuracy_drop", max=0.1),)
    points = front_points(live, objectives, constraints)
    assert sorted(t for t, _ in points) == sorted(result.front["trial_id"])
    assert "static" in [t for t, _ in points]
    dominated = result.ranked[(result.ranked["rank"] > 0) & (result.ranked["static"] != True)]  # noqa: E712
    assert len(dominated) and not set(dominated["trial_id"]) & {t for t, _ in points}
