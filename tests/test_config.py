"""Search-space validation: every shipped space loads; every mistake exits 2 naming the offending key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ddecs_search.cli import main
from ddecs_search.config import to_dict
from ddecs_search.errors import ConfigError
from ddecs_search.spaces import load_space, parse_space

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml")) + sorted((ROOT / "tests" / "spaces").glob("*.yaml"))
QUICK = ROOT / "search_spaces" / "fashion_mnist_quick.yaml"


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_shipped_spaces_are_valid_and_round_trip(path: Path) -> None:
    space = load_space(path)
    assert parse_space(to_dict(space)) == space


def test_alexnet_space_mirrors_the_reference() -> None:
    from ddecs_search.models.alexnet import REFERENCE_EXIT_POINTS, reference_branch_spec
    from ddecs_search.spaces import candidate_from_dict

    space = load_space(ROOT / "search_spaces" / "cifar10_alexnet.yaml")
    cand = candidate_from_dict(space, {})
    assert cand.backbone == "alexnet" and cand.exit_points == REFERENCE_EXIT_POINTS
    assert cand.branches == (reference_branch_spec(64), reference_branch_spec(256))
    assert cand.training.mode == "joint" and cand.training.loss_weights is not None
    assert space.exits.count == (1, 4)


def test_a_candidate_of_another_policy_kind_does_not_inherit_the_defaults_options() -> None:
    """The default job's threshold ``max_drop`` made every ``{"policy": {"kind": "gate"}}`` an error."""
    from ddecs_search.spaces import candidate_from_dict

    space = load_space(ROOT / "search_spaces" / "fashion_mnist_quick.yaml")
    default = candidate_from_dict(space, {})
    assert default.policy.kind == "threshold" and "max_drop" in default.policy.options
    gate = candidate_from_dict(space, {"policy": {"kind": "gate"}})
    assert gate.policy.kind == "gate" and gate.policy.options == {}
    assert gate.policy.cost_weight == default.policy.cost_weight  # the rest of the policy still merges
    assert space.default_candidate["policy"]["options"] == {"max_drop": 0.015}  # the space is untouched
    same = candidate_from_dict(space, {"policy": {"kind": "threshold", "cost_weight": 0.3}})
    assert same.policy.options == default.policy.options and same.policy.cost_weight == 0.3
    with pytest.raises(ConfigError, match="max_drop"):  # given explicitly, a foreign option is still an error
        candidate_from_dict(space, {"policy": {"kind": "gate", "options": {"max_drop": 0.01}}})


def _edit(data: dict, dotted: str, value: object) -> dict:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(last)
    else:
        node[last] = value
    return data


_DELETE = object()

# (dotted key to change, new value, text the error must contain)
BAD = [
    ("bogus", 1, "'bogus': unknown key"),
    ("exits.chanels", [8], "'exits.chanels': unknown key"),
    ("search.num_samples", "ten", "'search.num_samples': expected an integer"),
    ("search.algorithm", "grid", "'search.algorithm'"),
    ("resources.cpu", 0, "'resources.cpu'"),
    ("exits.points", [2, 1], "'exits.points'"),
    ("exits.points", [0, 1, 7], "'exits.points'"),
    ("exits.count", [2, 1], "'exits.count'"),
    ("exits.count", [1, 5], "'exits.count'"),
    ("default_candidate.exit_points", [1, 0], "'candidate.exit_points'"),
    ("default_candidate.exit_points", [9], "'candidate.exit_points'"),
    ("dataset.name", "imagenet-21k", "'dataset.name': unknown dataset"),
    ("backbone.name", "resnet1000", "'backbone.name'"),
    ("objectives", [{"name": "acuracy", "mode": "max"}], "'objectives[0].name'"),
    ("objectives", [{"name": "val_accuracy", "mode": "up"}], "'objectives[0].mode'"),
    ("constraints", [{"metric": "val_accuracy_drop"}], "needs max or min"),
    # test-label metrics may only be reported: the error names the validation metric to use instead
    ("objectives", [{"name": "accuracy", "mode": "max"}], "use 'val_accuracy'"),
    ("objectives", [{"name": "exit_accuracies", "mode": "max"}], "'objectives[0].name'"),
    ("objectives", [{"name": "oracle_accuracy", "mode": "max"}], "may only be reported"),
    ("constraints", [{"metric": "accuracy_drop", "max": 0.02}], "use 'val_accuracy_drop'"),
    ("objectives", [{"name": "rl_return", "mode": "max"}], "'rl_return' describes the run"),  # fit part
    # the static network is always a contender: an objective it has no value of could not rank it
    (
        "objectives",
        [{"name": "val_accuracy", "mode": "max"}, {"name": "baseline_val_accuracy", "mode": "max"}],
        "'objectives[1].name': the static network has no value of 'baseline_val_accuracy'",
    ),
    ("objectives", [{"name": "backbone_val_accuracy", "mode": "max"}], "objectives it has a value of: val_"),
    ("dataset.selection_fraction", 1.0, "'dataset.selection_fraction'"),
    ("constraints", [{"metric": "drop", "max": 1}], "'constraints[0].metric'"),
    ("search.asha", True, "'search.asha'"),
    ("training.loss_weights", [1.0, 1.0], "'training.loss_weights'"),
    ("policy", {"kind": ["telepathy"]}, "'policy.kind[0]'"),  # the whole mapping: its options are threshold's
    ("policy.options", {"ppo": {"iterations": 3}}, "'policy.options.ppo'"),
    ("policy.cost_weight", [0.5, 0.1], "'policy.cost_weight'"),
    ("measurement.device", "tpu", "'measurement.device'"),
    ("name", _DELETE, "'name': required key is missing"),
    # values that parse but can never work (issue 13): every number finite, every choice under its rule
    ("training.lr", -0.001, "'training.lr': must be > 0, got -0.001"),
    ("training.lr", float("nan"), "'training.lr': must be a finite number, got nan"),
    ("training.batch_size", 0, "'training.batch_size': must be >= 1, got 0"),
    ("training.weight_decay", -1e-4, "'training.weight_decay': must be >= 0"),
    ("training.epochs", [2, -1], "'training.epochs[1]': must be >= 0, got -1"),
    ("exits.channels", [8, 0], "'exits.channels[1]': must be >= 1, got 0"),
    ("exits.dropout", [0.0, 1.5], "'exits.dropout[1]': must be in [0, 1), got 1.5"),
    ("exits.pool_size", [2, 9], "'exits.pool_size[1]': must be 1..8, got 9"),
    ("exits.hidden", [-3], "'exits.hidden[0]': must be >= 0"),
    ("exits.dropout", [float("inf")], "'exits.dropout[0]': must be a finite number, got inf"),
    ("backbone.baseline.lr", float("-inf"), "'backbone.baseline.lr': must be a finite number"),
    ("backbone.baseline.weight_decay", -1.0, "'backbone.baseline.weight_decay': must be >= 0"),
    ("backbone.baseline.lr_schedule", "linear", "'backbone.baseline.lr_schedule': expected one of"),
    ("measurement.energy_min_seconds", float("inf"), "'measurement.energy_min_seconds': must be a finite"),
    ("measurement.energy_min_seconds", 0, "'measurement.energy_min_seconds': must be > 0"),
    ("resources.cpu", float("inf"), "'resources.cpu': must be a finite number"),
    ("resources.gpu", float("nan"), "'resources.gpu': must be a finite number"),
    ("resources.gpu", 1.5, "'resources.gpu': must be a fraction of one GPU"),
    ("policy.cost_weight", [0.1, float("inf")], "'policy.cost_weight[1]': must be a finite number"),
    ("policy.options", {"threshold": {"bogus": 1}}, "'policy.options.threshold'"),
    ("policy.options", {"threshold": {"max_drop": 2}}, "'policy.options.threshold.max_drop': must be a"),
    ("training.distill", 1.5, "'training.distill': must be in [0, 1]"),
    ("training.distill_temperature", 0, "'training.distill_temperature': must be > 0"),
    ("constraints", [{"metric": "accuracy_drop", "max": float("nan")}], "'constraints[0].max': must be a"),
    ("constraints", [{"metric": "accuracy", "min": 0.9, "max": 0.5}], "'constraints[0].min'"),
    ("default_candidate.training", {"lr": 0}, "'candidate.training.lr': must be > 0"),
    ("default_candidate.policy", {"kind": "static", "options": {"x": 1}}, "static policy takes no options"),
]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    BAD,
    ids=[
        (f"{k} deleted" if v is _DELETE else f"{k}={v!r}")[:40] for k, v, _ in BAD
    ],  # same ids in every process
)
@pytest.mark.parametrize("verb", ["run", "evaluate"])
def test_bad_space_exits_2_naming_the_key(tmp_path, capsys, verb, key, value, message) -> None:
    data = _edit(yaml.safe_load(QUICK.read_text()), key, value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    args = [verb, str(path)] + (["--storage", str(tmp_path / "exps")] if verb == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err, err
    assert not (tmp_path / "exps").exists()  # nothing started


def test_unparseable_and_missing_files(tmp_path, capsys) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    assert main(["run", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-samples", "0"], "'search.num_samples'"),
        (["--max-concurrent", "0"], "'search.max_concurrent'"),
        (["--dataset", "nonsense"], "'dataset.name'"),
    ],
)
def test_bad_cli_overrides_exit_2(tmp_path, capsys, flags, message) -> None:
    assert main(["run", str(QUICK), "--storage", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_resume_and_status_of_a_non_experiment_exit_2(tmp_path, capsys) -> None:
    for verb in ("resume", "status"):
        assert main([verb, str(tmp_path)]) == 2
        assert "not an experiment directory" in capsys.readouterr().err


def test_policy_options_are_checked_per_kind_naming_the_valid_ones() -> None:
    data = yaml.safe_load(QUICK.read_text())
    data["policy"] = {
        "kind": ["threshold", "qtable"],
        "cost_weight": [0.05, 1.0],
        "options": {"qtable": {"iterations": 3, "bins": 4}},
    }
    with pytest.raises(ConfigError) as info:
        parse_space(data, "mem")
    text = str(info.value)
    assert text.startswith("mem: 'policy.options.qtable'"), text
    assert "['iterations']" in text and "bins" in text, text
    data["policy"]["options"] = {"qtable": {"bins": 0}}
    with pytest.raises(ConfigError, match=r"'policy.options.qtable.bins': must be"):
        parse_space(data, "mem")
    data["policy"]["options"] = {"qtable": {"bins": 4}}
    assert parse_space(data, "mem").policy.options == {"qtable": {"bins": 4}}


def test_relative_data_paths_resolve_against_the_space_file(tmp_path, monkeypatch) -> None:
    sub = tmp_path / "project"
    (sub / "data" / "imgs" / "train" / "a").mkdir(parents=True)
    data = yaml.safe_load(QUICK.read_text())
    data["dataset"].update(name="imagefolder:data/imgs", root="cache")
    (sub / "space.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)  # the working directory differs from the space's folder
    space = load_space(Path("project/space.yaml"))
    assert space.dataset.name == f"imagefolder:{sub / 'data' / 'imgs'}"
    assert space.dataset.root == str(sub / "cache")
    assert parse_space(to_dict(space)) == space  # stable once absolute (space.yaml of an experiment)


def test_config_is_a_leaf() -> None:
    """config imports only leaves (errors, metric catalogue); ddecs_search.spaces checks the registries."""
    import ast

    for path in (ROOT / "ddecs_search" / "config").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddecs_search"):
                allowed = ("ddecs_search.config", "ddecs_search.errors", "ddecs_search.metrics")
                assert node.module.startswith(allowed), (path, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("ddecs_search") for a in node.names), path


def test_error_names_the_key_in_library_use() -> None:
    data = _edit(yaml.safe_load(QUICK.read_text()), "exits.hidden", [])
    with pytest.raises(ConfigError, match=r"'exits.hidden': needs at least one choice"):
        parse_space(data, "mem")
