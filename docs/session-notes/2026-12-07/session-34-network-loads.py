"""Scratch (session 34): the training a search's network loads did not repeat (pre-registered item 1).

For each trial with ``network_from_trial``: its source trial's ``train_time_s`` (what training the network
again would have cost, on this search's own draws); summed, and as a share of (that + the training the
search did). Also the trial bodies of loading and training trials.

Usage: python session-34-network-loads.py EXP
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the checkout
from ddecs_search.experiment import Experiment  # noqa: E402

exp = Experiment.at(sys.argv[1])
t = exp.read_trials()
t = t[t["evaluated"] == True]  # noqa: E712
by_id = t.set_index("trial_id")
loads = t[t["network_from_trial"].notna()] if "network_from_trial" in t else t.iloc[:0]
saved = sum(float(by_id.loc[s, "train_time_s"]) for s in loads.get("network_from_trial", []))
trained = float(t["train_time_s"].sum())
sources = loads["network_from_trial"].nunique() if len(loads) else 0
print(f"{exp.root}: evaluated {len(t)}, loaded a network {len(loads)} (from {sources} trials)")
print(f"  training not repeated {saved:.0f} s; trained {trained:.0f} s; share not repeated {saved / (saved + trained):.3f}")
rest = t.drop(index=loads.index)
print(
    f"  trial bodies: loading trials mean {loads['trial_wall_s'].mean():.1f} s (n {len(loads)}), "
    f"training trials mean {rest['trial_wall_s'].mean():.1f} s (n {len(rest)}); all {t['trial_wall_s'].sum():.0f} s"
)
