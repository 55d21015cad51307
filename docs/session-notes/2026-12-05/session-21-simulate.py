"""Replay rule variants on paired replays' rung tables (scratch analysis of session 21, kept for the record).

Usage (from the repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python
docs/session-notes/2026-12-05/session-21-simulate.py DIR_WITH_SEED_3 DIR_WITH_SEED_4 ...  (each DIR holds
``nsga2-s<seed>-es`` and ``nsga2-s<seed>-full`` of one ``--replay-from`` run; seeds read from the names).

Session 19's script (``../2026-12-04/session-19-simulate.py``) with one more family of rules, "projected":
at an intermediate rung, a trial's point is moved by the most optimistic change from that rung to the end of
training seen so far among *finished* trials of the same training recipe (mode, epochs), and stopped when
at least k end-of-training points (and the static network's, once known) dominate the projection. Timeline:
the actual ES run's (a variant that stops more would free slots earlier; ignored, as in session 19).
Time: a trial stopped at rung r costs its time_total_s at its rung-r result; others their actual ES-arm body
time; a trial the variant lets past where reality stopped it costs its no-ES arm time ("unknown").
"""

import json
import re
import sys
import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
spec = importlib.util.spec_from_file_location("se", ROOT / "benchmarks" / "search_efficiency.py")
se = importlib.util.module_from_spec(spec)
spec.loader.exec_module(se)
from ddecs_search.search._scheduler import dominator_count, dominates  # noqa: E402

ALGORITHM = "nsga2"  # the replays' sampler (session 35's script, importing this one, sets "gp")
D2 = ["max", "min"]


def rung_results(trial_dir):
    out = {}
    f = trial_dir / "result.json"
    for line in f.read_text().splitlines() if f.is_file() else []:
        r = json.loads(line)
        if r.get("rung_final"):
            out["final"] = float(r["time_total_s"])
        elif r.get("rung_epoch") is not None:
            out[str(int(r["rung_epoch"]))] = float(r["time_total_s"])
    return out


def load(d):
    seed = int(re.search(r"s(\d+)-es", next(d.glob(f"{ALGORITHM}-s*-es")).name).group(1))
    es_dir, off_dir = d / f"{ALGORITHM}-s{seed}-es", d / f"{ALGORITHM}-s{seed}-full"
    es_run = se.collect(es_dir, ALGORITHM, seed, True, 0.0)
    off_run = se.collect(off_dir, ALGORITHM, seed, False, 0.0)
    st = json.loads((es_dir / "early_stopping.json").read_text())
    es_t = se.Experiment.at(str(es_dir)).read_trials().sort_values("trial_index").reset_index(drop=True)
    off_t = se.Experiment.at(str(off_dir)).read_trials().sort_values("trial_index").reset_index(drop=True)
    body = es_t["trial_wall_s"].astype(float).fillna(es_t["trial_time_total_s"].astype(float))
    times, at = {}, {}
    for i, tid in enumerate(es_t["trial_id"]):
        dd = list(es_dir.glob(f"tune_trial_{tid}*"))
        times[tid] = rung_results(dd[0]) if dd else {}
        t0 = float(es_t["trial_started_at"].iloc[i])
        at[tid] = {r: t0 + s for r, s in times[tid].items()}
    recipe = {
        tid: (es_t["config/training/mode"].iloc[i], int(es_t["config/training/epochs"].iloc[i]))
        for i, tid in enumerate(es_t["trial_id"])
    }
    return dict(seed=seed, es_run=es_run, off_run=off_run, st=st, es_t=es_t, off_t=off_t, body=body,
                times=times, at=at, recipe=recipe)


def front_ids(data):
    off_t, es_t, run = data["off_t"], data["es_t"], data["off_run"]
    names = [n for n, _ in run["objectives"]]
    dirs = [m for _, m in run["objectives"]]
    ok = off_t[(off_t["feasible"] == True) & (off_t["full_fidelity"] == True)]  # noqa: E712
    pts = ok[names].to_numpy(dtype=float)
    sign = np.array([-1.0 if d == "max" else 1.0 for d in dirs])
    allp = np.vstack([pts, run["static"][None, :]]) * sign if run["static"] is not None else pts * sign
    keep = []
    for i, p in enumerate(pts * sign):
        if not any(np.all(q <= p) and np.any(q < p) for q in allp):
            keep.append(es_t["trial_id"].iloc[ok.index[i]])
    return set(keep)


def decide(data, rule):
    """Re-run ``rule`` over every rung report in time order -> {trial_id: rung where stopped}."""
    st, at = data["st"], data["at"]
    events = sorted(
        (at[tid][rung], rung, tid)
        for rung, table in st["points"].items()
        for tid in table
        if rung in at.get(tid, {})
    )
    stopped, seen = {}, {}
    for t, rung, tid in events:
        if tid in stopped:
            continue
        p = st["points"][rung][tid]
        peers = list(seen.get(rung, {}).values())
        if rung == "final" and "final" in st.get("static", {}):
            peers.append(st["static"]["final"])
        k = rule(data, rung, tid, p, peers, seen, t, stopped)
        seen.setdefault(rung, {})[tid] = p
        if k:
            stopped[tid] = rung
    return stopped


def simulate(data, rule):
    st, es_t, off_t = data["st"], data["es_t"], data["off_t"]
    if rule == "oracle":
        fr = front_ids(data)
        stopped = {t: "1" for t in es_t["trial_id"] if t not in fr and t in st["points"].get("1", {})}
    else:
        stopped = decide(data, rule)
    real = {tid: s["rung"] for tid, s in st["stopped"].items()}
    time, unknown, keep = 0.0, 0, []
    for i, tid in enumerate(es_t["trial_id"]):
        r = stopped.get(tid)
        if r is None:
            if tid in real:
                unknown += 1
                time += float(off_t["trial_wall_s"].iloc[i])
            else:
                time += data["body"][i]
            keep.append(i)
        elif real.get(tid) == r:
            time += data["body"][i]
        else:
            t = data["times"][tid].get(r)
            time += t if t is not None else data["body"][i]
    names = [n for n, _ in data["off_run"]["objectives"]]
    rows = off_t.iloc[keep]
    ok = rows[(rows["feasible"] == True) & (rows["full_fidelity"] == True)]  # noqa: E712
    run = dict(data["off_run"])
    run["values"] = ok[names].to_numpy(dtype=float)
    run["early_stopping"] = True
    return run, time, stopped, unknown


def kdom(k, kf=None):
    kf = k if kf is None else kf
    return lambda data, rung, tid, p, peers, seen, t, stopped: dominator_count(p, peers, D2) >= (
        kf if rung == "final" else k
    )


def projected(k, base_k=2, min_done=1, margin=0.0):
    """Stop by the plain rule (base_k) or when >= k finished points dominate the optimistic projection."""

    def rule(data, rung, tid, p, peers, seen, t, stopped):
        if dominator_count(p, peers, D2) >= base_k:
            return True
        if rung == "final":
            return False
        st, at = data["st"], data["at"]
        finals = {u: q for u, q in seen.get("final", {}).items() if at[u]["final"] <= t and u != tid}
        same = [u for u in finals if data["recipe"][u] == data["recipe"][tid] and u in st["points"].get(rung, {})]
        if len(same) < min_done:
            return False
        dacc = max(finals[u][0] - st["points"][rung][u][0] for u in same)
        dcost = min(finals[u][1] - st["points"][rung][u][1] for u in same)
        proj = [p[0] + max(dacc, 0.0) + margin, p[1] + min(dcost, 0.0)]
        front = list(finals.values())
        if "final" in st.get("static", {}):
            front.append(st["static"]["final"])
        return sum(dominates(q, proj, D2) for q in front) >= k

    return rule


def main(dirs, extra_cost=None, rules=None):
    """Print every rule's figures. ``extra_cost(data, stopped) -> (seconds, trials)``: cost the rule's time
    misses (session 35: loaded trials whose source it stops), added to a "pessimistic" time column.
    ``rules``: {name: rule} instead of this session's (session 36's script passes its own)."""
    datas = [load(d) for d in dirs]
    rules = rules or {
        "actual(2)": kdom(2),
        "k=1 all": kdom(1),
        "k=1 final only": kdom(2, 1),
        "projected k=1": projected(1),
        "projected k=2": projected(2),
        "projected k=1 +1pt": projected(1, margin=0.01),
        "projected k=1, min_done 2": projected(1, min_done=2),
        "oracle": "oracle",
    }
    for name, rule in rules.items():
        runs, out = [], []
        for d in datas:
            run, t, stopped, unk = simulate(d, rule)
            runs += [run, d["off_run"]]
            extra, lost = extra_cost(d, stopped) if extra_cost else (0.0, 0)
            out.append((d, t / d["off_run"]["body_s"], len(stopped), unk, (t + extra) / d["off_run"]["body_s"], lost))
        hv = []
        for i in range(len(datas)):  # each seed's own box, as a per-seed benchmark run computes it
            pair = [runs[2 * i], runs[2 * i + 1]]
            se.hypervolumes(pair)
            hv.append(pair[0]["hv"] / pair[1]["hv"])
        total = sum(d["off_run"]["body_s"] for d in datas)
        tot = sum(o[1] * o[0]["off_run"]["body_s"] for o in out) / total
        times = f"time {tot:.2f} ({' / '.join(f'{o[1]:.2f}' for o in out)})"
        if extra_cost:
            pes = sum(o[4] * o[0]["off_run"]["body_s"] for o in out) / total
            times += f", pessimistic {pes:.2f} ({' / '.join(f'{o[4]:.2f}' for o in out)})"
        tail = f" loaded trials whose source it stops {[o[5] for o in out]}" if extra_cost else ""
        print(f"{name:>26}: hv {np.median(hv):.3f} ({' / '.join(f'{x:.3f}' for x in hv)}) {times} "
              f"stopped {[o[2] for o in out]} unknown {[o[3] for o in out]}{tail}")
    for d in datas:
        pair = [d["es_run"], d["off_run"]]
        se.hypervolumes(pair)
        print(f"actual seed {d['seed']}: hv {pair[0]['hv'] / pair[1]['hv']:.3f} time "
              f"{d['es_run']['body_s'] / d['off_run']['body_s']:.2f}; front {sorted(front_ids(d))}")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
