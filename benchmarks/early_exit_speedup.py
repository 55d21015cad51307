"""Static vs early-exit inference, measured side by side in one run.

One candidate (the space's default: a 2-exit LeNet-style network on Fashion-MNIST, frozen branches,
threshold policy tuned on validation) is trained, then the static network and dynamic early-exit inference
are timed over the same test samples with the same method, warm-up and thread count, interleaved
round by round: batch-1 latency (decision overhead and batch handling included) and batched throughput
(the batch shrinks as samples leave). Accuracy is that of real early-exit inference on the test split.

    python benchmarks/early_exit_speedup.py [--quick] [--json] [--space FILE] [--candidate JSON]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, emit_json, parser, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "fashion_mnist_quick.yaml"))
    p.add_argument("--candidate", default="{}", help="JSON merged over the space's default candidate")
    args = p.parse_args()
    banner("early_exit_speedup", args.quick)

    from ddecs_search.config import deep_merge, to_dict
    from ddecs_search.evaluation import evaluate_candidate
    from ddecs_search.spaces import candidate_from_dict, load_space, parse_space

    space = load_space(args.space)
    data = to_dict(space)
    data["measurement"]["device"] = args.device
    if args.quick:
        data["dataset"] = deep_merge(
            data["dataset"], {"train_subset": 8000, "val_subset": 2000, "test_subset": 2000}
        )
        data["measurement"]["latency_samples"] = 200
    space = parse_space(data, args.space)
    candidate = candidate_from_dict(space, json.loads(args.candidate))
    start = time.perf_counter()
    m = evaluate_candidate(space, candidate, quiet=True)
    rows = [
        {
            "model": "static",
            "accuracy": m["baseline_accuracy"],
            "latency_ms": m["baseline_latency_ms"],
            "macs": m["baseline_macs"],
            "energy_mj": m["baseline_energy_mj"],
        },
        {
            "model": "early-exit",
            "accuracy": m["accuracy"],
            "latency_ms": m["latency_ms"],
            "macs": m["macs"],
            "energy_mj": m["energy_mj"],
        },
        {
            "model": "oracle bound",
            "accuracy": m["oracle_accuracy"],
            "latency_ms": None,
            "macs": m["oracle_macs"],
            "energy_mj": None,
        },
    ]
    print_table(rows, ["model", "accuracy", "latency_ms", "macs", "energy_mj"])
    print(f"batch-1 speedup (static mean / early-exit mean, same run): {m['speedup']:.3f}")
    print(
        f"batched throughput speedup (early-exit / static samples/s): {m['batched_throughput_speedup']:.3f}"
    )
    print(
        f"accuracy drop: {100 * m['accuracy_drop']:.2f} pt; exit fractions: "
        f"{[round(f, 3) for f in m['exit_fractions']]}"
    )
    print(f"energy source: {m['energy_source']}")
    print(f"device: {m['device']}; wall time {time.perf_counter() - start:.1f} s")
    if args.json:
        emit_json(
            {
                "speedup": m["speedup"],
                "batched_throughput_speedup": m["batched_throughput_speedup"],
                "accuracy_drop": m["accuracy_drop"],
                "accuracy": m["accuracy"],
                "baseline_accuracy": m["baseline_accuracy"],
                "latency_ms": m["latency_ms"],
                "baseline_latency_ms": m["baseline_latency_ms"],
                "exit_fractions": m["exit_fractions"],
                "energy_mj": m["energy_mj"],
                "energy_source": m["energy_source"],
                "dataset": space.dataset.name,
                "device": m["device"],
                "quick": args.quick,
            }
        )


if __name__ == "__main__":
    main()
