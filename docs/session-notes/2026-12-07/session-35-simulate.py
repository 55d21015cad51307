"""Session 35: session 21's rule-variant replay, for GP replays with network loading (scratch, kept for the record).

Runs ``../2026-12-05/session-21-simulate.py`` (its rules, timeline and time model; see its docstring) on
``gp-s<seed>-es`` / ``gp-s<seed>-full`` pairs, with one addition: a trial that loaded its network in the arm
with early stopping has no rung points (it is never judged). If a variant stops the trial it loaded from, it
would have had to train: counted two ways, "optimistic" (its loaded body, and kept for the hypervolume) and
"pessimistic" (its source's full body: a whole training, and still kept for the hypervolume: the hv figure is
optimistic in both).

Usage (from the repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python
docs/session-notes/2026-12-07/session-35-simulate.py DIR_WITH_SEED_21 DIR_WITH_SEED_22 ...
"""

import importlib.util
import sys
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "2026-12-05" / "session-21-simulate.py"
_spec = importlib.util.spec_from_file_location("session_21_simulate", _path)
s21 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s21)
s21.ALGORITHM = "gp"


def lost_sources(data, stopped):
    """(seconds, trials): loaded trials whose source the variant stops, each at its source's body less its own."""
    es_t, body = data["es_t"], data["body"]
    body_of = dict(zip(es_t["trial_id"], body))
    extra, lost = 0.0, 0
    for i, src in enumerate(es_t["network_from_trial"]):
        if isinstance(src, str) and src and src in stopped:
            lost += 1
            extra += max(float(body_of[src]) - float(body[i]), 0.0)
    return extra, lost


if __name__ == "__main__":
    s21.main([Path(a) for a in sys.argv[1:]], lost_sources)
