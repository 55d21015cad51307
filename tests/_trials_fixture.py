"""Synthetic experiment directories for analysis tests (the trials-table contract of ddecs_search.search).

Written through the product's own writers (``ddecs_search.experiment``), so the columns are the ones a
real search writes. The numbers follow the shape of a real early-exit search — deeper exits are slower
and more accurate,
a larger ``cost_weight`` sends more samples out early, the static policy leaves everything at the final
exit — but they are generated, not measured. Tests of the mechanics only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ddecs_search.config import Constraint, Objective
from ddecs_search.experiment import EVALUATED_KEY, Experiment, trial_row
from ddecs_search.search import effective_objectives
from ddecs_search.spaces import load_space

EXIT_DEPTHS = (0.2, 0.4, 0.6, 0.8)  # fraction of the backbone's MACs before each exit point
BRANCH_COST = 0.03  # one branch, as a fraction of the backbone
BASELINE_ACCURACY = 0.91
BASELINE_VAL_ACCURACY = 0.905
JOINT_BACKBONE_GAP = 0.002  # a joint trial's backbone alone, below the baseline (exits off)
EXIT_NAMES = ("conv1", "conv2", "conv3", "conv4")
TINY_SPACE = Path(__file__).parent / "spaces" / "tiny.yaml"
BASELINE_MACS = 12.0e6
NUM_CLASSES = 10
ENERGY_UNAVAILABLE = "unavailable: no NVIDIA driver and no /sys/class/powercap"


def _trial(
    rng: np.random.Generator, i: int, device_index: int, device: str, seed: int, disagree: bool = False
) -> tuple[dict, dict]:
    """``(tune_config, metrics)`` of one synthetic trial, in the shapes the search produces them."""
    points = sorted(rng.choice(len(EXIT_DEPTHS), size=int(rng.integers(1, 4)), replace=False).tolist())
    depths = np.array([EXIT_DEPTHS[p] for p in points] + [1.0])  # (E,)
    num_exits = len(depths)
    policy = str(rng.choice(["threshold", "threshold", "ppo", "static"]))
    cost_weight = float(np.exp(rng.uniform(np.log(0.01), np.log(1.0))))
    mode = str(rng.choice(["frozen", "joint"]))
    if policy == "static":
        fractions = np.eye(num_exits)[-1]
    else:
        logits = -depths / (0.15 + cost_weight) + rng.normal(0, 0.3, num_exits)
        fractions = np.exp(logits) / np.exp(logits).sum()
    fractions = np.round(fractions, 4)
    fractions[-1] = 1.0 - fractions[:-1].sum()
    # branches passed on the way to exit k: k (the final exit pays every early branch)
    path = depths + BRANCH_COST * np.append(np.arange(1, num_exits), num_exits - 1)
    exit_acc = np.clip(BASELINE_ACCURACY + 0.06 * (1 - fractions) - 0.25 * (1 - depths) ** 2, 0.3, 0.995)
    drop = float((fractions * 0.3 * (1 - depths) ** 2).sum()) + (0.004 if mode == "joint" else 0.0)
    drop += abs(float(rng.normal(0, 0.015)))  # some branches train badly
    accuracy = float(np.clip(BASELINE_ACCURACY - drop + rng.normal(0, 0.003), 0.1, 0.999))
    val_accuracy = float(np.clip(accuracy + rng.normal(0, 0.004), 0.1, 0.999))
    if disagree:  # validation ranks the trials in the opposite order of test
        val_accuracy = float(np.clip(1.7 - accuracy, 0.1, 0.999))
    base_latency = 2.0 / (device_index + 1)
    expected = float(base_latency * (fractions * path).sum())
    latency = expected * float(rng.uniform(0.97, 1.25)) + 0.02  # timing noise and policy overhead
    macs = float(BASELINE_MACS * (fractions * path).sum())
    branches = [
        {
            "conv_layers": int(rng.integers(0, 3)),
            "channels": int(rng.choice([16, 32, 64])),
            "pool": "avg",
            "pool_size": int(rng.choice([1, 2, 4])),
            "hidden": 0,
            "dropout": 0.0,
        }
        for _ in points
    ]
    n = len(points)
    config = {
        "num_early_exits": n,
        "exit_points": {f"n{n}": ",".join(map(str, points))},
        **{f"branch{k}": b for k, b in enumerate(branches)},
        "training": {"mode": mode},
        "policy": {"kind": policy, "cost_weight": cost_weight},
    }
    names = [EXIT_NAMES[p] for p in points]
    described = "; ".join(f"{b['conv_layers']}xconv{b['channels']} avg{b['pool_size']} fc" for b in branches)
    summary = f"{'+'.join(names)} | {described} | {mode} 2ep | {policy} λ={cost_weight:.3g}"
    metrics = {
        "val_accuracy": val_accuracy,
        "baseline_val_accuracy": BASELINE_VAL_ACCURACY,
        "val_accuracy_drop": BASELINE_VAL_ACCURACY - val_accuracy,
        "accuracy": accuracy,
        "baseline_accuracy": BASELINE_ACCURACY,
        "accuracy_drop": BASELINE_ACCURACY - accuracy,
        # the network with its exits off: a frozen backbone is the baseline; a joint one (by default)
        # validates a little worse, so the baseline stays the static contender unless a test says otherwise
        "backbone_val_accuracy": BASELINE_VAL_ACCURACY - (JOINT_BACKBONE_GAP if mode == "joint" else 0.0),
        "backbone_accuracy": BASELINE_ACCURACY - (JOINT_BACKBONE_GAP if mode == "joint" else 0.0),
        "latency_ms": latency,
        "latency_p95_ms": latency * 1.3,
        "baseline_latency_ms": base_latency * float(rng.uniform(0.98, 1.02)),
        "baseline_latency_p95_ms": base_latency * 1.1,
        "speedup": base_latency / latency,
        "latency_source": f"torch 2.14.1 {device}, 1 thread, end-to-end batch 1, in-trial",
        "runtime": "torch",
        "expected_latency_ms": expected,
        "baseline_expected_latency_ms": base_latency,
        "expected_speedup": base_latency / expected,
        "expected_latency_source": f"isolated_table:{device} + decisions measured in-process",
        "batched_throughput_speedup": 0.8 * base_latency / latency,
        "macs": macs,
        "baseline_macs": BASELINE_MACS,
        "exit_fractions": fractions.round(4).tolist(),
        "exit_accuracies": [
            round(float(a), 4) if f > 0 else None for a, f in zip(exit_acc, fractions, strict=False)
        ],
        "oracle_accuracy": min(0.999, BASELINE_ACCURACY + 0.03),
        "oracle_expected_latency_ms": base_latency * float(depths[0] + BRANCH_COST) * 1.4,
        "oracle_macs": BASELINE_MACS * float(depths[0] + BRANCH_COST) * 1.4,
        "exits": "+".join(names),
        "backbone": "lenet",
        "candidate": {
            "backbone": "lenet",
            "exit_points": points,
            "branches": branches,
            "training": {"mode": mode, "epochs": 2},
            "policy": {"kind": policy, "cost_weight": cost_weight},
        },
        "summary": summary,
        "policy_kind": policy,
        "cost_weight": cost_weight,
        "num_exits": num_exits,
        "device": device,
        "node_id": f"node-{device_index}",
        "wall_time_s": float(rng.uniform(20, 90)),
        EVALUATED_KEY: True,
        "full_fidelity": True,
    }
    return config, metrics


def _write_exits(path: Path, rng: np.random.Generator, row: dict, samples: int = 300) -> None:
    fractions = np.array(row["exit_fractions"])
    fractions = np.clip(fractions, 0, None) / np.clip(fractions, 0, None).sum()
    labels = rng.integers(0, NUM_CLASSES, samples)  # (N,)
    exit_indices = rng.choice(len(fractions), size=samples, p=fractions)  # (N,)
    depth_acc = np.linspace(0.6, BASELINE_ACCURACY, len(fractions))  # (E,)
    correct = rng.random((samples, len(fractions))) < depth_acc  # (N, E)
    wrong = (labels[:, None] + rng.integers(1, NUM_CLASSES, (samples, len(fractions)))) % NUM_CLASSES
    predictions = np.where(correct, labels[:, None], wrong)  # (N, E)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(
        path / "test_exits.npz",
        exit_indices=exit_indices,
        labels=labels,
        predictions=predictions,
        class_names=np.array([f"class-{c}" for c in range(NUM_CLASSES)]),
    )


def make_experiment(
    dir: str | Path,
    n: int = 30,
    seed: int = 0,
    devices: Sequence[str] = ("cpu:test",),
    *,
    n_error: int = 1,
    n_running: int = 1,
    energy: bool = False,
    objectives: Sequence[tuple[str, str]] = (("val_accuracy", "max"), ("latency_ms", "min")),
    constraints: Sequence[dict] = (),
    with_exits: bool = False,
    parquet: bool = False,
    val_test_disagree: bool = False,
    runtime: str = "torch",
) -> Path:
    """An experiment folder written by the product's own writers (:mod:`ddecs_search.experiment`).

    ``n`` finished trials, then errored / running ones, as the search's trials-table callback writes
    them: rows from :func:`trial_row` over Tune-shaped configs and evaluation-shaped metrics, the space
    through :meth:`Experiment.write_space` and the effective objectives in ``run.json`` (energy → MACs
    fallback applied by the search's own rule). Devices are assigned round-robin; device ``i`` is
    ``i + 1`` times faster. ``energy=False`` leaves ``energy_mj`` empty with an "unavailable: ..."
    source, as on a machine without NVML or RAPL. ``with_exits`` writes ``trials/<id>/test_exits.npz``.
    ``parquet`` is accepted for compatibility (the writer always writes both tables).
    ``val_test_disagree`` makes validation rank the trials in the opposite order of test. ``runtime``:
    the inference runtime the timings name (``measurement.runtime``).
    """
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    exp = Experiment.at(str(out))
    space = dataclasses.replace(
        load_space(TINY_SPACE),
        name=out.name,
        objectives=tuple(Objective(name, mode) for name, mode in objectives),
        constraints=tuple(Constraint(**c) for c in constraints),
    )
    exp.write_space(space)
    effective, notices = effective_objectives(space, energy)
    exp.update_record(objectives=[dataclasses.asdict(o) for o in effective], notices=notices)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n + n_error + n_running):
        d = i % len(devices)
        config, metrics = _trial(rng, i, d, devices[d], seed, val_test_disagree)
        if runtime != "torch":
            metrics["runtime"] = runtime
            metrics["latency_source"] = metrics["latency_source"].replace("torch 2.14.1", f"{runtime} 1.32.0")
        trial_id = f"{seed:03x}f_{i:05d}"
        if energy:
            metrics["energy_mj"] = metrics["latency_ms"] * (15.0 if devices[d].startswith("cuda") else 9.0)
            metrics["baseline_energy_mj"] = metrics["baseline_latency_ms"] * 9.0
            metrics["energy_source"] = "nvml:total_energy"
        else:
            metrics["energy_mj"] = metrics["baseline_energy_mj"] = None
            metrics["energy_source"] = ENERGY_UNAVAILABLE
        state, error, result = "TERMINATED", None, metrics
        if i >= n:
            state = "ERROR" if i < n + n_error else "RUNNING"
            error = "RuntimeError: synthetic failure" if state == "ERROR" else None
            result = None
        elif with_exits:
            _write_exits(out / "trials" / trial_id, rng, metrics)
        rows.append(
            trial_row(
                trial_id=trial_id,
                index=i,
                state=state,
                config=config,
                result=result,
                error=error,
                num_failures=int(state == "ERROR"),
                objectives=effective,
                constraints=space.constraints,
            )
        )
    exp.write_trials(rows)
    return out
