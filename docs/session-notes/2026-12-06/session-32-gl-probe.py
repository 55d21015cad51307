"""Scratch (session 32): does Optuna's batched L-BFGS-B (with ``greenlet``) shorten the GP sampler's
suggestion on this project's studies? Side by side: for each pair, the same study prefix and the same
sampler seed, once with greenlet and once without (order alternated), so the two arms see the same data
on the same box at the same load.

Usage (greenlet importable, e.g. ``PYTHONPATH=<dir with greenlet>``):
    python session-32-gl-probe.py EXP/optuna.db 12,24,48 PAIRS [--profile]
Prints, per prefix of N complete trials: the median time of ``sample_relative`` without / with greenlet,
the per-pair ratios, and how many pairs suggested the same parameters. ``--profile`` adds one cProfile of
a suggestion without greenlet on the largest prefix (where the driver's time goes).
"""

import cProfile
import pstats
import statistics
import sys
import time
import warnings
from pathlib import Path

import optuna
import optuna._gp.batched_lbfgsb as bl

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the checkout
from ddecs_search.search import _samplers

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter("ignore")
src, ns, pairs = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
profile = "--profile" in sys.argv
storage = f"sqlite:///{src}"
name = optuna.get_all_study_summaries(storage)[0].study_name
source = optuna.load_study(study_name=name, storage=storage)
done = [t for t in source.trials if t.state == optuna.trial.TrialState.COMPLETE]
real = bl._greenlet_imports
print(f"complete {len(done)} of {len(source.trials)}; greenlet: {real.is_successful()}", flush=True)
assert real.is_successful(), "greenlet is not importable: nothing to compare"


class _Off:
    """Stands in for Optuna's import guard: says greenlet is missing (the sequential path)."""

    def is_successful(self) -> bool:
        return False


def suggest(study: optuna.Study, seed: int, greenlet: bool) -> tuple[float, dict]:
    """One GP suggestion as the product's sampler makes it (10 random trials first, noisy objectives)."""
    bl._greenlet_imports = real if greenlet else _Off()
    sampler = _samplers.GPSampler(seed=seed, warn_independent_sampling=False, n_startup_trials=10)
    trial = study.ask()
    frozen = trial._cached_frozen_trial
    space = sampler.infer_relative_search_space(study, frozen)
    t0 = time.perf_counter()
    params = sampler.sample_relative(study, frozen, space)
    elapsed = time.perf_counter() - t0
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # a failed trial is not data for the GP
    return elapsed, params


for n in ns:
    study = optuna.create_study(directions=source.directions)
    study.add_trials(done[:n])
    suggest(study, 0, True), suggest(study, 0, False)  # warm-up, not counted (imports, torch threads)
    on, off, same = [], [], 0
    for r in range(pairs):
        arms = (True, False) if r % 2 == 0 else (False, True)
        got = {g: suggest(study, 100 + r, g) for g in arms}
        on.append(got[True][0])
        off.append(got[False][0])
        same += got[True][1] == got[False][1]
    ratios = [a / b for a, b in zip(off, on, strict=True)]
    print(
        f"n={n}: without {statistics.median(off):.3f} s, with {statistics.median(on):.3f} s, "
        f"median ratio without/with {statistics.median(ratios):.2f} "
        f"(pairs > 1: {sum(x > 1 for x in ratios)} of {pairs}; per pair {[round(x, 2) for x in ratios]}); "
        f"same suggestion in {same} of {pairs} pairs",
        flush=True,
    )

if profile:
    study = optuna.create_study(directions=source.directions)
    study.add_trials(done[: max(ns)])
    prof = cProfile.Profile()
    prof.runcall(suggest, study, 7, False)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
