import json, sys
import pandas as pd
for root in sys.argv[1:]:
    t = pd.read_csv(f"{root}/trials.csv")
    t = t.sort_values("trial_started_at").reset_index(drop=True)
    t["driver"] = t["worker_idle_s"] - t["worker_reset_s"]
    late = t.iloc[10:]
    d = late["driver"].dropna()
    rec = json.load(open(f"{root}/run.json"))
    red = rec.get("redrawn_repeats")
    print(root, "n", len(t), "driver median trials 11-48", round(d.median(), 2), "sum", round(d.sum(), 1),
          "all median", round(t["driver"].median(), 2), "max", round(t["driver"].max(), 1), "redrawn", red,
          "mean trial_wall", round(t["trial_wall_s"].mean(), 1))
