"""Scratch (session 34): evaluated trials whose network (the candidate but its policy) an earlier trial trained.

Usage: python session-34-netdups.py EXP [EXP ...]  (finished experiments; the product's candidate builder)
"""
import dataclasses, hashlib, json, sys
import pandas as pd
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the checkout
from ddecs_search.experiment import Experiment
from ddecs_search.config import to_dict
from ddecs_search.search._space_fn import ConditionalSpace, build_candidate
for d in sys.argv[1:]:
    exp = Experiment.at(d)
    space = exp.read_space()
    fn = ConditionalSpace.from_space(space)
    t = exp.read_trials()
    t = t[t["evaluated"] == True].sort_values("trial_started_at")
    seen, dups, saved = {}, [], 0.0
    for _, row in t.iterrows():
        cfg = {k[len("config/"):]: v for k, v in row.items() if k.startswith("config/") and pd.notna(v)}
        # nested config as Tune gives it
        nested = {}
        for k, v in cfg.items():
            cur = nested
            parts = k.split("/")
            for p in parts[:-1]:
                cur = cur.setdefault(p, {})
            cur[parts[-1]] = v.item() if hasattr(v, "item") else v
        cand = build_candidate(space, fn, nested)
        net = to_dict(cand); net.pop("policy")
        key = hashlib.sha256(json.dumps(net, sort_keys=True).encode()).hexdigest()
        if key in seen:
            dups.append((row["trial_id"], seen[key], row["cost_weight"], row["train_time_s"]))
            saved += float(row["train_time_s"])
        else:
            seen[key] = row["trial_id"]
    print(d, f"evaluated {len(t)}, networks {len(seen)}, repeats {len(dups)}, their training {saved:.0f} s of {t['train_time_s'].sum():.0f} s")
    for x in dups: print("   ", x)
