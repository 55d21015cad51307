"""Scratch (session 33): what does Optuna's ``with torch.device("cpu")`` around the GP suggestion cost?

Optuna 5.1's ``GPSampler.sample_relative`` runs its whole suggestion inside ``torch.device("cpu")`` (a
TorchFunctionMode, there for users who set the default device to CUDA): every torch call of the GP fit and
the acquisition search then dispatches through ``DeviceContext.__torch_function__`` in Python (77 740 calls
in one suggestion at 48 trials, session 32's profile). Where the default device is already the CPU the mode
changes no result. Side by side, per pair: the same study prefix (N complete trials plus one running trial,
as when the search asks while the other worker trains) and the same sampler seed, once with the product's
sampler as it is and once with the mode popped for the suggestion (order alternated), both on one torch
thread as the product runs it; the two suggestions must be identical.

Usage: python session-33-device-mode-probe.py EXP/optuna.db 24,48 PAIRS
"""

import statistics
import sys
import time
import warnings
from pathlib import Path

import optuna
import torch
from torch.overrides import _get_current_function_mode_stack, _pop_mode_temporarily
from torch.utils._device import DeviceContext

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the checkout
from ddecs_search.search import _samplers

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter("ignore")
src, ns, pairs = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
storage = f"sqlite:///{src}"
source = optuna.load_study(study_name=optuna.get_all_study_summaries(storage)[0].study_name, storage=storage)
done = [t for t in source.trials if t.state == optuna.trial.TrialState.COMPLETE]
print(f"complete {len(done)}; torch {torch.__version__}; optuna {optuna.__version__}", flush=True)


class Popped(_samplers.GPSampler):
    """The product's sampler with Optuna's CPU device mode popped while it suggests."""

    def _sample_relative_impl(self, *args):
        stack = _get_current_function_mode_stack()
        assert stack and isinstance(stack[-1], DeviceContext) and stack[-1].device.type == "cpu"
        with _pop_mode_temporarily():
            return super()._sample_relative_impl(*args)


def suggest(study: optuna.Study, seed: int, cls: type) -> tuple[float, dict]:
    sampler = cls(seed=seed, warn_independent_sampling=False, n_startup_trials=10)
    trial = study.ask()
    frozen = trial._cached_frozen_trial
    space = sampler.infer_relative_search_space(study, frozen)
    try:
        t0 = time.perf_counter()
        params = sampler.sample_relative(study, frozen, space)
        return time.perf_counter() - t0, params
    finally:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


for n in ns:
    study = optuna.create_study(directions=source.directions)
    study.add_trials(done[:n])
    running = done[n] if n < len(done) else done[-1]
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, params=running.params, distributions=running.distributions
        )
    )
    suggest(study, 0, _samplers.GPSampler), suggest(study, 0, Popped)  # warm-up, not counted
    times = {"mode": [], "popped": []}
    same = 0
    for r in range(pairs):
        arms = (("mode", _samplers.GPSampler), ("popped", Popped))
        got = {}
        for name, cls in arms if r % 2 == 0 else arms[::-1]:
            t, got[name] = suggest(study, 100 + r, cls)
            times[name].append(t)
        same += got["mode"] == got["popped"]
    ratios = [a / b for a, b in zip(times["mode"], times["popped"], strict=True)]
    print(
        f"n={n}: with the mode {statistics.median(times['mode']):.3f} s, popped "
        f"{statistics.median(times['popped']):.3f} s, median ratio {statistics.median(ratios):.2f} "
        f"(pairs > 1: {sum(x > 1 for x in ratios)} of {pairs}; per pair {[round(x, 2) for x in ratios]}); "
        f"same suggestion {same} of {pairs}",
        flush=True,
    )
