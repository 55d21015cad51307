"""Scratch (session 34): where one GP suggestion's time goes, after session 33's device-mode change.

The product's sampler (``search/_samplers.py``: one torch thread, Optuna's CPU device mode popped) on the
same study prefix as session 33's probe: N complete trials of a finished 48-trial GP search plus one
running trial (as when the search asks while the other worker trains). One warm-up suggestion, three
timed ones (sampler seeds 1-3), then one under cProfile (seed 7): cumulative and own times.

Usage: python session-34-gp-profile.py EXP/optuna.db N
"""

import cProfile
import pstats
import sys
import time
import warnings
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the checkout
from ddecs_search.search import _samplers

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter("ignore")
storage = f"sqlite:///{sys.argv[1]}"
n = int(sys.argv[2])
source = optuna.load_study(study_name=optuna.get_all_study_summaries(storage)[0].study_name, storage=storage)
done = [t for t in source.trials if t.state == optuna.trial.TrialState.COMPLETE]
study = optuna.create_study(directions=source.directions)
study.add_trials(done[:n])
running = done[n] if n < len(done) else done[-1]
study.add_trial(
    optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, params=running.params, distributions=running.distributions
    )
)
print(f"complete {len(done)}, prefix {n} + 1 running, parameters {len(done[0].params)}", flush=True)


def suggest(seed: int) -> float:
    sampler = _samplers.GPSampler(seed=seed, warn_independent_sampling=False, n_startup_trials=10)
    trial = study.ask()
    frozen = trial._cached_frozen_trial
    space = sampler.infer_relative_search_space(study, frozen)
    try:
        t0 = time.perf_counter()
        sampler.sample_relative(study, frozen, space)
        return time.perf_counter() - t0
    finally:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


suggest(0)
print("timed suggestions (s):", [round(suggest(s), 3) for s in (1, 2, 3)], flush=True)
profile = cProfile.Profile()
profile.enable()
suggest(7)
profile.disable()
stats = pstats.Stats(profile)
stats.sort_stats("cumulative").print_stats(40)
stats.sort_stats("tottime").print_stats(20)
