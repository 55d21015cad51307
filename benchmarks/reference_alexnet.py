"""The reference 2-exit AlexNet vs the static AlexNet vs the best configuration ddecs-search finds.

Rows, all measured in one process on one device with one method (``measure_candidate``, then
``--rounds`` interleaved batch-1 timing rounds: median and min–max spread):

- ``static``: AlexNet with the reference's recipe (Adam 1e-3, batch 32, label smoothing 0.1), trained until
  its accuracy on the fit part of validation stopped improving (``patience`` epochs; the preset's cap),
  best epoch kept: the shared baseline every early-exit network starts from, and the static network
  ``frozen`` networks are compared with;
- ``static+<E>ep``: that baseline trained ``E`` = branch epochs more with the same recipe and no branches
  (``ddecs_search.training.static_reference``): the static network with the same total epochs as the
  ``joint`` networks (the reference's), which are compared with it;
- ``reference/<policy>``: the reference's early-exit network — exits after conv1 and conv4
  (``REFERENCE_EXIT_POINTS``), ``reference_branch_spec`` branches, joint training with loss weights
  [0.15, 0.15, 0.70], Adam 1e-3, batch 32, label smoothing 0.1 — with three exit policies fitted on the
  validation split: ``qtable`` (the reference's tabular Q-learning, reward corrected), ``ppo`` (RLlib) and
  ``threshold`` (tuned confidence thresholds), all for the space's default cost weight;
- ``found``: a real search (``ddecs_search.search.run_search``, Ray Tune + Optuna NSGA-II) over an AlexNet
  space derived from ``search_spaces/cifar10_alexnet.yaml`` with the same data, the same shared static
  baseline and the same branch-training budget (epochs, optimizer); from its trials the fastest one whose
  accuracy on the *selection part* of validation (``ExitTable.split_selection``; policies are fitted on
  the other part) is at least the reference's is re-measured here (else the knee of the front), from the
  trial's saved model and policy. Test accuracy is shown beside it, never used to choose.

Each early-exit row also gets the oracle bound (``oracle_*``): the accuracy, expected latency (lookup
table) and MACs of leaving every test sample at its earliest correct exit of *that* network — the best
any exit policy could do on those exits.

    python benchmarks/reference_alexnet.py [--quick] [--json] [--device auto|cpu|cuda]
        [--dataset fashion-mnist|cifar10|...] [--trials N] [--storage DIR] [--out DIR] [--rounds N]

Sizes per mode are in ``PRESETS`` (default <= 30 min, ``--quick`` <= 5 min on a 2-core CPU; both use
subsets of the data, which the output says). Writes ``benchmarks/results/reference_alexnet/<mode>/``:
``rows.csv``, ``search_trials.csv``, ``result.json`` and ``reference_alexnet.html`` (plotly,
self-contained). Trained models and the search experiment live in a temporary folder unless
``--storage`` keeps the experiment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, emit_json, parser, print_table

ROOT = Path(__file__).resolve().parent.parent
SPACE_FILE = ROOT / "search_spaces" / "cifar10_alexnet.yaml"
RESULTS = Path(__file__).resolve().parent / "results" / "reference_alexnet"

# The reference's published figures (CIFAR-10, as cited by the authors' follow-up), for context only.
PUBLISHED = (
    "CIFAR-10 AlexNet 85.29 % -> 84.42 % at 1.60x (ResNet-18 1.93x, VGG-16 2.00x; BranchyNet's AlexNet "
    "1.5x CPU / 2.4x GPU)"
)


@dataclasses.dataclass(frozen=True)
class Preset:
    """Data sizes, training budget, search size and measurement effort of one mode."""

    train: int | None
    val: int | None
    test: int | None
    baseline_epochs: int
    branch_epochs: int
    trials: int
    concurrent: int
    latency_samples: int
    batch_size: int
    warmup: int
    repeats: int
    ppo: bool
    patience: int = 2  # baseline early stopping; ``baseline_epochs`` is the cap
    rounds: int = 5  # interleaved batch-1 timing rounds per row (median, min-max)


PRESETS = {
    # test-suite smoke run: checks the plumbing only, figures mean nothing
    "smoke": Preset(192, 96, 96, 2, 1, 1, 1, 8, 16, 1, 2, False, patience=1, rounds=5),
    # <= 5 min on an idle 2-core CPU
    "quick": Preset(800, 400, 400, 12, 1, 2, 2, 60, 64, 5, 10, False),
    # <= 30 min on an idle 2-core CPU
    "default": Preset(3000, 1000, 1000, 25, 2, 6, 2, 200, 128, 10, 30, True),
}
FULL_SIZES = {"fashion-mnist": (54000, 6000, 10000), "cifar10": (45000, 5000, 10000)}

PITFALLS = """how this benchmark avoids the reference's pitfalls:
  1. one timing method: static and early-exit inference are timed by the same function (host clock,
     batch 1, device synchronised on both sides), on the same test samples, interleaved round by round
     with alternating order, in this one process (no row reuses a number from another run);
  2. the early-exit time is real MultiExitNet.early_exit: branch compute, the policy's decision and the
     removal of exiting samples from the batch are inside the timed region; batched throughput runs on
     batches that shrink as samples leave; speedup = static mean / early-exit mean, both per sample at
     batch 1 (never per-batch static time / per-sample early-exit time);
  3. warm-up calls precede every timing (latency table, batch-1 comparison, throughput, energy);
  4. nothing is selected or tuned on the test split: exit policies (thresholds, Q-table, PPO) are fitted
     on the fit part of validation, the static network early-stops on that part too, the search optimises
     accuracy on the disjoint selection part, and the found configuration is picked on the selection part
     (its latency criterion reads no labels); test labels only score the final rows;
  6. the static network is trained until its validation accuracy stops improving (no under-trained
     strawman), and joint networks are compared with it trained for their same total epochs;
  5. energy comes from a hardware energy counter over windows of >= energy_min_seconds aligned to counter
     updates, with idle power measured and subtracted (NVML total-energy / RAPL) — or is reported as
     "unavailable: <reason>", never from 5 ms power samples against NVML's >= 20 ms update period."""


# --------------------------------------------------------------------------------------------- spaces
def build_spaces(args: Any, preset: Preset) -> tuple[Any, Any]:
    """``(bench_space, search_space)`` derived from ``cifar10_alexnet.yaml`` for this run.

    Both share dataset and baseline (hence one cached static AlexNet); ``search_space`` differs from
    the YAML where a 30-minute CPU budget and test-free selection require it (see the README).
    """
    from ddecs_search.config import to_dict
    from ddecs_search.spaces import load_space, parse_space

    data = to_dict(load_space(SPACE_FILE))
    ref_training = data["default_candidate"]["training"]
    data["dataset"].update(
        name=args.dataset,
        train_subset=preset.train,
        val_subset=preset.val,
        test_subset=preset.test,
        num_workers=0,
    )
    # the static network gets the reference's recipe and trains until validation stops improving
    data["backbone"]["baseline"] = {
        "epochs": preset.baseline_epochs,
        "patience": preset.patience,
        "lr": ref_training["lr"],
        "batch_size": ref_training["batch_size"],
        "optimizer": ref_training["optimizer"],
        "weight_decay": 0.0,
        "label_smoothing": ref_training["label_smoothing"],
    }
    data["default_candidate"]["training"]["epochs"] = preset.branch_epochs
    data["measurement"].update(
        device=args.device,
        latency_samples=preset.latency_samples,
        warmup=preset.warmup,
        repeats=preset.repeats,
        batch_size=preset.batch_size,
    )
    bench = parse_space(data, str(SPACE_FILE))

    search = json.loads(json.dumps(data))
    search["name"] = "reference_alexnet_search"
    search["exits"]["count"] = [1, 2]  # the reference has 2; fewer exits keep a tiny search meaningful
    search["training"] = {
        "mode": ["frozen", "joint"],
        "epochs": [preset.branch_epochs],
        "lr": ref_training["lr"],
        "batch_size": ref_training["batch_size"],
        "optimizer": ref_training["optimizer"],
        "weight_decay": 0.0,
        "loss_weights": list(ref_training["loss_weights"]),
        "label_smoothing": ref_training["label_smoothing"],
    }
    search["policy"]["kind"] = ["threshold", "qtable"]
    # validation accuracy, never test accuracy, steers the search (energy falls back to MACs off-GPU)
    search["objectives"] = [
        {"name": "val_accuracy", "mode": "max"},
        {"name": "expected_latency_ms", "mode": "min"},
        {"name": "energy_mj", "mode": "min"},
    ]
    search["constraints"] = []  # the yaml's constraint is on test accuracy_drop
    search["search"].update(
        num_samples=args.trials or preset.trials,
        max_concurrent=preset.concurrent,
        verify=False,
        population_size=None,
    )
    on_gpu = args.device != "cpu" and _cuda_available()
    search["resources"] = {"cpu": 1, "gpu": round(1.0 / preset.concurrent, 3) if on_gpu else 0}
    # in-trial end-to-end timing is informational only (search latency comes from the isolated table)
    search["measurement"].update(latency_samples=min(preset.latency_samples, 50))
    return bench, parse_space(search, "reference_alexnet search space")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def reference_candidate(space: Any) -> Any:
    """The reference: exits after conv1 and conv4 with the reference's branches and training."""
    from ddecs_search.config import to_dict
    from ddecs_search.models.alexnet import REFERENCE_EXIT_POINTS, reference_branch_spec
    from ddecs_search.spaces import candidate_from_dict

    branches = [to_dict(reference_branch_spec(c)) for c in (64, 256)]
    cand = candidate_from_dict(space, {"exit_points": list(REFERENCE_EXIT_POINTS), "branches": branches})
    assert cand.training.loss_weights == (0.15, 0.15, 0.70) and cand.training.optimizer == "adam"
    return cand


def with_policy(prepared: Any, kind: str) -> Any:
    """``prepared`` whose candidate carries policy ``kind`` (same cost weight and cost table)."""
    pol = dataclasses.replace(prepared.candidate.policy, kind=kind, options={})
    return dataclasses.replace(prepared, candidate=dataclasses.replace(prepared.candidate, policy=pol))


@dataclasses.dataclass(frozen=True)
class Static:
    """One static network: its weights, test and selection-part validation accuracy, and epochs."""

    name: str
    backbone: Any
    accuracy: float
    val_accuracy: float
    epochs: int
    epochs_trained: int
    train_time_s: float


def static_networks(bench: Any, ref: Any, baseline_dir: Path) -> dict[str, Static]:
    """``{"frozen": the early-stopped baseline, "joint": it continued for the branch epochs}``.

    Both come from the package's own functions with the cache this run filled (``train_baseline`` with
    early stopping, ``static_reference`` with the reference's recipe), so they are the very networks
    ``prepare_candidate`` compared the reference with.
    """
    from ddecs_search.data import make_loader, validation_parts
    from ddecs_search.training import accuracy, static_reference, train_baseline

    ds = bench.dataset
    base = train_baseline(
        bench.backbone.name,
        ref.splits,
        ds,
        bench.backbone.baseline,
        device=ref.device,
        cache_dir=baseline_dir,
        seed=0,
        quiet=True,
    )
    joint = static_reference(base, ref.candidate.training, ref.splits, device=ref.device, quiet=True)
    _, select = validation_parts(ref.splits, ds.selection_fraction, ds.split_seed)

    def acc(net: Any, split: Any) -> float:
        loader = make_loader(split, batch_size=512, shuffle=False, seed=0, device=ref.device)
        return float(accuracy(net.eval(), loader, ref.device))

    b, j = base.backbone, joint.backbone
    return {
        "frozen": Static(
            "static",
            b,
            acc(b, ref.splits.test),
            acc(b, select),
            base.epochs,
            base.epochs_trained,
            base.train_time_s,
        ),
        "joint": Static(
            f"static+{joint.continued_epochs}ep",
            j,
            acc(j, ref.splits.test),
            acc(j, select),
            joint.epochs,
            joint.epochs,
            joint.train_time_s,
        ),
    }


# --------------------------------------------------------------------------------------------- search
def seed_baseline(exp_root: str, baseline_dir: Path, device: Any) -> None:
    """Give the search the baseline this run trained (the start point of the reference), so the search
    does not train another one and every early-exit network starts from the same weights."""
    from ddecs_search.profiling import create_energy_meter, device_name
    from ddecs_search.search import BaselineBlob, Experiment

    (folder,) = [p for p in baseline_dir.iterdir() if (p / "backbone.pt").is_file()]
    meter = create_energy_meter("auto", device)
    probe = {
        "device": device_name(device),
        "energy_available": bool(meter.available),
        "energy_source": meter.source,
        "node_id": "benchmark-driver",
        "host": os.uname().nodename,
    }
    meter.close()
    blob = BaselineBlob(
        folder.name,
        (folder / "backbone.pt").read_bytes(),
        json.loads((folder / "meta.json").read_text()),
        probe,
    )
    blob.store(Experiment.at(exp_root))


def select_found(exp_root: str, val_floor: float) -> tuple[Any, str, Any]:
    """``(row, how, trials)``: the fastest trial (latency table, no labels) with ``val_accuracy >=
    val_floor``, else the knee of the trials' (val_accuracy, expected_latency_ms) front; ``trials`` is the
    whole trials table. ``val_accuracy`` is the selection part of validation: no test label is read.
    ``found`` is a searched configuration, so the static network (a contender on the search's own front,
    and its own row here) is not a candidate for it."""
    from ddecs_search.analysis import best_for_accuracy_floor, compute_front, knee_point, load_trials

    objectives = [("val_accuracy", "max"), ("expected_latency_ms", "min")]
    trials = load_trials(exp_root)
    result = compute_front(trials, objectives, include_static=False)
    row = best_for_accuracy_floor(
        result.ranked, floor=val_floor, minimize="expected_latency_ms", accuracy="val_accuracy"
    )
    if row is not None:
        return row, f"fastest trial with val_accuracy >= reference's {val_floor:.4f}", trials
    return knee_point(result.front, objectives), "knee of the front (no trial reached the reference)", trials


def prepare_found(
    trial_dir: Path, space: Any, ref: Any, metrics: dict[str, Any], statics: dict[str, Static]
) -> tuple[Any, Any]:
    """The search's trained model and fitted policy, with exit and cost tables computed here like the
    reference's (same splits, same device, same latency-table settings), compared with the static network
    of its own training mode."""
    from ddecs_search.analysis import load_exported
    from ddecs_search.config import Candidate, from_dict
    from ddecs_search.data import make_loader
    from ddecs_search.evaluation import measurement_threads
    from ddecs_search.policies import ExitTable
    from ddecs_search.profiling import mac_costs
    from ddecs_search.runtime import inference_backend

    model, policy, spec = load_exported(trial_dir, device=ref.device)

    def table(ds: Any) -> Any:
        loader = make_loader(ds, batch_size=512, shuffle=False, seed=0, device=ref.device)
        return ExitTable.from_model(model, loader, ref.device)

    m = space.measurement
    with measurement_threads(space, ref.device):
        backend = inference_backend(m, model, None, ref.device)  # the runtime measure_candidate uses
        latency = backend.latency_costs(warmup=m.warmup, repeats=m.repeats)
    cand = from_dict(Candidate, spec["candidate"])
    static = statics[cand.training.mode]
    extra = statics["joint"].epochs - statics["frozen"].epochs
    if cand.training.mode == "joint" and cand.training.epochs != extra:
        raise RuntimeError("the found network's branch epochs differ from the reference's")  # build_spaces
    val = table(ref.splits.val)
    ds = space.dataset
    fit_table, select_table = val.split_selection(ds.selection_fraction, ds.split_seed)
    prepared = dataclasses.replace(
        ref,
        candidate=cand,
        model=model,
        baseline=static.backbone,
        baseline_accuracy=static.accuracy,
        baseline_val_accuracy=static.val_accuracy,
        val_table=val,
        fit_table=fit_table,
        select_table=select_table,
        test_table=table(ref.splits.test),
        latency=latency,
        macs=mac_costs(model),
        train_time_s=_branch_train_time(trial_dir, metrics),
    )
    return prepared, policy


def _branch_train_time(trial_dir: Path, metrics: dict[str, Any]) -> float:
    """The found network's branch training time: its own trial's, or, when that trial loaded the network
    another trial trained (``network_from_trial``: another policy or λ), that trial's; either with the
    epochs it continued from another trial's rung checkpoint (``network_epochs_train_s``)."""
    source = metrics.get("network_from_trial")
    if isinstance(source, str) and source:
        metrics = json.loads((trial_dir.parent / source / "metrics.json").read_text())
    earlier = metrics.get("network_epochs_train_s")
    return float(metrics.get("train_time_s") or 0.0) + (float(earlier) if earlier is not None else 0.0)


# ------------------------------------------------------------------------------------------- measuring
def measure_row(name: str, space: Any, prepared: Any, policy: Any, fit_s: float | None) -> dict[str, Any]:
    from ddecs_search.evaluation import measure_candidate, measurement_threads

    with measurement_threads(space, prepared.device):
        m = measure_candidate(space, prepared, policy).metrics  # val_* on the selection part
    cand = prepared.candidate
    return {
        "row": name,
        **m,
        "policy_kind": policy.kind,
        "cost_weight": cand.policy.cost_weight,
        "exit_points": list(cand.exit_points),
        "training_mode": cand.training.mode,
        "branch_train_time_s": prepared.train_time_s,
        "policy_fit_s": fit_s,
        "mac_speedup": m["baseline_macs"] / m["macs"],
    }


def static_row(rows: list[dict[str, Any]], static: Static, timing: dict[str, Any]) -> dict[str, Any]:
    """A static network: its accuracies and epochs, timed next to every early-exit row in every round."""
    import numpy as np

    static_ms = timing["static_ms"]
    return {
        "row": static.name,
        "accuracy": static.accuracy,
        "val_accuracy": static.val_accuracy,
        "accuracy_drop": 0.0,
        "static_accuracy": static.accuracy,
        "static_epochs": static.epochs,
        "epochs": static.epochs,
        "epochs_trained": static.epochs_trained,
        "static_train_time_s": static.train_time_s,
        "latency_ms": float(np.median(static_ms)),
        "latency_ms_min": float(np.min(static_ms)),
        "latency_ms_max": float(np.max(static_ms)),
        "baseline_latency_ms": float(np.median(static_ms)),
        "speedup": 1.0,
        "speedup_min": 1.0,
        "speedup_max": 1.0,
        "timing_rounds": timing["rounds"],
        "batched_throughput_speedup": 1.0,
        "macs": rows[0]["baseline_macs"],
        "mac_speedup": 1.0,
        "baseline_macs": rows[0]["baseline_macs"],
        "energy_mj": rows[0]["baseline_energy_mj"],
        "energy_source": rows[0]["energy_source"],
        "policy_kind": "static",
        "exit_points": [],
        "device": rows[0]["device"],
    }


def timing_rounds(entries: list[tuple[str, Any, Any, Any]], space: Any, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of the same-run batch-1 comparison for every early-exit row, rows interleaved
    (order reversed every other round), in the measurement runtime ``measure_candidate`` uses
    (``measurement.runtime``). Returns per row the per-round early-exit ms, static ms and speedups,
    ``static_ms`` (every static timing of every row and round) and the runtime ``source``."""
    import torch

    from ddecs_search.evaluation import measurement_threads
    from ddecs_search.runtime import inference_backend

    m = space.measurement
    device = entries[0][1].device
    test = entries[0][1].splits.test
    samples = torch.stack([test[i][0] for i in range(min(m.latency_samples, len(test)))])
    with measurement_threads(space, device):
        backends = {name: inference_backend(m, prepared.model, policy, device)
                    for name, prepared, policy, _ in entries}  # fmt: skip
    out: dict[str, Any] = {name: {"ms": [], "static_ms": [], "speedup": []} for name, *_ in entries}
    for r in range(rounds):
        for name, *_ in entries if r % 2 == 0 else entries[::-1]:
            with measurement_threads(space, device):
                t = backends[name].compare(samples, warmup=m.warmup)
            out[name]["ms"].append(t["early_exit"].mean_ms)
            out[name]["static_ms"].append(t["static"].mean_ms)
            out[name]["speedup"].append(t["speedup"])
    return {"rows": out, "rounds": rounds, "source": next(iter(backends.values())).source,
            "static_ms": [v for row in out.values() for v in row["static_ms"]]}  # fmt: skip


def apply_timing(row: dict[str, Any], timing: dict[str, Any]) -> None:
    """Replace the row's single batch-1 timing with the rounds' median, and add the min-max spread."""
    import numpy as np

    t = timing["rows"][row["row"]]
    row.update(
        latency_ms=float(np.median(t["ms"])),
        latency_ms_min=float(np.min(t["ms"])),
        latency_ms_max=float(np.max(t["ms"])),
        baseline_latency_ms=float(np.median(t["static_ms"])),
        speedup=float(np.median(t["speedup"])),
        speedup_min=float(np.min(t["speedup"])),
        speedup_max=float(np.max(t["speedup"])),
        timing_rounds=timing["rounds"],
    )


def verdict(found: dict[str, Any], other: dict[str, Any]) -> str:
    """One line: does ``found`` beat ``other`` on batch-1 speedup (same-run ratios), MACs and accuracy?"""
    diffs = {
        "speedup": (
            found["speedup"] >= other["speedup"],
            f"{found['speedup']:.2f}x vs {other['speedup']:.2f}x",
        ),
        "MACs": (found["macs"] <= other["macs"], f"{found['macs'] / 1e6:.1f} vs {other['macs'] / 1e6:.1f} M"),
        "test accuracy": (
            found["accuracy"] >= other["accuracy"],
            f"{100 * found['accuracy']:.1f} % vs {100 * other['accuracy']:.1f} %",
        ),
    }
    better = [k for k, (ok, _) in diffs.items() if ok]
    worse = [k for k, (ok, _) in diffs.items() if not ok]
    word = (
        "BEATS it on all three"
        if not worse
        else (f"better on {', '.join(better) or 'nothing'}; worse on {', '.join(worse)}")
    )
    detail = "; ".join(f"{k} {text}" for k, (_, text) in diffs.items())
    return f"found vs {other['row']}: {detail} -> {word}"


# -------------------------------------------------------------------------------------------- output
COLUMNS = [
    "row",
    "accuracy",
    "val_accuracy",
    "static_acc",
    "static_ep",
    "drop_pt",
    "exit_fractions",
    "exit_accuracies",
    "latency_ms",
    "static_ms",
    "speedup",
    "speedup_range",
    "tput_speedup",
    "MMAC",
    "mac_speedup",
    "energy_mj",
]
BOUND_COLUMNS = [
    "row",
    "accuracy",
    "oracle_accuracy",
    "acc_gap_pt",
    "expected_latency_ms",
    "oracle_expected_latency_ms",
    "MMAC",
    "oracle_MMAC",
    "oracle_mac_speedup",
]


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def pct(v: Any) -> Any:
        return None if v is None else [None if x is None else round(100 * x, 1) for x in v]

    out = []
    for r in rows:
        out.append(
            {
                "row": r["row"],
                "accuracy": r["accuracy"],
                "val_accuracy": r.get("val_accuracy"),
                "static_acc": r.get("static_accuracy"),
                "static_ep": r.get("static_epochs"),
                "drop_pt": 100 * r["accuracy_drop"],
                "exit_fractions": pct(r.get("exit_fractions")),
                "exit_accuracies": pct(r.get("exit_accuracies")),
                "latency_ms": r["latency_ms"],
                "static_ms": r["baseline_latency_ms"],
                "speedup": r["speedup"],
                "speedup_range": _range(r),
                "tput_speedup": r["batched_throughput_speedup"],
                "MMAC": r["macs"] / 1e6,
                "mac_speedup": r["mac_speedup"],
                "energy_mj": r.get("energy_mj"),
            }
        )
    return out


def _range(r: dict[str, Any]) -> str | None:
    if "speedup_min" not in r:
        return None
    return f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}"


def bounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per early-exit row: the oracle on the same exits (the most accurate any policy can be there, and
    the cheapest way to be that accurate), and how far the row is from it."""
    out = []
    for r in rows:
        if "oracle_accuracy" not in r:
            continue
        out.append(
            {
                "row": r["row"],
                "accuracy": r["accuracy"],
                "oracle_accuracy": r["oracle_accuracy"],
                "acc_gap_pt": 100 * (r["oracle_accuracy"] - r["accuracy"]),
                "expected_latency_ms": r["expected_latency_ms"],
                "oracle_expected_latency_ms": r["oracle_expected_latency_ms"],
                "MMAC": r["macs"] / 1e6,
                "oracle_MMAC": r["oracle_macs"] / 1e6,
                "oracle_mac_speedup": r["baseline_macs"] / r["oracle_macs"],
            }
        )
    return out


def write_outputs(
    out_dir: Path,
    rows: list[dict[str, Any]],
    trials: Any,
    found_id: str | None,
    val_floor: float,
    result: dict[str, Any],
) -> list[Path]:
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    flat = [{k: _dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()} for r in rows]
    pd.DataFrame(flat).to_csv(out_dir / "rows.csv", index=False)
    paths = [out_dir / "rows.csv"]
    if trials is not None:
        trials.to_csv(out_dir / "search_trials.csv", index=False)
        paths.append(out_dir / "search_trials.csv")
    (out_dir / "result.json").write_text(_dumps(result, indent=2))
    paths.append(out_dir / "result.json")
    html = out_dir / "reference_alexnet.html"
    figure(rows, trials, found_id, val_floor).write_html(html, include_plotlyjs=True)
    return [*paths, html]


def _dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON: numpy scalars as Python numbers, NaN/inf as null, anything else as its text."""
    from ddecs_search.strict_json import json_safe

    return json.dumps(json_safe(obj), default=str, allow_nan=False, **kwargs)


COLORS = {
    "static": "#7f7f7f",
    "reference/qtable": "#1f77b4",
    "reference/ppo": "#9467bd",
    "reference/threshold": "#17becf",
    "found": "#d62728",
}


def figure(rows: list[dict[str, Any]], trials: Any, found_id: str | None, val_floor: float) -> Any:
    """Accuracy vs MACs (with oracle bounds), accuracy vs measured latency, and the search's trials."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            "test accuracy vs MACs/sample (open = oracle bound)",
            "test accuracy vs batch-1 latency (same run)",
            "search trials: val accuracy vs table latency",
        ),
    )
    for r in rows:
        style = {"color": COLORS.get(r["row"], "#2ca02c"), "size": 11}
        common = {
            "legendgroup": r["row"],
            "mode": "markers+text",
            "text": [r["row"]],
            "textposition": "top center",
            "marker": style,
        }
        fig.add_trace(go.Scatter(x=[r["macs"] / 1e6], y=[r["accuracy"]], name=r["row"], **common), 1, 1)
        if "oracle_macs" in r:
            fig.add_trace(
                go.Scatter(
                    x=[r["macs"] / 1e6, r["oracle_macs"] / 1e6],
                    y=[r["accuracy"], r["oracle_accuracy"]],
                    mode="lines+markers",
                    line={"dash": "dot", "color": style["color"]},
                    marker={"symbol": ["circle", "circle-open"], "color": style["color"], "size": 11},
                    name=f"{r['row']} oracle",
                    legendgroup=r["row"],
                    showlegend=False,
                ),
                1,
                1,
            )
        fig.add_trace(
            go.Scatter(x=[r["latency_ms"]], y=[r["accuracy"]], name=r["row"], showlegend=False, **common),
            1,
            2,
        )
    if trials is not None and "val_accuracy" in trials and "latency_ms" in trials:
        done = trials.dropna(subset=["val_accuracy", "latency_ms"])
        fig.add_trace(
            go.Scatter(
                x=done["latency_ms"],
                y=done["val_accuracy"],
                mode="markers",
                text=done["trial_id"],
                name="search trials",
                marker={"color": "#ff7f0e", "size": 9},
            ),
            1,
            3,
        )
        chosen = done[done["trial_id"].astype(str) == str(found_id)]
        fig.add_trace(
            go.Scatter(
                x=chosen["latency_ms"],
                y=chosen["val_accuracy"],
                mode="markers",
                marker={"size": 16, "symbol": "star", "color": COLORS["found"]},
                name="found (selected)",
            ),
            1,
            3,
        )
        fig.add_hline(
            y=val_floor, line_dash="dash", annotation_text="reference/qtable val accuracy", row=1, col=3
        )
    fig.update_xaxes(title_text="MMAC per sample", row=1, col=1)
    fig.update_xaxes(title_text="ms per sample (batch 1)", row=1, col=2)
    fig.update_xaxes(title_text="ms per sample (latency table)", row=1, col=3)
    fig.update_yaxes(title_text="accuracy")
    fig.update_layout(title="reference 2-exit AlexNet vs static vs ddecs-search", height=520, width=1500)
    return fig


JSON_KEYS = (
    "accuracy",
    "val_accuracy",
    "accuracy_drop",
    "static_accuracy",
    "static_epochs",
    "epochs",
    "epochs_trained",
    "latency_ms",
    "latency_ms_min",
    "latency_ms_max",
    "latency_p95_ms",
    "baseline_latency_ms",
    "speedup",
    "speedup_min",
    "speedup_max",
    "timing_rounds",
    "batched_throughput_speedup",
    "energy_mj",
    "energy_source",
    "macs",
    "mac_speedup",
    "exit_points",
    "exit_fractions",
    "exit_accuracies",
    "expected_latency_ms",
    "oracle_accuracy",
    "oracle_expected_latency_ms",
    "oracle_macs",
    "policy_kind",
    "cost_weight",
    "training_mode",
    "policy_fit_s",
    "branch_train_time_s",
)


def json_row(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in JSON_KEYS if k in r}


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (offline default), cifar10, ...")
    p.add_argument("--trials", type=int, default=None, help="search trials (default: 6, --quick: 2)")
    p.add_argument("--storage", default=None, help="keep the search experiment under this folder")
    p.add_argument("--smoke", action="store_true", help="tiny sizes for the tests (figures mean nothing)")
    p.add_argument("--out", default=None, help=f"results folder (default {RESULTS}/<mode>)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved batch-1 timing rounds (default 5)")
    args = p.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "default"
    preset = PRESETS[mode]
    banner("reference_alexnet", mode != "default")
    start = time.perf_counter()
    from ddecs_search.errors import UserError

    try:
        with tempfile.TemporaryDirectory(prefix="ddecs-refbench-") as tmp:
            result = run(args, mode, preset, Path(tmp), start)
    except UserError as exc:  # missing dataset, bad device ...: the message says what to do
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.json:
        emit_json(result)


def run(args: Any, mode: str, preset: Preset, tmp: Path, start: float) -> dict[str, Any]:
    """Train, fit, search, measure and report; returns the ``--json`` object."""
    bench, search_space = build_spaces(args, preset)
    describe(bench, search_space, preset)
    timings: dict[str, float] = {}
    ref, statics = train_reference(bench, preset, tmp, start, timings)

    start_ray()  # every CPU, before an RLlib fit could start a 1-CPU Ray
    entries = fit_reference_policies(ref, preset, start)
    from ddecs_search.policies import score_decisions

    # the reference's accuracy on the selection part of validation: the floor `found` must reach
    ref_val = score_decisions(
        ref.select_table, entries[0][2].decide_table(ref.select_table), ref.latency.normalised_path()
    ).accuracy
    t = time.perf_counter()
    storage = Path(args.storage) if args.storage else tmp / "experiments"
    exp_root = storage / f"reference_alexnet-{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    seed_baseline(str(exp_root), tmp / "baselines", ref.device)
    from ddecs_search.search import run_search

    outcome = run_search(search_space, name=exp_root.name, storage=str(storage), quiet=True, verify=False)
    timings["search"] = time.perf_counter() - t
    for err in outcome.errors:
        print(f"search trial error: {err}")
    row, how, trials = select_found(str(exp_root), ref_val)
    print(
        f"[{_elapsed(start)}] search: {outcome.counts} in {timings['search']:.0f} s; picked "
        f"{None if row is None else row['trial_id']}: {how}"
    )
    import ray

    ray.shutdown()  # nothing else runs while we measure
    found_id = None if row is None else str(row["trial_id"])
    if found_id is not None:
        trial_dir = exp_root / "trials" / found_id
        metrics = json.loads((trial_dir / "metrics.json").read_text())
        found, found_policy = prepare_found(trial_dir, bench, ref, metrics, statics)
        entries.append(("found", found, found_policy, metrics.get("policy_train_time_s")))

    t = time.perf_counter()
    rows = []
    for name, prepared, policy, fit_s in entries:
        rows.append(measure_row(name, bench, prepared, policy, fit_s))
        trained = prepared.candidate.training.mode  # not `mode`: that names the run (quick, default)
        rows[-1].update(static_accuracy=statics[trained].accuracy, static_epochs=statics[trained].epochs)
        print(f"[{_elapsed(start)}] measured {name}")
    timing = timing_rounds(entries, bench, args.rounds or preset.rounds)
    for r in rows:
        apply_timing(r, timing)
    print(f"[{_elapsed(start)}] timed every row in {timing['rounds']} rounds ({timing['source']})")
    rows[:0] = [static_row(rows, statics["frozen"], timing), static_row(rows, statics["joint"], timing)]
    timings["measurement"] = time.perf_counter() - t
    if row is not None:
        config = {str(k): _plain(v) for k, v in row.items() if str(k).startswith("config/") and not _nan(v)}
        rows[-1].update(trial_id=found_id, selection=how, config=json.loads(_dumps(config)))

    report(rows, bench, ref.device)
    wall = time.perf_counter() - start
    print(
        f"\ndevice: {rows[0]['device']}; torch threads while timing: {bench.measurement.threads}; "
        f"wall time {wall:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})"
    )
    result = result_json(rows, bench, search_space, outcome, mode)
    result.update(wall_time_s=wall, timings_s=timings)
    out_dir = Path(args.out) if args.out else RESULTS / mode
    for path in write_outputs(out_dir, rows, trials, found_id, ref_val, result):
        print(f"wrote {path}")
    return result


def start_ray(attempts: int = 3) -> None:
    """``init_ray``, retried: on a heavily loaded machine Ray's raylet can miss its fixed 30 s start-up
    window ("The current node timed out during startup"), which says nothing about this benchmark."""
    import ray

    from ddecs_search.ray_setup import init_ray

    for attempt in range(1, attempts + 1):
        try:
            init_ray()
            return
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            print(f"Ray start-up timed out (machine loaded); retrying ({attempt}/{attempts})", flush=True)
            ray.shutdown()


def describe(bench: Any, search_space: Any, preset: Preset) -> None:
    """What this run uses, with the subsets flagged."""
    ds = bench.dataset
    full = FULL_SIZES.get(ds.name)
    print(
        f"dataset {ds.name}: train/val/test = {ds.train_subset}/{ds.val_subset}/{ds.test_subset}"
        + (
            f" (SUBSETS of the full {full[0]}/{full[1]}/{full[2]}: figures are for this reduced budget)"
            if full
            else " (subsets)"
        )
    )
    print(
        f"budget: shared static baseline trained until validation stops improving (patience "
        f"{preset.patience}, cap {preset.baseline_epochs} epochs), then +{preset.branch_epochs} epoch(s) "
        f"for the same-budget static net, the reference and every search trial; search "
        f"{search_space.search.num_samples} trials, {preset.concurrent} at a time; timing "
        f"{preset.rounds} interleaved rounds"
    )
    print(f"published reference (context, not rerun here): {PUBLISHED}")


def train_reference(
    bench: Any, preset: Preset, tmp: Path, start: float, timings: dict[str, float]
) -> tuple[Any, dict[str, Static]]:
    """The shared early-stopped baseline, the reference (joint) and the same-budget static network.

    Returns the reference's PreparedCandidate — whose ``baseline`` is the same-budget static network
    (``prepare_candidate`` compares joint candidates with it) — and both static networks by mode.
    """
    from ddecs_search.evaluation import prepare_candidate

    t = time.perf_counter()
    ref = prepare_candidate(
        bench,
        reference_candidate(bench),
        workdir=tmp / "reference",
        baseline_dir=tmp / "baselines",
        quiet=True,
    )
    statics = static_networks(bench, ref, tmp / "baselines")
    timings["static+reference training"] = time.perf_counter() - t
    base, joint = statics["frozen"], statics["joint"]
    print(
        f"[{_elapsed(start)}] static AlexNet (early-stopped baseline): test acc {base.accuracy:.4f}, best "
        f"epoch {base.epochs} of {base.epochs_trained} trained (cap {preset.baseline_epochs}), "
        f"{base.train_time_s:.0f} s; {joint.name} ({joint.epochs} epochs in all, "
        f"{joint.train_time_s:.0f} s): {joint.accuracy:.4f}; "
        f"reference joint training {ref.train_time_s:.0f} s; on {ref.device}"
    )
    return ref, statics


def fit_reference_policies(ref: Any, preset: Preset, start: float) -> list[tuple[str, Any, Any, float]]:
    """``(row name, prepared, fitted policy, fit seconds)`` for qtable, threshold (and ppo), on val."""
    from ddecs_search.evaluation import fit_policy

    entries = []
    for kind in ("qtable", "threshold", *(("ppo",) if preset.ppo else ())):
        prepared = with_policy(ref, kind)
        policy, fit_s = fit_policy(prepared)
        entries.append((f"reference/{kind}", prepared, policy, fit_s))
        print(f"[{_elapsed(start)}] fitted {kind} on val in {fit_s:.1f} s")
    return entries


def report(rows: list[dict[str, Any]], bench: Any, device: Any) -> None:
    """The printed tables, the found configuration, the verdicts and the pitfalls block."""
    print()
    print_table(display(rows), COLUMNS)
    print(
        "(accuracy on test, never used to choose; val_accuracy on the selection part of validation, "
        "which no policy was fitted on; static_acc/static_ep: the static network the row is compared with "
        "(frozen: the early-stopped baseline; joint: it trained the branch epochs more) and its epochs; "
        "drop_pt = static_acc - accuracy; exit_fractions/accuracies in % per exit, final last; latency_ms: "
        "median over the rounds of the batch-1 mean end to end; static_ms the static net timed next to that "
        "row; speedup median and min-max over the rounds; tput_speedup = batched samples/s ratio, one "
        "measurement)"
    )
    print()
    print("oracle bound (same exits, labels read; expected latency from the lookup table):")
    print_table(bounds(rows), BOUND_COLUMNS)
    print(
        "(the oracle leaves each test sample at its earliest correct exit: no policy on these exits is "
        "more accurate, and none as accurate is cheaper; acc_gap_pt = oracle - row accuracy)"
    )
    found = rows[-1] if rows[-1]["row"] == "found" else None
    if found is not None:
        print(
            f"\nfound: trial {found['trial_id']}, {found['selection']}; exits {found['exit_points']}, "
            f"{found['training_mode']}, {found['policy_kind']} λ={found['cost_weight']:.3g}; "
            f"config {json.dumps(found['config'])}"
        )
        for r in rows[:-1]:
            print(verdict(found, r))
    print(f"energy: {rows[1]['energy_source']}")
    print()
    print(PITFALLS)
    if device.type == "cpu":
        print("note: CPU timings are noisy when the machine is shared; the speedups are same-run ratios.")


def result_json(
    rows: list[dict[str, Any]], bench: Any, search_space: Any, outcome: Any, mode: str
) -> dict[str, Any]:
    """The ``--json`` object: ``static``, ``reference`` (qtable), other reference rows, ``found``."""
    by_name = {r["row"]: r for r in rows}
    found = by_name.get("found")
    ds = bench.dataset
    joint_static = next(r for r in rows if r["row"].startswith("static+"))
    return {
        "static": json_row(by_name["static"]),
        "static_same_epochs_as_joint": {**json_row(joint_static), "row": joint_static["row"]},
        "reference": json_row(by_name["reference/qtable"]),
        "reference_threshold": json_row(by_name["reference/threshold"]),
        **({"reference_ppo": json_row(by_name["reference/ppo"])} if "reference/ppo" in by_name else {}),
        "found": None
        if found is None
        else {
            **json_row(found),
            "trial_id": found["trial_id"],
            "selection": found["selection"],
            "config": found["config"],
        },
        "dataset": ds.name,
        "device": rows[0]["device"],
        "mode": mode,
        "quick": mode != "default",
        "subsets": {"train": ds.train_subset, "val": ds.val_subset, "test": ds.test_subset},
        "search": {
            "trials": search_space.search.num_samples,
            "counts": outcome.counts,
            "errors": outcome.errors,
        },
    }


def _nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _plain(value: Any) -> Any:
    """A trials-table cell as JSON-friendly Python (``128.0`` -> ``128``: NaN rows made ints floats)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _elapsed(start: float) -> str:
    return f"{time.perf_counter() - start:6.0f} s"


if __name__ == "__main__":
    main()
