"""One candidate end to end — the body of every search trial.

data → baseline (cached) → multi-exit model → branch training → exit tables (val, test) → cost tables
(MACs, measured latency) → exit policy fitted on val → scored on test → real early-exit inference timed
against the static network in the same run → energy where a meter exists → one flat metrics dict.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddecs_search._atomic import write_text_atomic
from ddecs_search.config import Candidate, SearchSpace, to_dict
from ddecs_search.models import Backbone, MultiExitNet, backbone_info
from ddecs_search.policies import (
    ExitCosts,
    ExitPolicy,
    ExitTable,
    OraclePolicy,
    create_policy,
    score_decisions,
)
from ddecs_search.training import EpochCallback, accuracy, train_baseline, train_branches


def default_cache() -> Path:
    """Where baselines are cached outside a search: ``$DDECS_CACHE`` or ``~/.cache/ddecs_search``."""
    return Path(os.environ.get("DDECS_CACHE", Path.home() / ".cache" / "ddecs_search"))


@dataclass
class PreparedCandidate:
    """A trained candidate with its exit tables and cost tables, ready for policies and measurement."""

    candidate: Candidate
    model: MultiExitNet
    baseline: Backbone
    baseline_accuracy: float
    val_table: ExitTable
    test_table: ExitTable
    latency: ExitCosts
    macs: ExitCosts
    device: torch.device
    splits: Any
    train_time_s: float
    baseline_train_time_s: float


def _set_threads(space: SearchSpace) -> None:
    """Inside a Tune trial, train with as many threads as the trial reserved CPUs."""
    if os.environ.get("DDECS_IN_TRIAL"):
        torch.set_num_threads(max(1, int(round(space.resources.cpu))))


@contextlib.contextmanager
def measurement_threads(space: SearchSpace, device: torch.device) -> Iterator[None]:
    """Use ``measurement.threads`` intra-op threads while timing on a CPU, then restore."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(space.measurement.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_candidate(
    space: SearchSpace,
    candidate: Candidate,
    *,
    workdir: Path,
    baseline_dir: Path | None = None,
    quiet: bool = False,
    on_epoch: EpochCallback | None = None,
    latency_fn: Callable[[MultiExitNet, torch.device], ExitCosts] | None = None,
) -> PreparedCandidate:
    """Train ``candidate`` (baseline from cache) and compute its exit and cost tables."""
    from ddecs_search.data import load_splits, make_loader
    from ddecs_search.profiling import latency_costs, mac_costs, resolve_device

    _set_threads(space)
    device = resolve_device(space.measurement.device)
    info = backbone_info(candidate.backbone)
    splits = load_splits(space.dataset, info.input_shape)
    base = train_baseline(
        candidate.backbone,
        splits,
        space.dataset,
        space.backbone.baseline,
        device=device,
        cache_dir=baseline_dir or default_cache() / "baselines",
        seed=0,
        quiet=quiet,
    )

    def eval_loader(ds):
        return make_loader(
            ds,
            batch_size=512,
            shuffle=False,
            seed=0,
            num_workers=space.dataset.num_workers,
            device=device,
        )

    baseline_acc = accuracy(base.backbone, eval_loader(splits.test), device)
    torch.manual_seed(candidate.seed)
    model = MultiExitNet(copy.deepcopy(base.backbone), candidate.exit_points, candidate.branches).to(device)
    info_train = train_branches(
        model,
        splits.train,
        candidate.training,
        device=device,
        checkpoint_path=Path(workdir) / "branches_checkpoint.pt",
        seed=candidate.seed,
        num_workers=space.dataset.num_workers,
        quiet=quiet,
        on_epoch=on_epoch,
    )
    model.eval()
    val_table = ExitTable.from_model(model, eval_loader(splits.val), device)
    test_table = ExitTable.from_model(model, eval_loader(splits.test), device)
    m = space.measurement
    with measurement_threads(space, device):
        if latency_fn is not None:
            latency = latency_fn(model, device)
        else:
            latency = latency_costs(model, device, warmup=m.warmup, repeats=m.repeats)
    return PreparedCandidate(
        candidate,
        model,
        base.backbone.eval(),
        baseline_acc,
        val_table,
        test_table,
        latency,
        mac_costs(model),
        device,
        splits,
        info_train["train_time_s"],
        base.train_time_s,
    )


def fit_policy(prepared: PreparedCandidate) -> tuple[ExitPolicy, float]:
    """Create the candidate's policy and fit it on the validation table; returns (policy, seconds)."""
    cfg = prepared.candidate.policy
    cfg = (
        dataclasses.replace(cfg, options={"seed": prepared.candidate.seed, **cfg.options})
        if cfg.kind in ("ppo", "dqn", "qtable")
        else cfg
    )
    costs = prepared.latency if cfg.cost == "latency" else prepared.macs
    policy = create_policy(cfg)
    start = time.perf_counter()
    policy.fit(prepared.val_table, costs.normalised_path(), cfg.cost_weight)
    return policy, time.perf_counter() - start


def _stack_inputs(dataset: Any, n: int) -> torch.Tensor:
    n = min(n, len(dataset))
    return torch.stack([dataset[i][0] for i in range(n)])


def _energy(space: SearchSpace, prepared: PreparedCandidate, policy: ExitPolicy, batch: torch.Tensor) -> dict:
    """Energy per sample of early-exit and static inference over the same samples, or None with the reason."""
    from ddecs_search.profiling import create_energy_meter, energy_per_sample

    m = space.measurement
    meter = create_energy_meter(m.energy, prepared.device)
    try:
        kwargs = {"min_seconds": m.energy_min_seconds, "warmup": min(m.warmup, 2)}
        static = energy_per_sample(meter, prepared.baseline, batch, prepared.device, **kwargs)
        dynamic = energy_per_sample(
            meter, lambda x: prepared.model.early_exit(x, policy), batch, prepared.device, **kwargs
        )
    finally:
        meter.close()
    return {
        "energy_mj": dynamic.energy_mj,
        "baseline_energy_mj": static.energy_mj,
        "energy_source": dynamic.source,
    }


def measure_candidate(space: SearchSpace, prepared: PreparedCandidate, policy: ExitPolicy) -> dict[str, Any]:
    """Score ``policy`` on the test table and measure real early-exit inference against the static net."""
    from ddecs_search.data import make_loader
    from ddecs_search.profiling import batched_throughput, compare_static_vs_early_exit, device_name

    m = space.measurement
    lat_path, mac_path = prepared.latency.path(), prepared.macs.path()
    test = prepared.test_table
    exits = policy.decide_table(test)
    stats = score_decisions(test, exits, prepared.latency.normalised_path())
    oracle_exits = OraclePolicy().decide_table(test)
    oracle = score_decisions(test, oracle_exits, prepared.latency.normalised_path())

    # Real batched early-exit inference over the whole test set: the reported accuracy.
    loader = make_loader(
        prepared.splits.test,
        batch_size=m.batch_size,
        shuffle=False,
        seed=0,
        num_workers=space.dataset.num_workers,
        device=prepared.device,
    )
    preds, real_exits = [], []
    with torch.inference_mode():
        for x, _ in loader:
            out = prepared.model.early_exit(x.to(prepared.device), policy)
            preds.append(out.predictions.cpu())
            real_exits.append(out.exit_indices.cpu())
    preds_np, real_exits_np = torch.cat(preds).numpy(), torch.cat(real_exits).numpy()
    real_acc = float((preds_np == test.labels).mean())
    table_preds = test.predictions[np.arange(test.num_samples), exits]
    agreement = float(((preds_np == table_preds) & (real_exits_np == exits)).mean())

    samples = _stack_inputs(prepared.splits.test, m.latency_samples)
    timing = compare_static_vs_early_exit(prepared.model, policy, samples, prepared.device, warmup=m.warmup)
    batch1_agree = float((np.asarray(timing["exit_indices"]) == exits[: len(samples)]).mean())
    tput = batched_throughput(
        prepared.model,
        policy,
        _stack_inputs(prepared.splits.test, 4 * m.batch_size),
        prepared.device,
        batch_size=m.batch_size,
    )
    energy = _energy(space, prepared, policy, _stack_inputs(prepared.splits.test, m.batch_size))
    static_lat, ee_lat = timing["static"], timing["early_exit"]
    return {
        "accuracy": real_acc,
        "baseline_accuracy": prepared.baseline_accuracy,
        "accuracy_drop": prepared.baseline_accuracy - real_acc,
        "latency_ms": ee_lat.mean_ms,
        "latency_p95_ms": ee_lat.p95_ms,
        "expected_latency_ms": float(lat_path[exits].mean()),
        "baseline_latency_ms": static_lat.mean_ms,
        "speedup": timing["speedup"],
        "batched_throughput_speedup": tput["throughput_speedup"],
        **energy,
        "macs": float(mac_path[exits].mean()) * 1e6,
        "baseline_macs": prepared.macs.static * 1e6,
        "exit_fractions": list(stats.exit_fractions),
        "exit_accuracies": list(stats.exit_accuracies),
        "table_accuracy": stats.accuracy,
        "expected_cost": stats.cost,
        "oracle_accuracy": oracle.accuracy,
        "oracle_expected_latency_ms": float(lat_path[oracle_exits].mean()),
        "oracle_macs": float(mac_path[oracle_exits].mean()) * 1e6,
        "oracle_exit_fractions": list(oracle.exit_fractions),
        "inference_table_agreement": agreement,
        "batch1_table_agreement": batch1_agree,
        "latency_table_source": prepared.latency.source,
        "device": device_name(prepared.device),
        "_test_exits": real_exits_np,
        "_test_predictions": preds_np,
    }


def evaluate_candidate(
    space: SearchSpace,
    candidate: Candidate,
    *,
    workdir: Path | None = None,
    baseline_dir: Path | None = None,
    quiet: bool = False,
    on_epoch: EpochCallback | None = None,
    latency_fn: Callable[[MultiExitNet, torch.device], ExitCosts] | None = None,
) -> dict[str, Any]:
    """Train, fit the policy, measure, and return the flat metrics dict (see docs/architecture.md).

    Artefacts (model state dict + spec, policy, test exits) are written to ``workdir`` for export.
    """
    start = time.perf_counter()
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="ddecs-eval-")
        workdir = Path(own_tmp.name)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        prepared = prepare_candidate(
            space,
            candidate,
            workdir=workdir,
            baseline_dir=baseline_dir,
            quiet=quiet,
            on_epoch=on_epoch,
            latency_fn=latency_fn,
        )
        policy, policy_time = fit_policy(prepared)
        with measurement_threads(space, prepared.device):
            metrics = measure_candidate(space, prepared, policy)
        test_exits, test_preds = metrics.pop("_test_exits"), metrics.pop("_test_predictions")
        metrics.update(
            {
                "val_accuracy": float(
                    score_decisions(
                        prepared.val_table,
                        policy.decide_table(prepared.val_table),
                        prepared.latency.normalised_path(),
                    ).accuracy
                ),
                "policy_kind": candidate.policy.kind,
                "cost_weight": candidate.policy.cost_weight,
                "num_exits": candidate.num_exits,
                "exit_points": list(candidate.exit_points),
                "train_time_s": prepared.train_time_s,
                "baseline_train_time_s": prepared.baseline_train_time_s,
                "policy_train_time_s": policy_time,
                "host": platform.node(),
            }
        )
        for attr, key in (("final_return", "rl_return"), ("train_time_s", "rl_train_time_s")):
            if hasattr(policy, attr):
                metrics[key] = getattr(policy, attr)
        save_artifacts(workdir, space, prepared, policy, test_exits, test_preds)
        metrics["wall_time_s"] = time.perf_counter() - start
        return metrics
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()


def save_artifacts(
    workdir: Path,
    space: SearchSpace,
    prepared: PreparedCandidate,
    policy: ExitPolicy,
    test_exits: np.ndarray,
    test_predictions: np.ndarray,
) -> None:
    """Write what export and the report need: model weights + spec, policy, per-sample test exits."""
    from ddecs_search.training import save_atomic

    save_atomic(prepared.model.state_dict(), workdir / "model.pt")
    spec = {
        "candidate": to_dict(prepared.candidate),
        "num_classes": prepared.model.backbone.num_classes,
        "input_shape": list(prepared.model.backbone.input_shape),
        "class_names": list(getattr(prepared.splits, "class_names", []) or []),
        "data": to_dict(space.dataset),
        "policy_kind": policy.kind,
    }
    write_text_atomic(json.dumps(spec, indent=2), workdir / "spec.json")
    if policy.deployable:
        policy.save(workdir / "policy.json")
    fd, tmp = tempfile.mkstemp(dir=workdir, suffix=".npz")
    os.close(fd)
    np.savez(
        tmp,
        exit_indices=test_exits,
        labels=prepared.test_table.labels,
        predictions=prepared.test_table.predictions,
        table_exits=policy.decide_table(prepared.test_table),
    )
    os.replace(tmp, workdir / "test_exits.npz")
    (workdir / "branches_checkpoint.pt").unlink(missing_ok=True)
