"""Scratch (session 33): the informational redraw comparison's hypervolumes on one joint normalisation.

Usage: PYTHONPATH=<checkout> python session-33-redraw-compare.py LABEL=EXP_DIR:SEED ...
Each EXP_DIR is a finished search's experiment folder (the benchmark's `gp-s<seed>-full`); every run is
read by the benchmark's own `collect` and normalised together by its `hypervolumes` (one box for all).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import search_efficiency as se  # noqa: E402

runs = []
for arg in sys.argv[1:]:
    label, rest = arg.split("=", 1)
    folder, seed = rest.rsplit(":", 1)
    run = se.collect(Path(folder), "gp", int(seed), False, 0.0)
    run["label"] = label
    runs.append(run)
se.hypervolumes(runs)
for r in runs:
    print(
        f"{r['label']:>8}: hv {r['hv']:.4f} (trials only {r['hv_trials_only']:.4f}, floor {r['hv_floor']:.4f}); "
        f"{r['n_full']} full, {r['n_feasible']} feasible, repeats {r['n_repeats']}, redrawn {r.get('n_redrawn')}, "
        f"bodies {r['body_s']:.0f} s, mean full trial {r['mean_full_trial_s']:.1f} s"
    )
