"""Session 41: the pair with ``rungs: [0.5, 1]`` behind the pinned GP, read (scratch, kept for the record).

Readings 2 and 3 of ``session-41-preregistration.md``, through session 39's script (``session-39-analysis.py``:
per seed, the front members of the arm without early stopping that the arm with it stopped; then session 21's
simulation, its timeline and time model, on the arm's rung tables) with this session's rules: the rule as run
(it must reproduce the arm), rung 1 alone (the default rule; trials stopped at 0.5 in the arm have no rung-1
point, so it has fewer peers at rung 1 than a search with rung 1 alone, and those trials cost their no-ES
time: biased towards stopping less), the half-epoch rung alone, and an oracle letting only front members past
rung 1. First, what a stop cost at each rung (the trial's Tune time at its last result).

Usage (from the repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python
docs/session-notes/2026-12-07/session-41-analysis.py REPLAY_STORAGE SEED ...
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "session_39_analysis", Path(__file__).resolve().parent / "session-39-analysis.py"
)
s39 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s39)
s21 = s39.s21  # session 21's simulation as session 39 configured it (ALGORITHM "gp")

from ddecs_search.search._scheduler import rung_key  # noqa: E402


def rung_results(trial_dir):
    """Session 21's reader with this session's rung keys ("0.5"; it read int(epoch): "0")."""
    out = {}
    f = trial_dir / "result.json"
    for line in f.read_text().splitlines() if f.is_file() else []:
        r = json.loads(line)
        if r.get("rung_final"):
            out["final"] = float(r["time_total_s"])
        elif r.get("rung_epoch") is not None:
            out[rung_key(r["rung_epoch"])] = float(r["time_total_s"])
    return out


def only(rungs):
    """The plain rule (min_dominators 2) at these rungs and the final one; others never stop."""
    plain = s21.kdom(2)

    def rule(data, rung, tid, p, peers, seen, t, stopped):
        return (rung == "final" or rung in rungs) and plain(data, rung, tid, p, peers, seen, t, stopped)

    return rule


def stop_costs(storage: Path, seed: int) -> None:
    es_dir = storage / f"gp-s{seed}-es"
    record = json.loads((es_dir / "early_stopping.json").read_text())
    off = s21.se.Experiment.at(str(storage / f"gp-s{seed}-full")).read_trials()
    mean_full = float(off["trial_wall_s"].astype(float).mean())
    for rung in sorted({s["rung"] for s in record["stopped"].values()}):
        cost = []
        for tid, s in record["stopped"].items():
            found = list(es_dir.glob(f"tune_trial_{tid}*"))
            if s["rung"] == rung and found:
                cost.append(rung_results(found[0]).get(rung))
        cost = [c for c in cost if c is not None]
        if cost:
            print(f"seed {seed}: {len(cost)} stops at rung {rung}, Tune time there median {np.median(cost):.1f} s "
                  f"({np.median(cost) / mean_full:.2f} of a trial without early stopping, mean {mean_full:.1f} s)")


if __name__ == "__main__":
    storage, seeds = Path(sys.argv[1]), [int(a) for a in sys.argv[2:]]
    s21.rung_results = rung_results
    s39.RULES = {
        "as run ([0.5, 1])": s21.kdom(2),
        "rung 1 alone (default)": only({"1"}),
        "rung 0.5 alone": only({"0.5"}),
        "oracle": "oracle",
    }
    for seed in seeds:
        stop_costs(storage, seed)
    s39.main(storage, seeds)
