"""The documented Python API: light to import, every documented name resolves, and the worked example of
docs/api.md runs as written (on the tiny test space, with a real local Ray)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ddecs_search

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
HEAVY = ("torch", "ray", "pandas", "plotly", "optuna")


def _example() -> str:
    text = API_DOC.read_text()
    section = text.split("## Worked example", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_import_stays_light():
    code = f"import sys, ddecs_search; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_documented_function_is_exported():
    table = API_DOC.read_text().split("## Worked example", 1)[0]
    documented = set(re.findall(r"^\| [^|]+ \| `(\w+)\(", table, flags=re.M))
    documented |= set(re.findall(r", `(\w+)\(", table))
    assert {
        "load_space",
        "evaluate_candidate",
        "run_search",
        "resume_search",
        "load_trials",
        "experiment_front",
        "write_report",
        "export_trial",
        "load_study",
    } <= documented
    for name in documented:
        assert name in ddecs_search.__all__, name
        assert callable(getattr(ddecs_search, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ddecs_search.nope  # noqa: B018


@pytest.mark.slow
def test_worked_example_runs_as_documented(local_ray, tmp_path, monkeypatch, capsys):
    (tmp_path / "tests" / "spaces").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "spaces" / "tiny.yaml", tmp_path / "tests" / "spaces" / "tiny.yaml")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_example(), str(API_DOC), "exec"), namespace)  # the documented example, as written
    out = capsys.readouterr().out
    assert re.search(r"accuracy 0\.\d{3} \(static 0\.\d{3}\), \d+\.\d{3} ms per sample", out), out
    exp = tmp_path / "experiments" / "notebook"
    assert (exp / "report.html").is_file() and (tmp_path / "model_dir" / "predict.py").is_file()
    trials, study = namespace["trials"], namespace["study"]
    done = trials[trials["state"] == "TERMINATED"]
    objectives = [o["name"] for o in json.loads((exp / "run.json").read_text())["objectives"]]
    assert len(done) >= 1 and study.metric_names == objectives  # the search's (energy -> macs fallback)
    assert sorted(t.user_attrs["trial_id"] for t in study.trials) == sorted(trials["trial_id"])
    assert set(namespace["importances"].importances) <= set(study.metric_names)
