"""Session 40, exploratory (#14): replay rung sets on session-40-halfepoch.py's points (points.json).

A trial stopped at a rung reports at no later rung, so each later rung's peers are only the trials that
reached it (as the scheduler sees them). Time is a model, not a measurement: a full trial costs 1, the
first epoch ``EPOCH`` of it (session 39: a rung-1 stop cost 0.27-0.29 of a full trial, its first epoch about
16 s of 60), each rung pass ``PASS``; a stop at a fraction f of the first epoch costs f * EPOCH plus the
passes run so far. Usage: python THIS_FILE points.json
"""

from __future__ import annotations

import json
import sys

from ddecs_search.search._scheduler import should_stop

EPOCH, PASS = 0.26, 0.025
FRACTION = {"q": 0.25, "h": 0.5, "e1": 1.0}
rows = json.loads(open(sys.argv[1]).read())
dirs = ("max", "min")
finals = [r["points"]["final"] for r in rows]
static = [r["static_selection_accuracy"] for r in rows if r["mode"] == "frozen"]
peers_final = finals + ([[static[0], 1.0]] if static else [])
front = {
    r["trial"]
    for r, p in zip(rows, finals, strict=True)
    if not should_stop(p, [q for q in peers_final if q is not p], dirs, 1)
}
print(f"{len(rows)} trials; final front (with the static point): {sorted(front)}")
for md in (2, 1):
    for rungs in (("e1",), ("h",), ("q",), ("h", "e1"), ("q", "e1"), ("q", "h", "e1")):
        reached: dict[str, list] = {r: [] for r in rungs}
        stopped, cost = {}, 0.0
        for row in rows:
            for k, rung in enumerate(rungs):
                point = row["points"][rung]
                stop = should_stop(point, reached[rung], dirs, md)
                reached[rung].append(point)
                if stop:
                    stopped[row["trial"]] = rung
                    cost += FRACTION[rung] * EPOCH + (k + 1) * PASS
                    break
            else:
                cost += 1.0 + len(rungs) * PASS
        lost = sorted(set(stopped) & front)
        print(
            f"min_dominators {md} rungs {'+'.join(rungs):8s} stopped {len(stopped):2d} "
            f"front members stopped {len(lost)} {lost} time (model) {cost / len(rows):.2f}"
        )
