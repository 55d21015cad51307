"""Session 39: the default rule's pair behind the pinned GP, read (scratch, kept for the record).

Reading 2 of ``session-39-preregistration.md``: per seed, the front members of the arm without early stopping
(the product's front of its full-fidelity rows and the static network) that the arm with it stopped, with
the rung and the record ``early_stopping.json`` keeps; then session 36's simulation (its timeline and time
model, ``session-36-simulate.py``) on the pair's rung tables: the plain rule (it must reproduce the arm), the
tolerance ``epsilon: 0.01`` and an oracle letting only front members past rung 1 (context, not pre-registered).

Usage (from the repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python
docs/session-notes/2026-12-07/session-39-analysis.py REPLAY_STORAGE SEED ...
"""

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "session_36_simulate", Path(__file__).resolve().parent / "session-36-simulate.py"
)
s36 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s36)
s35, s21 = s36.s35, s36.s21  # the modules session 36's script loaded (ALGORITHM "gp")

RULES = {
    "plain (as run)": s21.kdom(2),
    "epsilon 0.01": s36.eps_rule(0.01, 2),
    "oracle": "oracle",
}


def main(storage: Path, seeds: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for seed in seeds:
            d = Path(tmp) / f"s{seed}"
            d.mkdir()
            for arm in ("es", "full"):
                (d / f"gp-s{seed}-{arm}").symlink_to(storage / f"gp-s{seed}-{arm}")
            dirs.append(d)
            data = s21.load(d)
            front = s21.front_ids(data)
            record = json.loads((storage / f"gp-s{seed}-es" / "early_stopping.json").read_text())
            hit = {t: s for t, s in record["stopped"].items() if t in front}
            print(f"seed {seed}: front of the arm without early stopping {len(front)}; stopped in the arm with it "
                  f"{len(hit)} of them")
            for tid, s in sorted(hit.items()):
                print(f"   {tid}: {json.dumps(s, sort_keys=True)}")
        s21.main(dirs, s35.lost_sources, RULES)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(a) for a in sys.argv[2:]])
