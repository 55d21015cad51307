"""The define-by-run search space, objectives and the trials table: fast tests, no Ray."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from ddecs_search._threads import torch_threads
from ddecs_search.config import Constraint, Objective
from ddecs_search.experiment import Experiment, trial_row, trials_frame
from ddecs_search.search import ConditionalSpace, build_candidate, effective_objectives, violations
from ddecs_search.search._searcher import make_sampler, sampler_settings
from ddecs_search.spaces import load_space, parse_space

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
TINY = ROOT / "tests" / "spaces" / "tiny.yaml"


def _sample(
    space_fn: ConditionalSpace, n: int, sampler: optuna.samplers.BaseSampler, complete: set[int] | None = None
) -> list[dict]:
    """Run the define-by-run function ``n`` times; returns Tune-style nested configs. With ``complete``,
    only those trials are told complete and the others pruned (how the product tells Optuna about a
    trial stopped early)."""
    from ray.tune.utils.util import unflatten_dict

    study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"])
    configs = []
    for i in range(n):
        trial = study.ask()
        space_fn(trial)
        configs.append(unflatten_dict(dict(trial.params)))
        if complete is None or i in complete:
            study.tell(trial, [float(i % 3), float(i % 5)])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return configs


def _conditional(space):
    """The space on the conditional encoding, whatever its sampler's default (gp's is flat)."""
    return dataclasses.replace(space, search=dataclasses.replace(space.search, encoding="conditional"))


@pytest.mark.parametrize("path", [*SPACES, TINY], ids=lambda p: p.stem)
def test_sampled_candidates_are_valid_and_conditional(path: Path) -> None:
    space = _conditional(load_space(path))
    fn = ConditionalSpace.from_space(space)
    configs = _sample(fn, 40, optuna.samplers.RandomSampler(seed=1))
    counts = set()
    for config in configs:
        cand = build_candidate(space, fn, config)
        n = len(cand.exit_points)
        counts.add(n)
        assert space.exits.count[0] <= n <= space.exits.count[1]
        assert list(cand.exit_points) == sorted(set(cand.exit_points))  # ordered, distinct
        assert set(cand.exit_points) <= set(fn.points)
        # branch parameters exist only for the exits this candidate has
        assert not any(k.startswith("branch") and int(k[6:]) >= n for k in config)
        assert len(cand.branches) == n
        assert cand.training.mode in space.training.mode
        lo, hi = space.policy.cost_weight
        assert lo <= cand.policy.cost_weight <= hi
    if space.exits.count[0] < space.exits.count[1]:
        assert len(counts) > 1


def test_a_branch_without_convolutions_samples_no_width() -> None:
    """``branch<k>/channels`` exists exactly where the branch has convolutions; the size counts networks.

    Fails on a space that samples the width of a conv-less branch: two such trials then differ only in a
    number the network never reads, the sampler sees two candidates and re-trains one network twice.
    """
    space = _conditional(load_space(ROOT / "search_spaces" / "fashion_mnist_quick.yaml"))
    fn = ConditionalSpace.from_space(space)
    configs = _sample(fn, 60, optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for config in configs:
        for k in range(int(config.get("num_early_exits", space.exits.count[0]))):
            branch = config[f"branch{k}"]
            seen.add(branch["conv_layers"])
            assert ("channels" in branch) == (branch["conv_layers"] > 0), branch
            cand = build_candidate(space, fn, config)
            if branch["conv_layers"] == 0:  # no width: one spelling of the network
                assert cand.branches[k].channels == 0
    assert seen == {0, 1, 2}
    # one spelling per network: the width a conv-less branch was written with is dropped, so specs compare
    # equal (and share a latency-table key), and a warm-start entry's unused width is not "outside the space"
    from ddecs_search.config import BranchSpec
    from ddecs_search.search._warm_start import check_warm_start

    assert BranchSpec(conv_layers=0, channels=8) == BranchSpec(conv_layers=0, channels=64)
    assert BranchSpec(conv_layers=0).channels == 0 and BranchSpec(conv_layers=1, channels=8).channels == 8
    entry = {
        "exit_points": [0],
        "branches": [{"conv_layers": 0, "channels": 8, "pool": "max", "pool_size": 7}],
    }
    check_warm_start(
        dataclasses.replace(space, search=dataclasses.replace(space.search, warm_start=(entry,)))
    )
    # per branch: (1 conv-less + 2 depths x 3 widths) x 2 pools x 4 sizes x 2 hidden = 112 networks (144
    # when the conv-less ones counted a width); 1 exit at 3 points + 2 exits at 3 placements, x 2 modes
    # x 2 epoch counts: (3 * 112 + 3 * 112**2) * 4
    assert fn.size() == float("inf")  # the cost weight is a range
    fixed_fn = dataclasses.replace(fn, policy=dataclasses.replace(fn.policy, cost_weight=(0.1, 0.1)))
    assert fixed_fn.size() == 151_872.0


def test_every_parameter_keeps_one_distribution() -> None:
    """Optuna rejects a parameter whose categorical choices change between trials."""
    space = load_space(TINY)
    fn = ConditionalSpace.from_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        fn(trial)
        study.tell(trial, 0.0)
    dists: dict = {}
    for t in study.trials:
        for name, dist in t.distributions.items():
            assert dists.setdefault(name, dist) == dist


@pytest.mark.parametrize("algorithm", ["nsga2", "tpe", "gp", "random"])
def test_samplers_run_the_conditional_space(algorithm: str) -> None:
    data = yaml.safe_load(TINY.read_text())
    data["search"]["algorithm"] = algorithm
    data["search"]["num_samples"] = 12
    space = parse_space(data)
    fn = ConditionalSpace.from_space(space)
    configs = _sample(fn, 12, make_sampler(space))
    assert len({json.dumps(c, sort_keys=True) for c in configs}) > 6


def test_loss_weights_follow_the_exit_count() -> None:
    data = yaml.safe_load(TINY.read_text())
    data["training"].update(mode=["joint"], loss_weights=[0.5, 0.7, 1.0])
    space = parse_space(data)
    fn = ConditionalSpace.from_space(space)
    one = build_candidate(space, fn, {"num_early_exits": 1, "exit_points": {"n1": "2"}})
    two = build_candidate(space, fn, {"num_early_exits": 2, "exit_points": {"n2": "0,2"}})
    assert one.training.loss_weights == (0.5, 1.0) and one.exit_points == (2,)
    assert two.training.loss_weights == (0.5, 0.7, 1.0) and two.exit_points == (0, 2)


def test_policy_options_are_per_kind() -> None:
    data = yaml.safe_load(TINY.read_text())
    data["policy"].update(kind=["threshold", "static"], options={"threshold": {"thresholds": [0.9, 0.9]}})
    space = parse_space(data)
    fn = ConditionalSpace.from_space(space)
    static = build_candidate(space, fn, {"policy": {"kind": "static"}})
    thresh = build_candidate(space, fn, {"policy": {"kind": "threshold"}})
    assert static.policy.options == {} and thresh.policy.options == {"thresholds": [0.9, 0.9]}


def test_energy_falls_back_to_macs() -> None:
    space = load_space(TINY)
    objs, notices = effective_objectives(space, energy_available=False)
    assert [o.name for o in objs] == ["val_accuracy", "expected_latency_ms", "macs"] and "macs" in notices[0]
    objs, notices = effective_objectives(space, energy_available=True)
    assert [o.name for o in objs] == ["val_accuracy", "expected_latency_ms", "energy_mj"] and not notices


def test_constraints_mark_infeasible() -> None:
    cons = (Constraint("val_accuracy_drop", max=0.02),)
    assert violations({"val_accuracy_drop": 0.01}, cons) == []
    assert violations({"val_accuracy_drop": 0.05}, cons) == ["val_accuracy_drop=0.05 > max 0.02"]
    assert violations({}, cons) == ["val_accuracy_drop missing"]


def test_trial_rows_are_tidy(tmp_path: Path) -> None:
    objectives = (Objective("val_accuracy", "max"), Objective("latency_ms", "min"))
    cons = (Constraint("val_accuracy_drop", max=0.02),)
    done = trial_row(
        trial_id="a1",
        index=0,
        state="TERMINATED",
        config={"branch0": {"channels": 8}, "exit_points": {"n1": "0"}},
        result={
            "evaluated": True,
            "val_accuracy": 0.9,
            "latency_ms": 1.0,
            "val_accuracy_drop": 0.01,
            "exit_fractions": "[0.5, 0.5]",
            "time_total_s": 3.0,
            "training_iteration": 3,
        },
        error=None,
        num_failures=0,
        objectives=objectives,
        constraints=cons,
    )
    failed = trial_row(
        trial_id="b2",
        index=1,
        state="ERROR",
        config={},
        result={"evaluated": False},
        error="ValueError: boom",
        num_failures=2,
        objectives=objectives,
        constraints=cons,
    )
    assert done["feasible"] and done["config/branch0/channels"] == 8 and "training_iteration" not in done
    assert not failed["feasible"] and failed["error"] == "ValueError: boom"
    exp = Experiment.at(tmp_path / "exp")
    exp.write_trials([failed, done])
    frame = exp.read_trials()
    assert list(frame["trial_id"]) == ["a1", "b2"]
    assert json.loads(frame.loc[0, "exit_fractions"]) == [0.5, 0.5]
    assert (tmp_path / "exp" / "trials.parquet").is_file()
    assert trials_frame([]).empty


def test_searcher_tells_optuna_only_full_evaluations() -> None:
    """Per-epoch results are not objectives; a trial stopped before its evaluation is pruned, not complete."""
    from ddecs_search.search._searcher import make_search_alg

    data = yaml.safe_load(TINY.read_text())
    data["objectives"] = [{"name": "val_accuracy", "mode": "max"}]
    data["search"]["asha"] = True
    space = parse_space(data)
    limiter = make_search_alg(space, space.objectives)
    searcher = limiter.searcher
    for tid in ("a", "b"):
        assert limiter.suggest(tid) is not None
    epoch_result = {"epoch": 1, "train_loss": 0.5, "evaluated": False, "training_iteration": 1}
    searcher.on_trial_result("a", epoch_result)
    searcher.on_trial_complete("a", {"epoch": 2, "evaluated": False, "epoch_val_accuracy": 0.7})
    searcher.on_trial_complete("b", {"evaluated": True, "val_accuracy": 0.8, "val_accuracy_drop": 0.01})
    states = [t.state.name for t in searcher._ot_study.trials]
    assert states == ["PRUNED", "COMPLETE"]
    assert searcher._ot_study.best_value == 0.8


def test_constraint_values_follow_the_violations_rule() -> None:
    """Optuna's sign convention (> 0 violated) on the same rule as ``violations``; missing = violated."""
    from ddecs_search.experiment import constraint_values

    cons = (Constraint("val_accuracy_drop", max=0.02), Constraint("val_accuracy", min=0.8, max=0.95))
    ok = {"val_accuracy_drop": 0.01, "val_accuracy": 0.9}
    assert constraint_values(ok, cons) == pytest.approx(
        {"val_accuracy_drop<=0.02": -0.01, "val_accuracy<=0.95": -0.05, "val_accuracy>=0.8": -0.1}
    )
    assert not violations(ok, cons)
    bad = {"val_accuracy_drop": 0.05, "val_accuracy": 0.7}
    values = constraint_values(bad, cons)
    assert values["val_accuracy_drop<=0.02"] == pytest.approx(0.03) and values["val_accuracy>=0.8"] > 0
    assert violations(bad, cons)
    missing = constraint_values({"val_accuracy": float("nan")}, cons)
    assert all(v == float("inf") for v in missing.values()) and len(missing) == 3


@pytest.mark.parametrize("algorithm", ["tpe", "nsga2"])
def test_searcher_tells_optuna_the_constraints(algorithm: str) -> None:
    """A full evaluation reaches Optuna with its constraint values, so that its samplers never model an
    infeasible trial as a good one: TPE leaves a trial that breaks the bound out of its "below" group
    even when it dominates every feasible trial. The values survive the pickling of a Tune checkpoint."""
    import pickle

    from optuna.samplers._tpe.sampler import _split_trials

    from ddecs_search.search._searcher import make_search_alg

    data = yaml.safe_load(TINY.read_text())
    data["search"]["algorithm"] = algorithm
    data["objectives"] = data["objectives"][:2]
    data["constraints"] = [{"metric": "val_accuracy_drop", "max": 0.02}]
    space = parse_space(data)
    limiter = make_search_alg(space, space.objectives)
    searcher = limiter.searcher
    for tid in "abcd":
        assert searcher.suggest(tid) is not None
    # a: infeasible and dominating; b, c: feasible; d: stopped early (no evaluation, no constraints)
    searcher.on_trial_complete(
        "a", {"evaluated": True, "val_accuracy": 0.9, "expected_latency_ms": 0.1, "val_accuracy_drop": 0.05}
    )
    for tid, acc, ms in (("b", 0.85, 0.5), ("c", 0.8, 0.3)):
        result = {"evaluated": True, "val_accuracy": acc, "expected_latency_ms": ms}
        result["val_accuracy_drop"] = 0.01
        searcher.on_trial_complete(tid, result)
    searcher.on_trial_complete("d", {"epoch": 1, "evaluated": False})
    searcher.on_trial_complete("b", {"evaluated": True, "val_accuracy": 0.1})  # repeated: ignored
    study = pickle.loads(pickle.dumps(limiter)).searcher._ot_study
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[0].constraints == {"val_accuracy_drop<=0.02": pytest.approx(0.03)}
    assert trials[1].constraints == {"val_accuracy_drop<=0.02": pytest.approx(-0.01)}
    assert trials[3].constraints == {}
    below, _ = _split_trials(study, trials, 2)
    assert sorted(t.number for t in below) == [1, 2]


def test_tpe_options_reach_the_sampler_and_bad_ones_are_named() -> None:
    """``search.tpe`` sets Optuna's TPESampler as a user of Optuna would; the default is the product's."""
    from ddecs_search.errors import ConfigError

    data = yaml.safe_load(TINY.read_text())
    data["search"].update(algorithm="tpe", num_samples=24)
    sampler = make_sampler(parse_space(data))
    assert (sampler._n_startup_trials, sampler._multivariate, sampler._constant_liar) == (6, True, True)
    assert sampler._group_decomposed_search_space is not None and sampler._n_ei_candidates == 24
    # the description benchmarks summarise by: the same sampler, automatic values resolved
    assert sampler_settings(parse_space(data)) == {
        "algorithm": "tpe",
        "n_startup_trials": 6,
        "multivariate": True,
        "group": True,
        "constant_liar": True,
        "n_ei_candidates": 24,
        "encoding": "conditional",
    }
    data["search"]["tpe"] = {
        "n_startup_trials": 3,
        "multivariate": False,
        "group": False,
        "constant_liar": False,
        "n_ei_candidates": 48,
    }
    sampler = make_sampler(parse_space(data))
    assert (sampler._n_startup_trials, sampler._multivariate, sampler._constant_liar) == (3, False, False)
    assert sampler._group_decomposed_search_space is None and sampler._n_ei_candidates == 48
    assert sampler_settings(parse_space(data)) == {
        "algorithm": "tpe",
        **data["search"]["tpe"],
        "encoding": "conditional",
    }
    for bad, message in (
        ({"multivariate": False}, "'search.tpe.group': needs multivariate: true"),
        ({"gamma": 0.2}, "'search.tpe.gamma': unknown key"),
        ({"n_startup_trials": -1}, "'search.tpe.n_startup_trials': must be >= 0"),
        ({"n_ei_candidates": 0}, "'search.tpe.n_ei_candidates': must be >= 1"),
    ):
        data["search"]["tpe"] = bad
        with pytest.raises(ConfigError, match=message):
            parse_space(data, "space.yaml")


def _flat_space(algorithm: str = "random", encoding: str | None = "flat", **search: object):
    data = yaml.safe_load((ROOT / "search_spaces" / "fashion_mnist_quick.yaml").read_text())
    data["search"].update(algorithm=algorithm, num_samples=24, **search)
    if encoding is not None:
        data["search"]["encoding"] = encoding
    return parse_space(data, "space.yaml")


def test_the_flat_encoding_samples_every_parameter_and_decodes_what_the_network_uses() -> None:
    """``search.encoding: flat``: the same parameters in every trial (one placement over every count, every
    branch slot's dimensions), and a candidate built from the ones its network uses."""
    space = _flat_space()
    fn = ConditionalSpace.from_space(space)
    assert fn.flat and fn.placements() == ["0", "1", "2", "0,1", "0,2", "1,2"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2), directions=["maximize"] * 2)
    counts, names = set(), set()
    for _ in range(40):
        trial = study.ask()
        fn(trial)
        names.add(frozenset(trial.params))
        study.tell(trial, [0.0, 0.0])
        from ray.tune.utils.util import unflatten_dict

        config = unflatten_dict(dict(trial.params))
        cand = build_candidate(space, fn, config)
        assert ",".join(map(str, cand.exit_points)) == trial.params["exit_points/all"]
        assert len(cand.branches) == len(cand.exit_points)
        counts.add(len(cand.exit_points))
        for k, branch in enumerate(cand.branches):
            assert branch.conv_layers == trial.params[f"branch{k}/conv_layers"]
            assert branch.channels == (trial.params[f"branch{k}/channels"] if branch.conv_layers else 0)
    assert counts == {1, 2}
    assert len(names) == 1 and "num_early_exits" not in next(iter(names))
    assert {"branch1/pool", "branch1/channels", "exit_points/all"} <= next(iter(names))
    # the network count does not depend on the encoding
    assert ConditionalSpace.from_space(_flat_space(encoding="conditional")).size() == fn.size()


def test_gp_models_the_exit_placement_on_its_default_flat_encoding() -> None:
    """Optuna's GP sampler models the parameters that every finished trial has; on the conditional encoding
    the exit placement (``exit_points/n1`` or ``/n2``) is in none of that set once both counts have run, so
    it would be drawn at random. ``algorithm: gp`` defaults to the flat encoding, where it is modelled."""
    for encoding, expect_placement in ((None, True), ("conditional", False)):
        space = _flat_space("gp", encoding, seed=1)
        assert sampler_settings(space) == {
            "algorithm": "gp",
            "n_startup_trials": 6,
            "pin_unused": encoding is None,  # the default job pins; nothing is unused on the conditional one
            "encoding": encoding or "flat",
        }
        fn = ConditionalSpace.from_space(space)
        sampler = make_sampler(space)
        assert isinstance(sampler, optuna.samplers.GPSampler) and sampler._n_startup_trials == 6
        study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"])
        counts = set()
        for i in range(8):  # six at random, then two from the model
            trial = study.ask()
            fn(trial)
            counts.add(
                trial.params.get("num_early_exits", len(trial.params.get("exit_points/all", "").split(",")))
            )
            study.tell(trial, [float(i % 3), float(i % 5)])
        assert counts == {1, 2}
        modelled = sampler.infer_relative_search_space(study, study.trials[-1])
        assert any(name.startswith("exit_points/") for name in modelled) is expect_placement, modelled


def test_the_gp_sampler_suggests_on_one_torch_thread_and_restores_the_count(monkeypatch) -> None:
    """GP's model fit runs in the driver while trials train on the same cores: on one torch thread (session
    32: 2.0x faster with one of two cores training), and the driver's own count is back after every ask."""
    import torch

    seen: list[int] = []
    optuna_gp = optuna.samplers.GPSampler.sample_relative

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return optuna_gp(self, *args, **kwargs)

    monkeypatch.setattr(optuna.samplers.GPSampler, "sample_relative", spy)
    space = _flat_space("gp", None, seed=1)
    fn = ConditionalSpace.from_space(space)
    study = optuna.create_study(sampler=make_sampler(space), directions=["maximize", "minimize"])
    with torch_threads(3):  # the driver's count, whatever the box has
        for i in range(8):  # six at random, then two from the model
            trial = study.ask()
            fn(trial)
            study.tell(trial, [float(i % 3), float(i % 5)])
            assert torch.get_num_threads() == 3
    assert len(seen) == 8 and set(seen) == {1}, seen
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_the_gp_sampler_drops_optunas_cpu_device_mode_only_where_the_cpu_is_the_default(monkeypatch) -> None:
    """Optuna wraps its GP suggestion in ``torch.device("cpu")``, a Python mode every torch call goes through
    (session 33: the suggestion 1.2x faster without it). Popped only where it changes nothing: the same
    suggestions as with it; under another default device (here ``meta``) Optuna's mode stays on."""
    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._device import DeviceContext

    from ddecs_search.search import _samplers

    seen: list[list[str]] = []
    optuna_impl = optuna.samplers.GPSampler._sample_relative_impl

    def spy(self, *args, **kwargs):
        seen.append(
            [m.device.type for m in _get_current_function_mode_stack() if isinstance(m, DeviceContext)]
        )
        return optuna_impl(self, *args, **kwargs)

    monkeypatch.setattr(optuna.samplers.GPSampler, "_sample_relative_impl", spy)
    space = _flat_space("gp", None, seed=1)
    fn = ConditionalSpace.from_space(space)

    def search(device: str | None = None) -> list[dict]:
        study = optuna.create_study(sampler=make_sampler(space), directions=["maximize", "minimize"])
        for i in range(10):  # six at random, then four from the model
            with torch.device(device) if device else contextlib.nullcontext():
                trial = study.ask()
                fn(trial)
            study.tell(trial, [float(i % 3), float(i % 5)])
        return [t.params for t in study.trials]

    popped = search()
    assert seen == [[]] * 4, seen  # the model's four suggestions ran without any device mode
    seen.clear()
    with monkeypatch.context() as m:
        m.setattr(_samplers, "_cpu_device_mode_popped", contextlib.nullcontext)
        assert search() == popped  # Optuna's own path: the same ten candidates
    assert seen == [["cpu"]] * 4, seen
    seen.clear()
    search("meta")
    assert seen == [["meta", "cpu"]] * 4, seen  # another default device: Optuna's CPU mode is kept


def test_a_warm_start_point_after_the_startup_trials_costs_no_gp_suggestion(monkeypatch) -> None:
    """A warm-start point fixes every parameter its network reads; the flat encoding's slots it leaves free
    (the second branch of a one-exit candidate) are read by nothing. Optuna ran the GP's whole suggestion
    for them once the startup trials were done (seconds in the driver, for every trial of a paired
    replay); they are drawn at random instead. A trial the sampler draws still gets the model's suggestion."""
    from ray.tune.utils.util import unflatten_dict

    from ddecs_search.search._warm_start import candidate_params
    from ddecs_search.spaces import candidate_from_dict

    calls: list[int] = []
    optuna_impl = optuna.samplers.GPSampler._sample_relative_impl

    def spy(self, *args, **kwargs):
        calls.append(1)
        return optuna_impl(self, *args, **kwargs)

    monkeypatch.setattr(optuna.samplers.GPSampler, "_sample_relative_impl", spy)
    space = _flat_space("gp", None, seed=1)
    fn = ConditionalSpace.from_space(space)
    study = optuna.create_study(sampler=make_sampler(space), directions=["maximize", "minimize"])

    def run(i: int) -> optuna.Trial:
        trial = study.ask()
        fn(trial)
        study.tell(trial, [float(i % 3), float(i % 5)])
        return trial

    for i in range(6):  # the startup trials, at random
        run(i)
    entry = {"exit_points": [1], "branches": [{"conv_layers": 1, "channels": 32}]}
    point = candidate_params(space, fn, entry, "warm_start[0]")
    assert not any(name.startswith("branch1/") for name in point)  # the second slot is left free
    study.enqueue_trial(point)
    warm = run(6)
    assert calls == []  # no suggestion was made for the free slots
    assert any(name.startswith("branch1/") for name in warm.params)  # they were drawn (at random)
    built = build_candidate(space, fn, unflatten_dict(dict(warm.params)))
    assert built == candidate_from_dict(space, entry, "warm_start[0]")  # the listed candidate, exactly
    run(7)
    assert len(calls) == 1  # a drawn trial: the model's suggestion


def test_the_flat_encodings_unused_parameters_are_named_and_pinned_to_their_first_choice() -> None:
    """A one-exit candidate reads no ``branch1/*``; a branch without convolutions reads no width. Pinned,
    they take the space's first choice, and the pinned draw builds the same network as the drawn one."""
    from ray.tune.utils.util import unflatten_dict

    space = _flat_space()
    fn = ConditionalSpace.from_space(space)
    branch = {"conv_layers": 1, "channels": 64, "pool": "max", "pool_size": 4, "hidden": 64}
    params = {
        "exit_points/all": "1",
        **{f"branch0/{d}": v for d, v in branch.items()},
        **{f"branch1/{d}": v for d, v in branch.items()},
        "training/mode": "joint",
        "policy/cost_weight": 0.1,
    }
    assert fn.unused_params(params) == [f"branch1/{d}" for d in branch]
    assert fn.pin_unused(params) == {
        **params,
        **{f"branch1/{d}": getattr(space.exits, d)[0] for d in branch},
    }
    two = {**params, "exit_points/all": "0,2", "branch1/conv_layers": 0}
    assert fn.unused_params(two) == ["branch1/channels"]
    assert fn.pin_unused(two)["branch1/channels"] == 16
    assert fn.unused_params({**two, "branch0/conv_layers": 0}) == ["branch0/channels", "branch1/channels"]
    for drawn in (params, two):
        pinned = fn.pin_unused(drawn)
        assert build_candidate(space, fn, unflatten_dict(pinned)) == build_candidate(
            space, fn, unflatten_dict(drawn)
        )
    assert ConditionalSpace.from_space(_conditional(space)).unused_params(params) == []


def test_the_default_job_pins_the_gps_unused_parameters_and_the_code_default_does_not() -> None:
    """The default job sets ``search.gp.pin_unused: true`` (session 38's pre-registered pair); the code's
    default stays false, so a space written without the key, and every search folder written before it
    existed, reads as the sampler those searches ran."""
    job = load_space(ROOT / "search_spaces" / "fashion_mnist_quick.yaml")
    assert sampler_settings(job)["pin_unused"] is True
    data = yaml.safe_load((ROOT / "search_spaces" / "fashion_mnist_quick.yaml").read_text())
    del data["search"]["gp"]
    assert sampler_settings(parse_space(data, "space.yaml"))["pin_unused"] is False


def test_the_gp_can_see_unused_parameters_pinned_in_its_data_and_where_it_searches(monkeypatch) -> None:
    """``search.gp.pin_unused``: the GP's data (finished and running trials) and every point its acquisition
    is evaluated at have the unused parameters pinned, so its suggestion is pinned too; off, its
    suggestions vary them (what made it propose variants of networks it knew: issue-14 notes, session 33).
    The batched rule on Optuna's encoding equals the space's own rule on every drawn point."""
    import pickle

    import numpy as np
    from optuna._gp.search_space import SearchSpace as GPSearchSpace

    from ddecs_search.search import _samplers

    seen: dict[str, list] = {"data": [], "asked": []}
    optuna_impl = optuna.samplers.GPSampler._sample_relative_impl
    optuna_optimize = optuna.samplers.GPSampler._optimize_acqf

    def spy_impl(self, study, completed, running, search_space):
        seen["data"] += [t.params for t in completed]
        return optuna_impl(self, study, completed, running, search_space)

    def spy_optimize(self, acqf, best_params):
        inner = acqf._inner if hasattr(acqf, "_inner") else acqf
        evaluate = inner.eval_acqf

        def record(x):
            seen["asked"].append(x.detach().reshape(-1, x.shape[-1]).numpy().copy())
            return evaluate(x)

        monkeypatch.setattr(inner, "eval_acqf", record)
        return optuna_optimize(self, acqf, best_params)

    monkeypatch.setattr(optuna.samplers.GPSampler, "_sample_relative_impl", spy_impl)
    monkeypatch.setattr(optuna.samplers.GPSampler, "_optimize_acqf", spy_optimize)

    def search(pin: bool) -> tuple[ConditionalSpace, list[dict], optuna.Study]:
        space = _flat_space("gp", None, seed=3, gp={"n_startup_trials": 6, "pin_unused": pin})
        assert sampler_settings(space)["pin_unused"] is pin
        fn = ConditionalSpace.from_space(space)
        sampler = make_sampler(space)
        if pin:  # the space travels with the sampler when Tune pickles it
            assert isinstance(pickle.loads(pickle.dumps(sampler))._pin_space, ConditionalSpace)
        study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"])
        for i in range(8):  # six at random, then two from the model
            trial = study.ask()
            fn(trial)
            study.tell(trial, [float(i % 3), float(i % 5)])
        return fn, [t.params for t in study.trials[6:]], study

    def pinned_rows(fn: ConditionalSpace, study: optuna.Study) -> np.ndarray:
        """Whether each point the acquisition was evaluated at (a sample of them) has its unused
        parameters pinned, on Optuna's encoding of the study's modelled parameters."""
        encoding = GPSearchSpace(study.sampler.infer_relative_search_space(study, study.trials[-1]))
        asked = np.concatenate(seen["asked"])
        assert len(asked) > 1000  # the preliminary samples and the local searches of two suggestions
        sample = asked[:: len(asked) // 200]
        pinned = [fn.pin_unused(encoding.get_unnormalized_param(row)) for row in sample]
        again = encoding.get_normalized_params(study.trials[:1] * len(pinned), pinned)
        return np.isclose(sample, again).all(axis=1)

    fn, suggested, study = search(pin=False)
    assert not pinned_rows(fn, study).all()  # the model searches over what nothing reads
    seen["data"].clear(), seen["asked"].clear()
    fn, suggested, study = search(pin=True)
    assert pinned_rows(fn, study).all()
    assert all(p == fn.pin_unused(p) for p in suggested)
    assert len(seen["data"]) == 6 + 7 and all(p == fn.pin_unused(p) for p in seen["data"])
    drawn = [t.params for t in study.trials]
    assert any(p != fn.pin_unused(p) for p in drawn[:6])  # the study keeps what was drawn
    search_space = study.sampler.infer_relative_search_space(study, study.trials[-1])
    encoding = GPSearchSpace(search_space)

    def normalised(params: list[dict]) -> np.ndarray:
        return encoding.get_normalized_params(study.trials[:1] * len(params), params)

    pins = _samplers._UnusedPins(fn, search_space)
    assert np.array_equal(pins.pin_array(normalised(drawn)), normalised([fn.pin_unused(p) for p in drawn]))


def test_gp_and_encoding_options_are_checked_with_named_errors() -> None:
    from ddecs_search.errors import ConfigError

    assert make_sampler(_flat_space("gp", None, gp={"n_startup_trials": 2}))._n_startup_trials == 2
    for search, message in (
        ({"encoding": "nested"}, "'search.encoding': expected one of 'conditional', 'flat', got 'nested'"),
        ({"gp": {"n_startup_trials": -1}}, "'search.gp.n_startup_trials': must be >= 0"),
        ({"gp": {"pin_unused": "yes"}}, "'search.gp.pin_unused': expected true or false, got 'yes'"),
        ({"gp": {"n_ei_candidates": 8}}, "'search.gp.n_ei_candidates': unknown key"),
    ):
        encoding = search.pop("encoding", None)
        with pytest.raises(ConfigError, match=message):
            _flat_space("gp", encoding, **search)


def test_a_warm_start_entry_is_the_first_trial_on_the_flat_encoding() -> None:
    """The default candidate, enqueued as flat parameters, is what the first trial builds."""
    from ddecs_search.search._searcher import make_search_alg
    from ddecs_search.spaces import candidate_from_dict

    for algorithm in ("gp", "tpe"):
        space = _flat_space(algorithm, warm_start=[{}])
        limiter = make_search_alg(space, space.objectives)
        config = limiter.searcher.suggest("first")
        fn = ConditionalSpace.from_space(space)
        assert build_candidate(space, fn, config) == candidate_from_dict(space, {}, "default")
        assert config["exit_points"] == {"all": "0"}


def test_asha_needs_one_accuracy_objective() -> None:
    from ddecs_search.errors import ConfigError
    from ddecs_search.search._searcher import make_scheduler

    data = yaml.safe_load(TINY.read_text())
    data["search"]["asha"] = True
    with pytest.raises(ConfigError, match="'search.asha'"):
        parse_space(data)
    data["objectives"] = [{"name": "val_accuracy", "mode": "max"}]
    space = parse_space(data)
    scheduler = make_scheduler(space, space.objectives)
    assert scheduler is not None and scheduler.metric == "epoch_val_accuracy"


@pytest.mark.parametrize("algorithm", ["nsga2", "tpe", "gp", "random"])
def test_search_algorithm_pickles_with_a_lock_in_its_sampler(algorithm: str) -> None:
    """``tune.Tuner`` pickles the search algorithm, and Tune checkpoints it for a resume. Optuna 5.1's
    NSGA-II holds a ``threading.Lock`` that plain pickling refuses (a fresh install could not start the
    default job); the product's samplers pickle any lock as a new one and the rest as Optuna would."""
    import pickle
    import threading

    from ddecs_search.search._searcher import make_search_alg

    data = yaml.safe_load(TINY.read_text())
    data["search"]["algorithm"] = algorithm
    space = parse_space(data)
    limiter = make_search_alg(space, space.objectives)
    sampler = limiter.searcher._sampler
    sampler._test_lock, sampler._test_rlock = threading.Lock(), threading.RLock()  # as Optuna 5.1's GA has
    sampler._test_lock.acquire()  # a held lock comes back free: it guarded the threads of this process
    back = pickle.loads(pickle.dumps(limiter))
    copy = back.searcher._sampler
    assert type(copy) is type(sampler)
    assert isinstance(copy._test_lock, type(threading.Lock())) and not copy._test_lock.locked()
    assert isinstance(copy._test_rlock, type(threading.RLock()))
    assert "__ddecs_locks__" not in vars(copy)
    assert back.suggest("t0") is not None
    # everything else as Optuna pickles it: a copy taken before sampling samples what the original does
    fn = ConditionalSpace.from_space(space)
    fresh = make_sampler(space)
    twin = pickle.loads(pickle.dumps(fresh))
    assert _sample(fn, 4, fresh) == _sample(fn, 4, twin)


def test_nsga2_is_random_sampling_until_its_population_completes_and_says_so() -> None:
    """The fact behind the sampler notice, checked on Optuna itself: pruned trials do not fill NSGA-II's
    first generation, which draws the random sampler's stream; once ``population`` trials complete, its
    offspring differ from that stream."""
    from ddecs_search.search._searcher import nsga2_population, sampler_notice

    data = yaml.safe_load(TINY.read_text())
    data["search"].update(algorithm="nsga2", num_samples=12, population_size=4, seed=3)
    space = parse_space(data)
    fn = ConditionalSpace.from_space(space)
    random_stream = _sample(fn, 12, optuna.samplers.RandomSampler(seed=3))
    assert sampler_settings(space) == {"algorithm": "nsga2", "population_size": 4, "encoding": "conditional"}
    assert make_sampler(space)._population_size == 4
    starved = _sample(fn, 12, make_sampler(space), complete={0, 5, 9})  # 3 < population 4
    assert starved == random_stream
    fed = _sample(fn, 12, make_sampler(space), complete={0, 1, 2, 3})
    assert fed[:4] == random_stream[:4] and fed[4:] != random_stream[4:]

    assert nsga2_population(space) == 4
    notice = sampler_notice(space, full_fidelity=3)
    assert notice is not None and "at random" in notice and "only 3 of 12" in notice and "needs 4" in notice
    assert sampler_notice(space, full_fidelity=4) is None
    data["search"]["population_size"] = None  # auto: a third of 12 -> 4
    assert "auto" in (sampler_notice(parse_space(data), 2) or "")
    data["search"]["num_samples"] = 4  # one generation is the whole budget, however many complete
    assert "whole budget of 4" in (sampler_notice(parse_space(data), 4) or "")
    data["search"]["algorithm"] = "tpe"
    assert sampler_notice(parse_space(data), 0) is None


def test_the_samplers_model_fit_is_not_reported_as_a_slow_space_function(monkeypatch) -> None:
    """Ray warns when the define-by-run function takes over a second, and times the sampler's relative
    sampling (GP's model fit) as part of it: the product's searcher does not pass that advice on."""
    import warnings

    import ray.tune.search.optuna.optuna_search as ray_optuna

    from ddecs_search.search._searcher import make_search_alg

    monkeypatch.setattr(ray_optuna, "DEFINE_BY_RUN_WARN_THRESHOLD_S", -1.0)  # every call "slow"
    data = yaml.safe_load(TINY.read_text())
    data["search"]["algorithm"] = "gp"
    space = parse_space(data)
    searcher = make_search_alg(space, space.objectives).searcher
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert searcher.suggest("a") is not None
    assert not [w for w in caught if "Define-by-run" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:  # stock OptunaSearch does warn (the check works)
        warnings.simplefilter("always")
        ray_optuna.OptunaSearch(
            space=ConditionalSpace.from_space(space), metric="val_accuracy", mode="max"
        ).suggest("b")
    assert [w for w in caught if "Define-by-run" in str(w.message)]
