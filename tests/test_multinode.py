"""The search on a real multi-node Ray cluster (loopback only), and what survives a lost node or driver.

One cluster for the module: a head and a worker node of 1 CPU each, started with ``ray start`` as
separate process sessions (``tests/_ray_cluster.py``), token authentication on. Each test runs
``ddecs-search run tests/spaces/tiny_multinode.yaml --address 127.0.0.1:PORT --storage TMP`` in a
subprocess, as a user would, and reads the experiment directory it leaves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from _ray_cluster import LoopbackCluster, kill_session

pytestmark = pytest.mark.slow

SPACE = Path(__file__).parent / "spaces" / "tiny_multinode.yaml"
CLI = str(Path(sys.executable).parent / "ddecs-search")
NUM_TRIALS = 4  # tiny_multinode.yaml: search.num_samples
SEARCH_TIMEOUT = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cluster")
    # one baseline/data cache for the whole module, outside the user's home
    with LoopbackCluster(root, extra_env={"DDECS_CACHE": str(root / "cache")}) as c:
        c.start_head(num_cpus=1)
        c.add_worker(num_cpus=1)
        yield c


def _workers(cluster: LoopbackCluster, n: int) -> list:
    """Make sure ``n`` live worker nodes are up (a test may have killed one); returns them."""
    alive = [node for node in cluster.nodes[1:] if node.alive()]
    while len(alive) < n:
        alive.append(cluster.add_worker(num_cpus=1))
    return alive


def _cli(cluster: LoopbackCluster, log: Path, *args: str) -> subprocess.Popen:
    """``ddecs-search ARGS --address <cluster> --quiet`` in a session of its own, output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [CLI, *args, "--address", cluster.address, "--quiet"],
            env=cluster.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _start_search(
    cluster: LoopbackCluster, tmp_path: Path, name: str, *, uri: bool = False, space: Path = SPACE
) -> subprocess.Popen:
    """``ddecs-search run tiny_multinode.yaml`` into ``tmp_path/exp/<name>``, given as a path or a URI."""
    storage = (tmp_path / "exp").as_uri() if uri else str(tmp_path / "exp")
    return _cli(cluster, tmp_path / f"{name}.log", "run", str(space), "--name", name, "--storage", storage)


def _finish(proc: subprocess.Popen, log: Path, what: str) -> None:
    try:
        rc = proc.wait(timeout=SEARCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        rc = "a timeout"
    assert rc == 0, f"{what} ended with {rc}:\n{log.read_text(errors='replace')[-4000:]}"


def _trials(exp: Path) -> pd.DataFrame:
    return pd.read_csv(exp / "trials.csv", dtype={"trial_id": str, "node_id": str})


def _evaluations(exp: Path) -> dict[str, int]:
    """How many times each trial was fully evaluated (one audit record per evaluation)."""
    return dict(Counter(f.name.split(".", 1)[0] for f in (exp / "evaluations").glob("*.json")))


def _title(pid: int) -> str:
    """A process's title (Ray names its workers ``ray::<actor or task>``); "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def _running_trials(pids: list[int]) -> dict[str, int]:
    """Trials (id -> pid) that Ray workers among ``pids`` are running now.

    Tune runs each trial in its own working directory ``.../working_dirs/tune_trial_<id>``
    (``trial_dirname`` of the search), so a worker's cwd names the trial it runs.
    """
    found = {}
    for pid in pids:
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if _title(pid).startswith("ray::ImplicitFunc") and "tune_trial_" in cwd:
            found[cwd.rsplit("tune_trial_", 1)[1]] = pid
    return found


def _tune_knows_checkpoint(exp: Path, trial_id: str) -> bool:
    """Whether the driver's last saved experiment state holds a checkpoint of the trial.

    That state is what a retry after a lost node and a resume after a lost driver restore from. Each
    trial's checkpoint manager is stored pickled (hex) in ``experiment_state-*.json``; the checkpoint's
    path appears in it verbatim.
    """
    states = sorted(exp.glob("experiment_state-*.json"))
    try:
        data = json.loads(states[-1].read_text()) if states else {"trial_data": []}
    except (OSError, ValueError):  # being rewritten: ask again
        return False
    needle = f"tune_trial_{trial_id}/checkpoint_".encode()
    for _, runtime in data["trial_data"]:
        manager = json.loads(runtime).get("checkpoint_manager", {})
        if needle in bytes.fromhex(manager.get("value", "")):
            return True
    return False


def _finished(exp: Path, trial_id: str) -> bool:
    return (exp / "trials" / trial_id / "metrics.json").is_file()


def _wait_for(condition, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"the search ended (rc {proc.returncode}) before {what}"
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _assert_complete(exp: Path) -> pd.DataFrame:
    trials = _trials(exp)
    assert len(trials) == NUM_TRIALS, trials[["trial_id", "state"]]
    assert (trials["state"] == "TERMINATED").all(), trials[["trial_id", "state", "error"]]
    assert trials["evaluated"].all()
    assert trials["accuracy"].notna().all() and trials["latency_ms"].notna().all()
    return trials


def test_trials_spread_over_nodes(cluster: LoopbackCluster, tmp_path: Path) -> None:
    _workers(cluster, 1)
    nodes = {n["NodeID"] for n in cluster.node_table() if n["Alive"]}
    assert len(nodes) == 2
    # storage as a URI: the pyarrow-filesystem path that s3:// and gs:// take on a real cluster; with
    # verify on (the other tests here leave it off): every pick is re-measured on the node it was timed on
    space = tmp_path / "verified.yaml"
    text = SPACE.read_text()
    assert "verify: false," in text
    space.write_text(text.replace("verify: false,", "verify: true, verify_top: 4,"))
    proc = _start_search(cluster, tmp_path, "spread", uri=True, space=space)
    _finish(proc, tmp_path / "spread.log", "the search")
    trials = _assert_complete(tmp_path / "exp" / "spread")
    assert set(trials["node_id"]) <= nodes
    assert trials["node_id"].nunique() == 2, "all trials ran on one node"
    # latency is tagged with the device it was measured on (one CPU type here: one device group)
    assert trials["device"].notna().all() and trials["device"].nunique() == 1
    assert sorted(_evaluations(tmp_path / "exp" / "spread").values()) == [1] * NUM_TRIALS
    from ddecs_search.experiment import Experiment
    from ddecs_search.search._verify import pick_front
    from ddecs_search.search._worker import node_cache_dir

    exp = tmp_path / "exp" / "spread"
    # the finished search removed its node folder (data cache, baseline, scratch) on every node it used
    uid = json.loads((exp / "run.json").read_text())["exp_uid"]
    assert not node_cache_dir(uid).exists(), sorted(p.name for p in node_cache_dir(uid).iterdir())
    picks = pick_front(trials, Experiment.at(str(exp)).read_objectives(), 4)
    if picks:  # (none when the static network dominates every trial)
        verified = pd.read_csv(exp / "verified.csv", dtype={"trial_id": str, "verified_node_id": str})
        assert sorted(verified["trial_id"]) == sorted(picks)
        timed_on = trials.set_index("trial_id").loc[verified["trial_id"], "node_id"].to_numpy()
        assert (verified["verified_node_id"].to_numpy() == timed_on).all(), (timed_on, verified)


def test_worker_node_lost_mid_search(cluster: LoopbackCluster, tmp_path: Path) -> None:
    (worker,) = _workers(cluster, 1)
    exp = tmp_path / "exp" / "fault"
    proc = _start_search(cluster, tmp_path, "fault")

    def victim() -> str | None:
        """Once a trial has finished: a trial on the worker, unfinished, with a checkpoint Tune knows."""
        if not _evaluations(exp):
            return None
        for trial_id in _running_trials(worker.pids()):
            if _tune_knows_checkpoint(exp, trial_id) and not _finished(exp, trial_id):
                return trial_id
        return None

    lost_trial = _wait_for(victim, 240, "a finished trial and a checkpointed one on the worker", proc)
    finished_before = {
        t: json.loads((exp / "trials" / t / "metrics.json").read_text()) for t in _evaluations(exp)
    }
    assert finished_before
    # the broker is pinned to the driver's node: losing a worker must not lose it
    assert not any("LatencyBroker" in _title(pid) for pid in worker.pids())
    killed_at = time.time()
    cluster.kill(worker)  # SIGKILL to every process of the node: raylet, agents, the trial
    assert not worker.alive()
    _finish(proc, tmp_path / "fault.log", "the search after losing a node")

    trials = _assert_complete(exp).set_index("trial_id")
    lost = trials.loc[lost_trial]
    assert lost["num_failures"] >= 1, "the lost trial was not retried"
    assert lost["resumed_from_epoch"] >= 0, "the lost trial restarted instead of resuming from its checkpoint"
    head_id = next(n["NodeID"] for n in cluster.node_table() if "node:__internal_head__" in n["Resources"])
    assert lost["node_id"] == head_id, "the retried trial should have finished on the surviving node"
    # no finished result lost or redone: each trial evaluated exactly once, earlier results unchanged
    assert sorted(_evaluations(exp).values()) == [1] * NUM_TRIALS
    for trial_id, metrics in finished_before.items():
        assert trials.loc[trial_id, "accuracy"] == pytest.approx(metrics["accuracy"])
        assert trials.loc[trial_id, "num_failures"] == 0
    print(
        f"worker lost: trial {lost_trial} retried {lost['num_failures']:.0f}x, resumed from epoch "
        f"{lost['resumed_from_epoch']:.0f} on the head {lost['trial_started_at'] - killed_at:.1f} s after "
        f"the kill; {len(finished_before)} finished trial(s) kept; "
        f"{NUM_TRIALS}/{NUM_TRIALS} TERMINATED, each evaluated once"
    )


def test_driver_killed_then_resumed(cluster: LoopbackCluster, tmp_path: Path) -> None:
    _workers(cluster, 1)
    exp = tmp_path / "exp" / "driver"
    proc = _start_search(cluster, tmp_path, "driver")

    def finished_and_checkpointed() -> bool:  # one trial done and another one part-way (checkpointed)
        done = set(_evaluations(exp))
        started = [t.name.removeprefix("tune_trial_") for t in exp.glob("tune_trial_*")]
        return bool(done) and any(_tune_knows_checkpoint(exp, t) for t in started if t not in done)

    _wait_for(finished_and_checkpointed, 240, "a finished trial and a checkpointed one", proc)
    kill_session(proc.pid)  # the driver (Tune's loop, the searcher) vanishes; the cluster stays
    proc.wait(timeout=30)
    # the cluster ends the dead driver's trials; only then is "finished before the kill" final
    nodes = [n for n in cluster.nodes if n.alive()]
    deadline = time.monotonic() + 60
    while any(_running_trials(n.pids()) for n in nodes) and time.monotonic() < deadline:
        time.sleep(0.2)
    finished_before = set(_evaluations(exp))
    interrupted = {t.name.removeprefix("tune_trial_") for t in exp.glob("tune_trial_*")} - finished_before
    resumable = {t for t in interrupted if _tune_knows_checkpoint(exp, t)}
    assert resumable

    log = tmp_path / "resume.log"
    resumed_at = time.time()
    _finish(_cli(cluster, log, "resume", str(exp)), log, "resume")
    resume_s = time.time() - resumed_at

    trials = _assert_complete(exp).set_index("trial_id")
    assert sorted(_evaluations(exp).values()) == [1] * NUM_TRIALS, "a finished trial was evaluated again"
    assert finished_before <= set(trials.index)
    resumed = trials.loc[sorted(resumable)]
    assert (resumed["resumed_from_epoch"] >= 0).all(), "an interrupted trial restarted instead of resuming"
    print(
        f"driver lost: {len(finished_before)} finished trial(s) kept, {len(resumable)} resumed from "
        f"epoch(s) {resumed['resumed_from_epoch'].tolist()}; {NUM_TRIALS}/{NUM_TRIALS} TERMINATED, "
        f"each evaluated once; resume took {resume_s:.0f} s"
    )
