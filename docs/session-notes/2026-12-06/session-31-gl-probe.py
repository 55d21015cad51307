"""Scratch (session 31, not run yet): time GPSampler.sample_relative with and without greenlet's batched
L-BFGS-B, interleaved, on the first N complete trials of a finished search's optuna.db.

Usage: python session-31-gl-probe.py EXP/optuna.db 12,24,48 REPEATS (needs `pip install greenlet`).
"""
import sys, time, statistics, warnings
import optuna
import optuna._gp.batched_lbfgsb as bl
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))  # the checkout
from ddecs_search.search import _samplers
optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter("ignore")
src = sys.argv[1]; ns = [int(x) for x in sys.argv[2].split(",")]; reps = int(sys.argv[3])
summ = optuna.get_all_study_summaries(f"sqlite:///{src}")
st = optuna.load_study(study_name=summ[0].study_name, storage=f"sqlite:///{src}")
done = [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]
print("complete", len(done), "all", len(st.trials), "greenlet", bl._greenlet_imports.is_successful())
real = bl._greenlet_imports
class Off:
    def is_successful(self): return False
for n in ns:
    study = optuna.create_study(directions=st.directions)
    study.add_trials(done[:n])
    res = {"on": [], "off": []}
    for r in range(reps):
        for mode in (("on", "off") if r % 2 == 0 else ("off", "on")):
            bl._greenlet_imports = real if mode == "on" else Off()
            s = _samplers.GPSampler(seed=r, warn_independent_sampling=False, n_startup_trials=10, deterministic_objective=False)
            t = study.ask()
            space = s.infer_relative_search_space(study, t._cached_frozen_trial)
            t0 = time.perf_counter(); out = s.sample_relative(study, t._cached_frozen_trial, space); dt = time.perf_counter() - t0
            res[mode].append(dt)
            study.tell(t, state=optuna.trial.TrialState.FAIL)
    on, off = statistics.median(res["on"]), statistics.median(res["off"])
    print(f"n={n}: off {off:.2f} s, on {on:.2f} s, off/on {off/on:.2f}x; per-rep ratios {[round(a/b,2) for a,b in zip(res['off'],res['on'])]}", flush=True)
