"""The README's workflow on a real (tiny) experiment: run → status → pareto → report → export → predict.py.

The exported model is reloaded in a fresh process and must reproduce the test accuracy the trial reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ddecs_search.analysis import experiment_front
from ddecs_search.cli import main

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parent / "spaces" / "tiny.yaml"


def test_readme_workflow_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    storage = tmp_path / "experiments"
    args = ["run", str(TINY), "--name", "wf", "--storage", str(storage), "--num-samples", "2", "--quiet"]
    assert main([*args, "--no-verify"]) == 0
    exp = storage / "wf"
    capsys.readouterr()

    assert main(["status", str(exp), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["total"] == 2 and status["by_state"].get("TERMINATED") == 2

    assert main(["pareto", str(exp), "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    # the json contract of a real search's front: every row names its configuration and its numbers
    keys = {
        "trial_id",
        "config",
        "summary",
        "val_accuracy",
        "accuracy",
        "latency_ms",
        "expected_latency_ms",
        "latency_source",
    }
    assert front and all(keys <= set(row) for row in front)
    assert [r["trial_id"] for r in front].count("static") == 1  # always shown; its rank says where
    _, result = experiment_front(exp)
    static_rank = int(result.ranked.loc[result.ranked["trial_id"] == "static", "rank"].iloc[0])
    assert next(r["rank"] for r in front if r["trial_id"] == "static") == static_rank
    for row in front:
        if row["trial_id"] != "static":
            assert row["config"]["backbone"] == "lenet" and row["summary"].startswith(row["exits"])

    assert main(["report", str(exp), "--out", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text()
    assert len(html) > 1_000_000  # plotly.js inlined: opens with no network
    assert '<script src="http' not in html and "<script src='http" not in html

    trial = next((r["trial_id"] for r in front if r["trial_id"] != "static"), None)
    if trial is None:  # the static network dominated both trials: export the first trial anyway
        trial = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})["trial_id"].iloc[0]
    out = tmp_path / "model"
    assert main(["export", str(exp), "--trial", trial, "--out", str(out)]) == 0
    env = {**os.environ, "DDECS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(out / "predict.py")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    reloaded = json.loads(proc.stdout.strip().splitlines()[-1])
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    reported = float(trials.loc[trials["trial_id"] == trial, "accuracy"].iloc[0])
    assert reloaded["accuracy"] == pytest.approx(reported, abs=1e-9)

    assert main(["export", str(exp), "--trial", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "exportable trials" in capsys.readouterr().err


def test_datasets_verb_lists_the_offline_default(capsys: pytest.CaptureFixture) -> None:
    assert main(["datasets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100"} <= set(rows)
    if Path("/usr/share/datasets/fashion-mnist").is_dir():
        assert rows["fashion-mnist"]["available"] is True
