"""ONNX export and the ONNX Runtime early-exit runner: exportable pools, every backbone x exit point x branch
kind, numpy decisions equal to the torch policies, torch vs ONNX Runtime agreement, measurement backends."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ddecs_search.config import BranchSpec, MeasurementConfig
from ddecs_search.errors import ConfigError
from ddecs_search.models import MultiExitNet, create_backbone, list_backbones
from ddecs_search.policies import ThresholdPolicy, exit_features
from ddecs_search.runtime import (
    ExitDecision,
    ExportableAdaptivePool2d,
    OnnxEarlyExitRunner,
    adaptive_bins,
    export_onnx,
    exportable_copy,
    inference_backend,
    resolve_runtime,
    save_onnx,
)

CPU = torch.device("cpu")
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")

# Branch kinds the spaces allow (conv_layers 0..3, avg/max, pool_size 1..8 never up-sampling, hidden, dropout)
KINDS = [
    BranchSpec(conv_layers=0, pool="avg", pool_size=4, hidden=0),  # 14x14 -> 4x4: does not divide
    BranchSpec(conv_layers=1, channels=8, pool="max", pool_size=3, hidden=16, dropout=0.1),
    BranchSpec(conv_layers=2, channels=8, pool="avg", pool_size=8, hidden=0),
    BranchSpec(conv_layers=0, pool="max", pool_size=5, hidden=0),
]


# ------------------------------------------------------------------------------------------------- pools
@pytest.mark.parametrize("hw", [(14, 14), (7, 7), (3, 3), (1, 1), (5, 9), (32, 32), (2, 2)])
@pytest.mark.parametrize("out", [1, 2, 3, 4, 6, 7, 8])
def test_exportable_pool_equals_adaptive_pool(hw: tuple[int, int], out: int) -> None:
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(out))
    avg = ExportableAdaptivePool2d(out, "avg")(x)
    mx = ExportableAdaptivePool2d(out, "max")(x)
    assert torch.equal(mx, nn.functional.adaptive_max_pool2d(x, out))  # max: exact
    torch.testing.assert_close(avg, nn.functional.adaptive_avg_pool2d(x, out), rtol=0, atol=1e-6)


def test_adaptive_bins_match_torch_rule() -> None:
    assert adaptive_bins(14, 4) == [(0, 4), (3, 7), (7, 11), (10, 14)]
    assert adaptive_bins(1, 3) == [(0, 1), (0, 1), (0, 1)]  # up-sampling repeats the pixel


@pytest.mark.parametrize(
    ("mode", "allowed"), [("avg", {"Reshape", "MatMul"}), ("max", {"MaxPool", "Gather"})]
)
def test_non_dividing_pools_export_as_a_few_graph_nodes(mode: str, allowed: set[str]) -> None:
    """14x14 -> 4x4 (a conv1 exit of the default job): at batch 1 every graph node is a ~1-2 us kernel call,
    so the pool must not become shape arithmetic or 2 * (4 + 4) slices; ONNX Runtime still equals torch."""
    import onnx
    import onnxruntime as ort

    from ddecs_search.runtime._export import export_module

    pool = ExportableAdaptivePool2d(4, mode)
    x = torch.randn(2, 32, 14, 14, generator=torch.Generator().manual_seed(0))
    blob = export_module(pool, x, "x", ["y"])
    ops = {n.op_type for n in onnx.load_from_string(blob).graph.node} - {"Constant"}
    assert ops <= allowed, ops
    got = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x[:1].numpy()})[0]
    ref = nn.functional.adaptive_avg_pool2d if mode == "avg" else nn.functional.adaptive_max_pool2d
    np.testing.assert_allclose(got, ref(x[:1], 4).numpy(), rtol=0, atol=1e-6)


def test_exportable_copy_replaces_pools_and_leaves_the_original() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(4), nn.AdaptiveMaxPool2d((2, 2)))
    copy = exportable_copy(net)
    assert isinstance(net[1], nn.AdaptiveAvgPool2d)
    assert [type(m).__name__ for m in copy][1:] == ["ExportableAdaptivePool2d"] * 2
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), net(x), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------- export x runtime
def _net(backbone: str, shift: int = 0, seed: int = 0) -> MultiExitNet:
    torch.manual_seed(seed)
    bb = create_backbone(backbone, num_classes=10)
    points = list(range(len(bb.exit_point_names)))
    specs = [KINDS[(i + shift) % len(KINDS)] for i in points]
    return MultiExitNet(bb, points, specs).eval()


def _check_graphs_match_torch(net: MultiExitNet, batch: int = 3) -> None:
    graphs = export_onnx(net)
    runner = OnnxEarlyExitRunner(graphs.as_mapping(), ExitDecision("static", {}, net.num_exits))
    x = torch.randn(batch, *net.backbone.input_shape, generator=torch.Generator().manual_seed(1))
    h, hn = x, x.numpy()
    with torch.no_grad():
        for k in range(net.num_exits):
            h, hn = net.run_stage(k, h), runner.run_stage(k, hn)
            scale = float(h.abs().max()) + 1e-6
            np.testing.assert_allclose(hn, h.numpy(), rtol=0, atol=1e-4 * scale, err_msg=f"stage {k}")
            if k < net.num_exits - 1:
                logits = net.exit_logits(k, h)
                got_logits, got_feats = runner.run_branch(k, hn)
                scale = float(logits.abs().max()) + 1e-6
                np.testing.assert_allclose(got_logits, logits.numpy(), rtol=0, atol=1e-4 * scale)
                # the in-graph features are exit_features of the graph's own logits (a saturated softmax
                # of a deep random network amplifies the logits' float differences, checked above)
                want = exit_features(torch.from_numpy(got_logits), None)[:, :3].numpy()
                np.testing.assert_allclose(got_feats, want, rtol=1e-5, atol=1e-6, err_msg=f"branch {k}")
        np.testing.assert_allclose(runner.static(x.numpy()), net.backbone(x).numpy(), rtol=1e-4, atol=1e-4)
    # the batch-1 If graph (every exit nested), forced out at each exit: that exit, its module's prediction
    from ddecs_search.runtime._backend import forced_thresholds

    one = x[:1].numpy()
    h1 = one
    for k in range(net.num_exits):
        h1 = runner.run_stage(k, h1)
        logits1 = h1 if k == net.num_exits - 1 else runner.run_branch(k, h1)[0]
        pred, ex = runner.run_fused(one, forced_thresholds(net.num_exits, k))
        assert ex.tolist() == [k] and pred.tolist() == [int(logits1.argmax())], f"exit {k}"


@pytest.mark.parametrize("backbone", ["lenet", "resnet20"])
def test_every_exit_point_and_branch_kind_exports_fast(backbone: str) -> None:
    _check_graphs_match_torch(_net(backbone))


@pytest.mark.slow
@pytest.mark.parametrize("shift", range(len(KINDS)))
@pytest.mark.parametrize("backbone", list_backbones())
def test_every_backbone_exit_point_and_branch_kind_exports(backbone: str, shift: int) -> None:
    """Every registered backbone, every exit point, every branch kind at every point (over the shifts)."""
    _check_graphs_match_torch(_net(backbone, shift), batch=2)


def test_exporters_agree() -> None:
    net = _net("lenet")
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    outs = []
    for exporter in ("torchscript", "dynamo"):
        g = export_onnx(net, exporter=exporter)
        r = OnnxEarlyExitRunner(g.as_mapping(), ExitDecision("static", {}, net.num_exits))
        outs.append((r.static(x), r.run_branch(0, r.run_stage(0, x))[1]))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------- numpy decisions
def _features(n: int = 400, e: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=gen) * 3
    prev = torch.randint(0, 10, (n,), generator=gen)
    return exit_features(logits, prev)  # (n, 4)


@pytest.mark.parametrize("metric", ["max_prob", "entropy"])
def test_threshold_decision_equals_torch(metric: str) -> None:
    feats = _features()
    ts = [float(feats[:, 0].median()), 0.9] if metric == "max_prob" else [1.0, float(feats[:, 1].median())]
    policy = ThresholdPolicy(metric, ts)
    decision = ExitDecision.from_json({"kind": policy.kind, "state": policy.state_dict()}, 3)
    for k in range(2):
        want = policy.exit_mask(k, feats).numpy()
        got = decision.exit_mask(k, feats[:, :3].numpy())
        assert 0 < want.sum() < len(want) or k == 1
        assert np.array_equal(got, want)


def test_static_and_oracle_decisions() -> None:
    feats = _features()[:, :3].numpy()
    assert not ExitDecision.from_json({"kind": "static", "state": {}}, 3).exit_mask(0, feats).any()
    with pytest.raises(ValueError, match="oracle"):
        ExitDecision.from_json({"kind": "oracle", "state": {}}, 3)


def test_qtable_decision_equals_torch() -> None:
    from ddecs_search.policies import QTablePolicy

    policy = QTablePolicy(bins=10)
    policy.q = np.random.default_rng(0).standard_normal((2, 10, 2))
    decision = ExitDecision.from_json({"kind": "qtable", "state": policy.state_dict()}, 3)
    feats = _features()
    for k in range(2):
        assert np.array_equal(decision.exit_mask(k, feats[:, :3].numpy()), policy.exit_mask(k, feats).numpy())


@pytest.mark.parametrize("kind", ["ppo", "dqn"])
def test_rl_mlp_and_threshold_exports_equal_torch(kind: str) -> None:
    from ddecs_search.policies import DQNExitPolicy, PPOExitPolicy
    from ddecs_search.policies._rl_portable import ExitMLP

    torch.manual_seed(0)
    policy = (PPOExitPolicy if kind == "ppo" else DQNExitPolicy)()
    policy.num_exits, policy.entropy_scale, policy.mode = 3, math.log(10), "mlp"
    policy.net = ExitMLP([nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)]).eval()
    feats = _features()
    decision = ExitDecision.from_json({"kind": kind, "state": policy.state_dict()}, 3)
    agree = feats[:, 3].numpy()
    for k in range(2):
        want = policy.exit_mask(k, feats).numpy()
        assert np.array_equal(decision.exit_mask(k, feats[:, :3].numpy(), agree), want)
    policy.mode, policy.thresholds = "threshold", [0.5, 0.7]
    decision = ExitDecision.from_json({"kind": kind, "state": policy.state_dict()}, 3)
    for k in range(2):
        assert np.array_equal(decision.exit_mask(k, feats[:, :3].numpy()), policy.exit_mask(k, feats).numpy())


# ------------------------------------------------------------------------- early exit: torch vs ORT
def _spread_thresholds(net: MultiExitNet, x: torch.Tensor) -> ThresholdPolicy:
    """Thresholds at the median max-prob of each early exit, so samples leave at every exit."""
    with torch.no_grad():
        outs = net(x)
    return ThresholdPolicy("max_prob", [float(exit_features(o, None)[:, 0].median()) for o in outs[:-1]])


def test_early_exit_agrees_with_torch_batched_and_batch1(tmp_path: Path) -> None:
    net = _net("lenet", seed=3)
    x = torch.randn(96, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    policy = _spread_thresholds(net, x)
    folder = save_onnx(export_onnx(net), tmp_path / "onnx")
    policy.save(folder / "policy.json")
    runner = OnnxEarlyExitRunner.from_folder(folder)
    with torch.no_grad():
        want = net.early_exit(x, policy)
    preds, exits = runner.early_exit(x.numpy())
    agreement = float(((preds == want.predictions.numpy()) & (exits == want.exit_indices.numpy())).mean())
    assert agreement >= 0.98, agreement  # equal except float ties at a threshold
    assert len(np.unique(exits)) == net.num_exits  # every exit used: leaving samples are removed
    one = [runner.early_exit(x[i : i + 1].numpy()) for i in range(len(x))]
    assert np.array_equal(np.concatenate([p for p, _ in one]), preds)
    assert np.array_equal(np.concatenate([e for _, e in one]), exits)
    p2, e2 = runner.predict(x.numpy(), batch_size=7)
    assert np.array_equal(p2, preds) and np.array_equal(e2, exits)


# ---------------------------------------------------------- batch 1 as one graph (If nodes, decision inside)
def _metric_policy(net: MultiExitNet, x: torch.Tensor, metric: str) -> ThresholdPolicy:
    """Thresholds at each early exit's median score on ``x`` (max-prob or entropy): every exit is used."""
    with torch.no_grad():
        feats = [exit_features(o, None) for o in net(x)[:-1]]
    col = 0 if metric == "max_prob" else 1
    return ThresholdPolicy(metric, [float(f[:, col].median()) for f in feats])


@pytest.mark.parametrize(
    ("backbone", "metric"), [("lenet", "max_prob"), ("lenet", "entropy"), ("resnet20", "max_prob")]
)
def test_batch1_graph_agrees_with_torch_and_with_batched(backbone: str, metric: str) -> None:
    net = _net(backbone, seed=3)
    x = torch.randn(48, *net.backbone.input_shape, generator=torch.Generator().manual_seed(2))
    policy = _metric_policy(net, x, metric)
    decision = ExitDecision.from_json({"kind": "threshold", "state": policy.state_dict()}, net.num_exits)
    runner = OnnxEarlyExitRunner(export_onnx(net).as_mapping(metric), decision)
    assert runner.uses_fused and runner.fused_metric == metric
    calls = []
    runner._early_exit_one = lambda x: calls.append(x)  # type: ignore[method-assign]  # must not be used
    one = [runner.early_exit(x[i : i + 1].numpy()) for i in range(len(x))]
    assert not calls  # batch 1 went through the one graph
    preds1 = np.concatenate([p for p, _ in one])
    exits1 = np.concatenate([e for _, e in one])
    assert preds1.dtype == np.int64 and exits1.dtype == np.int64 and preds1.shape == (len(x),)
    with torch.no_grad():
        want = net.early_exit(x, policy)
    agree = (preds1 == want.predictions.numpy()) & (exits1 == want.exit_indices.numpy())
    assert agree.mean() >= 0.98, agree.mean()  # equal except float ties at a threshold
    assert len(np.unique(exits1)) >= 2  # the median thresholds send samples to several exits
    preds_b, exits_b = runner.early_exit(x.numpy())  # batched: module by module, samples removed
    assert ((preds_b == preds1) & (exits_b == exits1)).mean() >= 0.98


def test_batch1_graph_forced_exits_and_static() -> None:
    """Forced thresholds (what the latency table times) leave at the asked exit with that exit's
    prediction; a static decision runs the graph to the end."""
    from ddecs_search.runtime._backend import forced_thresholds

    net = _net("lenet", seed=1)
    e = net.num_exits
    graphs = export_onnx(net)
    runner = OnnxEarlyExitRunner(graphs.as_mapping(), ExitDecision("static", {}, e))
    assert runner.uses_fused
    x = np.random.default_rng(3).standard_normal((1, 1, 28, 28)).astype(np.float32)
    h = x
    for k in range(e):
        h = runner.run_stage(k, h)
        logits = h if k == e - 1 else runner.run_branch(k, h)[0]
        pred, ex = runner.run_fused(x, forced_thresholds(e, k))
        assert ex.tolist() == [k] and pred.tolist() == [int(logits.argmax())]
    pred, ex = runner.early_exit(x)
    assert ex.tolist() == [e - 1] and pred.tolist() == [int(runner.static(x).argmax())]


def test_decisions_the_graph_cannot_express_run_module_by_module() -> None:
    from ddecs_search.policies import QTablePolicy

    net = _net("lenet", seed=3)
    policy = QTablePolicy(bins=10)
    policy.q = np.random.default_rng(0).standard_normal((net.num_exits - 1, 10, 2))
    backend = inference_backend(MeasurementConfig(), net, policy, CPU)
    runner = backend.runner  # type: ignore[attr-defined]
    assert runner.fused_session is not None and not runner.uses_fused  # graph kept for the table only
    x = torch.randn(12, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = net.early_exit(x, policy)
    one = [runner.early_exit(x[i : i + 1].numpy()) for i in range(len(x))]
    assert np.array_equal(np.concatenate([e for _, e in one]), want.exit_indices.numpy())
    extra = backend.decision_costs(x[:1], warmup=1, repeats=3)  # numpy decision + the separate calls
    assert extra.shape == (net.num_exits - 1,) and (extra > 0).all()


def test_latency_table_path_is_the_batch1_graph_forced_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ORT table's path() equals the batch-1 graph's forced-exit medians (what the runner executes),
    split between stage and branch by their own graphs; threshold decisions add nothing on top."""
    from ddecs_search.profiling import _latency

    net = _net("lenet", seed=3)  # 4 exits: jobs = 4 stages + 3 branches (interleaved), static, 4 paths
    e = net.num_exits
    stage_ms, branch_ms = [0.03, 0.06, 0.07, 0.05], [0.02, 0.02, 0.01]
    paths = [0.04, 0.11, 0.15, 0.19]  # cheaper than the separate calls: one session.run
    modules = [v for k in range(e) for v in ([stage_ms[k], branch_ms[k]] if k < e - 1 else [stage_ms[k]])]
    medians = np.array([*modules, 0.16, *paths])
    seen = {}

    def fake_round_robin(jobs, timer, warmup, repeats):  # type: ignore[no-untyped-def]
        seen["jobs"] = jobs
        for fn, inp in jobs:  # every job still runs once on its real input
            fn(inp)
        return np.repeat(medians[:, None], repeats, axis=1)

    monkeypatch.setattr(_latency, "_round_robin", fake_round_robin)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    backend = inference_backend(MeasurementConfig(), net, _spread_thresholds(net, x), CPU)
    costs = backend.latency_costs(warmup=1, repeats=3)
    assert len(seen["jobs"]) == 2 * e - 1 + 1 + e
    np.testing.assert_allclose(costs.path(), paths, rtol=1e-12)
    np.testing.assert_allclose(costs.stage[:-1] / costs.branch, np.divide(stage_ms[:-1], branch_ms))
    assert costs.static == 0.16 and "forced exits" in costs.source
    assert np.array_equal(backend.decision_costs(x[:1], warmup=1, repeats=2), np.zeros(e - 1))


def test_split_paths_floors_noise() -> None:
    from ddecs_search.profiling import split_paths

    stage, branch = split_paths(
        np.array([0.05, 0.04, 0.2]), np.array([0.03, 0.03, 0.1]), np.array([0.01, 0.01])
    )
    assert (stage > 0).all() and (branch > 0).all()  # the negative second chunk is floored, not negative
    assert stage[-1] == pytest.approx(0.16)


# -------------------------------------------------------------------------------- measurement backends
def test_runtime_config_and_resolution() -> None:
    assert MeasurementConfig().runtime == "auto"
    with pytest.raises(ConfigError, match="runtime"):
        MeasurementConfig(runtime="tensorrt")  # type: ignore[arg-type]
    assert resolve_runtime("auto", CPU) == "onnxruntime"
    assert resolve_runtime("auto", torch.device("cuda", 0)) == "torch"
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_runtime("onnxruntime", torch.device("cuda", 0))


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_backend_measures_in_its_runtime(runtime: str) -> None:
    net = _net("lenet", seed=3)
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    policy = _spread_thresholds(net, x)
    backend = inference_backend(MeasurementConfig(runtime=runtime), net, policy, CPU)
    assert backend.runtime == runtime and backend.source.startswith(runtime) and "1 thread" in backend.source
    costs = backend.latency_costs(warmup=1, repeats=3)
    e = net.num_exits
    assert costs.stage.shape == (e,) and costs.branch.shape == (e - 1,) and costs.static > 0
    assert runtime in costs.source
    timing = backend.compare(x, warmup=1, rounds=2)
    assert timing["static"].n == 16 and timing["speedup"] > 0 and len(timing["exit_indices"]) == 16
    with torch.no_grad():
        want = net.early_exit(x, policy)
    assert (timing["exit_indices"] == want.exit_indices.numpy()).mean() >= 0.9
    tput = backend.throughput(x, batch_size=8, warmup=1, rounds=2)
    assert tput["static_samples_per_s"] > 0 and tput["early_exit_samples_per_s"] > 0
    static_fn, early_fn = backend.energy_fns()
    static_fn(x[:1])
    assert early_fn(x[:1])[1].shape == (1,)


def test_search_table_keys_name_the_runtime() -> None:
    from ddecs_search.runtime import runtime_label
    from ddecs_search.search._latency_broker import module_keys

    net = _net("lenet")
    ort_keys = module_keys(net, "lenet", runtime_label("onnxruntime", CPU, 1))
    torch_keys = module_keys(net, "lenet", runtime_label("torch", CPU, 1))
    assert all(k.startswith("onnxruntime ") and " if-graph " in k for k in ort_keys)
    assert all(k.startswith("torch ") and " eager " in k for k in torch_keys)  # the forced-path table
    assert not set(ort_keys) & set(torch_keys)


# ------------------------------------------------------------------------------- deployment, no torch
@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_exported_folder_predicts_without_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate (the trial's own writers) -> export -> predict.py in a fresh process, torch never imported,
    reproducing the reported test accuracy and exit fractions."""
    from ddecs_search.analysis import export_trial
    from ddecs_search.cli import main

    monkeypatch.setenv("DDECS_OFFLINE", "1")
    space = Path(__file__).parent / "spaces" / "tiny_evaluate.yaml"
    trial = tmp_path / "exp" / "trials" / "t0"
    result = tmp_path / "result.json"
    cand = {"policy": {"kind": "threshold", "cost_weight": 0.3}}
    args = ["evaluate", str(space), "--candidate", json.dumps(cand), "--out", str(result)]
    assert main([*args, "--workdir", str(trial), "--quiet"]) == 0
    (tmp_path / "exp" / "space.yaml").write_text(space.read_text())
    reported = json.loads(result.read_text())
    assert reported["runtime"] == "onnxruntime" and reported["latency_source"].startswith("onnxruntime ")
    out = export_trial(tmp_path / "exp", "t0", tmp_path / "deploy")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # ddecs_search not importable there
    proc = subprocess.run(
        [sys.executable, str(out / "predict.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["torch_imported"] is False
    assert got["accuracy"] == pytest.approx(reported["accuracy"], abs=1e-9)
    assert got["exit_fractions"] == pytest.approx(reported["exit_fractions"], abs=1e-9)
    # batch 1 in the deployed folder: the one-graph path (early_exit.onnx), same answers as in batches
    manifest = json.loads((out / "onnx" / "manifest.json").read_text())
    assert manifest["early_exit"]["metric"] == "max_prob" and (out / "onnx" / "early_exit.onnx").is_file()
    runner = OnnxEarlyExitRunner.from_folder(out / "onnx", policy=out / "policy.json")
    assert runner.uses_fused
    xs = np.load(out / "test_inputs.npy")[:200]
    preds, exits = runner.predict(xs, batch_size=64)
    one = [runner.early_exit(xs[i : i + 1]) for i in range(len(xs))]
    agree = (np.concatenate([p for p, _ in one]) == preds) & (np.concatenate([e for _, e in one]) == exits)
    assert agree.mean() >= 0.99, agree.mean()
