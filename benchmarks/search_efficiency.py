"""How well and how efficiently the search searches.

For each algorithm (NSGA-II, TPE, random) and seed, one search of the same space with the same trial
budget runs on a local Ray; then

- **hypervolume** of each search's feasible front after N trials, averaged over seeds, on objectives
  normalised over all runs together: 0 = the best value any run found, 1 = the reference point (the
  worst value found, padded by 10 % of the range), so 1.0 is the whole box and runs are comparable;
- **orchestration overhead share**: the share of trial-slot time not spent inside trial bodies,
  ``1 - sum(trial body seconds) / (max_concurrent * Tuner.fit() seconds)`` (trial process start-up,
  scheduling, sampler, checkpoints, idle slots), over all runs;
- **per-trial cost vs the baseline**: mean trial body seconds / seconds to train the shared baseline
  (which every search trains once, not per trial).

The baseline is trained by the first search and copied into the others (same space, same content hash).

Usage::

    .venv/bin/python benchmarks/search_efficiency.py --quick --json      # <= 5 min on a 2-core CPU
    .venv/bin/python benchmarks/search_efficiency.py --trials 24 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddecs_search.analysis import default_reference_point, hypervolume  # noqa: E402
from ddecs_search.dominance import to_minimization  # noqa: E402
from ddecs_search.ray_setup import init_ray  # noqa: E402
from ddecs_search.search import Experiment, run_search  # noqa: E402
from ddecs_search.spaces import parse_space  # noqa: E402

ALGORITHMS = ("nsga2", "tpe", "random")
QUICK_SPACE = ROOT / "tests" / "spaces" / "tiny.yaml"
FULL_SPACE = ROOT / "search_spaces" / "fashion_mnist_quick.yaml"


def run_one(space_path: Path, algorithm: str, seed: int, trials: int, storage: Path,
            baseline_from: Path | None) -> dict:
    data = yaml.safe_load(space_path.read_text())
    data["search"].update(algorithm=algorithm, seed=seed, num_samples=trials, verify=False)
    space = parse_space(data, str(space_path))
    name = f"{algorithm}-s{seed}"
    if baseline_from is not None:  # same space -> same baseline: reuse it instead of training it again
        shutil.copytree(baseline_from / "baseline", storage / name / "baseline")
    start = time.time()
    outcome = run_search(space, name=name, storage=str(storage), quiet=True, verify=False)
    wall = time.time() - start
    exp = Experiment.at(outcome.exp_root)
    record = exp.read_record()
    table = exp.read_trials()
    objectives = [(o["name"], o["mode"]) for o in record["objectives"]]
    ok = table[(table["feasible"] == True) & (table["full_fidelity"] == True)]  # noqa: E712
    values = ok[[n for n, _ in objectives]].to_numpy(dtype=float)
    return {"algorithm": algorithm, "seed": seed, "exp": outcome.exp_root, "values": values,
            "objectives": objectives, "fit_s": record.get("fit_s", wall), "wall_s": wall,
            "body_s": float(table["trial_wall_s"].fillna(0).sum()), "n_trials": int(len(table)),
            "n_feasible": int(len(ok)), "max_concurrent": space.search.max_concurrent,
            "baseline_train_s": float(record["baseline"].get("train_time_s", float("nan"))),
            "mean_trial_s": float(table["trial_wall_s"].mean())}


def summarise(runs: list[dict]) -> dict:
    objectives = runs[0]["objectives"]
    directions = [m for _, m in objectives]
    everything = np.vstack([r["values"] for r in runs if len(r["values"])])
    reference = default_reference_point(everything, directions)
    best = to_minimization(everything, directions).min(axis=0)
    worst = to_minimization(reference[None, :], directions)[0]
    scale = np.where(worst > best, worst - best, 1.0)
    hv: dict[str, list[float]] = {}
    for r in runs:
        if len(r["values"]):
            unit = (to_minimization(r["values"], directions) - best) / scale  # 0 = best found, 1 = reference
            r["hv"] = hypervolume(unit, ["min"] * len(directions), np.ones(len(directions)))
        else:
            r["hv"] = 0.0
        hv.setdefault(r["algorithm"], []).append(r["hv"])
    slot_s = sum(r["max_concurrent"] * r["fit_s"] for r in runs)
    return {
        "hv": {a: float(np.mean(v)) for a, v in hv.items()},
        "hv_per_seed": {a: [float(x) for x in v] for a, v in hv.items()},
        "overhead_share": 1.0 - sum(r["body_s"] for r in runs) / slot_s,
        "per_trial_vs_baseline_cost": float(np.mean([r["mean_trial_s"] for r in runs])
                                            / np.nanmean([r["baseline_train_s"] for r in runs])),
        "objectives": [f"{n} ({m})" for n, m in objectives],
        "reference_point": [float(x) for x in reference],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", type=Path, help="search space (default: tiny test space with --quick, "
                                                   "else search_spaces/fashion_mnist_quick.yaml)")
    parser.add_argument("--trials", type=int, help="trials per search (default 8 quick, 20 otherwise)")
    parser.add_argument("--seeds", type=int, nargs="+", help="sampler seeds (default: 0 quick, 0 1 2)")
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    parser.add_argument("--storage", type=Path, help="keep the experiments here (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="small budget: <= 5 min on a 2-core CPU")
    parser.add_argument("--json", action="store_true", help="last stdout line: the summary as JSON")
    args = parser.parse_args(argv)
    space = args.space or (QUICK_SPACE if args.quick else FULL_SPACE)
    trials = args.trials or (8 if args.quick else 20)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    storage = args.storage or Path(tempfile.mkdtemp(prefix="ddecs-bench-"))
    storage.mkdir(parents=True, exist_ok=True)

    start = time.time()
    init_ray()
    runs, first = [], None
    for seed in seeds:
        for algorithm in args.algorithms:
            run = run_one(space, algorithm, seed, trials, storage, first)
            first = first or Path(run["exp"])
            runs.append(run)
            print(f"{algorithm:>7} seed {seed}: {run['n_trials']} trials ({run['n_feasible']} feasible) "
                  f"in {run['wall_s']:.0f} s", flush=True)
    summary = summarise(runs)
    summary.update(quick=args.quick, space=str(space), trials=trials, seeds=seeds,
                   wall_s=time.time() - start, storage=str(storage))
    label = " [QUICK: small budget, numbers are indicative only]" if args.quick else ""
    print(f"\nsearch efficiency on {space.name}, {trials} trials x seeds {seeds}{label}")
    print(f"objectives: {', '.join(summary['objectives'])}")
    for algorithm, value in summary["hv"].items():
        per_seed = ", ".join(f"{x:.4f}" for x in summary["hv_per_seed"][algorithm])
        print(f"  hypervolume {algorithm:>7}: {value:.4f} (normalised; per seed {per_seed})")
    print(f"  orchestration overhead share: {summary['overhead_share']:.1%} of trial-slot time")
    print(f"  one trial costs {summary['per_trial_vs_baseline_cost']:.2f}x training the baseline")
    print(f"  total {summary['wall_s']:.0f} s; experiments in {storage}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
