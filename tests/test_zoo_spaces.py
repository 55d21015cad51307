"""The reference model zoo's spaces (ResNet-18, VGG-16, AlexNet) run end to end on a CIFAR-format fixture.

The shipped spaces are GPU-sized; these tests copy them with smoke-size budgets (1 epoch, tiny subsets)
and evaluate their default candidates through the real CLI and the real CIFAR loader.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from _fixtures import write_cifar10_fixture

from ddecs_search.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _smoke_copy(name: str, tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "search_spaces" / name).read_text())
    data["dataset"].update({"train_subset": 64, "val_subset": 16, "test_subset": 20, "num_workers": 0})
    data["backbone"]["baseline"].update({"epochs": 1, "batch_size": 16})
    data["default_candidate"]["training"].update({"epochs": 1, "batch_size": 16})
    data["measurement"].update({"latency_samples": 4, "warmup": 1, "repeats": 2, "batch_size": 8,
                                "energy_min_seconds": 0.02})  # fmt: skip
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("space", ["cifar10_resnet18.yaml", "cifar10_vgg16.yaml", "cifar10_alexnet.yaml"])
def test_zoo_space_evaluates_on_cifar_fixture(
    space: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    write_cifar10_fixture(root, n_per_batch=20)
    monkeypatch.setenv("DDECS_DATA", str(root))
    monkeypatch.setenv("DDECS_OFFLINE", "1")
    monkeypatch.setenv("DDECS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "result.json"
    start = time.perf_counter()
    code = main(
        ["evaluate", str(_smoke_copy(space, tmp_path)), "--dataset", "cifar10", "--out", str(out), "--quiet"]
    )
    assert code == 0
    metrics = json.loads(out.read_text())
    print(f"{space}: {time.perf_counter() - start:.1f} s")
    assert metrics["num_exits"] == 3
    assert metrics["inference_table_agreement"] == 1.0
    assert len(metrics["exit_fractions"]) == 3 and sum(metrics["exit_fractions"]) == pytest.approx(1.0)
    assert metrics["macs"] > 0 and metrics["baseline_macs"] > 0
