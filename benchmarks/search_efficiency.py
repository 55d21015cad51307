"""How well and how efficiently the search searches, on the default space.

For each algorithm (NSGA-II, TPE, random) and seed, one search of ``search_spaces/fashion_mnist_quick.yaml``
(the default job) with the same trial budget runs on one local Ray, with the space's defaults: worker reuse,
the node's shared data cache, and multi-objective early stopping on. Then, for the early-stopping
comparison, the same searches (same algorithm(s), same seeds) run again with ``search.early_stopping``
off. Reported:

- **hypervolume** of each search's feasible full-fidelity front after N trials, per algorithm the median
  and spread (min..max) over seeds, on objectives normalised over all runs' trials together (0 = the best
  value any run found, 1 = the reference point: the worst value found, padded by 10 % of the range), so
  1.0 is the whole box and runs are comparable; the front is on the search's own (effective) objectives,
  the selection-part validation accuracy and table estimates it chooses with, and has the static network
  as a member, as the product's front does (``hv_trials_only``: without it). ``hv_floor`` is the part
  every arm holds before sampling (the static network and the space's warm-start candidates, first in
  ``trials.csv``); ``hv_gain_vs_random`` compares what the sampled trials add above it (medians over seeds).
  Context only: on the default space the floor is ~0.70 of the box, so the whole-volume ratio the goal is
  stated on stays close to 1 even when one sampler adds far more than the other;
- **orchestration overhead share**: ``1 - sum(trial body seconds) / (max_concurrent * Tuner.fit()
  seconds)`` over all runs: actor start-up, Tune's hand-over between trials, the sampler, checkpoints,
  result handling and idle slots (body = ``trial_wall_s``; a stopped trial's body = Tune's
  ``time_total_s`` up to its rung). Its breakdown: hand-overs (``worker_idle_s``), idle slots at the end
  of each search (a worker whose last trial ended before the search's last one), the first actor
  start-up per worker (``Tuner.fit()`` start to its first trial body) and the rest.
  ``overhead_share_without_end_idle`` is the same share less the idle slots at the end, beside it: those
  come from the budget and unequal trial lengths (no trial left to start), not from orchestration;
- **trial start on a reused worker**: ``worker_idle_s``, the seconds between a worker's previous trial
  body ending and the next one starting (Tune's result handling, the sampler, ``reset_config``); pooled,
  and per algorithm in ``reused_worker_start_s_by_algorithm`` (``gp`` fits its model there: ≈ 0.5-1.5 s);
  ``reused_worker_start_parts`` splits it per algorithm where Tune hands the worker its trial
  (``worker_reset_s``): ``worker_s``, the worker's own part (``reset``, its thread restart, the per-trial
  reset: what worker reuse is about), and ``driver_s``, the driver's (result, callbacks, the sampler);
- **per-trial cost vs the baseline**: mean full-trial body seconds / seconds to train the shared baseline
  once (every search trains it once; here the first search trains it and the others copy it); over the
  trials that trained: a repeat of a candidate evaluated before re-reports that result (``n_repeats`` per
  run, ``reused_from_trial`` in its row; ``n_redrawn``: draws of an evaluated candidate the searcher told
  the earlier result for and replaced by another draw, which no trial ran: ``redrawn_repeats`` in run.json);
  ``n_network_loads``: full trials that loaded a network an earlier trial trained (another policy or λ,
  ``network_from_trial``) and trained nothing: they count in the mean, which they lower;
  ``n_network_epoch_loads``: trials (full or stopped) whose training continued from another trial's
  checkpoint of the same network at a rung (``network_epochs_from_trial``), ``network_epochs_loaded`` the
  epochs they did not train again;
- **early stopping**: ``hv_ratio`` = median over seeds of hv(with) / hv(without), ``time_ratio`` =
  total trial body time with / without, same algorithm(s) and seeds; ``full_trial_cost_ratio``: over the
  configurations that reached full fidelity in both arms, their trial seconds with / without (what the
  rung points cost a trial that is not stopped; ``full_trial_pairs`` of them; biased like ``time_ratio``,
  below);
- **the samplers without early stopping**: when random and another algorithm both ran without it
  (``--es-algorithms tpe random``), ``without_early_stopping`` gives their hypervolumes and ratio to random
  where every trial is a full evaluation (null otherwise). Context beside ``hv_vs_random``, which stays on
  the searches with early stopping (the default): a stopped trial reaches the sampler only as pruned, so
  the two ratios together say what stopping does to a sampler's lead.

All searches share one module latency table, as they share the baseline: each starts from the table the
search before it left (``EXP/latency_table.json``) and adds the modules it meets first. The objective
``expected_latency_ms`` comes from that table, so the same candidate gets the same latency (and the
same latency-cost policy) in every search, and hypervolumes compare the searches, not the machine's load
while each search measured its modules (seen on this shared machine: the same 8 candidates measured
10-50 % slower in the search run under load 15 than in the one under load 6, which alone made the
early-stopping hv ratio 1.88). Later searches measure fewer modules, so their trials are cheaper; the
searches without early stopping run last, so ``time_ratio`` is biased *against* early stopping, and not a
little: in ``--quick --trials 24`` here, the same candidates took 1.4-2.4x longer in the search that
measured their modules than in the one that found them in the table (time ratio 1.04 with 12 of 24
trials stopped). A fair time comparison needs both arms to start from the same complete table (not done).
``--separate-latency-tables`` restores one table per search (fair in time, not in hypervolume).

**Paired replay** (``--replay-from DIR``). Two searches with a sampler diverge as soon as one of them stops a
trial: the sampler is told "pruned" instead of a result, later draws differ, and with 24 trials the two
arms of a seed shared only 10-11 configurations (session 16); NSGA-II, whose generations fill with complete
trials only, stays random in the arm with early stopping. The hypervolume ratio of such a pair measures the
sampler's path as much as the rule (0.83-1.17 per seed over sessions 15-16). ``--replay-from`` measures the
rule alone: for each algorithm and seed of the comparison it takes the configurations the search
``DIR/<algorithm>-s<seed>-full`` (a finished search of this benchmark without early stopping) drew, in
trial order, and evaluates exactly those, in that order, once with early stopping and once without
(``search.warm_start`` = the list, ``num_samples`` = its length; the sampler draws nothing). Both arms start
from that search's baseline and latency table (so neither measures modules the other finds), and their
order alternates over seeds (with first for the first seed) so that a drift of the machine's load does
not favour one arm. The JSON says ``early_stopping.pairing``: ``"replay"`` here, ``"search"`` otherwise.

The rule runs with the space's ``search.early_stopping`` knobs; ``--es-epsilon EPS`` sets its accuracy
tolerance for this run (docs/search_space.md, "Accuracy tolerance"), ``--es-rungs R ...`` its rung epochs
(fractions: points inside an epoch, e.g. ``0.5 1``), and ``early_stopping.rule_per_seed`` names the knobs
each arm with early stopping ran (read from its own ``space.yaml``).

``--quick`` shrinks the dataset subsets and the measurement repeats of the same space (not its search
dimensions) so that 4 searches of 8 trials fit in ~5 min on an idle 2-core CPU.

Usage::

    .venv/bin/python benchmarks/search_efficiency.py --quick --json     # 8 trials, seed 0
    .venv/bin/python benchmarks/search_efficiency.py --json             # 24 trials, seeds 0 1 2
    .venv/bin/python benchmarks/search_efficiency.py --json --algorithms --es-algorithms nsga2 --storage DIR
    .venv/bin/python benchmarks/search_efficiency.py --json --es-algorithms nsga2 --replay-from DIR

(``--algorithms`` with no algorithm runs only the searches without early stopping: a replay's sources.
``--from-storage`` runs nothing and summarises finished searches, e.g. seeds run one per invocation; with
``--replay-from`` it summarises paired replays. Its ``wall_s``, ``load_before`` and ``load_after`` are null:
the folders do not record the load their searches ran under, and the summary's own would pass for it.
Its ``space`` is null too (it searched no space file); every run names the space it searched
(``space_name``) and the sampler it ran (``sampler``: ``search.tpe``, ``search.gp`` or NSGA-II's
population resolved, and the encoding, read from the search's own ``space.yaml``), ``samplers`` lists each
algorithm's distinct settings, and the text warns when one algorithm's searches ran several: a ratio
never pools two settings under one name unsaid.
A search resumed after its driver was killed (``ddecs-search resume``) counts for hypervolume but is
named in ``resumed_searches`` and left out of every time figure: its killed driver's time was never
recorded, so its trial-slot time would come out short (seen: an overhead share of -6 %).)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
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
from ddecs_search.errors import ConfigError  # noqa: E402
from ddecs_search.experiment import (  # noqa: E402
    NETWORK_EPOCHS_FROM_KEY,
    NETWORK_EPOCHS_KEY,
    NETWORK_FROM_KEY,
    REDRAWN_KEY,
    REUSED_FROM_KEY,
)
from ddecs_search.ray_setup import init_ray  # noqa: E402
from ddecs_search.search import ConditionalSpace, Experiment, run_search, sampler_settings  # noqa: E402
from ddecs_search.spaces import parse_space  # noqa: E402
from ddecs_search.static_contender import static_values  # noqa: E402

ALGORITHMS = ("nsga2", "tpe", "gp", "random")
DEFAULT_ALGORITHMS = ("nsga2", "tpe", "random")  # gp on request: the runs the figures so far were made with
DEFAULT_SPACE = ROOT / "search_spaces" / "fashion_mnist_quick.yaml"
#: --quick: the default space on smaller subsets with fewer measurement repeats (search dimensions unchanged)
QUICK_OVERRIDES = {
    "dataset": {"train_subset": 3000, "val_subset": 1000, "test_subset": 1000},
    "backbone": {"baseline": {"epochs": 2, "lr": 0.002, "batch_size": 128}},
    "measurement": {"latency_samples": 60, "warmup": 3, "repeats": 8, "energy_min_seconds": 0.2},
}


def load_space_data(path: Path, quick: bool) -> dict:
    data = yaml.safe_load(path.read_text())
    if quick:
        for section, values in QUICK_OVERRIDES.items():
            data[section] = {**data.get(section, {}), **values}
    return data


def replay_candidates(exp_dir: Path) -> list[dict]:
    """The configurations a finished search drew, in trial order, as ``search.warm_start`` entries.

    Read from the sampler's parameters (the ``config/...`` columns of ``trials.csv``), not from the
    ``candidate`` column: a stopped or failed trial has parameters but no candidate. Decoded by the same
    :meth:`ConditionalSpace.candidate_override` the trainable builds its candidate with.
    """
    exp = Experiment.at(str(exp_dir))
    fn = ConditionalSpace.from_space(exp.read_space())
    table = exp.read_trials().sort_values("trial_index")
    entries = []
    for _, row in table.iterrows():
        config: dict = {}
        for column, value in row.items():
            if not str(column).startswith("config/") or value is None:
                continue
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and math.isnan(value):
                continue  # a parameter another branch of the define-by-run space did not draw
            *parents, leaf = str(column).split("/")[1:]
            if parents == ["exit_points"]:  # "0" or "1,2"; the CSV reader may have made 0 or 0.0 of it
                value = str(int(value)) if isinstance(value, float | int) else str(value)
            elif isinstance(value, float) and value.is_integer() and leaf != "cost_weight":
                value = int(value)  # an integer choice in a column with gaps reads as float
            node = config
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        entries.append(fn.candidate_override(config))
    return entries


def run_one(
    data: dict,
    source: str,
    algorithm: str,
    seed: int,
    trials: int,
    early_stopping: bool,
    storage: Path,
    baseline_from: Path | None,
    latency_from: Path | None = None,
    replay: list[dict] | None = None,
) -> dict:
    data = json.loads(json.dumps(data))
    es = {**data["search"].get("early_stopping", {}), "enabled": early_stopping}
    if replay is not None:  # exactly these configurations, in this order (see "Paired replay" above)
        data["search"]["warm_start"], trials = replay, len(replay)
    data["search"].update(algorithm=algorithm, seed=seed, num_samples=trials, verify=False, early_stopping=es)
    space = parse_space(data, source)
    name = f"{algorithm}-s{seed}-{'es' if early_stopping else 'full'}"
    if baseline_from is not None:  # same space -> same baseline: reuse it instead of training it again
        shutil.copytree(baseline_from / "baseline", storage / name / "baseline")
    if latency_from is not None and (latency_from / "latency_table.json").is_file():
        # one module latency table for all searches (see the module docstring)
        (storage / name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(latency_from / "latency_table.json", storage / name / "latency_table.json")
    start = time.time()
    outcome = run_search(space, name=name, storage=str(storage), quiet=True, verify=False)
    if not outcome.finished:  # stopped (Ctrl-C): a part of a search is not a figure of this benchmark
        raise SearchInterrupted(outcome.exp_root)
    return collect(Path(outcome.exp_root), algorithm, seed, early_stopping, time.time() - start)


class SearchInterrupted(Exception):
    """A search of the plan ended before its trials did (its folder can be resumed, not summarised)."""


def collect(exp_dir: Path, algorithm: str, seed: int, early_stopping: bool, wall: float) -> dict:
    """One finished search's figures, read from its experiment folder."""
    exp = Experiment.at(str(exp_dir))
    record = exp.read_record()
    table = exp.read_trials()
    space = exp.read_space()
    objectives = [(o["name"], o["mode"]) for o in record["objectives"]]
    full = table[table["evaluated"] == True]  # noqa: E712
    # trials that re-reported an earlier trial's evaluation of the same candidate (not trained again)
    repeats = full[full[REUSED_FROM_KEY].notna()] if REUSED_FROM_KEY in full else full.iloc[:0]
    trained = full.drop(index=repeats.index)
    # full trials that loaded a network another trial trained (another policy or λ) and fitted only a policy
    loads = full[full[NETWORK_FROM_KEY].notna()] if NETWORK_FROM_KEY in full else full.iloc[:0]
    # trials (full or stopped) whose training continued from another trial's rung checkpoint of its network
    if NETWORK_EPOCHS_FROM_KEY in table:
        continued = table[table[NETWORK_EPOCHS_FROM_KEY].notna()]
    else:
        continued = table.iloc[:0]
    ok = full[(full["feasible"] == True) & (full["full_fidelity"] == True)]  # noqa: E712
    # the warm start (search.warm_start), first in trials.csv: points every arm of this space evaluates
    warm = ok[ok.index.isin(table.index[: len(space.search.warm_start)])]
    stopped = table[table["stopped_early"] == True] if "stopped_early" in table else table.iloc[:0]  # noqa: E712
    tune_s = table["trial_time_total_s"].astype(float)
    body = table["trial_wall_s"].astype(float).fillna(tune_s) if "trial_wall_s" in table else tune_s
    body = body.fillna(0.0)
    reused = full[full.get("worker_trial_number", 0) >= 2] if "worker_trial_number" in full else full.iloc[:0]
    # idle slot time at the end of the search: each worker's last body end before the search's last one
    # (a stopped trial's end: its start + Tune's time_total_s up to its rung)
    ends = None
    if "worker_pid" in table and "trial_started_at" in table:
        end = table["trial_finished_at"].astype(float) if "trial_finished_at" in table else None
        start_plus = table["trial_started_at"].astype(float) + table["trial_time_total_s"].astype(float)
        end = start_plus if end is None else end.fillna(start_plus)
        ends = end.groupby(table["worker_pid"]).max().dropna()
    tail = float((ends.max() - ends).sum()) if ends is not None and len(ends) else 0.0
    handover = float(table["worker_idle_s"].fillna(0).sum()) if "worker_idle_s" in table else 0.0
    split = (
        list(reused[["worker_idle_s", "worker_reset_s"]].dropna().astype(float).itertuples(index=False))
        if len(reused) and {"worker_idle_s", "worker_reset_s"} <= set(reused)
        else []
    )
    # actor start-up: from Tuner.fit() starting to each worker's first trial body starting
    fit_started = record.get("last_fit_started_at")
    first = table.groupby("worker_pid")["trial_started_at"].min() if "worker_pid" in table else None
    actor_start = (
        float((first - fit_started).clip(lower=0).sum()) if fit_started and first is not None else None
    )
    # a search resumed after its driver was killed: trials started before this fit, whose driver's time
    # was never recorded (fit_s, wall_s add up finished drivers only): its timings are not a figure
    started = table["trial_started_at"].astype(float).min() if "trial_started_at" in table else float("nan")
    resumed = bool(fit_started and np.isfinite(started) and started < float(fit_started))
    names = [n for n, _ in objectives]
    _, static_of = static_values(full)  # the product's static contender, a member of every front
    static = [v if v is not None and np.isfinite(v) else None for v in map(static_of.get, names)]
    rung_stops: dict[str, int] = {}
    state_file = exp_dir / "early_stopping.json"
    if state_file.is_file():
        for stop in json.loads(state_file.read_text()).get("stopped", {}).values():
            rung = str(stop.get("rung", stop.get("epoch")))
            rung_stops[rung] = rung_stops.get(rung, 0) + 1
    return {
        "algorithm": algorithm,
        "seed": seed,
        "early_stopping": early_stopping,
        "exp": str(exp_dir),
        "space_name": space.name,
        # the sampler the search ran (read from its own space.yaml), automatic values resolved
        "sampler": sampler_settings(space),
        "resumed": resumed,
        "handover_s": handover,
        "tail_s": tail,
        "actor_start_s": actor_start,
        "values": ok[names].to_numpy(dtype=float),
        "warm_values": warm[names].to_numpy(dtype=float),
        "static": np.array(static, dtype=float) if all(v is not None for v in static) else None,
        "rung_stops": rung_stops,
        # the stopping rule's knobs this search ran with (its own space.yaml; off in an arm without it)
        "es_rule": dataclasses.asdict(space.search.early_stopping),
        "objectives": objectives,
        "fit_s": float(record.get("fit_s", wall)),
        "wall_s": wall,
        "body_s": float(body.sum()),
        "n_trials": len(table),
        "n_full": len(full),
        "n_stopped": len(stopped),
        "n_feasible": len(ok),
        "max_concurrent": space.search.max_concurrent,
        "baseline_train_s": float(record["baseline"].get("train_time_s", float("nan"))),
        "n_repeats": len(repeats),
        "n_network_loads": len(loads),
        "n_network_epoch_loads": len(continued),
        "network_epochs_loaded": int(continued[NETWORK_EPOCHS_KEY].astype(float).sum())
        if len(continued)
        else 0,
        # draws of an evaluated candidate the searcher answered itself and drew again (no trial ran them)
        "n_redrawn": int(record.get(REDRAWN_KEY, 0)),
        # a trained full trial's cost (a repeat re-reports another trial's result in well under a second)
        "mean_full_trial_s": float(trained["trial_wall_s"].mean()) if len(trained) else float("nan"),
        "workers": int(full["worker_pid"].nunique()) if "worker_pid" in full else 0,
        "reused_start_s": [float(x) for x in reused["worker_idle_s"].dropna()] if len(reused) else [],
        # the same starts split where Tune handed the worker its trial (rows written before worker_reset_s
        # existed have none): the worker's own part, and the driver's (result, callbacks, the sampler)
        "reused_worker_s": [float(r) for _, r in split],
        "reused_driver_s": [float(i - r) for i, r in split],
        # full-fidelity trial seconds per configuration (the candidate's JSON; trained trials, not
        # repeats): paired across the arms
        "full_s_by_candidate": dict(
            zip(trained["candidate"].astype(str), trained["trial_wall_s"].astype(float), strict=True)
        )
        if "candidate" in trained and "trial_wall_s" in trained
        else {},
    }


def _front_points(run: dict, with_static: bool, values: str = "values") -> np.ndarray:
    if with_static and run["static"] is not None:
        return np.vstack([run[values].reshape(-1, len(run["static"])), run["static"][None, :]])
    return run[values]


def hypervolumes(runs: list[dict]) -> tuple[np.ndarray, list[str]]:
    """Each run's normalised hypervolume (see the module docstring); sets ``run["hv"]``.

    ``hv``: the search's front with the static network as a member (as ``analysis.compute_front`` ranks
    it by default, so a trial the static network dominates adds nothing); ``hv_trials_only``: the
    trials alone (the definition of the first session's figures); ``hv_floor``: the static network and
    the space's warm-start candidates alone, the part of ``hv`` that every arm gets before sampling.
    """
    directions = [m for _, m in runs[0]["objectives"]]
    # the box comes from the trials alone (the static network's latency is measured per search, under
    # whatever load; it must not move the reference of every run)
    everything = np.vstack([r["values"] for r in runs if len(r["values"])])
    reference = default_reference_point(everything, directions)
    best = to_minimization(everything, directions).min(axis=0)
    worst = to_minimization(reference[None, :], directions)[0]
    scale = np.where(worst > best, worst - best, 1.0)
    for r in runs:
        for key, with_static, values in (
            ("hv", True, "values"),
            ("hv_trials_only", False, "values"),
            ("hv_floor", True, "warm_values"),
        ):
            points = _front_points(r, with_static, values)
            unit = (to_minimization(points, directions) - best) / scale  # 0 = best found, 1 = reference
            unit = unit[(unit < 1.0).all(axis=1)] if len(unit) else unit  # outside the box: no volume
            ones = np.ones(len(directions))
            r[key] = float(hypervolume(unit, ["min"] * len(directions), ones)) if len(unit) else 0.0
    return reference, directions


def paired_full_cost(pairs: list[tuple[dict, dict]]) -> dict[str, float | int | None]:
    """Trial seconds with / without early stopping of the configurations full in both arms of each pair.

    The time ratio mixes what stops save with what rung points cost; this isolates the cost: the same
    configuration, trained and evaluated in full in both searches (same seed, same shared table).
    """
    on_s = off_s = 0.0
    n = 0
    for on, off in pairs:
        a, b = on.get("full_s_by_candidate", {}), off.get("full_s_by_candidate", {})
        for cand in a.keys() & b.keys():
            on_s, off_s, n = on_s + a[cand], off_s + b[cand], n + 1
    return {"full_trial_cost_ratio": on_s / off_s if off_s > 0 else None, "full_trial_pairs": n}


def summarise(runs: list[dict], pairing: str = "search") -> dict:
    reference, _ = hypervolumes(runs)
    main = [r for r in runs if r["early_stopping"]]
    hv: dict[str, list[float]] = {}
    hv_trials: dict[str, list[float]] = {}
    floor: dict[str, list[float]] = {}  # the static network and the warm start alone, per search
    gain: dict[str, list[float]] = {}  # hv above that floor, per search
    for r in main:
        hv.setdefault(r["algorithm"], []).append(r["hv"])
        hv_trials.setdefault(r["algorithm"], []).append(r["hv_trials_only"])
        floor.setdefault(r["algorithm"], []).append(r["hv_floor"])
        gain.setdefault(r["algorithm"], []).append(r["hv"] - r["hv_floor"])
    timed = [r for r in runs if not r["resumed"]]  # a resumed search's fit time misses a driver's
    slot_s = sum(r["max_concurrent"] * r["fit_s"] for r in timed)
    starts = [s for r in runs for s in r["reused_start_s"]]
    algorithms = list(dict.fromkeys(r["algorithm"] for r in runs))  # in the order they ran
    pairs = [
        (on, off)
        for on in main
        for off in runs
        if not off["early_stopping"] and (off["algorithm"], off["seed"]) == (on["algorithm"], on["seed"])
    ]
    early = None
    if pairs:
        ratios = [on["hv"] / off["hv"] if off["hv"] > 0 else float("nan") for on, off in pairs]
        early = {
            "pairing": pairing,
            "hv_ratio": float(np.nanmedian(ratios)) if not all(np.isnan(ratios)) else None,
            "time_ratio": sum(on["body_s"] for on, _ in pairs) / sum(off["body_s"] for _, off in pairs),
            "fit_time_ratio": (
                sum(on["fit_s"] for on, _ in pairs) / sum(off["fit_s"] for _, off in pairs)
                if not any(r["resumed"] for pair in pairs for r in pair)
                else None
            ),
            "hv_ratio_per_seed": [float(x) for x in ratios],
            "hv_trials_only_ratio_per_seed": [
                on["hv_trials_only"] / off["hv_trials_only"] if off["hv_trials_only"] > 0 else float("nan")
                for on, off in pairs
            ],
            "stopped_trials": [on["n_stopped"] for on, _ in pairs],
            "stops_per_rung": [on["rung_stops"] for on, _ in pairs],
            "rule_per_seed": [on.get("es_rule", {}) for on, _ in pairs],  # {} in records older than it
            **paired_full_cost(pairs),
            "pairs": [f"{on['algorithm']}-s{on['seed']}" for on, _ in pairs],
        }
    # the samplers compared where every trial is a full evaluation: what early stopping does to a sampler's
    # lead (stopped trials reach it only as pruned) shows beside hv_vs_random, which keeps its meaning
    off_hv: dict[str, list[float]] = {}
    for r in runs:
        if not r["early_stopping"]:
            off_hv.setdefault(r["algorithm"], []).append(r["hv"])
    off_vs_random = _vs_random(off_hv)
    without = (
        {
            "hv": {a: float(np.median(v)) for a, v in off_hv.items()},
            "hv_per_seed": {a: [float(x) for x in v] for a, v in off_hv.items()},
            "hv_vs_random": off_vs_random,
        }
        if off_vs_random
        else None
    )
    samplers: dict[str, list[dict]] = {}  # per algorithm, each distinct setting its searches ran
    for r in runs:
        if r["sampler"] not in samplers.setdefault(r["algorithm"], []):
            samplers[r["algorithm"]].append(r["sampler"])
    return {
        "hv": {a: float(np.median(v)) for a, v in hv.items()},
        "hv_spread": {a: [float(min(v)), float(max(v))] for a, v in hv.items()},
        "hv_per_seed": {a: [float(x) for x in v] for a, v in hv.items()},
        "hv_vs_random": _vs_random(hv),
        "hv_trials_only": {a: float(np.median(v)) for a, v in hv_trials.items()},
        # context for hv_vs_random, not a replacement: the part of hv both arms share (the static network
        # and the warm-start candidates, evaluated before any sampling) and the ratio of what the
        # sampled trials add above it
        "hv_floor": {a: float(np.median(v)) for a, v in floor.items()},
        "hv_gain_vs_random": _vs_random(gain),
        "samplers": samplers,
        # over the searches that ran in one driver (None if none did; "resumed_searches" names the others)
        "overhead_share": 1.0 - sum(r["body_s"] for r in timed) / slot_s if timed else None,
        # the same without the slots left idle at the end of each search (the last trials running while no
        # trial is left to start: a property of the budget and trial lengths, not of the orchestration);
        # reported beside overhead_share, which keeps its documented meaning
        "overhead_share_without_end_idle": (
            1.0 - sum(r["body_s"] for r in timed) / slot_s - sum(r["tail_s"] for r in timed) / slot_s
            if timed
            else None
        ),
        # where it went: Tune's hand-over of a reused worker, idle slots at the end of each search, the
        # first actor start-up per worker (process, imports, the trainable's parameters) and the rest
        # (result/checkpoint handling, publishing, Tune's start and end)
        "overhead_breakdown": _breakdown(timed, slot_s) if timed else None,
        "resumed_searches": [Path(r["exp"]).name for r in runs if r["resumed"]],
        "reused_worker_start_s": _start_figure(starts),
        # per algorithm: a sampler that thinks in the driver (gp's model fit) keeps the freed worker waiting,
        # and pooled with the others its wait would pass unseen
        "reused_worker_start_s_by_algorithm": {
            algorithm: _start_figure(_pooled(runs, algorithm, "reused_start_s")) for algorithm in algorithms
        },
        # the same starts split where Tune handed the worker its trial (``worker_reset_s``): ``worker_s`` is
        # the worker's own part (what worker reuse is about), ``driver_s`` the driver's (the finished
        # trial's result and callbacks, the sampler's suggest); counts 0 on folders from before the split
        "reused_worker_start_parts": {
            algorithm: {
                "worker_s": _start_figure(_pooled(runs, algorithm, "reused_worker_s")),
                "driver_s": _start_figure(_pooled(runs, algorithm, "reused_driver_s")),
            }
            for algorithm in algorithms
        },
        "per_trial_vs_baseline_cost": float(
            np.nanmean([r["mean_full_trial_s"] for r in timed])
            / np.nanmean([r["baseline_train_s"] for r in timed])
        )
        if timed
        else None,
        "early_stopping": early,
        "without_early_stopping": without,
        "objectives": [f"{n} ({m})" for n, m in runs[0]["objectives"]],
        "reference_point": [float(x) for x in reference],
        "runs": [
            {
                k: r[k]
                for k in (
                    "algorithm",
                    "seed",
                    "early_stopping",
                    "space_name",
                    "sampler",
                    "resumed",
                    "hv",
                    "hv_trials_only",
                    "hv_floor",
                    "n_trials",
                    "n_full",
                    "n_stopped",
                    "n_feasible",
                    "n_repeats",
                    "n_network_loads",
                    "n_network_epoch_loads",
                    "network_epochs_loaded",
                    "n_redrawn",
                    "fit_s",
                    "body_s",
                    "workers",
                    "mean_full_trial_s",
                    "rung_stops",
                )
            }
            for r in runs
        ],
    }


def _vs_random(per_algorithm: dict[str, list[float]]) -> dict[str, float]:
    """Each other algorithm's median over its searches / random's median; empty without random (or at 0)."""
    base = float(np.median(per_algorithm["random"])) if "random" in per_algorithm else 0.0
    if not base:
        return {}
    return {a: float(np.median(v)) / base for a, v in per_algorithm.items() if a != "random"}


def _pooled(runs: list[dict], algorithm: str, key: str) -> list[float]:
    """The per-run lists ``key`` of one algorithm's runs, as one list."""
    return [x for r in runs if r["algorithm"] == algorithm for x in r[key]]


def _start_figure(starts: list[float]) -> dict[str, float | int | None]:
    """Median, max and count of trial starts on a reused worker (nulls when there were none)."""
    return {
        "median": float(np.median(starts)) if starts else None,
        "max": float(max(starts)) if starts else None,
        "n": len(starts),
    }


def _breakdown(runs: list[dict], slot_s: float) -> dict[str, float]:
    parts = {
        "handover": sum(r["handover_s"] for r in runs) / slot_s,
        "tail_idle": sum(r["tail_s"] for r in runs) / slot_s,
    }
    if all(r["actor_start_s"] is not None for r in runs):
        parts["actor_start"] = sum(r["actor_start_s"] for r in runs) / slot_s
    parts["rest"] = 1.0 - sum(r["body_s"] for r in runs) / slot_s - sum(parts.values())
    return parts


def workers_import_this_checkout() -> str:
    """Put this checkout first on ``PYTHONPATH``, which the local Ray's workers inherit; returns it.

    The driver imports the package from this checkout (``ROOT``, first on its ``sys.path``), but Ray's
    workers, where the trials run, import it from their own path: with ``PYTHONPATH`` naming another
    checkout (a worktree of the code under test, say), the trials would run other code than the driver's
    sampler and space, and the benchmark would measure a mix without saying so. Call before Ray starts.
    """
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *rest])
    return os.environ["PYTHONPATH"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--space", type=Path, default=DEFAULT_SPACE, help="search space (default: the default job)"
    )
    parser.add_argument("--trials", type=int, help="trials per search (default 8 quick, 24 otherwise)")
    parser.add_argument("--seeds", type=int, nargs="+", help="sampler seeds (default: 0 quick, 0 1 2)")
    parser.add_argument(
        "--algorithms",
        nargs="*",
        choices=ALGORITHMS,
        default=list(DEFAULT_ALGORITHMS),
        help="algorithms searched with early stopping (none: only the --es-algorithms searches without it, "
        "e.g. the sources of a later --replay-from)",
    )
    parser.add_argument(
        "--es-algorithms",
        nargs="*",
        choices=ALGORITHMS,
        default=["nsga2"],
        help="algorithms also run without early stopping for the comparison (none: skip it)",
    )
    parser.add_argument("--storage", type=Path, help="keep the experiments here (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="reduced subsets: ~5 min on an idle 2-core CPU")
    parser.add_argument("--json", action="store_true", help="last stdout line: the summary as JSON")
    parser.add_argument(
        "--separate-latency-tables",
        action="store_true",
        help="every search measures its own module latency table (default: each starts from the last one's)",
    )
    parser.add_argument(
        "--continue-from",
        type=Path,
        metavar="EXP_DIR",
        help="start from this finished search's baseline and latency table, so that seeds added in a later "
        "run are measured against the same ones (summarise them all with --from-storage)",
    )
    parser.add_argument(
        "--replay-from",
        type=Path,
        metavar="DIR",
        help="early-stopping comparison only, paired: both arms evaluate exactly the configurations "
        "DIR/<algorithm>-s<seed>-full drew, for each of --es-algorithms and --seeds; --algorithms and "
        "--trials do not apply (see the module docstring)",
    )
    parser.add_argument(
        "--es-epsilon",
        type=float,
        metavar="EPS",
        help="search.early_stopping.epsilon of the searches with early stopping (accuracy tolerance at "
        "intermediate rungs, docs/search_space.md; default: the space's)",
    )
    parser.add_argument(
        "--es-rungs",
        type=float,
        nargs="+",
        metavar="R",
        help="search.early_stopping.rungs of the searches with early stopping (epochs; a fraction is a point "
        "inside an epoch, e.g. 0.5 1; docs/search_space.md; default: the space's)",
    )
    parser.add_argument(
        "--from-storage",
        action="store_true",
        help="run nothing: summarise the finished searches already in --storage",
    )
    args = parser.parse_args(argv)
    if args.continue_from is not None and not (args.continue_from / "baseline").is_dir():
        parser.error(f"--continue-from {args.continue_from}: no baseline/ in it (not a finished search)")
    if not args.algorithms and not args.es_algorithms and not args.from_storage:
        parser.error("--algorithms and --es-algorithms are both empty: no search to run")
    if args.es_epsilon is not None and not 0.0 <= args.es_epsilon < 1.0:
        parser.error(f"--es-epsilon: an accuracy tolerance in [0, 1), got {args.es_epsilon}")
    if args.es_epsilon is not None and args.from_storage:
        parser.error("--es-epsilon runs searches; --from-storage summarises finished ones (their own rule)")
    if args.es_rungs is not None and args.from_storage:
        parser.error("--es-rungs runs searches; --from-storage summarises finished ones (their own rule)")
    trials = args.trials or (8 if args.quick else 24)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    replays: dict[tuple[str, int], list[dict]] = {}
    if args.replay_from is not None:
        if args.continue_from is not None or args.separate_latency_tables:
            parser.error("--replay-from takes the baseline and latency table from the replayed searches")
        if not args.es_algorithms:
            parser.error("--replay-from needs --es-algorithms (the comparison it replays)")
        for algorithm in args.es_algorithms:
            for seed in seeds:
                source = args.replay_from / f"{algorithm}-s{seed}-full"
                if not (source / "trials.csv").is_file() or not (source / "baseline").is_dir():
                    parser.error(f"--replay-from: {source} is not a finished search of this benchmark")
                try:
                    replays[(algorithm, seed)] = replay_candidates(source)
                except (OSError, ValueError) as exc:
                    parser.error(f"--replay-from: {source}: {exc}")
    data = load_space_data(args.space, args.quick)
    if args.es_epsilon is not None:  # both arms get it; only the one with early stopping reads it
        data.setdefault("search", {}).setdefault("early_stopping", {})["epsilon"] = args.es_epsilon
    if args.es_rungs is not None:
        data.setdefault("search", {}).setdefault("early_stopping", {})["rungs"] = args.es_rungs
        try:  # the space's own rule for the list, named before anything runs or is written
            parse_space(data, str(args.space))
        except ConfigError as exc:
            parser.error(f"--es-rungs: {exc}")
    storage = args.storage or Path(tempfile.mkdtemp(prefix="ddecs-bench-"))
    storage.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()

    start = time.time()
    if not args.from_storage:
        workers_import_this_checkout()
        init_ray()
    runs: list[dict] = []
    first = args.continue_from
    plan = [(a, s, True) for s in seeds for a in args.algorithms]
    plan += [(a, s, False) for s in seeds for a in args.es_algorithms]
    if replays:  # both arms per seed, alternating which goes first
        plan = [
            (a, s, es)
            for i, s in enumerate(seeds)
            for a in args.es_algorithms
            for es in ((True, False) if i % 2 == 0 else (False, True))
        ]
    try:
        for algorithm, seed, es in plan:
            if args.from_storage:
                exp_dir = storage / f"{algorithm}-s{seed}-{'es' if es else 'full'}"
                wall = Experiment.at(str(exp_dir)).read_record().get("wall_s", float("nan"))
                run = collect(exp_dir, algorithm, seed, es, wall)
            elif replays:
                source = args.replay_from / f"{algorithm}-s{seed}-full"
                replay = replays[(algorithm, seed)]
                run = run_one(
                    data, str(args.space), algorithm, seed, trials, es, storage, source, source, replay
                )
            else:
                last = Path(runs[-1]["exp"]) if runs else first
                latency_from = None if args.separate_latency_tables else last
                run = run_one(
                    data, str(args.space), algorithm, seed, trials, es, storage, first, latency_from
                )
            first = first or Path(run["exp"])
            runs.append(run)
            repeats = f" ({run['n_repeats']} repeats)" if run["n_repeats"] else ""
            if run.get("n_network_loads"):
                repeats += f" ({run['n_network_loads']} loaded a network trained before)"
            if run.get("n_network_epoch_loads"):
                repeats += (
                    f" ({run['n_network_epoch_loads']} continued a network from a rung checkpoint: "
                    f"{run['network_epochs_loaded']} epochs not trained again)"
                )
            if run["n_redrawn"]:
                repeats += f" ({run['n_redrawn']} draws of evaluated candidates told and drawn again)"
            print(
                f"{algorithm:>7} seed {seed} early stopping {'on ' if es else 'off'}: "
                f"{run['n_trials']} trials ({run['n_full']} full{repeats}, "
                f"{run['n_stopped']} stopped, {run['n_feasible']} feasible) in "
                f"{run['wall_s']:.0f} s (fit {run['fit_s']:.0f} s, trial bodies {run['body_s']:.0f} s, "
                f"{run['workers']} worker processes)",
                flush=True,
            )
    except (SearchInterrupted, KeyboardInterrupt) as exc:
        where = f" ({exc})" if isinstance(exc, SearchInterrupted) else ""
        done = ", ".join(Path(r["exp"]).name for r in runs) or "none"
        print(
            f"interrupted: a search did not finish{where}; finished searches of this run: {done} "
            f"(in {storage}); nothing summarised",
            file=sys.stderr,
        )
        return 130
    summary = summarise(runs, "replay" if replays else "search")
    if replays:
        trials = max(len(v) for v in replays.values())
    summary.update(
        replay_from=str(args.replay_from) if replays else None,
        quick=args.quick,
        # the space file this run searched; null when it searched nothing (--from-storage: each search's own
        # space is in its folder, named per run with the sampler it ran)
        space=None if args.from_storage else str(args.space),
        trials=trials,
        seeds=seeds,
        storage=str(storage),
        from_storage=args.from_storage,
        cpus=os.cpu_count(),
    )
    if args.from_storage:  # nothing ran now: this run's wall and load say nothing of the searches
        summary.update(wall_s=None, load_before=None, load_after=None)
    else:
        summary.update(
            wall_s=time.time() - start,
            load_before=[round(x, 2) for x in load],
            load_after=[round(x, 2) for x in os.getloadavg()],
        )
    label = " [QUICK: reduced subsets, numbers are indicative only]" if args.quick else ""
    if replays:
        label += f" [PAIRED REPLAY of the configurations drawn in {args.replay_from}: no sampler]"
    spaces = sorted({r["space_name"] for r in runs})
    print(f"\nsearch efficiency on {', '.join(spaces)}, {trials} trials x seeds {seeds}{label}")
    if args.from_storage:
        print(
            f"machine: {os.cpu_count()} CPUs here; summarised from storage: the searches' machine load is "
            "not recorded in their folders (see the output of the runs that made them)"
        )
    else:
        print(
            f"machine: {os.cpu_count()} CPUs; load average before {summary['load_before']}, "
            f"after {summary['load_after']}"
        )
    print(f"objectives: {', '.join(summary['objectives'])}")
    for algorithm, settings in summary["samplers"].items():
        if len(settings) > 1:
            print(
                f"  WARNING: the {algorithm} searches ran {len(settings)} different sampler settings; "
                "their figures below pool them"
            )
        for setting in settings:
            rest = ", ".join(f"{k} {v}" for k, v in setting.items() if k != "algorithm")
            print(f"  sampler {algorithm}: {rest or 'no settings'}")
    for algorithm, value in summary["hv"].items():
        lo, hi = summary["hv_spread"][algorithm]
        ratio = summary["hv_vs_random"].get(algorithm)
        vs = f", {ratio:.3f}x random, goal >= 1.1" if ratio else ""
        print(f"  hypervolume {algorithm:>7}: median {value:.4f} (spread {lo:.4f}..{hi:.4f}, normalised{vs})")
    if summary["hv_gain_vs_random"]:
        print(
            "  of which the static network and the warm start alone (both arms, before sampling): "
            + ", ".join(f"{a} {v:.4f}" for a, v in summary["hv_floor"].items())
            + "; above it: "
            + ", ".join(f"{a} {v:.2f}x random" for a, v in summary["hv_gain_vs_random"].items())
            + " (context; the goal is on the whole hypervolume)"
        )
    if summary["hv_trials_only"]:  # none when only searches without early stopping ran (a replay's sources)
        print(
            "  hypervolume of the trials alone (no static network): "
            + ", ".join(f"{a} {v:.4f}" for a, v in summary["hv_trials_only"].items())
        )
    without = summary["without_early_stopping"]
    if without:
        print(
            "  without early stopping (every trial a full evaluation; context, the goal is on the default): "
            + ", ".join(
                f"{a} {v:.4f}" + (f" ({without['hv_vs_random'][a]:.3f}x random)" if a != "random" else "")
                for a, v in without["hv"].items()
            )
        )
    resumed = summary["resumed_searches"]
    if resumed:
        print(
            f"  resumed after a killed driver, left out of every time figure below (their trials span "
            f"drivers whose time was not recorded): {', '.join(resumed)}"
        )
    parts = summary["overhead_breakdown"]
    if parts is not None:
        actor = f", first actor start-up {parts['actor_start']:.1%}" if "actor_start" in parts else ""
        print(
            f"  orchestration overhead share: {summary['overhead_share']:.1%} of trial-slot time (goal <= 5 %"
            f"{f'; {len(runs) - len(resumed)} of {len(runs)} searches' if resumed else ''}): "
            f"hand-overs {parts['handover']:.1%}, idle slots at the end {parts['tail_idle']:.1%}{actor}, "
            f"rest (results, checkpoints, publishing, Tune start/end) {parts['rest']:.1%}; "
            f"without the idle slots at the end: {summary['overhead_share_without_end_idle']:.1%}"
        )
    st = summary["reused_worker_start_s"]
    if st["n"]:
        print(
            f"  trial start on a reused worker: median {st['median']:.2f} s, max {st['max']:.2f} s "
            f"over {st['n']} trials (goal < 0.5 s)"
        )
        by_algorithm = summary["reused_worker_start_s_by_algorithm"]
        if len(by_algorithm) > 1:
            print(
                "    per algorithm (the driver's sampler time included): "
                + ", ".join(
                    f"{a} median {f['median']:.2f} s ({f['n']})" for a, f in by_algorithm.items() if f["n"]
                )
            )
        split = {a: p for a, p in summary["reused_worker_start_parts"].items() if p["worker_s"]["n"]}
        if split:
            print(
                "    split where Tune hands the worker its trial, medians (worker's own / driver's: result, "
                "callbacks, sampler): "
                + ", ".join(
                    f"{a} {w['median']:.2f} / {d['median']:.2f} s ({w['n']})"
                    for a, w, d in ((a, p["worker_s"], p["driver_s"]) for a, p in split.items())
                )
            )
    if summary["per_trial_vs_baseline_cost"] is not None:
        print(
            f"  one full trial costs {summary['per_trial_vs_baseline_cost']:.2f}x training the baseline once"
        )
    es = summary["early_stopping"]
    if es:
        hv_ratio = "n/a" if es["hv_ratio"] is None else f"{es['hv_ratio']:.3f}"
        fit_ratio = "n/a: a resumed search" if es["fit_time_ratio"] is None else f"{es['fit_time_ratio']:.2f}"
        print(
            f"  early stopping ({', '.join(es['pairs'])}, paired by {es['pairing']}): hv ratio {hv_ratio} "
            f"(per seed {', '.join(f'{x:.3f}' for x in es['hv_ratio_per_seed'])}; goal >= 0.95) "
            f"at trial-time ratio {es['time_ratio']:.2f} (goal <= 0.6; "
            f"fit wall ratio {fit_ratio}); "
            f"stopped {es['stopped_trials']} of {trials} (per rung: {es['stops_per_rung']}); rule "
            + "; ".join(
                f"min_dominators {r.get('min_dominators')}, epsilon {r.get('epsilon', 0.0)}, "
                f"rungs {r.get('rungs') or 'every epoch but the last'}"
                for r in es["rule_per_seed"]
            )
        )
        if es["full_trial_pairs"]:
            print(
                f"  the {es['full_trial_pairs']} configurations full in both arms took "
                f"{es['full_trial_cost_ratio']:.2f}x the time with early stopping on (the rung points' cost)"
            )
    if args.from_storage:
        walls = sum(r["wall_s"] for r in runs if not r["resumed"])
        whose = f"the {len(runs) - len(resumed)} not resumed" if resumed else "their"
        print(
            f"  {len(runs)} finished searches summarised ({whose} walls add up to {walls:.0f} s): {storage}"
        )
    else:
        print(f"  total {summary['wall_s']:.0f} s; experiments in {storage}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
