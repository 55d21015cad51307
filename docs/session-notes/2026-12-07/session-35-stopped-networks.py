"""Scratch (session 35): in a search with early stopping, the training that repeated a stopped network.

For each trial in Tune's order (trial_index): its network (the candidate but its policy, the product's own
key); whether it loaded it (network_from_trial), trained it, or was stopped at a rung (rung_epoch). A trial
that trained a network an earlier trial of the same search had been stopped with repeats up to
min(the earlier trial's rung epoch, the epochs it trained itself): what keeping a stopped trial's rung
checkpoint could save. Epochs are exact; seconds are this trial's training time per epoch times them
(stopped trials: Tune's time_total_s per epoch, which includes their rung scoring: an upper estimate).

Usage: python session-35-stopped-networks.py EXP [EXP ...]
"""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the checkout
from ddecs_search.experiment import Experiment, network_key
from ddecs_search.search._space_fn import ConditionalSpace, build_candidate


def nested(row: pd.Series) -> dict:
    out: dict = {}
    for k, v in row.items():
        if not k.startswith("config/") or (not isinstance(v, (list, dict)) and pd.isna(v)):
            continue
        cur = out
        parts = k[len("config/") :].split("/")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v.item() if hasattr(v, "item") else v
    return out


for d in sys.argv[1:]:
    exp = Experiment.at(d)
    space = exp.read_space()
    fn = ConditionalSpace.from_space(space)
    t = exp.read_trials().sort_values("trial_index")
    stopped_at: dict[str, int] = {}  # network -> furthest rung epoch an earlier trial was stopped at
    trained: set[str] = set()  # networks an earlier trial trained in full
    n_loaded = n_stopped = n_trained = 0
    repeats: list[tuple] = []
    for _, row in t.iterrows():
        cand = build_candidate(space, fn, nested(row))
        key = network_key(cand)
        epochs = int(cand.training.epochs)
        loaded = isinstance(row.get("network_from_trial"), str) and row["network_from_trial"] != ""
        stopped = bool(row.get("stopped_early")) and not bool(row.get("evaluated"))
        if loaded:
            n_loaded += 1
            continue
        done = int(row["rung_epoch"]) if stopped else epochs
        if key in stopped_at and key not in trained:
            per_epoch = (float(row["time_total_s"]) if stopped else float(row["train_time_s"])) / done
            e = min(stopped_at[key], done)
            repeats.append((row["trial_id"], "stopped" if stopped else "full", stopped_at[key], done, e, e * per_epoch))
        if stopped:
            n_stopped += 1
            stopped_at[key] = max(stopped_at.get(key, 0), done)
        else:
            n_trained += 1
            trained.add(key)
    body = t["trial_wall_s"].astype(float).fillna(t["trial_time_total_s"].astype(float)).fillna(0.0)
    is_loaded = t["network_from_trial"].apply(lambda v: isinstance(v, str) and v != "")
    is_stopped = t["stopped_early"].astype(bool) & ~t["evaluated"].astype(bool)
    is_full = ~is_loaded & ~is_stopped
    parts = ", ".join(
        f"{name} {int(m.sum())} trials {body[m].sum():.0f} s"
        for name, m in (("loaded", is_loaded), ("trained in full", is_full), ("stopped", is_stopped))
    )
    rungs = t.loc[is_stopped, "rung_epoch"].astype(int).value_counts().sort_index().to_dict() if is_stopped.any() else {}
    print(f"{d}: trial bodies {body.sum():.0f} s = {parts}; stopped at rung epoch {rungs}")
    secs = sum(r[5] for r in repeats)
    epochs_rep = sum(r[4] for r in repeats)
    print(
        f"{d}: {len(t)} trials: {n_loaded} loaded a network, {n_trained} trained in full, {n_stopped} stopped; "
        f"{len(repeats)} trained a network an earlier trial had been stopped with: {epochs_rep} epochs repeated, "
        f"≈ {secs:.0f} s (of the arm's {t['time_total_s'].sum():.0f} s of trial time)"
    )
    for r in repeats:
        print("   trial %s (%s): earlier stopped at epoch %d, trained %d, repeated %d epochs ≈ %.0f s" % r)
