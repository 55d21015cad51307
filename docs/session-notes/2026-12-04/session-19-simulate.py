"""Replay rule variants on a paired replay's rung tables (scratch analysis of session 19, kept for the record).

Usage (from the repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python
docs/session-notes/2026-12-04/session-19-simulate.py REPLAY_STORAGE 0,1,2


For each seed: ES arm = REP/nsga2-s<seed>-es, no-ES arm = REP/nsga2-s<seed>-full (same configurations, same
order: trial_index pairs them). A variant re-decides the rung-1 stops from the complete rung-1 table (every
trial reports rung 1), in arrival order; later rungs are re-decided with the surviving peers' points where
they exist. Time: a trial stopped at rung 1 costs its time_total_s at its rung-1 result; others their actual
ES-arm body time. HV: the benchmark's own hypervolumes() over the 6 runs, ES runs replaced by the simulation.
"""
import json, sys, importlib.util
from pathlib import Path
import numpy as np
import pandas as pd
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
spec = importlib.util.spec_from_file_location('se', ROOT / 'benchmarks' / 'search_efficiency.py')
se = importlib.util.module_from_spec(spec); spec.loader.exec_module(se)
from ddecs_search.search._scheduler import dominator_count

REP = Path(sys.argv[1]); SEEDS = [int(s) for s in sys.argv[2].split(',')]

def rung_times(trial_dir):
    out = {}
    f = trial_dir / 'result.json'
    for line in f.read_text().splitlines() if f.is_file() else []:
        r = json.loads(line)
        if r.get('rung_epoch') is not None and not r.get('rung_final'):
            out[int(r['rung_epoch'])] = float(r['time_total_s'])
        if r.get('rung_final'):
            out['final'] = float(r['time_total_s'])
    return out

def load(seed):
    es_dir, off_dir = REP / f'nsga2-s{seed}-es', REP / f'nsga2-s{seed}-full'
    es_run = se.collect(es_dir, 'nsga2', seed, True, 0.0)
    off_run = se.collect(off_dir, 'nsga2', seed, False, 0.0)
    st = json.loads((es_dir / 'early_stopping.json').read_text())
    es_t = se.Experiment.at(str(es_dir)).read_trials().sort_values('trial_index').reset_index(drop=True)
    off_t = se.Experiment.at(str(off_dir)).read_trials().sort_values('trial_index').reset_index(drop=True)
    body = es_t['trial_wall_s'].astype(float).fillna(es_t['trial_time_total_s'].astype(float))
    times = {}
    for tid in es_t['trial_id']:
        d = [p for p in es_dir.glob(f'tune_trial_{tid}*')]
        times[tid] = rung_times(d[0]) if d else {}
    return dict(es_run=es_run, off_run=off_run, st=st, es_t=es_t, off_t=off_t, body=body, times=times)

def front_ids(data):
    """Trial ids (ES arm) whose configuration is on the no-ES arm's front (static network a member)."""
    off_t, es_t, run = data['off_t'], data['es_t'], data['off_run']
    names = [n for n, _ in run['objectives']]; dirs = [m for _, m in run['objectives']]
    ok = off_t[(off_t['feasible'] == True) & (off_t['full_fidelity'] == True)]
    pts = ok[names].to_numpy(dtype=float)
    sign = np.array([-1.0 if d == 'max' else 1.0 for d in dirs])
    allp = np.vstack([pts, run['static'][None, :]]) * sign if run['static'] is not None else pts * sign
    keep = []
    for i, p in enumerate(pts * sign):
        dom = any(np.all(q <= p) and np.any(q < p) for q in allp)
        if not dom:
            keep.append(es_t['trial_id'].iloc[ok.index[i]])
    return set(keep)

def decide(st, rule):
    """Re-run the rule over the rung tables in arrival order -> {trial_id: rung where stopped}."""
    dirs = ['max', 'min']
    stopped = {}
    for rung in sorted([k for k in st['points'] if k != 'final'], key=int) + (['final'] if 'final' in st['points'] else []):
        order = st.get('order', {}).get(rung, list(st['points'][rung]))
        seen = []
        for tid in order:
            if tid in stopped:
                continue
            p = st['points'][rung][tid]
            peers = list(seen)
            if rung == 'final' and 'final' in st.get('static', {}):
                peers.append(st['static']['final'])
            k = rule(rung, p, peers)
            seen.append(p)
            if k:
                stopped[tid] = rung
    return stopped

def simulate(data, rule):
    st, es_t, off_t = data['st'], data['es_t'], data['off_t']
    stopped = decide(st, rule) if callable(rule) else None
    if stopped is None:
        fr = front_ids(data)
        stopped = {t: '1' for t in es_t['trial_id'] if t not in fr and t in st['points'].get('1', {})}
    real = {tid: s['rung'] for tid, s in st['stopped'].items()}
    time = 0.0; unknown = 0
    keep = []
    for i, tid in enumerate(es_t['trial_id']):
        r = stopped.get(tid)
        if r is None:
            if tid in real:  # the variant lets it past where reality stopped it: its no-ES arm time
                unknown += 1
                time += float(off_t['trial_wall_s'].iloc[i])
            else:
                time += data['body'][i]
            keep.append(i)
        elif real.get(tid) == r:
            time += data['body'][i]
        else:
            t = data['times'][tid].get(int(r) if r != 'final' else 'final')
            time += t if t is not None else data['body'][i]
    names = [n for n, _ in data['off_run']['objectives']]
    rows = off_t.iloc[keep]
    ok = rows[(rows['feasible'] == True) & (rows['full_fidelity'] == True)]
    run = dict(data['off_run']); run['values'] = ok[names].to_numpy(dtype=float); run['early_stopping'] = True
    return run, time, stopped, unknown

def main():
    datas = {s: load(s) for s in SEEDS}
    def md(k, kf=None):
        kf = k if kf is None else kf
        return lambda rung, p, peers: dominator_count(p, peers, ['max', 'min']) >= (kf if rung == 'final' else k)
    rules = {'actual(2)': md(2), 'k=1 all': md(1), 'k=1 rung1, 2 else': lambda r, p, q: dominator_count(p, q, ['max','min']) >= (1 if r == '1' else 2)}
    rules['oracle: only front members pass rung 1'] = 'oracle'
    for name, rule in rules.items():
        runs = []; out = []
        for s in SEEDS:
            d = datas[s]
            run, t, stopped, unk = simulate(d, rule)
            runs += [run, d['off_run']]
            out.append((s, t / d['off_run']['body_s'], len(stopped), unk))
        se.hypervolumes(runs)
        hv = [runs[2*i]['hv'] / runs[2*i+1]['hv'] for i in range(len(SEEDS))]
        print(f"{name:>22}: hv {np.median(hv):.3f} ({' / '.join(f'{x:.3f}' for x in hv)}) time "
              f"{sum(o[1]*datas[o[0]]['off_run']['body_s'] for o in out)/sum(datas[s]['off_run']['body_s'] for s in SEEDS):.2f} "
              f"({' / '.join(f'{o[1]:.2f}' for o in out)}) stopped {[o[2] for o in out]} unknown {[o[3] for o in out]}")
    # the actual
    runs = []
    for s in SEEDS:
        runs += [datas[s]['es_run'], datas[s]['off_run']]
    se.hypervolumes(runs)
    print('actual ES arm: hv', [round(runs[2*i]['hv']/runs[2*i+1]['hv'], 3) for i in range(len(SEEDS))],
          'time', [round(runs[2*i]['body_s']/runs[2*i+1]['body_s'], 2) for i in range(len(SEEDS))])

main()

print('--- shares')
for s in SEEDS:
    d = load(s)
    es_t, off_t, st = d['es_t'], d['off_t'], d['st']
    off_body = off_t['trial_wall_s'].astype(float)
    kept = [i for i, t in enumerate(es_t['trial_id']) if t not in st['stopped']]
    fr = front_ids(d)
    fr_i = [i for i, t in enumerate(es_t['trial_id']) if t in fr]
    lost = [i for i in fr_i if i not in kept]
    print(f"seed {s}: kept {len(kept)}: their no-ES time {off_body.iloc[kept].sum()/off_body.sum():.2f} of the arm; "
          f"first 4 trials {off_body.iloc[:4].sum()/off_body.sum():.2f}; stopped cost (ES arm) "
          f"{d['body'][[i for i in range(len(es_t)) if i not in kept]].sum()/off_body.sum():.2f}; front members {sorted(fr_i)} "
          f"({len(fr_i)}), stopped among them {lost}")
