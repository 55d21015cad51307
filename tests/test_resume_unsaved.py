"""A result stored after Ray Tune last saved its state survives a killed driver (the crash test's orphan).

Tune saves its experiment state (trials, searcher) every 10 s or more, and at once only after a trial's
epoch checkpoint. A trial that loads a network trained before writes no checkpoint, so it can be drawn,
evaluated and stored between two saves; a driver killed then resumes a search that never heard of it.
The kill matrix (test_faults.py) met this by chance (two CI failures: four evaluation records for three
trials); here it is made to happen: one network in the space (the second trial loads the first one's
weights), Tune's periodic save pushed out to an hour, and the driver killed once the second trial's
result is in the table.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from test_faults import TINY, _driver, _end

from ddecs_search.experiment import Experiment


@pytest.mark.slow
def test_a_result_stored_after_tunes_last_save_is_kept_by_resume(tmp_path, monkeypatch):
    data = yaml.safe_load(TINY.read_text())
    data["exits"].update(count=[1, 1], points=[2], conv_layers=[0], pool=["avg"], pool_size=[2])  # 1 network
    data["search"].update(
        algorithm="random",
        num_samples=2,
        max_concurrent=1,
        seed=3,
        verify=False,
        early_stopping={"enabled": False},
    )
    space = tmp_path / "one-network.yaml"
    space.write_text(yaml.safe_dump(data))
    exp_dir, log = tmp_path / "exps" / "o", tmp_path / "drivers.log"

    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "3600")  # saves only after epoch checkpoints
    run = ["run", str(space), "--storage", str(exp_dir.parent), "--name", "o", "--no-verify"]
    assert _end(_driver(run, log, kill_at="trial-complete@2")) < 0, log.read_text()[-3000:]
    state = max(exp_dir.glob("experiment_state-*.json"))
    saved = {json.loads(t)["trial_id"] for t, _ in json.loads(state.read_text())["trial_data"]}
    stored = {p.parent.name for p in (exp_dir / "trials").glob("*/metrics.json")}
    (unsaved,) = stored - saved  # the second trial: evaluated, stored, in the table, unknown to the state
    kept = json.loads((exp_dir / "trials" / unsaved / "metrics.json").read_text())
    assert kept["network_from_trial"] in saved  # it trained nothing (hence no checkpoint, no save)

    monkeypatch.delenv("TUNE_GLOBAL_CHECKPOINT_S")
    assert _end(_driver(["resume", str(exp_dir)], log)) == 0, log.read_text()[-3000:]
    assert f"trial {unsaved} finished after Ray Tune last saved" in log.read_text()
    exp = Experiment.at(str(exp_dir))
    table = exp.read_trials().set_index("trial_id")
    assert len(table) == 2 and set(table["state"]) == {"TERMINATED"} and unsaved not in table.index
    (adopter,) = table.index[table["reused_from_trial"] == unsaved]  # its result, re-reported
    assert table.loc[adopter, "candidate"] == kept["candidate"]
    assert table.loc[adopter, "accuracy"] == pytest.approx(kept["accuracy"])
    assert exp.evaluation_counts() == {t: 1 for t in [*table.index, unsaved]}  # nothing evaluated twice
    assert pd.isna(table.drop(index=adopter)["reused_from_trial"]).all()
