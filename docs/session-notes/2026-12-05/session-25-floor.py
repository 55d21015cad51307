"""Session 25 scratch (not product code): how much of each search's normalised hypervolume both arms share.

Every front of benchmarks/search_efficiency.py holds the static network, and every search of the default
space evaluates the default candidate first (its warm start): the same two points in the TPE and the random
arm. This prints, per search, the normalised hypervolume of those two points alone ("floor", on the same box
as the benchmark's figure) beside the search's own, and the TPE/random ratio of the parts above the floor.
Context for the 1.1x goal, not a replacement for it.

    PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python docs/session-notes/2026-12-05/session-25-floor.py DIR SEED...
"""

import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path.cwd() / "tests"))
from _fixtures import load_benchmark  # noqa: E402

from ddecs_search.experiment import Experiment  # noqa: E402

se = load_benchmark("search_efficiency")
storage, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
runs = [
    se.collect(storage / f"{a}-s{s}-es", a, s, True, float("nan")) for s in seeds for a in ("tpe", "random")
]
floors = []
for r in runs:
    table = Experiment.at(r["exp"]).read_trials()
    first = table.iloc[0]  # the warm start: first in trials.csv
    assert bool(first["evaluated"]) and bool(first["feasible"]), r["exp"]
    names = [n for n, _ in r["objectives"]]
    f = copy.deepcopy(r)
    f["values"] = first[names].to_numpy(dtype=float)[None, :]
    floors.append(f)
se.hypervolumes(runs + floors)  # the floors' points are among the runs': the box is the benchmark's
above: dict[str, list[float]] = {"tpe": [], "random": []}
for r, f in zip(runs, floors, strict=True):
    above[r["algorithm"]].append(r["hv"] - f["hv"])
    print(f"{r['algorithm']:>6} s{r['seed']}: hv {r['hv']:.3f}, floor (static + warm start) {f['hv']:.3f}")
hv = {a: float(np.median([r["hv"] for r in runs if r["algorithm"] == a])) for a in above}
print(f"median hv: tpe {hv['tpe']:.3f} / random {hv['random']:.3f} = {hv['tpe'] / hv['random']:.3f}x")
med = {a: float(np.median(v)) for a, v in above.items()}
print(f"median hv above the floor: tpe {med['tpe']:.3f} / random {med['random']:.3f} = "
      f"{med['tpe'] / med['random']:.2f}x")
