"""The shipped search spaces' recipes train: the loss falls in the first epoch on real images.

Real Fashion-MNIST (Debian package), 512 training images, through ``benchmarks/shipped_recipes.py``'s own
check, for the LeNet spaces. The CIFAR backbones need more optimiser steps than a CPU test affords before
their loss leaves chance (AlexNet with Adam 1e-3 sat at 2.30 after 32 steps of batch 32 on Fashion-MNIST
at 3x32x32): ``benchmarks/shipped_recipes.py`` checks them (docs/search_space.md has the figures).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import torch
from _fixtures import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
SMALL = ["fashion_mnist_quick", "fashion_mnist"]


@pytest.fixture(scope="module")
def recipes() -> ModuleType:
    return load_benchmark("shipped_recipes")


def test_the_fall_criterion_reads_the_first_and_last_quarter(recipes: ModuleType) -> None:
    assert recipes.verdict([2.3, 2.3, 2.2, 2.0, 1.9, 1.8, 1.7, 1.6])["falls"]
    assert not recipes.verdict([2.303, 2.302, 2.304, 2.303, 2.302, 2.303, 2.302, 2.303])["falls"]  # chance
    assert not recipes.verdict([2.3, float("nan")])["falls"]


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed")
@pytest.mark.parametrize("name", SMALL)
def test_every_recipe_of_a_shipped_space_lowers_the_loss_in_its_first_epoch(
    recipes: ModuleType, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DDECS_OFFLINE", "1")
    args = argparse.Namespace(dataset="fashion-mnist", train=512, val=128)
    with tempfile.TemporaryDirectory() as tmp:
        rows = recipes.check_space(
            ROOT / "search_spaces" / f"{name}.yaml", args, torch.device("cpu"), Path(tmp)
        )
    assert rows[0]["recipe"] == "baseline" and len(rows) >= 2  # the baseline and at least one branch recipe
    for row in rows:
        assert row["falls"], row


def test_the_check_judges_the_first_epoch_and_reports_every_epoch_on_a_cifar_fixture(
    recipes: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mechanics only (random pixels: nothing to learn): ResNet-20's space, 2 epochs on 48 images."""
    from _fixtures import write_cifar10_fixture

    from ddecs_search.spaces import load_space

    write_cifar10_fixture(tmp_path / "data", n_per_batch=20)
    monkeypatch.setenv("DDECS_OFFLINE", "1")
    args = argparse.Namespace(dataset="cifar10", root=str(tmp_path / "data"), train=48, val=16, epochs=2)
    path = ROOT / "search_spaces" / "cifar10_resnet.yaml"
    rows = recipes.check_space(path, args, torch.device("cpu"), tmp_path / "work")
    recipes_run = recipes.branch_recipes(load_space(path), 2)
    assert [r["recipe"] for r in rows] == ["baseline"] + [label for label, _ in recipes_run]
    assert all(cfg.epochs == 2 for _, cfg in recipes_run)
    for row in rows:
        # one step per epoch at batch 128 on 48 images: the verdict reads epoch 1's step only, not both
        assert row["epochs"] == 2 and row["steps"] == 1, row
        assert len(row["epoch_mean_losses"]) == 2 and row["first_q_loss"] == row["epoch_mean_losses"][0]
        assert not row["falls"]  # one step cannot show a fall
        assert 0.0 <= row["val_acc"] <= 1.0
    assert all(len(r["exit_val_accs"]) == 3 for r in rows[1:])  # two early exits and the final one
    args.baseline_only, args.epochs = True, 1
    only = recipes.check_space(path, args, torch.device("cpu"), tmp_path / "work1")
    assert [r["recipe"] for r in only] == ["baseline"] and len(only[0]["epoch_mean_losses"]) == 1


def test_the_check_rejects_a_nonpositive_size_with_exit_2(recipes: ModuleType) -> None:
    with pytest.raises(SystemExit) as exc:
        recipes.main(["--epochs", "0"])
    assert exc.value.code == 2
