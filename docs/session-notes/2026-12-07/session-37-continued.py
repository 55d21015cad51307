"""Session 37: trials that continued a network from another trial's rung checkpoint (scratch, for the record).

For each arm folder given (a ``search_efficiency.py`` experiment), lists the trials whose row names
``network_epochs_from_trial`` and estimates the training they did not repeat: the source's ``time_total_s`` at
its rung result (Tune's clock from the source's start to that report) less this trial's own ``time_total_s``
at its first rung report (set-up, checkpoint load and the rung's policy fit). Prints the arm's trial-body
total beside it (the benchmark's ``body_s``: ``trial_wall_s``, else Tune's ``time_total_s``).

Usage (from the repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python
docs/session-notes/2026-12-07/session-37-continued.py DIR ...
"""

import json
import sys
from pathlib import Path

from ddecs_search.experiment import Experiment


def rung_times(trial_folder: Path) -> dict[int, float]:
    """{rung epoch: Tune's time_total_s at that rung's result} of one trial (intermediate rungs only)."""
    out: dict[int, float] = {}
    result = trial_folder / "result.json"
    for line in result.read_text().splitlines() if result.is_file() else []:
        r = json.loads(line)
        if r.get("rung_epoch") is not None and not r.get("rung_final"):
            out.setdefault(int(r["rung_epoch"]), float(r["time_total_s"]))
    return out


def main(folders: list[Path]) -> None:
    for folder in folders:
        table = Experiment.at(str(folder)).read_trials()
        tune_s = table["trial_time_total_s"].astype(float)
        body = table["trial_wall_s"].astype(float).fillna(tune_s).fillna(0.0)
        marked = table["network_epochs_from_trial"].notna() if "network_epochs_from_trial" in table else None
        rows = table[marked] if marked is not None else table.iloc[:0]
        saved = 0.0
        print(f"{folder}: {len(table)} trials, bodies {body.sum():.0f} s; {len(rows)} continued a network")
        for _, row in rows.iterrows():
            epochs = int(float(row["network_epochs_loaded"]))
            source = rung_times(folder / f"tune_trial_{row['network_epochs_from_trial']}").get(epochs)
            own = rung_times(folder / f"tune_trial_{row['trial_id']}").get(epochs)
            gain = None if source is None or own is None else source - own
            saved += gain or 0.0
            stopped = bool(row.get("stopped_early") is True)
            print(
                f"   trial {row['trial_id']} ({'stopped' if stopped else 'full'}): from "
                f"{row['network_epochs_from_trial']} at epoch {epochs} (trained there in "
                f"{float(row['network_epochs_train_s']):.1f} s); source's rung at {source} s, own at {own} s"
            )
        if len(rows):
            print(f"   not repeated ≈ {saved:.0f} s ({saved / body.sum():.1%} of the arm's trial bodies)")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
