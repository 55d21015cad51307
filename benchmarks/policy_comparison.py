"""Exit policies compared on two real candidates: RL (PPO, DQN), the learned gate, the Q-table and tuned
thresholds, against the oracle bound — "choose on validation, report on test".

Candidates:
    ``lenet``: the default candidate of ``search_spaces/fashion_mnist_quick.yaml`` (Fashion-MNIST, LeNet,
    exits after conv1 and conv2, pool + linear branches, frozen backbone).
    ``alexnet``: the reference-style candidate of ``search_spaces/cifar10_alexnet.yaml`` (exits after conv1
    and conv4, conv + 256-unit branches, joint training with loss weights [0.15, 0.15, 0.70]) on CIFAR-10
    when it is on disk, else on Fashion-MNIST adapted to 3x32x32 (the output says which), with a reduced
    training budget (the output says how much).

Protocol, per candidate (trained once) and per seed ``s`` (>= 3):
    1. the validation exit table is split by ``ExitTable.split_selection(selection_fraction, split_seed)``
       (the space's ``dataset.split_seed``, the same parts in every seed: the baseline's early stopping
       chose its epoch on that fit part, so a selection part drawn with another seed would score choices
       on rows a choice was already made on) into a *fit* part and a *selection* part; every policy is
       fitted on the fit part, for every cost weight λ of a sweep, with its seed = ``s`` (RL agents also
       choose their training iteration on the selection part); the spread over seeds is the policies'
       own (initialisation, exploration), not the split's;
    2. per policy, λ is chosen on the *selection* part: the largest cost saving whose selection accuracy
       is within 1 point of the static network's selection accuracy (else the most accurate λ, and
       ``feasible_on_selection`` is false);
    3. that λ's policy is scored on *test* (labels only score): accuracy, expected cost (normalised:
       the static network = 1.0; MACs by default, ``--cost latency`` for the measured per-exit latency
       table), and
       ``oracle_capture = (1 - cost) / (1 - oracle cost)`` — the share of the oracle's test saving captured
       (0 when no λ was feasible on the selection part; the raw ratio is ``saving_over_oracle``);
       the oracle leaves at the earliest correct exit (reads labels: a bound, not a policy);
    4. measured: end-to-end batch-1 latency of real ``MultiExitNet.early_exit`` with the policy vs the
       static backbone (interleaved rounds, same samples; ``latency_ms``, ``speedup``), the policy's own
       decision time at exit 0 (``decision_us``, batch 1) and its fit time.
    Reported per policy: median and min..max over seeds.

Observations: ``threshold`` and ``qtable`` read max-prob; ``gate``, ``ppo`` and ``dqn`` read the *rich*
observation (confidence features, top-3 probabilities, agreement and divergence with every earlier exit, an
8-dim fixed projection of the branch's pooled hidden features, the cost spent so far); ``gate_confidence``
is the gate on the four confidence features only (it separates what the learner buys from what the
features buy).

Goal (issue 15): RL captures >= 80 % of the oracle's saving in full mode and beats thresholds by >= 5
capture points on both candidates. The output says whether it does.

Usage:
    python benchmarks/policy_comparison.py [--quick] [--json] [--device auto|cpu|cuda] [--seeds N]
        [--candidates lenet,alexnet] [--cost latency|macs]

``--quick``: small subsets, 1 training epoch, λ in {0.03, 0.1}, shorter RL training; figures are
indicative only (about 5 min per candidate on an idle 2-core CPU; far more on a loaded one). Full mode:
λ in {0.02, 0.05, 0.1, 0.2, 0.3, 0.5}, the policies' default RL budgets, larger subsets (see ``MODES``).
``--json``: the last stdout line is one JSON object with, per candidate, the per-policy keys (``ppo``,
``dqn``, ``qtable``, ``threshold``, ``gate``, ...).
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

from _common import banner, emit_json, parser, print_table

from ddecs_search.config import PolicyConfig, to_dict
from ddecs_search.evaluation import measurement_threads, prepare_candidate
from ddecs_search.policies import (
    ExitPolicy,
    ExitTable,
    OraclePolicy,
    create_policy,
    score_decisions,
)
from ddecs_search.spaces import candidate_from_dict, load_space, parse_space

ROOT = Path(__file__).resolve().parents[1]
MAX_DROP = 0.01
RICH = {"observation": "rich", "topk": 3, "hidden_dim": 8, "projection_seed": 0}


@dataclasses.dataclass(frozen=True)
class Mode:
    lenet_sizes: tuple[int | None, int | None, int | None]
    alexnet_sizes: tuple[int | None, int | None, int | None]
    baseline_epochs: int
    branch_epochs: int
    alexnet_epochs: int
    weights: tuple[float, ...]
    ppo: dict[str, Any]
    dqn: dict[str, Any]
    latency_samples: int


MODES = {
    "quick": Mode(
        (5000, 2000, 2000),
        (2000, 1000, 1000),
        1,
        1,
        1,
        (0.03, 0.1),
        # PPO starts out greedy-"always exit" and needs ~10 iterations of 512 steps to leave it (measured)
        {"iterations": 10, "patience": 6},
        {"iterations": 4, "patience": 4, "steps_per_iteration": 500, "explore_steps": 1500},
        60,
    ),
    "full": Mode(
        (20000, 5000, None),
        (20000, 5000, 10000),
        3,
        2,
        6,
        (0.02, 0.05, 0.1, 0.2, 0.3, 0.5),
        {"iterations": 20, "patience": 5},
        {"iterations": 10},
        300,
    ),
}

# policy key -> (kind, options, measured in the mode's RL budget)
POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "threshold": ("threshold", {}),
    "qtable": ("qtable", {}),
    "gate_confidence": ("gate", {}),
    "gate": ("gate", dict(RICH)),
    "ppo": ("ppo", dict(RICH)),
    "dqn": ("dqn", dict(RICH)),
}


# ------------------------------------------------------------------------------------------ candidates
def _lenet(mode: Mode, device: str, workdir: Path) -> tuple[Any, str]:
    space = load_space(ROOT / "search_spaces" / "fashion_mnist_quick.yaml")
    train, val, test = mode.lenet_sizes
    space = dataclasses.replace(
        space,
        dataset=dataclasses.replace(space.dataset, train_subset=train, val_subset=val, test_subset=test),
        backbone=dataclasses.replace(
            space.backbone,
            baseline=dataclasses.replace(space.backbone.baseline, epochs=mode.baseline_epochs),
        ),
        measurement=dataclasses.replace(space.measurement, device=device),
    )
    cand = candidate_from_dict(
        space, {"training": {"epochs": mode.branch_epochs}, "policy": {"kind": "gate", "options": RICH}}
    )
    what = (
        f"fashion_mnist_quick.yaml default candidate (LeNet, exits {list(cand.exit_points)}), Fashion-MNIST "
        f"train/val/test {train}/{val}/{test or 'all'}, baseline {mode.baseline_epochs} ep, "
        f"branches {mode.branch_epochs} ep ({cand.training.mode})"
    )
    return (space, cand), what


def _alexnet(mode: Mode, device: str, workdir: Path) -> tuple[Any, str]:
    from ddecs_search.data import availability

    have_cifar = any(a["name"] == "cifar10" and a["available"] for a in availability())
    data = to_dict(load_space(ROOT / "search_spaces" / "cifar10_alexnet.yaml"))
    train, val, test = mode.alexnet_sizes
    data["dataset"].update(
        name="cifar10" if have_cifar else "fashion-mnist",
        train_subset=train,
        val_subset=val,
        test_subset=test,
        num_workers=0,
    )
    ref = data["default_candidate"]["training"]
    data["backbone"]["baseline"] = {
        "epochs": mode.baseline_epochs,
        "lr": ref["lr"],
        "batch_size": ref["batch_size"],
        "optimizer": ref["optimizer"],
        "weight_decay": 0.0,
        "label_smoothing": ref["label_smoothing"],
    }
    data["default_candidate"]["training"]["epochs"] = mode.alexnet_epochs
    data["default_candidate"]["policy"] = {"kind": "gate", "cost_weight": 0.1, "options": RICH}
    data["measurement"]["device"] = device
    space = parse_space(data, "policy_comparison alexnet space")
    cand = candidate_from_dict(space, {})
    dataset = "CIFAR-10" if have_cifar else "Fashion-MNIST adapted to 3x32x32 (CIFAR-10 is not on disk)"
    what = (
        f"cifar10_alexnet.yaml reference candidate (AlexNet, exits {list(cand.exit_points)}, joint "
        f"{cand.training.loss_weights}), {dataset}, train/val/test {train}/{val}/{test}, baseline "
        f"{mode.baseline_epochs} ep, joint {mode.alexnet_epochs} ep (reduced budget)"
    )
    return (space, cand), what


CANDIDATES = {"lenet": _lenet, "alexnet": _alexnet}


# -------------------------------------------------------------------------------------------- scoring
def _point(table: ExitTable, exits: np.ndarray, path_cost: np.ndarray) -> dict[str, Any]:
    s = score_decisions(table, exits, path_cost)
    return {"accuracy": s.accuracy, "cost": s.cost, "exit_fractions": list(s.exit_fractions)}


def _choose(points: list[dict[str, Any]], static_select_acc: float) -> tuple[dict[str, Any], bool]:
    """The λ point with the largest selection-part saving within MAX_DROP of the static network."""
    feasible = [p for p in points if p["select"]["accuracy"] >= static_select_acc - MAX_DROP]
    if feasible:
        return min(feasible, key=lambda p: (p["select"]["cost"], -p["select"]["accuracy"])), True
    return max(points, key=lambda p: (p["select"]["accuracy"], -p["select"]["cost"])), False


def _fit(key: str, mode: Mode, seed: int, fit: ExitTable, select: ExitTable, cost: np.ndarray, lam: float):
    kind, options = POLICIES[key]
    options = {**options, **{"ppo": mode.ppo, "dqn": mode.dqn}.get(kind, {})}
    if kind != "threshold":
        options["seed"] = seed
    policy = create_policy(PolicyConfig(kind=kind, cost_weight=lam, options=options))
    start = time.perf_counter()
    policy.fit(fit, cost, lam, select=select)
    return policy, time.perf_counter() - start


def _decision_us(policy: ExitPolicy, model: Any, x: Any) -> float:
    """Median time of the policy's online decision at exit 0, batch 1 (outputs precomputed)."""
    import torch

    with torch.inference_mode():
        outs = [model.forward_with_hidden(x[i : i + 1])[0] for i in range(min(50, len(x)))]
        times = []
        for _ in range(3):
            for logits, hidden in outs:
                t0 = time.perf_counter_ns()
                if policy.feature_spec is None:
                    policy.exit_mask_from_logits(0, logits, None)
                else:
                    policy.exit_mask_from_outputs(0, [logits], hidden)
                times.append(time.perf_counter_ns() - t0)
    return float(np.median(times) / 1e3)


def run_candidate(
    name: str, mode: Mode, seeds: int, device: str, workdir: Path, cost: str = "latency"
) -> dict[str, Any]:
    import torch

    from ddecs_search.profiling import compare_static_vs_early_exit, device_name

    (space, cand), what = CANDIDATES[name](mode, device, workdir)
    print(f"[{name}] {what}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    prepared = prepare_candidate(space, cand, workdir=workdir / name, quiet=True)
    prepare_s = time.perf_counter() - t0
    costs = prepared.latency if cost == "latency" else prepared.macs
    path_cost = costs.normalised_path()
    test, val = prepared.test_table, prepared.val_table
    oracle = _point(test, OraclePolicy().decide_table(test), path_cost)
    oracle_saving = 1 - oracle["cost"]
    static_test_acc = float(test.correct[:, -1].mean())
    samples = torch.stack([prepared.splits.test[i][0] for i in range(mode.latency_samples)])
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in POLICIES}
    with measurement_threads(space, prepared.device):
        # one split for every seed: the one the baseline's early stopping and the product use
        fit, select = val.split_selection(space.dataset.selection_fraction, space.dataset.split_seed)
        for seed in range(seeds):
            static_select_acc = float(select.correct[:, -1].mean())
            for key in POLICIES:
                points = []
                for lam in mode.weights:
                    policy, fit_s = _fit(key, mode, seed, fit, select, path_cost, lam)
                    points.append(
                        {
                            "cost_weight": lam,
                            "policy": policy,
                            "fit_s": fit_s,
                            "select": _point(select, policy.decide_table(select), path_cost),
                        }
                    )
                best, feasible = _choose(points, static_select_acc)
                policy = best["policy"]
                scored = _point(test, policy.decide_table(test), path_cost)
                timing = compare_static_vs_early_exit(
                    prepared.model, policy, samples, prepared.device, warmup=5, rounds=3
                )
                run = {
                    "seed": seed,
                    "cost_weight": best["cost_weight"],
                    "feasible_on_selection": feasible,
                    "accuracy": scored["accuracy"],
                    "accuracy_drop": static_test_acc - scored["accuracy"],
                    "cost": scored["cost"],
                    "exit_fractions": scored["exit_fractions"],
                    # nothing is captured when no λ keeps the selection accuracy within budget
                    "oracle_capture": (1 - scored["cost"]) / oracle_saving if feasible else 0.0,
                    "saving_over_oracle": (1 - scored["cost"]) / oracle_saving,
                    "latency_ms": timing["early_exit"].mean_ms,
                    "baseline_latency_ms": timing["static"].mean_ms,
                    "speedup": timing["speedup"],
                    "decision_us": _decision_us(policy, prepared.model, samples),
                    "fit_s": float(np.median([p["fit_s"] for p in points])),
                    "mode": getattr(policy, "mode", None),
                }
                runs[key].append(run)
                print(
                    f"  [{name}] seed {seed} {key:<15} λ={run['cost_weight']:<5} acc {run['accuracy']:.4f} "
                    f"cost {run['cost']:.3f} capture {run['oracle_capture']:+.3f} "
                    f"latency {run['latency_ms']:.3f} ms (static {run['baseline_latency_ms']:.3f}) "
                    f"decision {run['decision_us']:.0f} us fit {run['fit_s']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )

    out: dict[str, Any] = {}
    for key, rs in runs.items():
        out[key] = {"runs": rs}
        for metric in (
            "oracle_capture",
            "accuracy",
            "accuracy_drop",
            "cost",
            "latency_ms",
            "speedup",
            "decision_us",
            "fit_s",
        ):
            vals = np.array([r[metric] for r in rs], dtype=float)
            out[key][metric] = float(np.median(vals))
            out[key][f"{metric}_min"] = float(vals.min())
            out[key][f"{metric}_max"] = float(vals.max())
    out["oracle"] = {"accuracy": oracle["accuracy"], "cost": oracle["cost"], "oracle_capture": 1.0}
    out["static"] = {
        "accuracy": static_test_acc,
        "cost": 1.0,
        "baseline_accuracy": prepared.baseline_accuracy,
    }
    out.update(
        candidate=what,
        splits={"train": len(prepared.splits.train), "val": val.num_samples, "test": test.num_samples},
        selection_fraction=space.dataset.selection_fraction,
        device=device_name(prepared.device),
        latency_source=f"torch {torch.__version__} {device_name(prepared.device)}, "
        f"{space.measurement.threads} thread(s), end-to-end batch 1, {mode.latency_samples} test samples",
        cost_table=f"{costs.unit} ({costs.source})",
        latency_ms_path=[float(c) for c in prepared.latency.path()],
        mmac_path=[float(c) for c in prepared.macs.path()],
        normalised_path_cost=[float(c) for c in path_cost],
        prepare_s=prepare_s,
    )
    out["verdict"] = verdict(out)
    return out


def verdict(res: dict[str, Any]) -> dict[str, Any]:
    """Which policy wins (median test capture among those whose λ kept the drop budget on the selection
    part in every seed: the budget is a choice, so test labels do not decide who may win), and the RL
    goal."""
    keys = [k for k in POLICIES]
    ok = [k for k in keys if all(r["feasible_on_selection"] for r in res[k]["runs"])]
    best = max(ok or keys, key=lambda k: res[k]["oracle_capture"])
    rl = max(("ppo", "dqn"), key=lambda k: res[k]["oracle_capture"])
    margin = res[rl]["oracle_capture"] - res["threshold"]["oracle_capture"]
    return {
        "best_policy": best,
        "best_rl": rl,
        "rl_capture": res[rl]["oracle_capture"],
        "rl_minus_threshold": margin,
        "gate_minus_threshold": res["gate"]["oracle_capture"] - res["threshold"]["oracle_capture"],
        "goal_met": bool(res[rl]["oracle_capture"] >= 0.8 and margin >= 0.05),
    }


def _report(result: dict[str, Any]) -> None:
    for name in result["candidates"]:
        res = result[name]
        print(f"\n[{name}] {res['candidate']}")
        print(
            f"static (final exit): test accuracy {res['static']['accuracy']:.4f}, cost 1.0; oracle: "
            f"accuracy {res['oracle']['accuracy']:.4f}, cost {res['oracle']['cost']:.3f}; normalised path "
            f"cost per exit {[round(c, 3) for c in res['normalised_path_cost']]} ({res['cost_table']}); "
            f"{res['latency_source']}"
        )

        def rng(key: str, m: str, fmt: str, res: dict[str, Any] = res) -> str:
            r = res[key]
            return f"{r[m]:{fmt}} [{r[m + '_min']:{fmt}}..{r[m + '_max']:{fmt}}]"

        rows = [
            {
                "policy": key,
                "oracle_capture": rng(key, "oracle_capture", ".3f"),
                "accuracy": rng(key, "accuracy", ".4f"),
                "cost": rng(key, "cost", ".3f"),
                "latency_ms": rng(key, "latency_ms", ".3f"),
                "speedup": rng(key, "speedup", ".2f"),
                "decision_us": rng(key, "decision_us", ".0f"),
                "fit_s": rng(key, "fit_s", ".1f"),
                "λ (per seed)": ",".join(str(r["cost_weight"]) for r in res[key]["runs"]),
            }
            for key in POLICIES
        ]
        print_table(rows, list(rows[0]))
        v = res["verdict"]
        print(
            f"verdict: best median test capture among the policies within {MAX_DROP * 100:.0f} pt on the "
            f"selection part in every seed: {v['best_policy']}; "
            f"best RL {v['best_rl']} captures {v['rl_capture']:.3f} ({v['rl_minus_threshold']:+.3f} vs "
            f"thresholds; gate {v['gate_minus_threshold']:+.3f} vs thresholds); issue-15 goal (>= 0.80 and "
            f">= +0.05): {'MET' if v['goal_met'] else 'NOT met'}"
            + (" (quick mode: the goal is defined on full mode)" if result["quick"] else "")
        )
        slow = [
            k
            for k in ("gate", "ppo", "dqn")
            if res[k]["latency_ms"] > res["threshold"]["latency_ms"]
            and res[k]["cost"] < res["threshold"]["cost"]
        ]
        if slow:
            print(
                f"decision cost: {', '.join(slow)} save expected cost vs thresholds but measure slower "
                "end to end: their richer features do not pay here"
            )


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds (>= 3 for median and spread)")
    p.add_argument("--candidates", default="lenet,alexnet", help="comma list of: lenet, alexnet")
    p.add_argument(
        "--cost",
        choices=("latency", "macs"),
        default="macs",
        help="cost table the policies optimise and capture is measured in (default macs: deterministic; "
        "latency: the measured per-exit table, which a loaded machine distorts)",
    )
    args = p.parse_args()
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    bad = [c for c in names if c not in CANDIDATES]
    if bad or args.seeds < 1:
        print(
            f"error: --candidates must be from {sorted(CANDIDATES)} (got {bad}); --seeds >= 1",
            file=sys.stderr,
        )
        return 2
    banner("policy comparison (RL vs gate vs thresholds vs oracle)", args.quick)
    mode = MODES["quick" if args.quick else "full"]
    from ddecs_search.ray_setup import init_ray

    start = time.perf_counter()
    t0 = time.perf_counter()
    init_ray(num_cpus=1)
    result: dict[str, Any] = {
        "ray_init_s": time.perf_counter() - t0,
        "quick": args.quick,
        "seeds": args.seeds,
        "cost_weights": list(mode.weights),
        "candidates": names,
    }
    with tempfile.TemporaryDirectory(prefix="policy_cmp_") as tmp:
        for name in names:
            result[name] = run_candidate(name, mode, args.seeds, args.device, Path(tmp), args.cost)
    result["wall_s"] = time.perf_counter() - start
    result["loadavg"] = list(os.getloadavg())
    _report(result)
    print(f"\ntotal {result['wall_s']:.0f}s, load average {result['loadavg'][0]:.1f} (1 min)")
    if args.json:
        for name in names:
            for key in POLICIES:
                for r in result[name][key]["runs"]:
                    r.pop("policy", None)
        emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
