"""Scratch (session 33): in a search's saved searcher (Tune's searcher-state pickle, written by this product's
own search), which flat-encoding parameters differ between each draw told as a repeat and the evaluated
trial it repeats (source: the draw's `reused_from_trial`, mapped through the searcher's trial table)?"""
import collections, glob, pickle, sys, warnings
warnings.simplefilter("ignore")
for exp in sys.argv[1:]:
    st = pickle.load(open(sorted(glob.glob(f"{exp}/searcher-state-*.pkl"))[-1], "rb"))
    get = (lambda k: st[k]) if isinstance(st, dict) else (lambda k: getattr(st, k))
    study, ot = get("_ot_study"), get("_ot_trials")
    tr = study.get_trials(deepcopy=False)
    number = {tid: t.number for tid, t in ot.items()}
    redrawn = [t for t in tr if "reused_from_trial" in t.user_attrs]
    diffs = collections.Counter(); per = collections.Counter()
    for t in redrawn:
        src = t.user_attrs["reused_from_trial"]
        o = tr[number[src]] if src in number else None
        if o is None:
            diffs[("(source not in the table)",)] += 1; continue
        n_exits = len(str(o.params["exit_points/all"]).split(","))
        d = sorted(k for k in set(t.params) | set(o.params) if t.params.get(k) != o.params.get(k))
        for k in d: per[k] += 1
        diffs[(f"{n_exits} exit(s), branch0 conv {o.params.get('branch0/conv_layers')}",) + tuple(d)] += 1
    print(f"{exp}: {len(tr)} trials in the sampler's study, {len(redrawn)} told as repeats")
    print("  parameters that differ from the source, per repeat:", dict(per.most_common()))
    for k, v in diffs.most_common(8): print("   ", v, k)
