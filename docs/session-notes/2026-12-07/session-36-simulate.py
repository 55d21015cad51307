"""Session 36: accuracy-tolerant (epsilon) dominance at the rungs on GP pairs (scratch, kept for the record).

Runs ``../2026-12-05/session-21-simulate.py`` (its timeline and time model) with session 35's added cost
(``session-35-simulate.py``: loaded trials whose source a variant stops) on ``gp-s<seed>-es`` /
``gp-s<seed>-full`` pairs, with rules of one more family: at an intermediate rung a peer ``q`` counts
against a point ``p`` when it is as cheap or cheaper and at most ``eps`` less accurate (``q.acc + eps >=
p.acc``, ``q.cost <= p.cost``, better in one of the two so adjusted); the final rung keeps the plain rule.
Why: the hypervolume goal allows 5 % of the front's volume to go, and a candidate whose rung point is a
fraction of a point more accurate than a cheaper peer's adds a sliver of volume if it keeps that lead.

Usage (from the repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python
docs/session-notes/2026-12-07/session-36-simulate.py [--measured] DIR_WITH_SEED_21 DIR_WITH_SEED_22 ...
"""

import importlib.util
import sys
from pathlib import Path


def _module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_here = Path(__file__).resolve().parent
s35 = _module("session_35_simulate", _here / "session-35-simulate.py")
s21 = s35.s21  # the same module object session 35's script configured (ALGORITHM "gp")


def eps_rule(eps, k=1, k_final=2):
    """The product's counting (``dominator_count`` with an accuracy ``tolerance``) at intermediate rungs."""

    def rule(data, rung, tid, p, peers, seen, t, stopped):
        if rung == "final":
            return s21.dominator_count(p, peers, s21.D2) >= k_final
        return s21.dominator_count(p, peers, s21.D2, (eps, 0.0)) >= k

    return rule


RULES = {
    "actual(2)": s21.kdom(2),
    "k=1 all": s21.kdom(1),
    **{f"eps {e:g} k=1": eps_rule(e, 1) for e in (0.0025, 0.005, 0.01, 0.02)},
    **{f"eps {e:g} k=2": eps_rule(e, 2) for e in (0.005, 0.01, 0.02, 0.03)},
    **{f"eps {e:g} k=1 final 1": eps_rule(e, 1, 1) for e in (0.005, 0.01)},
    "oracle": "oracle",
}

#: ``--measured``: on pairs run with ``--es-epsilon 0.01`` (the fresh seeds), the rule as run (a check: it
#: must reproduce the arm's stops) and the plain rule (trials the run stopped and it would not have are
#: charged their time in the arm without early stopping: an upper bound on the plain rule's time)
MEASURED = {
    "epsilon 0.01 (as run)": eps_rule(0.01, 2),
    "plain (epsilon 0)": s21.kdom(2),
    "oracle": "oracle",
}

if __name__ == "__main__":
    args = sys.argv[1:]
    rules = MEASURED if args[:1] == ["--measured"] else RULES
    s21.main([Path(a) for a in args if a != "--measured"], s35.lost_sources, rules)
