"""Session 38: the pre-registered reading of the pinned-GP pair (session-38-preregistration.md).

Reads the benchmark's joint summary of all six runs (JSON, last line of the file given first; pinned
runs under seeds 127-129) and each run's trials.csv / run.json (driver's part of reused starts, as
session-33-driver-parts.py). Prints per seed and arm, then the rule's two conditions.
"""

import json
import statistics
import sys
from pathlib import Path

import pandas as pd

summary = json.loads(Path(sys.argv[1]).read_text().strip().splitlines()[-1])
storage = Path(summary["storage"])
runs = {r["seed"]: r for r in summary["runs"]}
rows = []
for seed in (27, 28, 29):
    for arm, key in (("base", seed), ("pin", seed + 100)):
        r = runs.get(key)
        if r is None:
            print(f"seed {seed} {arm}: missing")
            continue
        folder = storage / f"gp-s{key}-full"
        t = pd.read_csv(folder / "trials.csv").sort_values("trial_started_at").reset_index(drop=True)
        driver = (t["worker_idle_s"] - t["worker_reset_s"]).dropna()
        late = (t["worker_idle_s"] - t["worker_reset_s"]).iloc[10:].dropna()
        rows.append((seed, arm, r["hv"]))
        print(
            f"seed {seed} {arm:4s} hv {r['hv']:.4f} redrawn {r['n_redrawn']} repeats {r['n_repeats']} "
            f"network_loads {r['n_network_loads']} fit_s {r['fit_s']:.0f} body_s {r['body_s']:.0f} "
            f"mean_full_trial_s {r['mean_full_trial_s']:.1f} driver median {driver.median():.2f} "
            f"max {driver.max():.2f} driver sum trials 11-48 {late.sum():.1f} sampler {r['sampler']}"
        )
base = {s: h for s, a, h in rows if a == "base"}
pin = {s: h for s, a, h in rows if a == "pin"}
seeds = sorted(set(base) & set(pin))
if seeds:
    mb, mp = statistics.median(base[s] for s in seeds), statistics.median(pin[s] for s in seeds)
    worst = min(pin[s] - base[s] for s in seeds)
    red_b = sum(runs[s]["n_redrawn"] for s in seeds)
    red_p = sum(runs[s + 100]["n_redrawn"] for s in seeds)
    print(f"seeds {seeds}: median hv base {mb:.4f} pin {mp:.4f} (diff {mp - mb:+.4f}); per seed pin-base "
          f"{[round(pin[s] - base[s], 4) for s in seeds]} (worst {worst:+.4f}); redrawn base {red_b} pin {red_p}")
    a = red_p < red_b
    b = mp >= mb - 0.01 and worst >= -0.03
    print(f"rule (a) fewer redraws: {a}; (b) median >= base - 0.01 and no seed below by > 0.03: {b}; "
          f"-> default pin_unused: {'true' if a and b and len(seeds) == 3 else 'unchanged (false)'}")
