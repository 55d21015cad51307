"""Static vs early-exit inference, in eager PyTorch and in ONNX Runtime, measured side by side in one run.

One candidate (the space's default: a LeNet-style network on Fashion-MNIST with one exit after conv1,
trained jointly with it, threshold policy) is trained and evaluated as a search trial would be (in the space's
``measurement.runtime``; the top-level figures are those). The policy's cost weight (lambda) is chosen as a
search would, never on test: for each lambda of ``--cost-weights`` (and, for a threshold policy, each
``max_drop`` bound of ``--max-drops``: the fit-part accuracy bound that reaches the exit fractions a lambda
jumps over) the policy is fitted on the *fit* part of validation and scored on the disjoint *selection*
part; the chosen pair is the one with the lowest expected latency (the runtime's latency table weighted by
the selection part's exits) among those whose selection-part accuracy drop is <= ``--max-val-drop``
(default 0.01 = 1 pt), the drop taken against the better of the static network trained as long and the
candidate's own backbone (exits off), as the goal line does on test; if none qualifies, the smallest
drop. ``--cost-weights candidate`` keeps the candidate's own lambda and bound. Then
four contenders are timed over the same test samples, interleaved round by round with a rotating order,
>= 5 rounds: the static network and early-exit inference in eager PyTorch and in ONNX Runtime (CPU, same
thread count; ONNX Runtime runs batch-1 early exit as one graph with If nodes): batch-1 latency (decision
overhead and batch handling included) and batched throughput (the batch shrinks as samples leave). Medians
over rounds with the min-max spread. Accuracy is that of real early-exit inference on the test split, in
each runtime. ``table/meas``: each runtime's latency table (decisions included), weighted by the timed
samples' own exits, over their measured batch-1 early-exit latency (1.0 = the table predicts the runner).

Full mode repeats all of it (training, choice on validation, timing) for three training seeds of the
candidate (its own and the next two; ``--seeds`` picks others, ``--quick`` runs the candidate's seed
only) and ends with every seed's goal line and the median and range over seeds: one seed's figure is
one draw (rule 5). At a constant learning rate the default candidate's seeds 0 / 1 / 2 left 84 / 69 / 71 %
at conv1 (2.60 / 2.00 / 1.98x); with the cosine decay (its recipe since session 10) 70 / 71 / 69 %. The
top-level figures are the first seed's.

    python benchmarks/early_exit_speedup.py [--quick] [--json] [--space FILE] [--candidate JSON] [--rounds N]
        [--seeds N ...] [--cost-weights LIST|candidate] [--max-drops LIST] [--max-val-drop FRACTION]"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, emit_json, parser, print_table

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "fashion_mnist_quick.yaml"))
    p.add_argument("--candidate", default="{}", help="JSON merged over the space's default candidate")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="training seeds of the candidate, each trained, chosen on validation and timed on its own "
        "(default: the candidate's seed and the next two; --quick: the candidate's seed only); the "
        "top-level figures are the first seed's",
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per contender (>= 5)")
    p.add_argument(
        "--cost-weights",
        default=",".join(str(v) for v in DEFAULT_COST_WEIGHTS),
        help="comma-separated lambdas to choose from on the selection part of validation (never test), or "
        "'candidate' to keep the candidate's own; default %(default)s",
    )
    p.add_argument(
        "--max-drops",
        default=",".join("none" if v is None else str(v) for v in DEFAULT_MAX_DROPS),
        help="comma-separated values of the threshold policy's max_drop option (fit-part accuracy bound; "
        "'none': unbounded) tried with every lambda; threshold candidates only; default %(default)s",
    )
    p.add_argument(
        "--max-val-drop",
        type=float,
        default=0.01,
        help="largest selection-part accuracy drop a (lambda, max_drop) may have, against the better of "
        "the static network trained as long and the candidate's own backbone (default 0.01)",
    )
    args = p.parse_args()
    if args.rounds < 5:
        p.error(f"--rounds must be >= 5, got {args.rounds}")
    if args.seeds is not None and (any(v < 0 for v in args.seeds) or len(set(args.seeds)) < len(args.seeds)):
        p.error(f"--seeds must be distinct integers >= 0, got {args.seeds}")
    grid = _parse_grid(p, args.cost_weights)
    bounds = _parse_bounds(p, args.max_drops)
    if not 0.0 <= args.max_val_drop < 1.0:
        p.error(f"--max-val-drop must be in [0, 1), got {args.max_val_drop}")
    banner("early_exit_speedup", args.quick)

    from ddecs_search.config import deep_merge, to_dict
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
    # full mode: three training seeds by default (one seed's figure is one draw); --quick: the candidate's
    seeds = args.seeds or ([candidate.seed] if args.quick else [candidate.seed + k for k in range(3)])
    start = time.perf_counter()
    per_seed = []
    for seed in seeds:
        if len(seeds) > 1:
            print(f"\n-- training seed {seed} ({len(per_seed) + 1} of {len(seeds)})")
        cand = dataclasses.replace(candidate, seed=seed)
        with tempfile.TemporaryDirectory(prefix="ddecs-bench-") as work:
            m, choice = evaluate_with_chosen_lambda(space, cand, Path(work), grid, args.max_val_drop, bounds)
            runtimes = compare_runtimes(space, Path(work), m, args.rounds)
        print_seed(m, choice, runtimes)
        per_seed.append({"seed": seed, "m": m, "choice": choice, "runtimes": runtimes})
    summary = seed_summary(per_seed)
    if len(seeds) > 1:
        print_seed_summary(summary)
    print(f"wall time {time.perf_counter() - start:.1f} s")
    if args.json:
        first = per_seed[0]  # the top-level keys: the first seed (the candidate's own by default)
        m, choice, runtimes = first["m"], first["choice"], first["runtimes"]
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
                "runtime": m.get("runtime"),
                "latency_source": m.get("latency_source"),
                "quick": args.quick,
                "runtimes": runtimes["runtimes"],
                "goals": runtimes["goals"],
                "timing": runtimes["timing"],
                "cost_weight": choice["cost_weight"],
                "max_drop": choice["max_drop"],
                "policy_choice": choice,
                "expected_latency_ms": m["expected_latency_ms"],
                "baseline_expected_latency_ms": m["baseline_expected_latency_ms"],
                "val_accuracy_drop": m["val_accuracy_drop"],
                "seed": first["seed"],
                "seeds": summary["seeds"],
                "goals_over_seeds": summary["goals_over_seeds"],
            }
        )


def print_seed(m: dict[str, Any], choice: dict[str, Any], runtimes: dict[str, Any]) -> None:
    """One training seed's figures: the policy choice, the trial-style table, both runtimes."""
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
    print_choice(choice)
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
    print(f"top-level figures measured in: {m.get('latency_source')}")
    print_runtimes(runtimes)
    print(f"device: {m['device']}")


#: per seed, the goal line's figures kept in the JSON ``seeds`` list
SEED_KEYS = (
    "ort_batch1_speedup",
    "ort_accuracy_drop_pt",
    "ort_accuracy_drop_vs_static_pt",
    "ort_accuracy_drop_vs_own_backbone_pt",
    "ort_accuracy_drop_vs_own_backbone_se_pt",
    "ort_early_exit_vs_torch_static",
    "met",
)


def seed_summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Every seed's goal line, and over the seeds the median and range of its two figures.

    One seed's verdict is a draw, not the design's (at a constant rate the default candidate's seeds left
    69-84 % at conv1): ``met_every_seed`` is the claim a design can make, ``met_seeds`` how many met it.
    """
    import numpy as np

    seeds = []
    for s in per_seed:
        g, ort = s["runtimes"]["goals"], s["runtimes"]["runtimes"]["onnxruntime"]
        seeds.append(
            {
                "seed": s["seed"],
                "cost_weight": s["choice"]["cost_weight"],
                "max_drop": s["choice"]["max_drop"],
                "exit_fractions": ort["exit_fractions"],
                "speedup_spread": ort["speedup_spread"],
                **{k: g[k] for k in SEED_KEYS},
            }
        )
    over: dict[str, Any] = {"seeds": [s["seed"] for s in seeds]}
    for key in ("ort_batch1_speedup", "ort_accuracy_drop_pt"):
        values = np.asarray([s[key] for s in seeds], dtype=float)
        over[f"{key}_median"] = float(np.median(values))
        over[f"{key}_range"] = [float(values.min()), float(values.max())]
    over["met_seeds"] = sum(bool(s["met"]) for s in seeds)
    over["met_every_seed"] = over["met_seeds"] == len(seeds)
    return {"seeds": seeds, "goals_over_seeds": over}


def print_seed_summary(summary: dict[str, Any]) -> None:
    rows = [
        {
            "seed": s["seed"],
            "lambda": s["cost_weight"],
            "max_drop": "none" if s["max_drop"] is None else s["max_drop"],
            "exit_1": s["exit_fractions"][0],
            "ort_speedup": s["ort_batch1_speedup"],
            "spread": "{:.2f}-{:.2f}".format(*s["speedup_spread"]),
            "drop_pt": s["ort_accuracy_drop_pt"],
            "drop_static_pt": s["ort_accuracy_drop_vs_static_pt"],
            "drop_own_pt": s["ort_accuracy_drop_vs_own_backbone_pt"],
            "se_pt": s["ort_accuracy_drop_vs_own_backbone_se_pt"],
            "met": s["met"],
        }
        for s in summary["seeds"]
    ]
    over = summary["goals_over_seeds"]
    print(f"\nover training seeds {over['seeds']} (each trained, chosen on validation and timed on its own):")
    print_table(rows, list(rows[0]))
    print(
        "median ORT batch-1 speedup {:.2f}x ({:.2f}-{:.2f}), median drop {:.2f} pt ({:.2f}-{:.2f}); goal met "
        "for {} of {} seeds".format(
            over["ort_batch1_speedup_median"],
            *over["ort_batch1_speedup_range"],
            over["ort_accuracy_drop_pt_median"],
            *over["ort_accuracy_drop_pt_range"],
            over["met_seeds"],
            len(over["seeds"]),
        )
    )


# dense around 0.1-0.3, where the default candidate's exit fraction moves fastest with lambda
DEFAULT_COST_WEIGHTS = (
    *(0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.12, 0.15, 0.17),
    *(0.2, 0.22, 0.25, 0.27, 0.3, 0.35, 0.4, 0.5),
)


# the threshold policy's fit-part bound (None: unbounded): reaches the exit fractions between the lambdas'
# jumps (docs/search_space.md, "the lambda cliff")
DEFAULT_MAX_DROPS = (None, 0.005, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025)


def _parse_bounds(p: Any, text: str) -> list[float | None]:
    """``--max-drops``: each value in [0, 1] or 'none'."""
    out: list[float | None] = []
    for v in (v.strip() for v in text.split(",") if v.strip()):
        try:
            out.append(None if v == "none" else float(v))
        except ValueError:
            p.error(f"--max-drops must be comma-separated numbers or 'none', got {text!r}")
    if not out or any(v is not None and not 0 <= v <= 1 for v in out):
        p.error(f"--max-drops needs at least one value, each 'none' or in [0, 1], got {text!r}")
    return out


def _parse_grid(p: Any, text: str) -> list[float] | None:
    """``--cost-weights``: ``None`` for 'candidate', else the lambdas (each >= 0)."""
    if text.strip() == "candidate":
        return None
    try:
        grid = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        p.error(f"--cost-weights must be comma-separated numbers or 'candidate', got {text!r}")
    if not grid or any(v < 0 for v in grid):
        p.error(f"--cost-weights needs at least one lambda >= 0, got {text!r}")
    return grid


def evaluate_with_chosen_lambda(
    space: Any,
    candidate: Any,
    workdir: Path,
    grid: list[float] | None,
    max_val_drop: float,
    bounds: Sequence[float | None] = (None,),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train once, choose the policy's lambda (and, for a threshold policy, its ``max_drop`` bound) on
    the selection part of validation, then measure as a trial does.

    The same steps as ``evaluate_candidate`` (prepare, fit, measure, save the artefacts the runtime
    comparison loads), with the choice between prepare and fit. The rule takes the larger of two
    selection-part drops, as the goal line does on test: against the static network trained as long
    (``baseline_val_accuracy``) and against this network with its exits off (its own backbone, which
    joint training can make better). Returns the trial metrics and the choice: every pair's drops and
    expected latency, the chosen pair, the rule.
    """
    import dataclasses

    from ddecs_search.evaluation import (
        fit_policy,
        measure_candidate,
        measurement_threads,
        prepare_candidate,
        save_artifacts,
    )
    from ddecs_search.policies import score_decisions

    prepared = prepare_candidate(space, candidate, workdir=workdir, quiet=True)
    own = candidate.policy.cost_weight
    own_bound = candidate.policy.options.get("max_drop")
    rows = []
    select = prepared.select_table
    own_backbone = float(select.correct[:, -1].mean())
    costs = prepared.latency if candidate.policy.cost == "latency" else prepared.macs
    if candidate.policy.kind != "threshold" or grid is None:
        bounds = [own_bound]

    def with_policy(lam: float, bound: float | None) -> Any:
        options = {k: v for k, v in candidate.policy.options.items() if k != "max_drop"}
        if bound is not None:
            options["max_drop"] = bound
        policy = dataclasses.replace(candidate.policy, cost_weight=lam, options=options)
        return dataclasses.replace(candidate, policy=policy)

    for bound in bounds:
        for lam in grid if grid is not None else [own]:
            policy, _ = fit_policy(dataclasses.replace(prepared, candidate=with_policy(lam, bound)))
            exits = policy.decide_table(select)
            val = score_decisions(select, exits, costs.normalised_path())
            vs_static = prepared.baseline_val_accuracy - val.accuracy
            vs_own = own_backbone - val.accuracy
            rows.append(
                {
                    "cost_weight": lam,
                    "max_drop": bound,
                    "val_accuracy_drop": vs_static,
                    "val_accuracy_drop_vs_own_backbone": vs_own,
                    "val_drop_for_rule": max(vs_static, vs_own),
                    "expected_latency_ms": float(prepared.latency.path()[exits].mean()),
                    "val_exit_fractions": [float(f) for f in val.exit_fractions],
                }
            )
    feasible = [r for r in rows if r["val_drop_for_rule"] <= max_val_drop + 1e-12]
    if feasible:
        best = min(feasible, key=lambda r: (r["expected_latency_ms"], r["val_drop_for_rule"]))
        rule = (
            f"lowest expected latency with selection-part accuracy drop <= {max_val_drop} against the "
            "better of the static network trained as long and its own backbone"
        )
    else:
        best = min(rows, key=lambda r: (r["val_drop_for_rule"], r["expected_latency_ms"]))
        rule = f"no pair met the <= {max_val_drop} drop: the smallest selection-part drop"
    prepared = dataclasses.replace(prepared, candidate=with_policy(best["cost_weight"], best["max_drop"]))
    policy, _ = fit_policy(prepared)
    with measurement_threads(space, prepared.device):
        measured = measure_candidate(space, prepared, policy)
    save_artifacts(workdir, space, prepared, policy, measured)
    choice = {
        "cost_weight": best["cost_weight"],
        "max_drop": best["max_drop"],
        "candidate_cost_weight": own,
        "candidate_max_drop": own_bound,
        "chosen_on": "selection part of validation (policy fitted on the disjoint fit part); test never",
        "rule": rule,
        "max_val_drop": max_val_drop,
        "static_val_accuracy": prepared.baseline_val_accuracy,
        "own_backbone_val_accuracy": own_backbone,
        "grid": rows,
        "table": "expected latency from the runtime's latency table (" + prepared.latency.source + ")",
    }
    return measured.metrics, choice


def print_choice(choice: dict[str, Any]) -> None:
    print(
        f"policy chosen on the selection part of validation: lambda {choice['cost_weight']}, max_drop "
        f"{choice['max_drop']} ({choice['rule']}; static val acc {choice['static_val_accuracy']:.4f}, own "
        f"backbone {choice['own_backbone_val_accuracy']:.4f})"
    )
    # every lambda without a bound, then per bound the fastest pair within the rule (the grid is in JSON)
    unbounded = [r for r in choice["grid"] if r["max_drop"] is None]
    by_bound: dict[Any, dict[str, Any]] = {}
    for r in choice["grid"]:
        if r["max_drop"] is not None and r["val_drop_for_rule"] <= choice["max_val_drop"] + 1e-12:
            if (
                r["max_drop"] not in by_bound
                or r["expected_latency_ms"] < by_bound[r["max_drop"]]["expected_latency_ms"]
            ):
                by_bound[r["max_drop"]] = r
    rows = [
        {
            "lambda": r["cost_weight"],
            "max_drop": "none" if r["max_drop"] is None else r["max_drop"],
            "drop_static_pt": 100 * r["val_accuracy_drop"],
            "drop_own_pt": 100 * r["val_accuracy_drop_vs_own_backbone"],
            "expected_ms": r["expected_latency_ms"],
            "val_exits": " ".join(f"{f:.2f}" for f in r["val_exit_fractions"]),
        }
        for r in [*unbounded, *by_bound.values()]
    ]
    print_table(rows, list(rows[0]))


def compare_runtimes(space: Any, workdir: Path, m: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Static and early exit in torch and onnxruntime: accuracy, batch-1 latency, batched throughput."""
    import numpy as np
    import torch

    from ddecs_search.analysis import load_exported
    from ddecs_search.data import load_splits, make_loader
    from ddecs_search.evaluation import measurement_threads, with_decisions
    from ddecs_search.profiling import resolve_device, time_pass, warm_up
    from ddecs_search.runtime import OnnxRuntimeBackend, TorchBackend

    meas = space.measurement
    cpu = torch.device("cpu")  # ONNX Runtime runs on the CPU; torch is timed there too, for a like pair
    if resolve_device(meas.device).type != "cpu":
        print("note: the runtime comparison runs on the CPU (no GPU runtime for ONNX yet)")
    model, policy, spec = load_exported(workdir)
    backends = {
        "torch": TorchBackend(model, policy, cpu, meas.threads),
        "onnxruntime": OnnxRuntimeBackend(model, policy, cpu, meas.threads),
    }
    test = load_splits(space.dataset, tuple(spec["input_shape"])).test
    xs_all, ys_all = [], []
    for x, y in make_loader(test, batch_size=meas.batch_size, shuffle=False, seed=0):
        xs_all.append(x)
        ys_all.append(y)
    labels = torch.cat(ys_all).numpy()
    out: dict[str, Any] = {}
    with measurement_threads(space, cpu), torch.inference_mode():
        for name, b in backends.items():
            outs = [b.predict(x) for x in xs_all]
            preds, exits = np.concatenate([p for p, _ in outs]), np.concatenate([e for _, e in outs])
            static_preds = np.concatenate(
                [np.asarray(b.static_fn()(b.native(x))).argmax(axis=1) for x in xs_all]
            )
            # per-sample (backbone right) - (early exit right): its mean is the drop, its spread the drop's
            # paired standard error (the test split's sampling noise, beside the drop: rule 4)
            paired = (static_preds == labels).astype(float) - (preds == labels).astype(float)
            drop_se = float(paired.std(ddof=1) / np.sqrt(len(paired))) if len(paired) > 1 else 0.0
            out[name] = {
                "source": b.source,
                "accuracy": float((preds == labels).mean()),
                "static_accuracy": float((static_preds == labels).mean()),
                "accuracy_drop_se": drop_se,
                "exit_fractions": (np.bincount(exits, minlength=model.num_exits) / len(exits)).tolist(),
                "_preds": preds,
                "_exits": exits,
            }
        samples = torch.cat(xs_all)[: meas.latency_samples]
        # each runtime's latency table (what expected_latency_ms is built from), weighted by the timed
        # samples' own exits: compared below with their measured batch-1 latency
        tables = {}
        for name, b in backends.items():
            costs = b.latency_costs(warmup=meas.warmup, repeats=meas.repeats)
            decisions = b.decision_costs(samples[:1], warmup=meas.warmup, repeats=meas.repeats)
            path = with_decisions(costs, decisions).path()
            tables[name] = float(path[out[name]["_exits"][: len(samples)]].mean())
        contenders = {}
        for name, b in backends.items():
            native = b.native(samples)
            contenders[f"{name}/static"] = (b.static_fn(), native)
            contenders[f"{name}/early_exit"] = (b.early_exit_fn(), native)
        names = list(contenders)
        for name in names:
            fn, xs = contenders[name]
            warm_up([fn], xs, meas.warmup)
        per_sample: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for r in range(rounds):  # rotating order: drift and cache effects hit every contender alike
            for name in names[r % len(names) :] + names[: r % len(names)]:
                fn, xs = contenders[name]
                per_sample[name].append(time_pass(fn, xs, cpu))
        batched = torch.cat(xs_all)[: 4 * meas.batch_size]
        batch_in = {}
        for name, b in backends.items():
            native = b.native(batched)
            chunks = [native[i : i + meas.batch_size] for i in range(0, len(native), meas.batch_size)]
            batch_in[f"{name}/static"] = (b.static_fn(), chunks)
            batch_in[f"{name}/early_exit"] = (b.early_exit_fn(), chunks)
        rates: dict[str, list[float]] = {n: [] for n in names}
        for name in names:
            fn, chunks = batch_in[name]
            fn(chunks[0])
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                fn, chunks = batch_in[name]
                t0 = time.perf_counter()
                for c in chunks:
                    fn(c)
                rates[name].append(len(batched) / (time.perf_counter() - t0))
    lat = {n: np.stack(v) for n, v in per_sample.items()}  # (rounds, samples) ms
    torch_ref = out["torch"]
    for name in backends:
        st, ee = lat[f"{name}/static"], lat[f"{name}/early_exit"]
        round_speedup = st.mean(axis=1) / ee.mean(axis=1)
        sr, er = np.asarray(rates[f"{name}/static"]), np.asarray(rates[f"{name}/early_exit"])
        res = out[name]
        res.update(
            {
                "latency_ms": float(np.median(ee, axis=0).mean()),
                "baseline_latency_ms": float(np.median(st, axis=0).mean()),
                "latency_ms_rounds": [float(v) for v in ee.mean(axis=1)],
                "baseline_latency_ms_rounds": [float(v) for v in st.mean(axis=1)],
                "speedup": float(np.median(st, axis=0).mean() / np.median(ee, axis=0).mean()),
                "speedup_spread": [float(round_speedup.min()), float(round_speedup.max())],
                "static_samples_per_s": float(np.median(sr)),
                "early_exit_samples_per_s": float(np.median(er)),
                "batched_throughput_speedup": float(np.median(er / sr)),
                "batched_throughput_speedup_spread": [float((er / sr).min()), float((er / sr).max())],
                "accuracy_drop": res["static_accuracy"] - res["accuracy"],
                "table_expected_latency_ms": tables[name],
                "table_expected_over_measured": tables[name] / float(np.median(ee, axis=0).mean()),
                "agreement_with_torch": float(
                    ((res["_preds"] == torch_ref["_preds"]) & (res["_exits"] == torch_ref["_exits"])).mean()
                ),
            }
        )
    for name in backends:
        out[name].pop("_preds")
        out[name].pop("_exits")
    ort, tor = out["onnxruntime"], out["torch"]
    ort_vs_eager = lat["torch/static"].mean(axis=1) / lat["onnxruntime/early_exit"].mean(axis=1)
    # the stricter of two static networks (equal for frozen candidates): the product's (the static network
    # trained as long as the candidate, m["baseline_accuracy"]) and this network without its exits (a
    # joint candidate's own backbone, which joint training may have improved)
    vs_static, vs_own = 100 * (m["baseline_accuracy"] - ort["accuracy"]), 100 * ort["accuracy_drop"]
    goals = {
        "ort_batch1_speedup": ort["speedup"],
        "ort_batch1_speedup_goal": 2.5,
        "ort_accuracy_drop_pt": max(vs_static, vs_own),
        "ort_accuracy_drop_vs_static_pt": vs_static,
        "ort_accuracy_drop_vs_own_backbone_pt": vs_own,
        "ort_accuracy_drop_vs_own_backbone_se_pt": 100 * ort["accuracy_drop_se"],
        "ort_accuracy_drop_goal_pt": 1.0,
        "ort_early_exit_vs_torch_static": tor["baseline_latency_ms"] / ort["latency_ms"],
        "ort_early_exit_vs_torch_static_spread": [float(ort_vs_eager.min()), float(ort_vs_eager.max())],
        "ort_early_exit_vs_torch_static_goal": 5.0,
    }
    goals["met"] = bool(
        goals["ort_batch1_speedup"] >= 2.5
        and goals["ort_accuracy_drop_pt"] <= 1.0
        and goals["ort_early_exit_vs_torch_static"] >= 5.0
    )
    timing = {
        "rounds": rounds,
        "samples": len(samples),
        "batched_samples": len(batched),
        "batch_size": meas.batch_size,
        "threads": meas.threads,
        "interleaved": "4 contenders, rotating",
    }
    return {"runtimes": out, "goals": goals, "timing": timing}


def print_runtimes(res: dict[str, Any]) -> None:
    rows = []
    for name, r in res["runtimes"].items():
        rows.append(
            {
                "runtime": name,
                "static_acc": r["static_accuracy"],
                "ee_acc": r["accuracy"],
                "static_ms": r["baseline_latency_ms"],
                "ee_ms": r["latency_ms"],
                "speedup": r["speedup"],
                "spread": "{:.2f}-{:.2f}".format(*r["speedup_spread"]),
                "tput_speedup": r["batched_throughput_speedup"],
                "agree_torch": r["agreement_with_torch"],
                "table/meas": r["table_expected_over_measured"],
            }
        )
    t = res["timing"]
    print(
        f"\nboth runtimes, same samples, {t['rounds']} interleaved rounds ({t['samples']} samples at "
        f"batch 1, {t['batched_samples']} in batches of {t['batch_size']}), {t['threads']} thread(s); "
        "median (min-max over rounds):"
    )
    print_table(rows, list(rows[0]))
    for name, r in res["runtimes"].items():
        print(f"  {name}: {r['source']}; exits {[round(f, 3) for f in r['exit_fractions']]}")
    g = res["goals"]
    print(
        "static_acc: this network without its exits; the static network trained as long (top-level "
        f"baseline_accuracy) scored {g['ort_accuracy_drop_vs_static_pt']:+.2f} pt over the early exit, its "
        f"backbone alone {g['ort_accuracy_drop_vs_own_backbone_pt']:+.2f} pt (paired standard error "
        f"{g['ort_accuracy_drop_vs_own_backbone_se_pt']:.2f} pt on this test split); the goal takes the "
        "larger drop"
    )
    print(
        f"goal: ONNX Runtime batch-1 speedup {g['ort_batch1_speedup']:.2f}x (>= 2.5) at "
        f"{g['ort_accuracy_drop_pt']:.2f} pt drop (<= 1); early exit in ORT vs static eager torch "
        f"{g['ort_early_exit_vs_torch_static']:.1f}x (>= 5) -> {'MET' if g['met'] else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
