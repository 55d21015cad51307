"""One candidate end to end — the body of every search trial.

data → baseline (cached) → multi-exit model → branch training → exit tables (val, test) → cost tables
(MACs, measured latency) → exit policy fitted on the *fit* part of validation → chosen-on metrics on the
disjoint *selection* part → scored on test → real early-exit inference timed against the static
network in the same run → energy where a meter exists → one flat metrics dict.

Every key it returns is described in :mod:`ddecs_search.metrics` (what it is computed on, its unit);
no key is rewritten after it is produced.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddecs_search._threads import torch_threads
from ddecs_search.config import Candidate, SearchSpace, to_dict
from ddecs_search.models import Backbone, MultiExitNet, backbone_info, weights_digest
from ddecs_search.policies import (
    ExitCosts,
    ExitPolicy,
    ExitTable,
    OraclePolicy,
    create_policy,
    score_decisions,
    selection_split,
)
from ddecs_search.training import (
    BatchCallback,
    EpochCallback,
    PartialEpochs,
    accuracy,
    static_reference,
    train_baseline,
    train_branches,
)

#: ``(trained model, feature spec) -> its validation ExitTable or None`` (see prepare_candidate)
ValTableLookup = Callable[[MultiExitNet, Any], "ExitTable | None"]


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
    fit_table: ExitTable  # the part of validation the exit policy is fitted on
    select_table: ExitTable  # the disjoint part every choice is made on
    baseline_val_accuracy: float  # the static network on the selection part
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
        torch.set_num_threads(max(1, round(space.resources.cpu)))


@contextlib.contextmanager
def measurement_threads(space: SearchSpace, device: torch.device) -> Iterator[None]:
    """Use ``measurement.threads`` intra-op threads while timing on a CPU, then restore."""
    if device.type != "cpu":
        yield
        return
    with torch_threads(space.measurement.threads):
        yield


def prepare_candidate(
    space: SearchSpace,
    candidate: Candidate,
    *,
    workdir: Path,
    baseline_dir: Path | None = None,
    quiet: bool = False,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
    latency_fn: Callable[[MultiExitNet, torch.device], ExitCosts] | None = None,
    known_val_table: ValTableLookup | None = None,
    trained_state: Mapping[str, torch.Tensor] | None = None,
    partial: PartialEpochs | None = None,
) -> PreparedCandidate:
    """Train ``candidate`` (baseline from cache) and compute its exit and cost tables.

    ``on_batch`` runs after every branch-training step and before every batch of the prediction passes
    (exit tables, static predictions): a search passes its pause point there, so that a neighbour's
    latency measurement is not slowed by this trial's work (search/_latency_broker.py).

    ``known_val_table(model, feature_spec)``: the validation exit table of exactly these trained weights
    if one was already computed (the search's final rung point computes it from the last epoch's
    checkpoint, with the same loader), else None; the pass over validation is then not repeated.

    ``trained_state``: the state dict of this candidate's network as another evaluation trained it (same
    :func:`~ddecs_search.experiment.network_key`: it differed only in the exit policy or its λ). The
    weights are loaded instead of trained (``train_time_s`` 0, no ``on_epoch``): training is seeded by the
    network's configuration, so it would give the same weights again.

    ``partial``: points inside training epochs where a callback sees the weights (a search's sub-epoch
    rungs, :class:`~ddecs_search.training.PartialEpochs`); not called when nothing is trained.
    """
    from ddecs_search.data import load_splits, make_loader
    from ddecs_search.profiling import mac_costs, resolve_device
    from ddecs_search.runtime import inference_backend

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

    def eval_loader(ds):  # prediction passes pause too: they are the CPU work beside a neighbour's timing
        loader = make_loader(
            ds,
            batch_size=512,
            shuffle=False,
            seed=0,
            num_workers=space.dataset.num_workers,
            device=device,
        )
        return pausing(loader, on_batch)

    # the static network with the candidate's total training: the baseline (frozen) or the baseline
    # continued for the branch epochs with the candidate's recipe (joint), shared by all trials
    static = static_reference(
        base, candidate.training, splits, device=device, num_workers=space.dataset.num_workers, quiet=quiet
    )
    torch.manual_seed(candidate.seed)
    model = MultiExitNet(copy.deepcopy(base.backbone), candidate.exit_points, candidate.branches).to(device)
    if trained_state is not None:
        model.load_state_dict(trained_state)  # (strict: a state of another network raises)
        info_train = {"train_time_s": 0.0}
    else:
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
            on_batch=on_batch,
            partial=partial,
        )
    model.eval()
    spec = create_policy(candidate.policy).feature_spec  # the rich observation needs more columns
    val_table = known_val_table(model, spec) if known_val_table is not None else None
    if val_table is None:
        val_table = ExitTable.from_model(model, eval_loader(splits.val), device, spec)
    test_table = ExitTable.from_model(model, eval_loader(splits.test), device, spec)
    data = space.dataset
    fit_idx, select_idx = selection_split(val_table.num_samples, data.selection_fraction, data.split_seed)
    baseline_acc, static_val = _static_outputs(static.backbone, space, splits, device, eval_loader)
    baseline_val_acc = float((static_val[select_idx] == val_table.labels[select_idx]).mean())
    m = space.measurement
    with measurement_threads(space, device):
        if latency_fn is not None:
            latency = latency_fn(model, device)
        else:  # in the measurement runtime (see ddecs_search.runtime)
            backend = inference_backend(m, model, None, device)
            latency = backend.latency_costs(warmup=m.warmup, repeats=m.repeats)
    return PreparedCandidate(
        candidate,
        model,
        static.backbone.eval(),
        baseline_acc,
        val_table,
        val_table.subset(fit_idx),
        val_table.subset(select_idx),
        baseline_val_acc,
        test_table,
        latency,
        mac_costs(model),
        device,
        splits,
        info_train["train_time_s"],
        base.train_time_s,
    )


#: (static weights digest, dataset, device) -> (test accuracy, validation predictions), newest last
_STATIC_OUTPUTS: collections.OrderedDict[tuple[str, str, str], tuple[float, np.ndarray]] = (
    collections.OrderedDict()
)
_STATIC_OUTPUTS_KEPT = 8  # a space has a few static networks: the baseline, one per joint epoch count


def _static_outputs(
    static: Backbone,
    space: SearchSpace,
    splits: Any,
    device: torch.device,
    eval_loader: Callable[[Any], Iterable[Any]],
) -> tuple[float, np.ndarray]:
    """The static network's test accuracy and validation predictions, computed once per worker process.

    Why: every trial compares with one of a few static networks (the baseline; the baseline trained as
    long as a joint candidate), and a pass over test and validation with one is as long as a frozen
    candidate's training epoch on a CPU: recomputing it cost every trial seconds for the same numbers.
    Reused workers keep them, keyed by the exact weights (digest), the dataset's configuration (which
    samples the splits hold) and the device; anything else is computed afresh. Called after training, so
    a trial stopped at a rung never pays for it. The arrays handed out are read-only.
    """
    static.eval()  # scored as deployed (batch-norm statistics frozen), whatever mode it arrived in
    key = (weights_digest(static), json.dumps(to_dict(space.dataset), sort_keys=True), str(device))
    if key in _STATIC_OUTPUTS:
        _STATIC_OUTPUTS.move_to_end(key)
        return _STATIC_OUTPUTS[key]
    test_accuracy = accuracy(static, eval_loader(splits.test), device)
    val_predictions = _predictions(static, eval_loader(splits.val), device)  # (N_val,)
    val_predictions.setflags(write=False)
    _STATIC_OUTPUTS[key] = (test_accuracy, val_predictions)
    while len(_STATIC_OUTPUTS) > _STATIC_OUTPUTS_KEPT:
        _STATIC_OUTPUTS.popitem(last=False)
    return test_accuracy, val_predictions


def pausing(batches: Iterable[Any], pause: BatchCallback | None) -> Iterator[Any]:
    """``batches`` with the search's pause point before each one (a no-op without a search).

    Every prediction pass a trial makes beside a neighbour goes through it (exit tables, static
    predictions, the early-stopping rung points): otherwise that pass runs while the neighbour times.
    """
    for step, batch in enumerate(batches):
        if pause is not None:
            pause(-1, step, float("nan"))  # epoch -1: not a training step
        yield batch


@torch.no_grad()
def _predictions(model: torch.nn.Module, loader: Any, device: torch.device) -> np.ndarray:
    """``(N,)`` top-1 predictions of a plain classifier over ``loader``."""
    model.eval()
    return torch.cat([model(x.to(device)).argmax(dim=1).cpu() for x, _ in loader]).numpy()


def fit_policy(prepared: PreparedCandidate) -> tuple[ExitPolicy, float]:
    """Create the candidate's policy and fit it on the *fit* part of validation; returns (policy, seconds).

    The policy's parameters never see the selection part, so the metrics a search chooses with are not
    the policy's own training score; iterative learners (RL) pick their stopping iteration on it, as a
    search picks λ on it (a choice, not a fit).
    """
    cfg = prepared.candidate.policy
    cfg = (
        dataclasses.replace(cfg, options={"seed": prepared.candidate.seed, **cfg.options})
        if cfg.kind in ("ppo", "dqn", "qtable")
        else cfg
    )
    costs = prepared.latency if cfg.cost == "latency" else prepared.macs
    policy = create_policy(cfg)
    start = time.perf_counter()
    policy.fit(prepared.fit_table, costs.normalised_path(), cfg.cost_weight, select=prepared.select_table)
    return policy, time.perf_counter() - start


def _stack_inputs(dataset: Any, n: int) -> torch.Tensor:
    n = min(n, len(dataset))
    return torch.stack([dataset[i][0] for i in range(n)])


def _energy(
    space: SearchSpace, prepared: PreparedCandidate, backend: Any, batch: torch.Tensor, leased: bool
) -> dict:
    """Energy per sample of early-exit and static inference over the same samples, or None with the reason.

    ``leased``: the caller holds the search's measurement lease while the meter reads (no other
    measurement of the search runs meanwhile); without it, an in-trial value says it is contended.
    """
    from ddecs_search.profiling import create_energy_meter, energy_per_sample

    m = space.measurement
    meter = create_energy_meter(m.energy, prepared.device)
    available = meter.available  # (a closed meter reports unavailable)
    static_fn, early_fn = backend.energy_fns()  # the measurement runtime's static and early-exit calls
    try:
        kwargs = {"min_seconds": m.energy_min_seconds, "warmup": min(m.warmup, 2)}
        static = energy_per_sample(meter, static_fn, batch, prepared.device, **kwargs)
        dynamic = energy_per_sample(meter, early_fn, batch, prepared.device, **kwargs)
    finally:
        meter.close()
    source = dynamic.source
    if available and dynamic.energy_mj is not None:
        if leased:
            source += " (measurement lease held: no other measurement meanwhile, neighbours' training paused)"
        elif os.environ.get("DDECS_IN_TRIAL"):
            source += " (contended: measured in-trial while other trials may run on the device)"
    return {
        "energy_mj": dynamic.energy_mj,
        "baseline_energy_mj": static.energy_mj,
        "energy_source": source,
    }


@dataclass
class CandidateMeasurement:
    """What :func:`measure_candidate` returns: the flat metrics and the per-sample arrays behind them.

    Attributes:
        metrics: the keys of :mod:`ddecs_search.metrics` (JSON-ready values).
        test_exits: ``(N_test,)`` exit index of every test sample in real batched inference.
        test_predictions: ``(N_test,)`` predicted class of every test sample in real inference.
        table_exits: ``(N_test,)`` exit the policy chooses on the cached test table (the simulation).
    """

    metrics: dict[str, Any]
    test_exits: np.ndarray
    test_predictions: np.ndarray
    table_exits: np.ndarray


def with_decisions(costs: ExitCosts, decision_ms: np.ndarray) -> ExitCosts:
    """The latency table with the measured decision + host-sync time added to every early branch."""
    return ExitCosts(
        costs.stage,
        costs.branch + decision_ms,
        costs.static,
        costs.unit,
        f"{costs.source} + decisions measured in-process",
    )


def measure_candidate(
    space: SearchSpace,
    prepared: PreparedCandidate,
    policy: ExitPolicy,
    *,
    lease: Any = None,
    on_batch: BatchCallback | None = None,
) -> CandidateMeasurement:
    """Score ``policy`` (selection part of validation, test) and time real early-exit inference.

    Choosing metrics (``val_*``, ``expected_*``, ``macs``) come from the selection part of validation;
    test metrics only score; ``latency_ms``/``speedup`` are end-to-end measurements of real inference
    against the static network in the same run (see ``latency_source``).

    ``lease``: a context-manager factory (a search's measurement lease) held around every timing — the
    decision costs that enter ``expected_latency_ms``, the end-to-end comparison, throughput and energy —
    so no neighbour measures or trains meanwhile; the passes that only predict run outside it, pausing
    at ``on_batch`` while a neighbour holds the lease.
    """
    from ddecs_search.data import make_loader
    from ddecs_search.profiling import device_name, latency_source
    from ddecs_search.runtime import inference_backend

    m = space.measurement
    device = prepared.device
    samples = _stack_inputs(prepared.splits.test, m.latency_samples)
    backend = inference_backend(m, prepared.model, policy, device)  # measurement.runtime
    hold = lease if lease is not None else contextlib.nullcontext
    with hold():
        decisions = backend.decision_costs(samples[:1], warmup=m.warmup, repeats=m.repeats)
    latency = with_decisions(prepared.latency, decisions)
    lat_path, mac_path = latency.path(), prepared.macs.path()
    norm_path = prepared.latency.normalised_path()

    # choosing metrics: the selection part of validation (never seen by the policy's fit)
    select = prepared.select_table
    select_exits = policy.decide_table(select)
    val = score_decisions(select, select_exits, norm_path)
    expected_ms = float(lat_path[select_exits].mean())

    # reported metrics: test
    test = prepared.test_table
    exits = policy.decide_table(test)
    stats = score_decisions(test, exits, norm_path)
    oracle_exits = OraclePolicy().decide_table(test)
    oracle = score_decisions(test, oracle_exits, norm_path)

    # Real batched early-exit inference over the whole test set: the reported accuracy.
    loader = make_loader(
        prepared.splits.test,
        batch_size=m.batch_size,
        shuffle=False,
        seed=0,
        num_workers=space.dataset.num_workers,
        device=device,
    )
    # in the runtime: with onnxruntime, `inference_table_agreement` is its agreement with the torch path
    outs = [backend.predict(x) for x, _ in pausing(loader, on_batch)]
    preds_np, real_exits_np = np.concatenate([p for p, _ in outs]), np.concatenate([e for _, e in outs])
    real_acc = float((preds_np == test.labels).mean())
    table_preds = test.predictions[np.arange(test.num_samples), exits]
    agreement = float(((preds_np == table_preds) & (real_exits_np == exits)).mean())

    tput_batch = _stack_inputs(prepared.splits.test, 4 * m.batch_size)
    energy_batch = _stack_inputs(prepared.splits.test, m.batch_size)
    with hold():
        timing = backend.compare(samples, warmup=m.warmup)
        tput = backend.throughput(tput_batch, batch_size=m.batch_size)
        energy = _energy(space, prepared, backend, energy_batch, leased=lease is not None)
    batch1_agree = float((np.asarray(timing["exit_indices"]) == exits[: len(samples)]).mean())
    static_lat, ee_lat = timing["static"], timing["early_exit"]
    dev = device_name(device)
    in_trial = bool(os.environ.get("DDECS_IN_TRIAL"))
    if not in_trial:
        where = "isolated"
    elif lease is not None:
        where = "in-trial under the measurement lease (neighbours' training paused, their other work not)"
    else:
        where = "in-trial (other trials may share the machine)"
    metrics = {
        # chosen on: selection part of validation, and cost tables weighted by its exits
        "val_accuracy": val.accuracy,
        "baseline_val_accuracy": prepared.baseline_val_accuracy,
        "val_accuracy_drop": prepared.baseline_val_accuracy - val.accuracy,
        # this network with its exits switched off: a static network of the same budget (static_contender)
        "backbone_val_accuracy": float(select.correct[:, -1].mean()),
        "expected_latency_ms": expected_ms,
        "baseline_expected_latency_ms": float(latency.static),
        "expected_speedup": float(latency.static / expected_ms),
        "expected_latency_source": latency.source,
        "expected_cost": val.cost,
        "macs": float(mac_path[select_exits].mean()) * 1e6,
        "baseline_macs": prepared.macs.static * 1e6,
        # measured end to end: real inference, static network in the same run
        "latency_ms": ee_lat.mean_ms,
        "latency_p95_ms": ee_lat.p95_ms,
        "baseline_latency_ms": static_lat.mean_ms,
        "baseline_latency_p95_ms": static_lat.p95_ms,
        "speedup": timing["speedup"],
        "batched_throughput_speedup": tput["throughput_speedup"],
        "latency_source": latency_source(
            backend.runtime_name,
            dev,
            m.threads if device.type == "cpu" else None,
            f"end-to-end batch 1, {where}",
        ),
        "runtime": backend.runtime,
        **energy,
        # reported: test split (never used to choose)
        "accuracy": real_acc,
        "baseline_accuracy": prepared.baseline_accuracy,
        "accuracy_drop": prepared.baseline_accuracy - real_acc,
        "backbone_accuracy": float(test.correct[:, -1].mean()),
        "exit_fractions": list(stats.exit_fractions),
        "exit_accuracies": list(stats.exit_accuracies),
        "table_accuracy": stats.accuracy,
        "oracle_accuracy": oracle.accuracy,
        "oracle_expected_latency_ms": float(lat_path[oracle_exits].mean()),
        "oracle_macs": float(mac_path[oracle_exits].mean()) * 1e6,
        "oracle_exit_fractions": list(oracle.exit_fractions),
        "inference_table_agreement": agreement,
        "batch1_table_agreement": batch1_agree,
        "device": dev,
    }
    return CandidateMeasurement(metrics, real_exits_np, preds_np, exits)


def evaluate_candidate(
    space: SearchSpace,
    candidate: Candidate,
    *,
    workdir: Path | None = None,
    baseline_dir: Path | None = None,
    quiet: bool = False,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
    latency_fn: Callable[[MultiExitNet, torch.device], ExitCosts] | None = None,
    lease: Any = None,
    known_val_table: ValTableLookup | None = None,
    trained_state: Mapping[str, torch.Tensor] | None = None,
    partial: PartialEpochs | None = None,
) -> dict[str, Any]:
    """Train, fit the policy, measure, and return the flat metrics dict (see :mod:`ddecs_search.metrics`).

    ``lease``: a context-manager factory held around every timing (the search's measurement lease).
    ``on_batch``: called after every branch-training step (a search's pause point, see prepare_candidate).
    ``known_val_table``: a validation exit table already computed for the trained weights (see
    prepare_candidate). ``trained_state``: the network's weights as trained before (see prepare_candidate).
    ``partial``: sub-epoch points where a callback sees the weights (see prepare_candidate).

    Artefacts (model state dict + spec, policy, test exits) are written to ``workdir`` for export.
    """
    from ddecs_search.config import describe_candidate, exit_names

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
            on_batch=on_batch,
            latency_fn=latency_fn,
            known_val_table=known_val_table,
            trained_state=trained_state,
            partial=partial,
        )
        policy, policy_time = fit_policy(prepared)
        with measurement_threads(space, prepared.device):
            measured = measure_candidate(space, prepared, policy, lease=lease, on_batch=on_batch)
        names = backbone_info(candidate.backbone).exit_point_names
        metrics = {
            **measured.metrics,
            "backbone": candidate.backbone,
            "candidate": to_dict(candidate),
            "exits": exit_names(candidate, names),
            "summary": describe_candidate(candidate, names),
            "policy_kind": candidate.policy.kind,
            "cost_weight": candidate.policy.cost_weight,
            "num_exits": candidate.num_exits,
            "exit_points": list(candidate.exit_points),
            "train_time_s": prepared.train_time_s,
            "baseline_train_time_s": prepared.baseline_train_time_s,
            "policy_train_time_s": policy_time,
            "host": platform.node(),
        }
        for attr, key in (("final_return", "rl_return"), ("train_time_s", "rl_train_time_s")):
            if hasattr(policy, attr):
                metrics[key] = getattr(policy, attr)
        save_artifacts(workdir, space, prepared, policy, measured)
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
    measured: CandidateMeasurement,
) -> None:
    """Write what verify, export and the report need (see :mod:`ddecs_search.artifacts`)."""
    from ddecs_search.artifacts import write_trial_files

    spec = {
        "candidate": to_dict(prepared.candidate),
        "num_classes": prepared.model.backbone.num_classes,
        "input_shape": list(prepared.model.backbone.input_shape),
        "class_names": list(getattr(prepared.splits, "class_names", []) or []),
        "data": to_dict(space.dataset),
        "policy_kind": policy.kind,
    }
    write_trial_files(
        workdir,
        model=prepared.model,
        spec=spec,
        policy=policy,
        exit_indices=measured.test_exits,
        labels=prepared.test_table.labels,
        predictions=prepared.test_table.predictions,
        table_exits=measured.table_exits,
    )
    (workdir / "branches_checkpoint.pt").unlink(missing_ok=True)
