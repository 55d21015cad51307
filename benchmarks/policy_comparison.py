"""Exit policies compared on one real candidate: RL-PPO, RL-DQN, tabular Q-learning, tuned thresholds, oracle.

Candidate: the default candidate of ``search_spaces/fashion_mnist_quick.yaml`` — Fashion-MNIST, LeNet
backbone, 2 early exits (after conv1 and conv2) with pool + linear branches, frozen branches. For each
cost weight ``λ`` of a sweep, every policy is fitted on the *validation* exit table for
``accuracy - λ · normalised cost`` and scored on the *test* table: accuracy and expected cost, normalised
so that the static network (no branches) costs 1.0, from the measured latency table
(``ExitCosts.normalised_path()``). The oracle leaves at the earliest correct exit (it reads labels; an
upper bound, the same for every λ).

Definitions:
    saving(p)        = 1 - cost(p)                      (fraction of the static network's cost saved)
    feasible(p)      = accuracy(p) >= accuracy(static) - 0.01   (at most 1 point below the static net)
    oracle_capture   = max over the λ sweep of saving(p) / saving(oracle), over feasible points only
                       (0.0 when no λ is feasible; negative = costlier than the static network).
    The ``accuracy`` and ``cost`` reported per policy are those of the λ that gives the capture.
    "Thresholds dominate RL" at an RL point when some threshold point (any λ) has accuracy >= and
    cost <= with one strict; the script lists those points, and the converse.

Also reported: each policy's training time (``train_time_s``; policy fits run pinned to one CPU core with
one torch thread, Ray started beforehand and timed separately) and its greedy return on val.

Usage:
    python benchmarks/policy_comparison.py [--quick] [--json] [--device auto|cpu|cuda]

``--quick`` (at most ~5 minutes on a 2-core CPU): 5k/2k/2k train/val/test images, 1 baseline and 1 branch
epoch, λ in {0.05, 0.1, 0.2}. Without it: the space's sizes (20k/5k/10k), λ in {0.02, 0.05, 0.1, 0.2, 0.3,
0.5}.
``--json`` makes the last stdout line one JSON object.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, emit_json, parser, print_table  # noqa: E402

from ddecs_search.config import PolicyConfig  # noqa: E402
from ddecs_search.evaluation import prepare_candidate  # noqa: E402
from ddecs_search.policies import (  # noqa: E402
    ExitPolicy,
    OraclePolicy,
    create_policy,
    mean_return,
    score_decisions,
)
from ddecs_search.spaces import candidate_from_dict, load_space  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "fashion_mnist_quick.yaml"
LEARNED = ("ppo", "dqn", "qtable", "threshold")
MAX_DROP = 0.01


def _prepare(quick: bool, workdir: Path, device: str) -> Any:
    space = load_space(SPACE)
    space = dataclasses.replace(space, measurement=dataclasses.replace(space.measurement, device=device))
    if quick:
        space = dataclasses.replace(
            space,
            dataset=dataclasses.replace(space.dataset, train_subset=5000, val_subset=2000, test_subset=2000),
            backbone=dataclasses.replace(
                space.backbone, baseline=dataclasses.replace(space.backbone.baseline, epochs=1)
            ),
        )
    candidate = candidate_from_dict(space, {"training": {"epochs": 1}} if quick else {})
    return prepare_candidate(space, candidate, workdir=workdir, quiet=True)


def _fit(kind: str, prepared: Any, path_cost: np.ndarray, cost_weight: float) -> tuple[ExitPolicy, float]:
    """Fit on val pinned to one core with one torch thread; returns the policy and its fit seconds."""
    import torch

    affinity, threads = os.sched_getaffinity(0), torch.get_num_threads()
    os.sched_setaffinity(0, {min(affinity)})
    torch.set_num_threads(1)
    try:
        policy = create_policy(PolicyConfig(kind=kind, options={"seed": 0} if kind != "threshold" else {}))
        start = time.perf_counter()
        policy.fit(prepared.val_table, path_cost, cost_weight)
        return policy, time.perf_counter() - start
    finally:
        os.sched_setaffinity(0, affinity)
        torch.set_num_threads(threads)


def _point(table: Any, exits: np.ndarray, path_cost: np.ndarray) -> dict[str, float]:
    stats = score_decisions(table, exits, path_cost)
    return {"accuracy": stats.accuracy, "cost": stats.cost, "exit_fractions": list(stats.exit_fractions)}


def _dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    ge = a["accuracy"] >= b["accuracy"] and a["cost"] <= b["cost"]
    return ge and (a["accuracy"] > b["accuracy"] or a["cost"] < b["cost"])


def _capture(points: list[dict[str, Any]], static_acc: float, oracle_saving: float) -> dict[str, Any]:
    feasible = [p for p in points if p["accuracy"] >= static_acc - MAX_DROP]
    if not feasible:
        return {"accuracy": None, "cost": None, "cost_weight": None, "oracle_capture": 0.0}
    best = max(feasible, key=lambda p: 1 - p["cost"])
    return {
        "accuracy": best["accuracy"],
        "cost": best["cost"],
        "cost_weight": best["cost_weight"],
        "oracle_capture": (1 - best["cost"]) / oracle_saving,
    }


def run(quick: bool, workdir: Path, device: str) -> dict[str, Any]:
    from ddecs_search.profiling import device_name
    from ddecs_search.ray_setup import init_ray

    t0 = time.perf_counter()
    prepared = _prepare(quick, workdir, device)
    prep_s = time.perf_counter() - t0
    path_cost = prepared.latency.normalised_path()
    test = prepared.test_table
    static = {"accuracy": float(test.correct[:, -1].mean()), "cost": 1.0}
    oracle = _point(test, OraclePolicy().decide_table(test), path_cost)
    oracle_saving = 1 - oracle["cost"]

    t0 = time.perf_counter()
    init_ray(num_cpus=1)
    ray_init_s = time.perf_counter() - t0
    weights = (0.05, 0.1, 0.2) if quick else (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    sweep: dict[str, list[dict[str, Any]]] = {kind: [] for kind in LEARNED}
    for lam in weights:
        for kind in LEARNED:
            policy, fit_s = _fit(kind, prepared, path_cost, lam)
            exits = policy.decide_table(test)
            point = _point(test, exits, path_cost)
            point.update(
                cost_weight=lam,
                test_return=mean_return(test, exits, path_cost, lam),
                val_return=mean_return(
                    prepared.val_table, policy.decide_table(prepared.val_table), path_cost, lam
                ),
                train_time_s=fit_s,
                mode=getattr(policy, "mode", None),
                iterations=len(getattr(policy, "history", [])) or None,
            )
            sweep[kind].append(point)
            print(
                f"  λ={lam:<5} {kind:<9} acc {point['accuracy']:.4f}  cost {point['cost']:.3f}  "
                f"test return {point['test_return']:.4f}  fit {fit_s:5.1f}s",
                file=sys.stderr,
                flush=True,
            )

    result: dict[str, Any] = {}
    for kind in LEARNED:
        result[kind] = {**_capture(sweep[kind], static["accuracy"], oracle_saving), "sweep": sweep[kind]}
        times = [p["train_time_s"] for p in sweep[kind]]
        result[kind]["train_time_s_median"] = float(np.median(times))
    result["oracle"] = {"accuracy": oracle["accuracy"], "cost": oracle["cost"], "oracle_capture": 1.0}
    result["static"] = static
    result["threshold_dominates"] = {
        kind: [p["cost_weight"] for p in sweep[kind] if any(_dominates(t, p) for t in sweep["threshold"])]
        for kind in ("ppo", "dqn", "qtable")
    }
    result["dominates_threshold"] = {
        kind: [t["cost_weight"] for t in sweep["threshold"] if any(_dominates(p, t) for p in sweep[kind])]
        for kind in ("ppo", "dqn", "qtable")
    }
    result.update(
        dataset="fashion-mnist",
        splits={
            "train": len(prepared.splits.train),
            "val": prepared.val_table.num_samples,
            "test": test.num_samples,
        },
        device=device_name(prepared.device),
        latency_ms_path=[float(c) for c in prepared.latency.path()],
        normalised_path_cost=[float(c) for c in path_cost],
        cost_weights=list(weights),
        quick=quick,
        prepare_s=prep_s,
        ray_init_s=ray_init_s,
        loadavg=list(os.getloadavg()),
    )
    return result


def _report(result: dict[str, Any]) -> None:
    static, oracle = result["static"], result["oracle"]
    print(
        f"static network: accuracy {static['accuracy']:.4f}, cost 1.0; oracle: accuracy "
        f"{oracle['accuracy']:.4f}, cost {oracle['cost']:.3f}; normalised path cost per exit "
        f"{[round(c, 3) for c in result['normalised_path_cost']]}"
    )
    rows = [{"λ": p["cost_weight"], "policy": kind, **p} for kind in LEARNED for p in result[kind]["sweep"]]
    rows.sort(key=lambda r: r["λ"])
    print_table(
        rows, ["λ", "policy", "accuracy", "cost", "test_return", "val_return", "train_time_s", "mode"]
    )
    print(
        f"\noracle_capture = best cost saving at <= {MAX_DROP * 100:.0f} pt accuracy drop / oracle's saving"
    )
    summary = [{"policy": kind, **result[kind]} for kind in (*LEARNED, "oracle")]
    print_table(
        summary, ["policy", "oracle_capture", "cost_weight", "accuracy", "cost", "train_time_s_median"]
    )
    for kind, lams in result["threshold_dominates"].items():
        print(
            f"thresholds dominate {kind} at λ {lams or 'nowhere'}; {kind} dominates thresholds at λ "
            f"{result['dominates_threshold'][kind] or 'nowhere'}"
        )
    print(
        f"ray init {result['ray_init_s']:.1f}s, candidate preparation {result['prepare_s']:.0f}s, "
        f"load average {result['loadavg'][0]:.1f}; {result['dataset']} {result['splits']}; {result['device']}"
    )


def main() -> int:
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    banner("policy comparison (RL vs thresholds vs oracle)", args.quick)
    if args.quick:
        print("quick mode: <= ~5 min on a 2-core CPU")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="policy_cmp_") as tmp:
        result = run(args.quick, Path(tmp), args.device)
    result["wall_s"] = time.perf_counter() - start
    _report(result)
    print(f"total {result['wall_s']:.0f}s")
    if args.json:
        emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
