"""Scratch (session 32): does the GP suggestion in the search's driver slow down because its torch ops
run on every core while the trials train on them? Side by side: for each pair, the same study prefix (N
complete trials plus one running trial, as when a search asks with the other worker still training) and the
same sampler seed, once with torch's default intra-op threads and once with one thread (order alternated);
pairs alternate between an idle box and a loaded one. Load: one single-threaded torch matmul loop per core
(stand-ins for the trials' training), stopped with SIGSTOP for the idle pairs and resumed with SIGCONT.

Usage: python session-32-threads-probe.py EXP/optuna.db 24,48 PAIRS [LOOPS]
LOOPS: how many cores the load takes (default: all of them). With two workers on two cores, one trial
trains while the driver asks for the other's next trial: LOOPS = 1 is that case.
"""

import os
import signal
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the checkout
from ddecs_search.search import _samplers

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter("ignore")
src, ns, pairs = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
storage = f"sqlite:///{src}"
source = optuna.load_study(study_name=optuna.get_all_study_summaries(storage)[0].study_name, storage=storage)
done = [t for t in source.trials if t.state == optuna.trial.TrialState.COMPLETE]
default_threads = torch.get_num_threads()
cores = os.cpu_count() or 1
loop = "import torch; torch.set_num_threads(1); a = torch.randn(256, 256)\nwhile True: a = torch.tanh(a @ a)"
loops = int(sys.argv[4]) if len(sys.argv) > 4 else cores
load = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(loops)]
print(f"complete {len(done)}; torch threads {default_threads}; cores {cores}; load loops {loops}", flush=True)
time.sleep(3)  # imports done


def set_load(on: bool) -> None:
    for p in load:
        os.kill(p.pid, signal.SIGCONT if on else signal.SIGSTOP)
    time.sleep(0.5)


def suggest(study: optuna.Study, seed: int, threads: int) -> float:
    """One GP suggestion as the product's sampler makes it, with `threads` torch intra-op threads."""
    sampler = _samplers.GPSampler(seed=seed, warn_independent_sampling=False, n_startup_trials=10)
    trial = study.ask()
    frozen = trial._cached_frozen_trial
    space = sampler.infer_relative_search_space(study, frozen)
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        sampler.sample_relative(study, frozen, space)
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(default_threads)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


try:
    for n in ns:
        study = optuna.create_study(directions=source.directions)
        study.add_trials(done[:n])
        running = done[n] if n < len(done) else done[-1]
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.RUNNING,
                params=running.params,
                distributions=running.distributions,
            )
        )
        set_load(False)
        suggest(study, 0, default_threads), suggest(study, 0, 1)  # warm-up, not counted
        times = {(loaded, t): [] for loaded in (False, True) for t in (default_threads, 1)}
        for r in range(2 * pairs):
            loaded = r % 2 == 1
            set_load(loaded)
            arms = (default_threads, 1) if (r // 2) % 2 == 0 else (1, default_threads)
            for t in arms:
                times[(loaded, t)].append(suggest(study, 100 + r // 2, t))
        for loaded in (False, True):
            many, one = times[(loaded, default_threads)], times[(loaded, 1)]
            ratios = [a / b for a, b in zip(many, one, strict=True)]
            print(
                f"n={n} {'loaded' if loaded else 'idle'}: {default_threads} threads "
                f"{statistics.median(many):.3f} s, 1 thread {statistics.median(one):.3f} s, median ratio "
                f"{statistics.median(ratios):.2f} (pairs > 1: {sum(x > 1 for x in ratios)} of {pairs}; "
                f"per pair {[round(x, 2) for x in ratios]})",
                flush=True,
            )
finally:
    for p in load:
        os.kill(p.pid, signal.SIGCONT)
        p.kill()
