"""MACs, latency tables and end-to-end timing (CPU; fast)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ddecs_search._threads import torch_threads
from ddecs_search.config import BranchSpec
from ddecs_search.errors import ConfigError
from ddecs_search.models import Backbone, MultiExitNet, create_backbone, list_backbones
from ddecs_search.policies import StaticPolicy, ThresholdPolicy
from ddecs_search.profiling import (
    LatencyStats,
    batched_throughput,
    compare_static_vs_early_exit,
    count_macs,
    device_name,
    latency_costs,
    mac_costs,
    resolve_device,
    time_per_sample,
)
from ddecs_search.profiling._device import check_on_device

CPU = torch.device("cpu")


def _toy_net(heavy: int = 128, size: int = 16) -> MultiExitNet:
    """Stage 0 is a tiny conv; stage 1 (the final one) holds two heavy convs: exiting at 0 must pay off."""
    segments = [
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),  # (4, S, S)
        nn.Sequential(
            nn.Conv2d(4, heavy, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(heavy, heavy, 3, padding=1),
            nn.ReLU(),
        ),  # (heavy, S, S)
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),  # (heavy,)
    ]
    backbone = Backbone(
        segments,
        nn.Linear(heavy, 10),
        exit_point_names=("tiny", "heavy"),
        input_shape=(1, size, size),
        num_classes=10,
    )
    torch.manual_seed(0)
    return MultiExitNet(backbone, [0], [BranchSpec(conv_layers=0, pool_size=2)]).eval()


def _exit_all_at_first() -> ThresholdPolicy:
    return ThresholdPolicy(metric="max_prob", thresholds=[0.0])  # max_prob >= 0 always: everyone leaves at 0


# ------------------------------------------------------------------------------------------------ device
def test_resolve_device_cpu_and_auto() -> None:
    assert resolve_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_resolve_device_cuda_without_cuda_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="no usable CUDA device"):
        resolve_device(spec)


def test_resolve_device_rejects_unknown_spec() -> None:
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_device_name_cpu() -> None:
    name = device_name(CPU)
    assert name.startswith("cpu:") and len(name) > len("cpu:")


def test_models_on_another_device_are_refused_not_moved() -> None:
    net = _toy_net()
    with pytest.raises(ValueError, match="model.to"):
        check_on_device(net, torch.device("cuda", 0))
    assert next(net.parameters()).device == CPU


# -------------------------------------------------------------------------------------------------- MACs
def test_count_macs_conv2d_is_analytic() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert count_macs(conv, (3, 10, 10)) == 8 * 10 * 10 * 3 * 3 * 3
    grouped = nn.Conv2d(8, 16, kernel_size=3, groups=4)  # no padding: 6x6 output, 2 input channels per group
    assert count_macs(grouped, (8, 8, 8)) == 16 * 6 * 6 * 2 * 3 * 3


def test_count_macs_linear_is_analytic_and_restores_mode() -> None:
    model = nn.Sequential(nn.Linear(20, 7), nn.BatchNorm1d(7))  # batch-1 BatchNorm1d only works in eval mode
    model.train()
    assert count_macs(model, (20,)) == 20 * 7
    assert model.training


def test_mac_costs_of_toy_net_are_analytic() -> None:
    costs = mac_costs(_toy_net(heavy=8, size=6))
    stage0 = 4 * 6 * 6 * 1 * 9
    stage1 = 8 * 6 * 6 * 4 * 9 + 8 * 6 * 6 * 8 * 9 + 8 * 10  # two convs + head
    branch0 = 4 * 2 * 2 * 10  # pool to 2x2, flatten, linear
    np.testing.assert_allclose(costs.stage, np.array([stage0, stage1]) / 1e6)
    np.testing.assert_allclose(costs.branch, np.array([branch0]) / 1e6)
    assert costs.static == pytest.approx((stage0 + stage1) / 1e6)
    assert (costs.unit, costs.source) == ("MMAC", "flop_counter")


@pytest.mark.parametrize("name", list_backbones())
def test_mac_costs_stages_sum_to_the_static_backbone(name: str) -> None:
    backbone = create_backbone(name, num_classes=10)
    points = list(range(len(backbone.exit_point_names)))
    net = MultiExitNet(backbone, points, [BranchSpec()] * len(points))
    costs = mac_costs(net)
    assert costs.stage.shape == (net.num_exits,) and costs.branch.shape == (net.num_exits - 1,)
    assert costs.stage.sum() == pytest.approx(costs.static, rel=1e-12)
    assert costs.static > 0 and (costs.branch > 0).all() and (costs.stage > 0).all()
    assert costs.static == pytest.approx(count_macs(backbone, backbone.input_shape) / 1e6)


# ----------------------------------------------------------------------------------------------- latency
def test_latency_stats_summary() -> None:
    stats = LatencyStats.from_ms([1.0, 2.0, 3.0, 4.0])
    assert (stats.mean_ms, stats.median_ms, stats.n) == (2.5, 2.5, 4)
    assert stats.p95_ms == pytest.approx(3.85)
    assert stats.to_dict() == {"mean_ms": 2.5, "median_ms": 2.5, "p95_ms": pytest.approx(3.85), "n": 4}
    with pytest.raises(ValueError):
        LatencyStats.from_ms([])


def test_latency_costs_shapes_and_values() -> None:
    net = _toy_net()
    net.train()
    # one thread, as the product times (measurement.threads): on two, an op waits for a thread the other
    # test worker has descheduled, and the tiny stage read 4.4 ms against the heavy one's 1.2 ms once in CI
    with torch_threads(1):
        costs = latency_costs(net, CPU, warmup=2, repeats=7)
    assert net.training  # mode restored
    assert costs.stage.shape == (2,) and costs.branch.shape == (1,)
    values = np.concatenate([costs.stage, costs.branch, [costs.static]])
    assert np.isfinite(values).all() and (values > 0).all()
    assert costs.unit == "ms" and costs.source == f"measured:{device_name(CPU)}"
    # ~37M MACs against ~1k MACs: the heavy stage is slower by orders of magnitude, medians cannot flip
    assert costs.stage[1] > 3 * costs.stage[0]


def test_latency_costs_on_a_real_sample_and_lenet() -> None:
    backbone = create_backbone("lenet", num_classes=10)
    net = MultiExitNet(backbone, [0, 1, 2], [BranchSpec()] * 3)
    costs = latency_costs(net, CPU, warmup=1, repeats=3, sample=torch.randn(1, 28, 28))
    assert costs.stage.shape == (4,) and costs.branch.shape == (3,)
    with pytest.raises(ValueError, match="sample"):
        latency_costs(net, CPU, warmup=0, repeats=1, sample=torch.randn(3, 28, 28))


def test_early_exit_table_path_is_the_forced_early_exit_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eager table's path() equals the medians of ``model.early_exit`` forced out at every exit (so
    the loop's own per-exit overhead is in the table), split per module by the modules' own medians."""
    from ddecs_search.profiling import _latency, early_exit_table

    net = MultiExitNet(create_backbone("lenet", num_classes=10), [0, 1], [BranchSpec()] * 2).eval()
    e = net.num_exits
    stage_ms, branch_ms = [0.02, 0.05, 0.04], [0.01, 0.02]
    paths = [0.08, 0.20, 0.30]  # above the modules' sums: the loop's overhead
    modules = [v for k in range(e) for v in ([stage_ms[k], branch_ms[k]] if k < e - 1 else [stage_ms[k]])]
    medians = np.array([*modules, 0.16, *paths])
    exits_seen = []

    def fake_round_robin(jobs, timer, warmup, repeats):  # type: ignore[no-untyped-def]
        assert len(jobs) == 2 * e - 1 + 1 + e
        for fn, inp in jobs[2 * e :]:  # the forced paths are real early exits, leaving where forced
            exits_seen.append(int(fn(inp).exit_indices[0]))
        return np.repeat(medians[:, None], repeats, axis=1)

    monkeypatch.setattr(_latency, "_round_robin", fake_round_robin)
    costs = early_exit_table(net, CPU, warmup=1, repeats=3)
    assert exits_seen == list(range(e))
    np.testing.assert_allclose(costs.path(), paths, rtol=1e-12)
    np.testing.assert_allclose(costs.stage[:-1] / costs.branch, np.divide(stage_ms[:-1], branch_ms))
    assert costs.static == 0.16 and "forced exits" in costs.source


def test_torch_backend_table_is_the_forced_path_table() -> None:
    from ddecs_search.config import MeasurementConfig
    from ddecs_search.runtime import inference_backend

    net = _toy_net()
    backend = inference_backend(MeasurementConfig(runtime="torch"), net, None, CPU)
    costs = backend.latency_costs(warmup=1, repeats=5)
    assert "forced exits" in costs.source and " eager " in costs.source
    assert costs.stage.shape == (2,) and (np.concatenate([costs.stage, costs.branch]) > 0).all()


def test_decision_costs_in_loop_are_per_exit_increases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced paths with and without the policy deciding on the way: each exit's decision cost is the
    increase of their difference from one exit to the next (the final path averaged with the last
    early one, noise floored at 0), and the policy really decides on the deciding paths."""
    from ddecs_search.profiling import _decision, decision_costs_in_loop

    net = MultiExitNet(create_backbone("lenet", num_classes=10), [0, 1, 2], [BranchSpec()] * 3).eval()
    e = net.num_exits
    forced = [0.10, 0.20, 0.30, 0.40]
    deciding = [0.11, 0.23, 0.32, 0.34 + 0.002]  # decisions: +0.01, +0.02, -0.01 (noise) ...
    calls = []

    class Counting(ThresholdPolicy):
        def exit_mask_from_logits(self, exit_index, logits, prev_pred):  # type: ignore[no-untyped-def]
            calls.append(exit_index)
            return super().exit_mask_from_logits(exit_index, logits, prev_pred)

    def fake_round_robin(jobs, timer, warmup, repeats):  # type: ignore[no-untyped-def]
        assert len(jobs) == 2 * e
        for k, (fn, inp) in enumerate(jobs):
            assert int(fn(inp).exit_indices[0]) == k % e  # forced out where asked, deciding or not
        return np.repeat(np.array([*forced, *deciding])[:, None], repeats, axis=1)

    monkeypatch.setattr(_decision, "round_robin", fake_round_robin)
    policy = Counting(metric="max_prob", thresholds=[2.0, 2.0, 2.0])  # never exits by itself
    x = torch.randn(1, 1, 28, 28)
    costs = decision_costs_in_loop(net, policy, x, CPU, warmup=0, repeats=2)
    assert calls == [0, 0, 1, 0, 1, 2, 0, 1, 2]  # the deciding paths ran the policy at every exit passed
    extra = np.array(deciding) - np.array(forced)
    want = np.maximum(np.diff([extra[0], extra[1], (extra[2] + extra[3]) / 2], prepend=0.0), 0.0)
    np.testing.assert_allclose(costs, want)
    assert costs.shape == (e - 1,) and costs[2] == 0.0  # the noisy negative step is floored


def test_decision_costs_in_loop_on_a_real_policy() -> None:
    from ddecs_search.profiling import decision_costs_in_loop

    net = _toy_net()
    x = torch.randn(1, 1, 16, 16)
    costs = decision_costs_in_loop(net, _exit_all_at_first(), x, CPU, warmup=1, repeats=5)
    assert costs.shape == (1,) and np.isfinite(costs).all() and (costs >= 0).all()


def test_time_per_sample_times_every_sample() -> None:
    seen = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape)
        return x * 2

    stats = time_per_sample(fn, torch.randn(7, 3, 4, 4), CPU, warmup=3)
    assert stats.n == 7 and stats.per_sample_ms.shape == (7,)
    assert (stats.per_sample_ms > 0).all() and math.isfinite(stats.p95_ms)
    assert len(seen) == 3 + 7 and all(s == (1, 3, 4, 4) for s in seen)


def test_the_timed_early_exit_path_never_runs_the_stage_after_its_exit() -> None:
    """What makes the early-exit timing faster is that the heavy stage is skipped, not the clock: count the
    calls (a speed ratio belongs to the benchmarks, which measure it side by side, not to a test)."""
    net = _toy_net(size=24)
    samples = torch.randn(12, 1, 24, 24)
    calls = {"tiny": 0, "heavy": 0, "branch": 0}

    def counter(name: str) -> Any:
        def hook(*_: Any) -> None:
            calls[name] += 1

        return hook

    net.backbone.segments[0].register_forward_hook(counter("tiny"))
    net.backbone.segments[1].register_forward_hook(counter("heavy"))
    net.branches[0].register_forward_hook(counter("branch"))
    out = compare_static_vs_early_exit(net, _exit_all_at_first(), samples, CPU, warmup=3, rounds=3)
    assert out["static"].n == 12 and out["early_exit"].n == 12
    assert (out["exit_indices"] == 0).all()
    # every call enters the tiny stage; only the static ones reach the heavy one, only the early ones the
    # branch: so the early-exit path ran the branch and never the heavy stage
    assert calls["heavy"] > 0 and calls["branch"] > 0
    assert calls["tiny"] == calls["heavy"] + calls["branch"]
    with torch.inference_mode():
        np.testing.assert_array_equal(out["predictions"], net(samples)[0].argmax(1).numpy())
    assert out["speedup"] == pytest.approx(out["static"].mean_ms / out["early_exit"].mean_ms)


def test_compare_with_the_static_policy_reports_structure() -> None:
    net = _toy_net(heavy=16)
    out = compare_static_vs_early_exit(
        net, StaticPolicy(), torch.randn(5, 1, 16, 16), CPU, warmup=1, rounds=2
    )
    assert (out["exit_indices"] == 1).all() and out["predictions"].shape == (5,)
    assert out["speedup"] > 0 and out["rounds"] == 2 and out["device"] == device_name(CPU)


def test_batched_throughput_structure() -> None:
    net = _toy_net(heavy=16)
    out = batched_throughput(
        net, _exit_all_at_first(), torch.randn(40, 1, 16, 16), CPU, batch_size=16, rounds=2
    )
    assert out["static_samples_per_s"] > 0 and out["early_exit_samples_per_s"] > 0
    assert out["throughput_speedup"] == pytest.approx(
        out["early_exit_samples_per_s"] / out["static_samples_per_s"]
    )
    assert (out["batch_size"], out["num_samples"], out["rounds"]) == (16, 40, 2)


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"warmup": -1}])
def test_bad_counts_are_value_errors(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        compare_static_vs_early_exit(
            _toy_net(heavy=4), StaticPolicy(), torch.randn(2, 1, 16, 16), CPU, **kwargs
        )
