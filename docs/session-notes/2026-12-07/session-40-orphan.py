"""Session 40: make a trial be stored after Ray Tune last saved its state, kill the driver, resume.

Usage (repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python THIS_FILE OUT_DIR. Run at e3624da;
output in session-40-orphan-output.txt. tests/test_resume_unsaved.py is the same check, 2 trials.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[3]  # the repository
base = Path(sys.argv[1])
base.mkdir(parents=True, exist_ok=True)
data = yaml.safe_load((ROOT / "tests/spaces/tiny.yaml").read_text())
data["exits"].update(count=[1, 1], points=[2], conv_layers=[0], pool=["avg"], pool_size=[2])
data["search"].update(
    algorithm="random",
    num_samples=3,
    max_concurrent=1,
    seed=3,
    verify=False,
    early_stopping={"enabled": False},
)
space = base / "one-network.yaml"
space.write_text(yaml.safe_dump(data))
env = {
    **os.environ,
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "3600",
    "DDECS_TEST_KILL_AT": "trial-complete@2",
}


def drive(args, env):
    p = subprocess.run(
        [sys.executable, "-m", "ddecs_search", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        start_new_session=True,
    )
    print("rc", p.returncode)
    print(p.stdout[-1500:])
    print(p.stderr[-3000:])


drive(["run", str(space), "--storage", str(base / "exps"), "--name", "o", "--no-verify"], env)
exp = base / "exps" / "o"
states = sorted(exp.glob("experiment_state-*.json"))
print(
    "state trials:",
    [
        json.loads(t[0])["trial_id"] if isinstance(t[0], str) and t[0].startswith("{") else "?"
        for t in json.loads(states[-1].read_text())["trial_data"]
    ],
)
print("stored:", sorted(p.parent.name for p in (exp / "trials").glob("*/metrics.json")))
env.pop("DDECS_TEST_KILL_AT")
env.pop("TUNE_GLOBAL_CHECKPOINT_S")
drive(["resume", str(exp)], env)
t = pd.read_csv(exp / "trials.csv", dtype=str)
print(
    t[
        [
            c
            for c in [
                "trial_id",
                "reused_from_trial",
                "network_from_trial",
                "accuracy",
                "config/policy/cost_weight",
            ]
            if c in t
        ]
    ]
)
print("evaluations:", sorted(os.listdir(exp / "evaluations")))
