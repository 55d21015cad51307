"""The search's baseline task also trains the static references of joint candidates, and they travel with it.

Runs the baseline task's body in this process (no Ray needed for what it computes) on real Fashion-MNIST
subsets: the blob carries one reference per joint epoch count, the experiment stores and reads them back,
and a trial's cache folder, materialised from the blob, holds exactly the weights ``static_reference``
would have trained, found without training.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from ddecs_search.data import load_splits
from ddecs_search.experiment import Experiment
from ddecs_search.models import backbone_info
from ddecs_search.search import ConditionalSpace, build_candidate
from ddecs_search.search._shared_baseline import BaselineBlob, _train, reference_trainings
from ddecs_search.spaces import parse_space
from ddecs_search.training import reference_folder, static_reference, train_baseline
from ddecs_search.training._reference import RECIPE_KEYS

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
pytestmark = pytest.mark.skipif(
    not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed"
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDECS_OFFLINE", "1")


def _space(mode: list[str], epochs: list[int], **training):
    data = yaml.safe_load((ROOT / "tests" / "spaces" / "tiny.yaml").read_text())
    data["training"] = {**data["training"], "mode": mode, "epochs": epochs, **training}
    return parse_space(data, "tiny.yaml")


def test_reference_trainings_are_the_trials_recipes_one_per_joint_epoch_count() -> None:
    assert reference_trainings(_space(["frozen"], [2, 3])) == []
    got = reference_trainings(_space(["frozen", "joint"], [3, 1, 3]))
    assert [t.epochs for t in got] == [1, 3] and {t.mode for t in got} == {"joint"}
    # each recipe is the space's fixed settings with that epoch count, as a sampled joint trial (any exit
    # count) trains with: the reference a trial looks up is the one the baseline task trained
    space = _space(
        ["frozen", "joint"], [1, 3], lr=0.003, batch_size=64, weight_decay=1e-4, label_smoothing=0.1
    )
    fixed = {"lr": 0.003, "batch_size": 64, "weight_decay": 1e-4, "optimizer": "adam", "label_smoothing": 0.1,
             "lr_schedule": "constant"}  # fmt: skip
    fn = ConditionalSpace.from_space(space)
    for recipe in reference_trainings(space):
        assert {k: getattr(recipe, k) for k in RECIPE_KEYS} == {**fixed, "epochs": recipe.epochs}
        config = {"num_early_exits": 2, "training": {"mode": "joint", "epochs": recipe.epochs}}
        trial = build_candidate(space, fn, config).training
        assert {k: getattr(trial, k) for k in RECIPE_KEYS} == {k: getattr(recipe, k) for k in RECIPE_KEYS}


def test_baseline_task_ships_the_static_references_and_the_experiment_keeps_them(tmp_path: Path) -> None:
    space = _space(["frozen", "joint"], [1, 2])
    blob = _train(space, threads=1, quiet=True)
    recipes = reference_trainings(space)
    assert [name.split("-")[0] for name in sorted(blob.continued)] == ["1ep", "2ep"]
    assert {m["continued_epochs"] for _, m in blob.continued.values()} == {1, 2}

    exp = Experiment.at(str(tmp_path / "exp"))
    blob.store(exp)
    loaded = BaselineBlob.load(exp)
    assert loaded is not None and sorted(loaded.continued) == sorted(blob.continued)
    assert all(loaded.continued[k][0] == blob.continued[k][0] for k in blob.continued)

    # a damaged stored reference is left to the trials (trained again there), not a failed resume
    name = sorted(blob.continued)[0]
    (tmp_path / "exp" / "baseline" / blob.folder / "continued" / name / "backbone.pt").write_bytes(b"junk")
    assert sorted(BaselineBlob.load(exp).continued) == sorted(blob.continued)[1:]

    # a trial's cache folder: the baseline is found, and so is each reference, with the shipped weights
    cache = loaded.materialise(tmp_path / "trial-cache")
    splits = load_splits(space.dataset, backbone_info("lenet").input_shape)
    cpu = torch.device("cpu")
    base = train_baseline(
        "lenet", splits, space.dataset, space.backbone.baseline, cache_dir=cache, device=cpu
    )
    assert base.cached
    for recipe in recipes:
        ref = static_reference(base, recipe, splits, device=cpu)
        assert ref.cached and ref.path.parent == reference_folder(base, recipe)
        assert ref.path.read_bytes() == blob.continued[ref.path.parent.name][0]

    # the 1-epoch reference, a snapshot of the task's 2-epoch run, is what a trial trains for it alone
    shutil.rmtree(cache / blob.folder / "continued")
    alone = static_reference(base, recipes[0], splits, device=cpu, quiet=True)
    assert not alone.cached
    shipped = torch.load(io.BytesIO(blob.continued[alone.path.parent.name][0]), weights_only=True)
    assert all(torch.equal(alone.backbone.state_dict()[k], shipped[k]) for k in shipped)
