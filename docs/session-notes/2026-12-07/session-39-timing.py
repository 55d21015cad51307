"""Session 39: what a stop at rung 1 costs in an arm with early stopping (scratch, kept for the record).

For each arm folder (a ``search_efficiency.py`` experiment run with early stopping): the trial bodies of the
stopped and the full trials (``trial_wall_s``, else Tune's ``time_total_s``: the benchmark's ``body_s``), and
Tune's ``time_total_s`` at each trial's rung-1 result (start-up, the first epoch and the rung's policy fit):
what a trial stopped there still costs, and what share of a full trial's body it is.

Usage (from the repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python
docs/session-notes/2026-12-07/session-39-timing.py ARM_DIR ...
"""

import json
import sys
from pathlib import Path

import numpy as np

from ddecs_search.experiment import Experiment


def rung1_s(folder: Path, trial_id: str) -> float | None:
    """Tune's time_total_s at the trial's rung-1 result (None: the trial reported no rung 1, e.g. it loaded)."""
    trial = next(folder.glob(f"tune_trial_{trial_id}*"), None)
    lines = (trial / "result.json").read_text().splitlines() if trial else []
    for r in map(json.loads, lines):
        if r.get("rung_epoch") == 1 and not r.get("rung_final"):
            return float(r["time_total_s"])
    return None


def main(folders: list[Path]) -> None:
    for folder in folders:
        t = Experiment.at(str(folder)).read_trials()
        body = t["trial_wall_s"].astype(float).fillna(t["trial_time_total_s"].astype(float))
        stopped = t["stopped_early"] == True  # noqa: E712 (a column of bools and NaN)
        r1 = np.array([rung1_s(folder, tid) or np.nan for tid in t["trial_id"]])
        full_r1 = ~stopped.to_numpy() & ~np.isnan(r1)
        print(
            f"{folder}: stopped {int(stopped.sum())} (bodies {body[stopped].sum():.0f} s, median "
            f"{body[stopped].median():.1f} s, rung-1 result at median {np.nanmedian(r1[stopped.to_numpy()]):.1f} s); "
            f"full {int((~stopped).sum())} (bodies {body[~stopped].sum():.0f} s, "
            f"median {body[~stopped].median():.1f} s); "
            f"full trials that reported rung 1: rung-1 result at median {np.median(r1[full_r1]):.1f} s, "
            f"{np.median(r1[full_r1] / body.to_numpy()[full_r1]):.2f} of their body"
        )


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
