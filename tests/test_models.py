"""Backbones, exit branches and the multi-exit network; every test runs over every registered backbone."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ddecs_search._threads import torch_threads
from ddecs_search.config import BranchSpec
from ddecs_search.errors import ConfigError, DataError
from ddecs_search.models import (
    Backbone,
    MultiExitNet,
    backbone_info,
    build_branch,
    create_backbone,
    list_backbones,
)
from ddecs_search.models._pretrained import load_torchvision_weights, torchvision_key_map
from ddecs_search.models.alexnet import REFERENCE_EXIT_POINTS, reference_branch_spec
from ddecs_search.policies import ExitTable, ThresholdPolicy
from ddecs_search.policies._features import MAX_PROB

NUM_CLASSES = 7  # not 10, so a hard-coded class count would show
BACKBONES = list_backbones()
POINTS = [(name, p) for name in BACKBONES for p in range(len(backbone_info(name).exit_point_names))]
SMALL_BRANCH = BranchSpec(conv_layers=1, channels=8, pool="avg", pool_size=2)
NOISE = 1e-5  # bound on float32 differences between batch sizes (kernels, reduction order)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: many tiny forwards, and on a busy 2-core box spinning OpenMP threads cost 5x.

    (The batch-size identity below holds with the default thread count too; it is checked per sample.)
    """
    with torch_threads(1):
        yield


@functools.cache
def _backbone(name: str) -> Backbone:
    """One shared instance per backbone for the shape tests (they never change weights)."""
    torch.manual_seed(0)
    return create_backbone(name, num_classes=NUM_CLASSES)


def _inputs(backbone: Backbone, batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, *backbone.input_shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", BACKBONES)
def test_registry_info_matches_the_built_backbone(name: str) -> None:
    backbone = _backbone(name)
    info = backbone_info(name)
    assert backbone.exit_point_names == info.exit_point_names
    assert backbone.input_shape == info.input_shape
    assert backbone.num_classes == NUM_CLASSES
    assert len(info.exit_point_names) == len(backbone.segments) - 1 >= 1
    assert len(set(info.exit_point_names)) == len(info.exit_point_names)
    assert info.description
    shapes = backbone.feature_shapes()
    assert len(shapes) == len(backbone.segments)
    backbone.eval()
    with torch.no_grad():
        x = _inputs(backbone, 2)
        assert backbone(x).shape == (2, NUM_CLASSES)
        assert [tuple(h.shape[1:]) for h in backbone.forward_intermediates(x)] == shapes


@pytest.mark.parametrize(("name", "point"), POINTS, ids=[f"{n}-{p}" for n, p in POINTS])
def test_one_exit_at_every_exit_point(name: str, point: int) -> None:
    backbone = _backbone(name)
    model = MultiExitNet(backbone, [point], [SMALL_BRANCH])
    model.train()  # batch statistics: the training forward
    outs = model(_inputs(backbone, 2))
    assert [tuple(o.shape) for o in outs] == [(2, NUM_CLASSES)] * 2


@pytest.mark.parametrize("name", BACKBONES)
def test_all_exit_points_train_and_keep_the_static_backbone(name: str) -> None:
    torch.manual_seed(0)
    backbone = create_backbone(name, num_classes=NUM_CLASSES)
    points = list(range(len(backbone.exit_point_names)))
    model = MultiExitNet(backbone, points, [SMALL_BRANCH] * len(points))
    assert model.num_exits == len(points) + 1
    x = _inputs(backbone, 2)
    model.train()
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(2, NUM_CLASSES)] * model.num_exits
    # Gradients reach every branch and the backbone (no in-place op breaks autograd at an exit).
    sum(o.square().mean() for o in outs).backward()
    for k, branch in enumerate(model.branches):
        assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in branch.parameters()), k
    assert next(backbone.segments[0].parameters()).grad is not None
    # The final exit is the unchanged static network.
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], backbone(x), rtol=0, atol=0)


def test_alexnet_reference_exits() -> None:
    backbone = create_backbone("alexnet", num_classes=10)
    assert [backbone.exit_point_names[p] for p in REFERENCE_EXIT_POINTS] == ["conv1", "conv4"]
    shapes = backbone.feature_shapes()
    assert [shapes[p] for p in REFERENCE_EXIT_POINTS] == [(64, 16, 16), (256, 8, 8)]
    assert shapes[4] == (256, 4, 4)  # 256 * 4 * 4 = 4096 inputs to the classifier
    specs = [reference_branch_spec(shapes[p][0]) for p in REFERENCE_EXIT_POINTS]
    model = MultiExitNet(backbone, REFERENCE_EXIT_POINTS, specs)
    for branch, channels in zip(model.branches, (64, 256), strict=False):
        convs = [m for m in branch if isinstance(m, nn.Conv2d)]
        linears = [m for m in branch if isinstance(m, nn.Linear)]
        assert [(c.in_channels, c.out_channels) for c in convs] == [(channels, channels // 2)]
        assert [(m.in_features, m.out_features) for m in linears] == [(channels // 2 * 16, 256), (256, 10)]
        assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in branch)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())  # faithful: no BN
    assert any(isinstance(m, nn.BatchNorm2d) for m in create_backbone("alexnet_bn", num_classes=10).modules())


# --- branch shape inference -------------------------------------------------------------------


def _pool(branch: nn.Sequential) -> nn.Module:
    return next(m for m in branch if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)))


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("conv_layers", [0, 1, 2, 3])
def test_branch_shapes(conv_layers: int, pool: str) -> None:
    spec = BranchSpec(conv_layers=conv_layers, channels=6, pool=pool, pool_size=2, hidden=16, dropout=0.3)
    branch = build_branch(spec, (5, 9, 9), NUM_CLASSES)
    assert branch(torch.randn(3, 5, 9, 9)).shape == (3, NUM_CLASSES)
    assert sum(isinstance(m, nn.Conv2d) for m in branch) == conv_layers
    assert isinstance(_pool(branch), nn.AdaptiveAvgPool2d if pool == "avg" else nn.AdaptiveMaxPool2d)
    assert any(isinstance(m, nn.Dropout) for m in branch)
    assert branch[-1].in_features == 16


def test_branch_pool_never_upsamples() -> None:
    spec = BranchSpec(conv_layers=1, channels=4, pool_size=8)
    branch = build_branch(spec, (3, 2, 3), NUM_CLASSES)
    assert _pool(branch).output_size == 2
    assert branch[-1].in_features == 4 * 2 * 2
    assert branch(torch.randn(2, 3, 2, 3)).shape == (2, NUM_CLASSES)
    assert build_branch(BranchSpec(conv_layers=0, pool_size=4), (8, 1, 1), 3)[-1].in_features == 8


@pytest.mark.parametrize("hidden", [0, 12])
def test_branch_on_flat_features(hidden: int) -> None:
    branch = build_branch(BranchSpec(conv_layers=2, hidden=hidden, dropout=0.5), (20,), NUM_CLASSES)
    assert not any(isinstance(m, nn.Conv2d) for m in branch)
    assert branch(torch.randn(4, 20)).shape == (4, NUM_CLASSES)
    assert branch[-1].in_features == (hidden or 20)


def test_branch_rejects_other_ranks() -> None:
    with pytest.raises(ValueError, match="shape"):
        build_branch(BranchSpec(), (4, 4), NUM_CLASSES)


# --- errors -----------------------------------------------------------------------------------


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        create_backbone("resnet1000", num_classes=10)
    for name in BACKBONES:
        assert name in str(err.value)


@pytest.mark.parametrize("points", [[], [1, 0], [0, 0], [-1], [3], [0, 3]])
def test_multi_exit_rejects_bad_exit_points(points: list[int]) -> None:
    backbone = _backbone("lenet")  # exit points 0..2
    with pytest.raises(ValueError, match="exit points"):
        MultiExitNet(backbone, points, [SMALL_BRANCH] * len(points))


def test_multi_exit_needs_one_spec_per_point() -> None:
    with pytest.raises(ValueError, match="branch specs"):
        MultiExitNet(_backbone("lenet"), [0, 1], [SMALL_BRANCH])


# --- early-exit inference: any batch size, and the cached table, give the same decisions -----------


def _calibrate_batch_norm(model: nn.Module, x: torch.Tensor) -> None:
    """Give a randomly initialised net data-driven BN statistics, so eval-mode outputs are not saturated."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def _thresholds_between_scores(table: ExitTable) -> list[float]:
    """Max-prob thresholds near the median of the samples still open at each exit.

    Each threshold sits in the middle of the widest gap between consecutive scores in the middle half,
    so some samples leave at every exit and no score lies within ``NOISE`` of a threshold: float
    differences between batch sizes cannot flip a decision, and the comparison stays exact.
    """
    scores = table.features[:, :, MAX_PROB]
    open_ = np.ones(table.num_samples, dtype=bool)
    thresholds = []
    for k in range(table.num_exits - 1):
        s = np.sort(scores[open_, k])
        lo, hi = len(s) // 4, max(len(s) // 4 + 1, 3 * len(s) // 4)
        i = lo + int(np.argmax(np.diff(s)[lo:hi]))
        assert s[i + 1] - s[i] > 2 * NOISE, f"exit {k}: scores too close to place a threshold: {s}"
        t = float(s[i] + s[i + 1]) / 2
        thresholds.append(t)
        open_ &= scores[:, k] < t
    return thresholds


@pytest.mark.parametrize("name", BACKBONES)
def test_early_exit_batched_equals_batch_1_and_table(name: str) -> None:
    torch.manual_seed(0)
    backbone = create_backbone(name, num_classes=NUM_CLASSES)
    n_points = len(backbone.exit_point_names)
    points = [0, n_points // 2] if n_points >= 2 else [0]
    model = MultiExitNet(backbone, points, [SMALL_BRANCH] * len(points)).float()
    _calibrate_batch_norm(model, _inputs(backbone, 32, seed=1))
    n = 16
    x = _inputs(backbone, n, seed=2)
    loader = DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=6)  # other batches
    table = ExitTable.from_model(model, loader, torch.device("cpu"))
    assert not model.training
    policy = ThresholdPolicy(metric="max_prob", thresholds=_thresholds_between_scores(table))

    expected_exits = policy.decide_table(table)
    expected_preds = table.predictions[np.arange(n), expected_exits]
    assert set(expected_exits.tolist()) == set(range(model.num_exits))  # every exit is used

    batched = model.early_exit(x, policy)
    singles = [model.early_exit(x[i : i + 1], policy) for i in range(n)]
    single_exits = torch.cat([s.exit_indices for s in singles])
    single_preds = torch.cat([s.predictions for s in singles])

    np.testing.assert_array_equal(batched.exit_indices.numpy(), expected_exits)
    np.testing.assert_array_equal(batched.predictions.numpy(), expected_preds)
    assert torch.equal(single_exits, batched.exit_indices)
    assert torch.equal(single_preds, batched.predictions)


# --- torchvision weights ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, nn.Module]:
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return str(path), tv


@pytest.mark.parametrize("name", ["resnet18", "resnet18_blocks"])
def test_load_torchvision_resnet18(name: str, resnet18_file: tuple[str, nn.Module]) -> None:
    path, tv = resnet18_file
    backbone = create_backbone(name, num_classes=10).eval()
    report = load_torchvision_weights(backbone, path)
    assert [(s.key, s.torchvision_key) for s in report.skipped] == [
        ("segments.0.0.0.weight", "conv1.weight"),  # 3x3 stem vs ImageNet's 7x7
        ("head.2.weight", "fc.weight"),  # 10 vs 1000 classes
        ("head.2.bias", "fc.bias"),
    ]
    assert report.skipped[0].file_shape == (64, 3, 7, 7) and report.skipped[0].shape == (64, 3, 3, 3)
    assert "conv1.weight" in str(report.skipped[0])
    assert report.missing == () and report.unused == ()
    assert len(report.loaded) == len(torchvision_key_map(backbone)) - 3
    tv_state, ours = tv.state_dict(), backbone.state_dict()
    for key, tv_key in torchvision_key_map(backbone).items():
        if key in report.loaded:
            assert torch.equal(ours[key], tv_state[tv_key]), key
    # Structurally right too: our layer2 computes torchvision's layer2.
    layer2 = backbone.segments[1] if name == "resnet18" else nn.Sequential(*backbone.segments[2:4])
    h = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(layer2(h), tv.layer2(h))


def test_load_torchvision_vgg16_bn(tmp_path: Path) -> None:
    torch.manual_seed(2)
    tv = torchvision.models.vgg16_bn(weights=None).eval()
    state = tv.state_dict()
    # The ImageNet classifier (120M weights) is skipped for its shape anyway; stored as broadcast
    # views of one number it keeps its shapes and the file stays small.
    for key in ("classifier.0.weight", "classifier.3.weight"):
        state[key] = torch.zeros(()).expand(state[key].shape)
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    backbone = create_backbone("vgg16_bn", num_classes=10).eval()
    report = load_torchvision_weights(backbone, path)
    assert [s.torchvision_key for s in report.skipped] == [
        "classifier.0.weight",
        "classifier.0.bias",
        "classifier.6.weight",
        "classifier.6.bias",
    ]
    assert report.missing == ()
    assert sorted(report.unused) == ["classifier.3.bias", "classifier.3.weight"]
    assert len(report.loaded) == 13 * 7  # conv weight, bias; BN weight, bias, mean, var, count
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the five conv blocks compute torchvision's ``features``
        h = x
        for segment in backbone.segments[:5]:
            h = segment(h)
        torch.testing.assert_close(h, tv.features(x))


def test_pretrained_weight_errors(tmp_path: Path, resnet18_file: tuple[str, nn.Module]) -> None:
    path, _ = resnet18_file
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(DataError, match="does not exist.*never downloads"):
        load_torchvision_weights(create_backbone("resnet18", num_classes=10), missing)
    with pytest.raises(DataError, match="no tensor that fits"):
        load_torchvision_weights(create_backbone("vgg16_bn", num_classes=10), path)
    with pytest.raises(ValueError, match="torchvision name"):
        load_torchvision_weights(create_backbone("resnet20", num_classes=10), path)


# --- compute layout ---------------------------------------------------------------------------


def _four_d_params(model: nn.Module) -> list[torch.Tensor]:
    # a 1x1 kernel or a single input channel has both layouts at once
    return [p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1 and p.shape[1] > 1]


@pytest.mark.parametrize("name", ["lenet", "resnet18_blocks"])
def test_compute_layout_is_channels_last_inside_and_the_default_after(name: str) -> None:
    """On a CPU the block computes channels-last; outside it the model is as built (export, timing,
    checkpoints); outputs agree to float rounding; an optimiser built before still steps the parameters."""
    from ddecs_search.models import compute_layout

    torch.manual_seed(0)
    backbone = create_backbone(name, num_classes=NUM_CLASSES).eval()
    params = _four_d_params(backbone)
    assert params
    ids = [id(p) for p in backbone.parameters()]
    x = _inputs(backbone, 4)
    with torch.no_grad():
        expected = backbone(x)
        with compute_layout(backbone, torch.device("cpu")) as to_layout:
            cl = torch.channels_last
            assert all(p.is_contiguous(memory_format=cl) and not p.is_contiguous() for p in params)
            assert to_layout(x).is_contiguous(memory_format=torch.channels_last)
            inside = backbone(to_layout(x))
            with compute_layout(backbone, torch.device("cpu")):  # nested: the outer block keeps the layout
                pass
            assert all(not p.is_contiguous() for p in params)
    assert all(p.is_contiguous() for p in backbone.parameters())
    assert [id(p) for p in backbone.parameters()] == ids
    torch.testing.assert_close(inside, expected, rtol=NOISE, atol=NOISE)

    with pytest.raises(RuntimeError, match="boom"), compute_layout(backbone, torch.device("cpu")):
        raise RuntimeError("boom")
    assert all(p.is_contiguous() for p in backbone.parameters())


def test_compute_layout_leaves_other_devices_callables_and_a_switched_off_layout_alone(monkeypatch) -> None:
    from ddecs_search.models import compute_layout

    backbone = _backbone("lenet")
    x = _inputs(backbone, 2)
    with compute_layout(backbone, torch.device("meta")) as to_layout:
        assert to_layout(x) is x
        assert all(p.is_contiguous() for p in backbone.parameters())
    with compute_layout(lambda t: t, torch.device("cpu")) as to_layout:
        assert to_layout(x) is x
    monkeypatch.setenv("DDECS_CHANNELS_LAST", "0")
    with compute_layout(backbone, torch.device("cpu")) as to_layout:
        assert to_layout(x) is x
        assert all(p.is_contiguous() for p in backbone.parameters())
    assert any(p.is_contiguous() for p in _four_d_params(backbone))
    monkeypatch.setenv("DDECS_CHANNELS_LAST", "1")
    with compute_layout(backbone, torch.device("cpu")) as to_layout:
        assert not any(p.is_contiguous() for p in _four_d_params(backbone))


def test_a_channels_last_exit_table_agrees_with_the_exact_one_to_float_rounding() -> None:
    """The search's per-epoch proxies take the faster table; the evaluation keeps the exact one."""
    torch.manual_seed(0)
    backbone = create_backbone("lenet", num_classes=NUM_CLASSES)
    model = MultiExitNet(backbone, [0, 1], [SMALL_BRANCH] * 2).float()
    _calibrate_batch_norm(model, _inputs(backbone, 32, seed=1))
    x = _inputs(backbone, 24, seed=2)
    loader = DataLoader(TensorDataset(x, torch.zeros(24, dtype=torch.long)), batch_size=8)
    exact = ExitTable.from_model(model, loader, torch.device("cpu"))
    fast = ExitTable.from_model(model, loader, torch.device("cpu"), channels_last=True)
    np.testing.assert_allclose(fast.features, exact.features, rtol=NOISE, atol=NOISE)
    np.testing.assert_array_equal(fast.predictions, exact.predictions)
    assert all(p.is_contiguous() for p in model.parameters())
