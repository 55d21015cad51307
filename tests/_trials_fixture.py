"""Synthetic experiment directories for analysis tests (the trials-table contract of ddecs_search.search).

The numbers follow the shape of a real early-exit search — deeper exits are slower and more accurate,
a larger ``cost_weight`` sends more samples out early, the static policy leaves everything at the final
exit — but they are generated, not measured. Tests of the mechanics only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

EXIT_DEPTHS = (0.2, 0.4, 0.6, 0.8)  # fraction of the backbone's MACs before each exit point
BRANCH_COST = 0.03  # one branch, as a fraction of the backbone
BASELINE_ACCURACY = 0.91
BASELINE_MACS = 12.0e6
NUM_CLASSES = 10
ENERGY_UNAVAILABLE = "unavailable: no NVIDIA driver and no /sys/class/powercap"


def _trial(rng: np.random.Generator, i: int, device_index: int, device: str, seed: int) -> dict:
    points = sorted(rng.choice(len(EXIT_DEPTHS), size=int(rng.integers(1, 4)), replace=False).tolist())
    depths = np.array([EXIT_DEPTHS[p] for p in points] + [1.0])  # (E,)
    num_exits = len(depths)
    policy = str(rng.choice(["threshold", "threshold", "rl", "static"]))
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
    base_latency = 2.0 / (device_index + 1)
    expected = float(base_latency * (fractions * path).sum())
    latency = expected * float(rng.uniform(0.97, 1.25)) + 0.02  # timing noise and policy overhead
    macs = float(BASELINE_MACS * (fractions * path).sum())
    branches = [{"kind": "conv", "width": int(rng.choice([16, 32, 64]))} for _ in points]
    return {
        "trial_id": f"{seed:03x}f_{i:05d}",
        "config/exit_points": json.dumps(points),
        "config/branches": json.dumps(branches),
        "config/policy_kind": policy,
        "config/cost_weight": cost_weight,
        "config/training_mode": mode,
        "accuracy": accuracy,
        "baseline_accuracy": BASELINE_ACCURACY,
        "accuracy_drop": BASELINE_ACCURACY - accuracy,
        "latency_ms": latency,
        "latency_p95_ms": latency * 1.3,
        "expected_latency_ms": expected,
        "baseline_latency_ms": base_latency,
        "speedup": base_latency / latency,
        "batched_throughput_speedup": 0.8 * base_latency / latency,
        "macs": macs,
        "baseline_macs": BASELINE_MACS,
        "exit_fractions": json.dumps(fractions.round(4).tolist()),
        "exit_accuracies": json.dumps(
            [round(float(a), 4) if f > 0 else None for a, f in zip(exit_acc, fractions)]
        ),
        "oracle_accuracy": min(0.999, BASELINE_ACCURACY + 0.03),
        "oracle_expected_latency_ms": base_latency * float(depths[0] + BRANCH_COST) * 1.4,
        "oracle_macs": BASELINE_MACS * float(depths[0] + BRANCH_COST) * 1.4,
        "val_accuracy": accuracy + float(rng.normal(0, 0.004)),
        "policy_kind": policy,
        "cost_weight": cost_weight,
        "num_exits": num_exits,
        "device": device,
        "node_id": f"node-{device_index}",
        "wall_time_s": float(rng.uniform(20, 90)),
    }


def _write_exits(path: Path, rng: np.random.Generator, row: dict, samples: int = 300) -> None:
    fractions = np.array(json.loads(row["exit_fractions"]))
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
    objectives: Sequence[tuple[str, str]] = (("accuracy", "max"), ("latency_ms", "min")),
    constraints: Sequence[dict] = (),
    with_exits: bool = False,
    parquet: bool = False,
) -> Path:
    """Write ``dir/trials.csv`` (+ ``space.yaml``) with ``n`` finished trials, then errored / running ones.

    Devices are assigned round-robin; device ``i`` is ``i + 1`` times faster. ``energy=False`` leaves
    ``energy_mj`` empty with an "unavailable: ..." source, as on a machine without NVML or RAPL.
    ``with_exits`` writes ``trials/<trial_id>/test_exits.npz`` for every finished trial.
    """
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n + n_error + n_running):
        d = i % len(devices)
        row = _trial(rng, i, d, devices[d], seed)
        if energy:
            row["energy_mj"] = row["latency_ms"] * (15.0 if devices[d].startswith("cuda") else 9.0)
            row["baseline_energy_mj"] = row["baseline_latency_ms"] * 9.0
            row["energy_source"] = "nvml:total_energy"
        else:
            row["energy_mj"] = row["baseline_energy_mj"] = np.nan
            row["energy_source"] = ENERGY_UNAVAILABLE
        row["trial_index"] = i
        row["state"], row["error"] = "TERMINATED", None
        if i >= n:
            kept = ("trial_id", "trial_index", "device", "node_id", "policy_kind", "cost_weight", "num_exits")
            measured = [k for k in row if not k.startswith("config/") and k not in kept]
            for k in measured:
                row[k] = None
            row["state"] = "ERROR" if i < n + n_error else "RUNNING"
            row["error"] = "RuntimeError: synthetic failure" if row["state"] == "ERROR" else None
        elif with_exits:
            _write_exits(out / "trials" / row["trial_id"], rng, row)
        rows.append(row)
    df = pd.DataFrame(rows)
    df = df[["trial_id", "state"] + [c for c in df.columns if c not in ("trial_id", "state")]]
    df.to_csv(out / "trials.csv", index=False)
    if parquet:
        df.to_parquet(out / "trials.parquet", index=False)
    space = {
        "name": out.name,
        "objectives": [{"name": name, "mode": mode} for name, mode in objectives],
        "constraints": list(constraints),
    }
    (out / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    return out
