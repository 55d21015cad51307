"""Crash tests: the driver is SIGKILLed at many points of a search's life and resumed each time; state
files are truncated one at a time; two resumes start at once; the driver lock and checkpoint fallbacks.

The kill points are named in the product (``ddecs_search/_faults.py``: ``DDECS_TEST_KILL_AT=NAME[@N]``
makes the driver kill itself the N-th time it passes that point), except "during baseline training",
where the test kills the driver's process group itself once the baseline has checkpointed an epoch.
Each driver runs in its own session so that killing it also ends the local Ray it started, as a crash
of the machine would. Sized for a 2-core CPU: LeNet, 1024 training images, 3 trials of 3 epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml

from ddecs_search import ray_setup
from ddecs_search.cli import main
from ddecs_search.experiment import Experiment
from ddecs_search.search._worker import node_cache_dir

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "spaces" / "tiny.yaml"

# kill points in the order a search passes them (a point the search no longer reaches is reported)
KILL_POINTS = (
    "baseline-stored",  # baseline trained and stored, no trial started
    "write:trials.csv@1",  # first trials-table write: temp file written, not yet renamed
    "trial-result@2",  # mid-trial: the second per-epoch result
    "write:run.json@2",  # during a run-record write (the baseline/objectives record, before the Tuner)
    "trial-complete@1",  # between trials: one finished, table written
    "trial-result@2",  # mid-trial again, in another driver
    "write:trials.parquet@2",  # during the table's parquet write
    "trial-complete@1",  # between trials again
    "search-finished",  # every trial done; latency table and record not yet written
    "write:latency_table.json",  # during the final latency-table write
    "verify-pick@1",  # during verify: one pick measured
    "write:verified.csv",  # during the verify report write
)


# ----------------------------------------------------------------------------------------- helpers
def _space(tmp_path: Path) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["dataset"].update(train_subset=1024)
    data["backbone"]["baseline"].update(epochs=3)
    data["training"]["epochs"] = [3]
    # early stopping off: every trial must reach its full evaluation for "nothing rerun, nothing lost"
    data["search"].update(
        num_samples=3, max_concurrent=2, seed=5, verify=True, verify_top=2, early_stopping={"enabled": False}
    )
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _driver(args: list[str], log: Path, kill_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("DDECS_TEST_KILL_AT", None)
    if kill_at:
        env["DDECS_TEST_KILL_AT"] = kill_at
    return subprocess.Popen(
        [sys.executable, "-m", "ddecs_search", *args],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=ROOT,
    )


def _end(proc: subprocess.Popen, timeout: float = 600) -> int:
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the Ray the driver started (and its trial workers)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    return rc


def _results(exp_dir: Path) -> dict[str, float]:
    """Every stored trial result (metrics.json, written last by a finished trial): trial id -> accuracy."""
    out = {}
    for path in sorted((exp_dir / "trials").glob("*/metrics.json")):
        out[path.parent.name] = json.loads(path.read_text())["accuracy"]
    return out


# ------------------------------------------------------------------------------- the kill matrix
@pytest.mark.slow
def test_sigkill_at_many_points_then_resume_loses_nothing(tmp_path, capsys):
    exp_dir = tmp_path / "exps" / "crash"
    log = tmp_path / "drivers.log"
    matrix: list[tuple[str, str, float]] = []  # (point, outcome, driver wall seconds)
    seen: dict[str, float] = {}

    def check_kept(point: str) -> None:
        now = _results(exp_dir)
        for trial_id, acc in seen.items():  # nothing finished before is lost or changed
            assert now.get(trial_id) == pytest.approx(acc), (point, trial_id)
        seen.update(now)

    # 1. during baseline training: killed by the test once an epoch checkpoint is in the experiment
    t0 = time.monotonic()
    proc = _driver(
        [
            "run",
            str(_space(tmp_path)),
            "--storage",
            str(exp_dir.parent),
            "--name",
            "crash",
            "--no-verify",
            "--quiet",
        ],
        log,
    )
    deadline = time.monotonic() + 300
    while not list((exp_dir / "baseline" / "training").glob("*/checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    _end(proc)
    matrix.append(("baseline training (epoch checkpoint on disk)", "killed", time.monotonic() - t0))

    uid = json.loads((exp_dir / "run.json").read_text())["exp_uid"]

    # 2. the named points, one driver each; every driver resumes what the previous one left
    moved: list[str] = []
    for point in KILL_POINTS:
        t0 = time.monotonic()
        rc = _end(_driver(["resume", str(exp_dir), "--quiet"], log, kill_at=point))
        outcomes = {-signal.SIGKILL: "killed", 0: "finished before the point (not reached)"}
        outcome = outcomes.get(rc, f"rc {rc}")
        matrix.append((point, outcome, time.monotonic() - t0))
        assert rc in (-signal.SIGKILL, 0), f"{point}: {rc}\n{log.read_text()[-4000:]}"
        check_kept(point)
        if not moved:  # once, where a trial is mid-training: as Tune's too-early delete can leave it
            moved = _tune_deleted_the_recorded_checkpoint(exp_dir)
            if moved:
                matrix.append((f"the checkpoint Tune's state names gone ({len(moved)})", "moved", 0.0))
                # the killed trials' work folders are in the experiment's node folder, not loose in /tmp (a
                # trial whose body had just ended has none left: at least one of them was mid-training)
                left = {p.name.split("-")[2] for p in (node_cache_dir(uid) / "scratch").glob("ddecs-trial-*")}
                assert left & set(moved), (moved, left)
                loose = [p for t in moved for p in Path(tempfile.gettempdir()).glob(f"ddecs-trial-{t}-*")]
                assert not loose, loose

    # 3. two resumes at once: one drives the search to its end, the other exits 2 naming the holder
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    t0 = time.monotonic()
    procs = [_driver(["resume", str(exp_dir), "--quiet"], p) for p in logs]
    codes = sorted(_end(p) for p in procs)
    texts = [p.read_text() for p in logs]
    matrix.append(("two resumes at once", f"exit codes {codes}", time.monotonic() - t0))
    with capsys.disabled():  # (the truncation matrix below reads the CLI's output through capsys)
        lines = [f"  {p:48s} {o:40s} {t:6.1f} s" for p, o, t in matrix]
        print("\nfault-injection matrix (point, outcome, driver wall time):\n" + "\n".join(lines))
    (tmp_path / "matrix.json").write_text(json.dumps(matrix))
    assert codes == [0, 2], texts
    loser = next(t for t in texts if "being driven by another ddecs-search" in t)
    assert "pid" in loser and "host" in loser and "--force" in loser, loser

    assert moved, f"no kill left a trial whose state names an epoch checkpoint: {matrix}"
    killed = [p for p, o, _ in matrix if o == "killed"]
    assert len(killed) >= 10, matrix
    # the search completed: every trial evaluated exactly once, every result from before every kill kept.
    # A result stored after Ray Tune last saved its state belongs to a trial the next resume never hears
    # of; the resumed searcher adopts it (search/_optuna_search.py): one table trial re-reports it
    # (reused_from_trial), so it is kept, and no candidate is evaluated twice.
    exp = Experiment.at(exp_dir)
    trials = exp.read_trials()
    assert len(trials) == 3 and set(trials["state"]) == {"TERMINATED"} and trials["evaluated"].all()
    table = trials.set_index("trial_id")
    counts = exp.evaluation_counts()
    adopted = set(counts) - set(table.index)
    assert counts == {t: 1 for t in [*table.index, *adopted]}, counts
    # adopter -> the trial whose result it holds (a column only when some trial re-reported one)
    sources = table["reused_from_trial"].dropna().to_dict() if "reused_from_trial" in table else {}
    assert adopted <= set(sources.values()), (adopted, sources)
    check_kept("end")
    assert set(seen) == set(table.index) | adopted
    assert table["accuracy"].to_dict() == pytest.approx({t: seen[sources.get(t, t)] for t in table.index})
    evaluated = [json.loads(p.read_text()) for p in (exp_dir / "trials").glob("*/metrics.json")]
    candidates = [m["candidate"] for m in evaluated if not m.get("reused_from_trial")]
    assert len(candidates) == len(set(candidates)), candidates  # none evaluated twice
    if adopted:
        with capsys.disabled():
            print(f"\nresults adopted by a resume (stored after Tune's last save): {sorted(adopted)}")
    assert exp.read_record()["status"] == "finished" and (exp_dir / "verified.csv").is_file()
    meta = next((exp_dir / "baseline").glob("*/meta.json"))
    assert json.loads(meta.read_text()).get("resumed_from_checkpoint") is True  # not retrained from zero
    assert json.loads((exp_dir / "latency_table.json").read_text())  # persisted, not lost with the driver
    assert not list(exp_dir.glob(".*.tmp")), "temp files of killed writes are cleaned up on resume"
    assert not (exp_dir / "baseline" / "training").exists()
    # finished: the node folder went, and with it the work folders of the trials killed on the way
    assert not node_cache_dir(uid).exists()

    # 4. truncate each state file in turn (on copies of the finished experiment): exit 2 naming the file
    #    before Ray starts, or the file is rebuilt
    _truncation_matrix(exp_dir, tmp_path, capsys)


def _tune_deleted_the_recorded_checkpoint(exp_dir: Path) -> list[str]:
    """Leave the unfinished trials as a kill between two of Tune's writes can leave them; returns their ids.

    Tune deletes epoch k's checkpoint when it registers epoch k+1's (``num_to_keep=1``) but writes the
    experiment state that names epoch k's only later (ray-project/ray#27790). Here each unfinished trial
    whose newest state names a checkpoint on disk gets that folder moved to the next free index: the one
    its state names is gone and a newer folder exists (read with Tune's own loader of its state).
    """
    from ray.tune.experiment.trial import Trial

    states = sorted(exp_dir.glob("experiment_state-*.json"))  # (timestamped names: the newest last)
    if not states:
        return []
    moved = []
    for json_state, metadata in json.loads(states[-1].read_text())["trial_data"]:
        trial = Trial.from_json_state(json_state, stub=True)
        trial.restore_run_metadata(metadata)
        named = Path(trial.checkpoint.path) if trial.checkpoint is not None else None
        if trial.status == Trial.TERMINATED or named is None or not named.is_dir():
            continue
        index = max(int(p.name.removeprefix("checkpoint_")) for p in named.parent.glob("checkpoint_*"))
        named.rename(named.parent / f"checkpoint_{index + 1:06d}")
        moved.append(trial.trial_id)
    return moved


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncation_matrix(exp_dir: Path, tmp_path: Path, capsys) -> None:
    baseline = next(p for p in (exp_dir / "baseline").iterdir() if p.is_dir())
    trial = next(p for p in (exp_dir / "trials").iterdir() if p.is_dir())
    files = {
        "space.yaml": exp_dir / "space.yaml",
        "run.json": exp_dir / "run.json",
        "latency_table.json": exp_dir / "latency_table.json",
        "baseline/probe.json": exp_dir / "baseline" / "probe.json",
        "baseline meta.json": baseline / "meta.json",
        "baseline backbone.pt": baseline / "backbone.pt",
        "trial metrics.json": trial / "metrics.json",
        # Ray Tune's own state (the newest of each kind), checked before Ray starts
        "Tune tuner.pkl": exp_dir / "tuner.pkl",
        "Tune experiment_state-*.json": max(exp_dir.glob("experiment_state-*.json")),
    }
    for pattern in ("search_gen_state-*.json", "searcher-state-*.pkl"):  # (pickles; a search algorithm's)
        found = sorted(exp_dir.glob(pattern))
        if found:
            files[f"Tune {pattern}"] = found[-1]
    rows = []
    for label, path in files.items():
        copy = tmp_path / "trunc" / label.replace("/", "_").replace(" ", "_").replace("*", "N") / exp_dir.name
        shutil.copytree(exp_dir, copy)
        target = copy / path.relative_to(exp_dir)
        _truncate(target)
        capsys.readouterr()
        resume = ["resume", str(copy), "--quiet", "--no-verify"]
        # "before Ray": the resume must not reach init_ray (checked on the call itself: another test of
        # this process may have left a Ray running, so ray.is_initialized() says nothing here)
        with mock.patch("ddecs_search.ray_setup.init_ray", wraps=ray_setup.init_ray) as init_ray:
            code = None if label == "trial metrics.json" else main(resume)
        err = capsys.readouterr().err
        if code is None:  # read through the experiment module (the trainable treats it as unfinished)
            from ddecs_search.experiment import StateFileError

            with pytest.raises(StateFileError) as info:
                Experiment.at(copy).read_trial_metrics(trial.name)
            err, code = str(info.value), 2
        rows.append((label, code, err.strip().splitlines()[-1] if err.strip() else ""))
        assert code == 2 and str(target) in err and "Traceback" not in err, (label, err)
        assert init_ray.call_count == 0, label  # refused before Ray
    # newer format of run.json
    copy = tmp_path / "trunc" / "newer" / exp_dir.name
    shutil.copytree(exp_dir, copy)
    record = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**record, "format_version": 999}))
    assert main(["resume", str(copy), "--quiet", "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert "newer ddecs-search" in err and str(copy / "run.json") in err, err
    rows.append(("run.json format_version 999", 2, err.strip().splitlines()[-1]))
    rows += _trials_table_rows(exp_dir, tmp_path, capsys)
    with capsys.disabled():
        print("\ntruncation matrix:\n" + "\n".join(f"  {a:28s} exit {b}: {c}" for a, b, c in rows))
    (tmp_path / "truncation.json").write_text(json.dumps(rows))


def _trials_table_rows(exp_dir: Path, tmp_path: Path, capsys) -> list[tuple[str, int, str]]:
    """trials.csv cut in half (it may still parse) and its check record cut: status/pareto/report exit 2
    naming the file; resume rewrites the table from Tune's state (no trial rerun, every result kept)."""
    import ray

    from ddecs_search.experiment import TRIALS_CHECK_FILE

    rows = []
    before = Experiment.at(exp_dir).read_trials().set_index("trial_id")
    for name in (TRIALS_CHECK_FILE, "trials.csv"):
        copy = tmp_path / "trunc" / name / exp_dir.name
        shutil.copytree(exp_dir, copy)
        _truncate(copy / name)
        capsys.readouterr()
        for verb in ("status", "pareto", "report"):
            code = main([verb, str(copy)])
            err = capsys.readouterr().err
            assert code == 2 and f"{copy / name}: corrupt" in err and "Traceback" not in err, (verb, err)
            assert f"`ddecs-search resume {copy}` rewrites it" in err, err
        rows.append((f"{name} (status, pareto, report)", code, err.strip().splitlines()[-1]))
    try:  # the last copy (trials.csv cut): resume rewrites it instead of refusing
        code = main(["resume", str(copy), "--quiet", "--no-verify"])
    finally:
        ray.shutdown()
    err = capsys.readouterr().err
    assert code == 0 and f"notice: {copy / 'trials.csv'}: corrupt" in err and "rewrites it" in err, err
    exp = Experiment.at(copy)
    after = exp.read_trials().set_index("trial_id")
    assert sorted(after.index) == sorted(before.index) and set(after["state"]) == {"TERMINATED"}
    assert after["accuracy"].to_dict() == pytest.approx(before["accuracy"].to_dict())
    assert exp.evaluation_counts() == {t: 1 for t in before.index}  # rewritten, nothing evaluated again
    notice = next(line for line in err.splitlines() if "trials.csv" in line)
    rows.append(("trials.csv (resume)", code, notice))
    return rows


# ------------------------------------------------------------------------- fast: lock, checkpoints
def test_second_driver_exits_2_naming_the_holder_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    from ddecs_search.search._lock import DriverLock, lock_holder

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "space.yaml").write_text(yaml.safe_dump(yaml.safe_load(TINY.read_text())))
    code = (
        "import time\nfrom ddecs_search.search._lock import DriverLock\n"
        f"lock = DriverLock({str(exp)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_holder(str(exp))["pid"] == holder.pid
        assert main(["resume", str(exp), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "host " in err and "since " in err and "--force" in err, err
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: the next driver takes the lock over (the kernel dropped the flock)
    with DriverLock(str(exp)) as lock:
        assert lock.took_over is not None and lock.took_over["pid"] == holder.pid
        assert lock_holder(str(exp))["pid"] == os.getpid()
    assert lock_holder(str(exp)) is None


def test_object_storage_lease_heartbeat_expiry_and_force(tmp_path, monkeypatch):
    from ddecs_search.search import _lock

    monkeypatch.setattr(_lock, "CLAIM_SETTLE_S", 0.05)
    uri = f"file://{tmp_path}/exp"
    first = _lock.DriverLock(uri).acquire()  # a heartbeat lease (no flock on object storage)
    try:
        with pytest.raises(_lock.ExperimentLocked, match="heartbeat is recent"):
            _lock.DriverLock(uri).acquire()
        forced = _lock.DriverLock(uri, force=True).acquire()
        assert forced.took_over["token"] == first.token
        forced.release()
    finally:
        first._stop.set()
    # a holder that stopped beating: stale after LEASE_S
    lock_file = tmp_path / "exp" / _lock.LOCK_NAME
    stale = {"host": "elsewhere", "pid": 1, "since": 0, "token": "old", "heartbeat_at": time.time() - 3600}
    lock_file.write_text(json.dumps(stale))
    with _lock.DriverLock(uri) as lock:
        assert lock.took_over["host"] == "elsewhere"
    assert not lock_file.exists()


def test_corrupt_epoch_checkpoint_falls_back_to_the_previous_then_to_a_fresh_start(tmp_path):
    from ray import tune

    from ddecs_search.search._trainable import CHECKPOINT_FILE, PREVIOUS_DIR, _restore_checkpoint
    from ddecs_search.training import save_atomic

    folder = tmp_path / "ckpt"
    for sub, epoch in ((folder, 4), (folder / PREVIOUS_DIR, 3)):
        save_atomic({"model": {}, "optimizer": {}, "scaler": {}}, sub / CHECKPOINT_FILE)
        (sub / "epoch.json").write_text(json.dumps({"epoch": epoch}))
    work = tmp_path / "work"
    work.mkdir()
    assert _restore_checkpoint(tune.Checkpoint.from_directory(str(folder)), work) == 4
    _truncate(folder / CHECKPOINT_FILE)
    shutil.rmtree(work)
    work.mkdir()
    assert _restore_checkpoint(tune.Checkpoint.from_directory(str(folder)), work) == 3  # the epoch before
    assert (work / CHECKPOINT_FILE).read_bytes() == (folder / PREVIOUS_DIR / CHECKPOINT_FILE).read_bytes()
    (folder / PREVIOUS_DIR / CHECKPOINT_FILE).write_bytes(b"garbage")
    shutil.rmtree(work)
    work.mkdir()
    assert _restore_checkpoint(tune.Checkpoint.from_directory(str(folder)), work) is None  # fresh start
    assert not (work / CHECKPOINT_FILE).exists()


def test_a_checkpoint_tune_deleted_too_early_is_put_back_from_the_newer_one(tmp_path):
    """The folder Tune's state names is put back: the epoch it records (from the newer folder's previous/),
    else the newest epoch, else an empty folder from which the trial trains afresh (never a failed retry)."""
    import pyarrow.fs as pafs
    import torch
    from ray import tune

    from ddecs_search.search._restore import GONE_NOTE, put_back_checkpoint
    from ddecs_search.search._trainable import (
        CHECKPOINT_FILE,
        PREVIOUS_DIR,
        _restore_checkpoint,
        fill_epoch_checkpoint,
        keep_as_previous,
    )
    from ddecs_search.training import save_atomic

    training = tmp_path / "training" / CHECKPOINT_FILE
    training.parent.mkdir()
    trial = tmp_path / "tune_trial_a"
    for epoch in range(3):  # what three epochs leave with num_to_keep=1: the newest folder only
        save_atomic({"model": {"w": torch.full((2,), float(epoch))}, "optimizer": {}}, training)
        folder = trial / f"checkpoint_{epoch:06d}"
        folder.mkdir(parents=True)
        fill_epoch_checkpoint(folder, training, epoch)
        keep_as_previous(training, epoch)
        if epoch:
            shutil.rmtree(trial / f"checkpoint_{epoch - 1:06d}")
    fs = pafs.LocalFileSystem()
    newest = trial / "checkpoint_000002"

    def restored(folder: Path) -> int | None:
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        return _restore_checkpoint(tune.Checkpoint.from_directory(str(folder)), work)

    assert put_back_checkpoint(fs, str(newest), 1) is None  # present: left alone
    assert put_back_checkpoint(fs, str(trial / "checkpoint_000001"), 1) == str(newest / PREVIOUS_DIR)
    assert restored(trial / "checkpoint_000001") == 1  # the epoch the state records
    assert put_back_checkpoint(fs, str(trial / "checkpoint_000000"), 0) == str(newest)  # none holds epoch 0
    assert restored(trial / "checkpoint_000000") == 2  # the newest epoch, with its previous/
    assert (trial / "checkpoint_000000" / PREVIOUS_DIR).is_dir()
    lone = tmp_path / "tune_trial_b" / "checkpoint_000004"
    lone.parent.mkdir()
    assert put_back_checkpoint(fs, str(lone), 4) == GONE_NOTE
    assert (lone / GONE_NOTE).is_file() and restored(lone) is None  # trains afresh
    assert not list(tmp_path.glob("tune_trial_*/.*")), "a staging folder was left behind"
    # an object store (pyarrow's in-memory stand-in: no folder renames there): the copy goes straight in
    mock = pafs._MockFileSystem()
    pafs.copy_files(str(newest), "exp/tune_trial_a/checkpoint_000002", destination_filesystem=mock)
    assert put_back_checkpoint(mock, "exp/tune_trial_a/checkpoint_000001", 1).endswith(PREVIOUS_DIR)
    with mock.open_input_stream("exp/tune_trial_a/checkpoint_000001/epoch.json") as stream:
        assert json.loads(stream.read())["epoch"] == 1


def test_checkpoints_of_trials_over_for_good_are_dropped_and_no_others(tmp_path):
    """Evaluated trials lose their Tune checkpoints when they complete, trials stopped at a rung only at
    the experiment's end (after Tune's final state save), interrupted and failed ones never (a resume or
    a retry trains them from there). Tune's trial objects are stood in for: their status, last result and
    storage (a pyarrow filesystem and the trial's folder) are all the rule reads."""
    from types import SimpleNamespace

    import pyarrow.fs as pafs

    from ddecs_search.search._callbacks import drop_finished_checkpoints

    def trial(name: str, status: str, result: dict) -> SimpleNamespace:
        folder = tmp_path / f"tune_trial_{name}"
        for sub in ("checkpoint_000001/previous", "checkpoint_000002"):
            (folder / sub).mkdir(parents=True)
        (folder / "result.json").write_text("{}")
        storage = SimpleNamespace(storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(folder))
        return SimpleNamespace(status=status, last_result=result, storage=storage)

    def left(t: SimpleNamespace) -> list[str]:
        return sorted(p.name for p in Path(t.storage.trial_fs_path).iterdir())

    evaluated = trial("e", "TERMINATED", {"evaluated": True, "done": True})
    stopped = trial("s", "TERMINATED", {"evaluated": False, "done": True, "epoch": 1})
    interrupted = trial("i", "TERMINATED", {"evaluated": False, "epoch": 1})
    failed = trial("f", "ERROR", {"evaluated": False, "epoch": 2})
    kept = ["checkpoint_000001", "checkpoint_000002", "result.json"]
    trials = (evaluated, stopped, interrupted, failed)
    # on_trial_complete: the evaluated one only
    assert [drop_finished_checkpoints(t, stopped=False) for t in trials] == [2, 0, 0, 0]
    assert left(evaluated) == ["result.json"] and left(stopped) == left(interrupted) == left(failed) == kept
    # on_experiment_end: the stopped one too, never an interrupted or failed one
    assert [drop_finished_checkpoints(t, stopped=True) for t in trials] == [0, 2, 0, 0]
    assert left(stopped) == ["result.json"] and left(interrupted) == left(failed) == kept


def test_state_file_errors_name_the_file_and_the_fix(tmp_path):
    from ddecs_search.experiment import StateFileError

    exp = Experiment.at(tmp_path)
    exp.update_record(status="running")  # the product's writer
    (tmp_path / "run.json").write_text('{"status": "runn')
    with pytest.raises(StateFileError, match=r"run.json: corrupt \(JSONDecodeError.*delete it"):
        exp.read_record()
    (tmp_path / "run.json").write_text("")
    with pytest.raises(StateFileError, match="empty"):
        exp.read_record()
    (tmp_path / "latency_table.json").write_text("[1, 2")
    with pytest.raises(StateFileError, match=r"latency_table.json: corrupt.*measures the modules again"):
        exp.read_latency_table()
    (tmp_path / "trials.csv").write_text("a,b\n1,2\n")
    rewrite = r"trials.csv: corrupt.*derived from Ray Tune's state: .ddecs-search resume .* rewrites it"
    with pytest.raises(StateFileError, match=rewrite):
        exp.read_trials()


def test_energy_source_says_whether_the_measurement_lease_was_held(monkeypatch):
    """``energy_source`` says when the readings were taken under the search's lease (held by the caller);
    without a lease an in-trial reading is flagged as contended."""
    from types import SimpleNamespace

    from ddecs_search import evaluation, profiling

    events: list[str] = []

    class Meter:
        available = True

        def close(self) -> None:
            self.available = False

    def reading(meter, fn, batch, device, **kwargs):
        events.append("read")
        return SimpleNamespace(energy_mj=1.0, source="fake-meter")

    monkeypatch.setattr(profiling, "create_energy_meter", lambda kind, device: Meter())
    monkeypatch.setattr(profiling, "energy_per_sample", reading)

    space = SimpleNamespace(measurement=SimpleNamespace(energy="auto", energy_min_seconds=0.1, warmup=1))
    prepared = SimpleNamespace(device="cpu", baseline=None, model=None)
    backend = SimpleNamespace(energy_fns=lambda: (None, None))  # the measurement runtime's two calls
    # the caller holds the lease (measure_candidate, around every timing: tests/test_evaluate.py)
    out = evaluation._energy(space, prepared, backend, None, leased=True)
    assert events == ["read", "read"]
    assert out["energy_source"].startswith("fake-meter (measurement lease held")
    monkeypatch.setenv("DDECS_IN_TRIAL", "1")
    assert "contended" in evaluation._energy(space, prepared, backend, None, leased=False)["energy_source"]


def test_a_cut_space_yaml_that_still_parses_is_caught_by_its_checksum(tmp_path):
    from ddecs_search.experiment import StateFileError
    from ddecs_search.spaces import load_space

    exp = Experiment.at(tmp_path)
    exp.write_space(load_space(TINY))  # the product's writer records the SHA-256 in run.json
    assert exp.read_space() == load_space(TINY)
    lines = (tmp_path / "space.yaml").read_text().splitlines(keepends=True)
    cut = "".join(line for line in lines if not line.startswith("description"))  # still a valid space
    (tmp_path / "space.yaml").write_text(cut)
    with pytest.raises(StateFileError, match=r"space.yaml: corrupt .*differs from what the search wrote"):
        exp.read_space()


# ------------------------------------------------------------------ fast: trials.csv, Tune state, status
def _cut_rows(path: Path, keep: int) -> None:
    """Keep the header and the first ``keep`` rows: a cut that still parses as a valid table."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 1 + keep]))


def test_a_cut_trials_csv_is_caught_by_its_checksum_and_resume_rewrites_it(tmp_path, capsys):
    from _trials_fixture import make_experiment

    from ddecs_search.experiment import TRIALS_CHECK_FILE, StateFileError
    from ddecs_search.search._runner import _check_state

    exp_dir = make_experiment(tmp_path / "exp", n=6)  # the product's writers (trials.sha256.json too)
    exp = Experiment.at(exp_dir)
    table = exp_dir / "trials.csv"
    before = exp.read_trials()
    check = json.loads((exp_dir / TRIALS_CHECK_FILE).read_text())
    assert check["rows"] == len(before) == 8 and check["previous_sha256"] is None
    intact = table.read_bytes()

    # cut at a row boundary (parses: 3 rows) and cut in half (usually parses too): both caught
    for cut in (lambda: _cut_rows(table, 3), lambda: _truncate(table)):
        table.write_bytes(intact)
        cut()
        with pytest.raises(StateFileError) as info:
            exp.read_trials()
        msg = str(info.value)
        assert msg.startswith(f"{table}: corrupt") and "8 row(s)" in msg, msg
        assert f"ddecs-search resume {exp_dir}` rewrites it" in msg and "no need to delete it" in msg, msg
        for verb in (["status", str(exp_dir)], ["pareto", str(exp_dir)], ["report", str(exp_dir)]):
            assert main(verb) == 2, verb
            err = capsys.readouterr().err
            assert f"{table}: corrupt" in err and "rewrites it" in err and "Traceback" not in err, (verb, err)
        # resume does not refuse: it says it rewrites the table from Tune's state and goes on
        _check_state(exp)
        err = capsys.readouterr().err
        assert f"notice: {table}: corrupt" in err and "this resume rewrites it" in err, err
    # what the resume's trials-table callback then does: the product's writer replaces the cut table
    exp.write_frame(before)
    assert exp.read_trials()["trial_id"].tolist() == before["trial_id"].tolist()
    assert json.loads((exp_dir / TRIALS_CHECK_FILE).read_text())["previous_sha256"] is None  # cut: unvouched

    # a driver killed between writing the record and renaming the table: the old table still checks out
    old = table.read_bytes()
    exp.write_frame(before.iloc[:5])
    new = table.read_bytes()
    table.write_bytes(old)
    assert len(exp.read_trials()) == 8
    table.write_bytes(new)
    assert len(exp.read_trials()) == 5
    # a cut check record is itself named (and resume rewrites it with the table)
    check_file = exp_dir / TRIALS_CHECK_FILE
    _truncate(check_file)
    with pytest.raises(StateFileError, match=rf"{TRIALS_CHECK_FILE}: corrupt .*rewrites it"):
        exp.read_trials()
    _check_state(exp)
    assert "this resume rewrites it" in capsys.readouterr().err
    # an older folder (no record): read as before, a cut that parses is not detectable there
    check_file.unlink()
    _cut_rows(table, 2)
    assert len(exp.read_trials()) == 2
    exp.write_frame(before)  # its first write by this version records the table again
    _cut_rows(table, 3)  # (not 2 rows: that is exactly the table it replaced, which a record vouches for)
    with pytest.raises(StateFileError):
        exp.read_trials()


def _real_tune_state(exp_dir: Path) -> None:
    """``tuner.pkl``, ``search_gen_state-*.json`` and ``searcher-state-*.pkl`` as Ray Tune writes them for
    a search: Tune's own writers with our searcher and callbacks (the Tuner constructor writes
    ``tuner.pkl`` and ``save_to_dir`` the search state, neither needs Ray running)."""
    from ray import tune
    from ray.tune.search import SearchGenerator

    from ddecs_search.search._callbacks import TrialsTableCallback
    from ddecs_search.search._searcher import make_search_alg

    space = Experiment.at(exp_dir).read_space()
    SearchGenerator(make_search_alg(space, space.objectives)).save_to_dir(str(exp_dir), "2026-12-01_10-00-00")
    tune.Tuner(
        lambda config: {"x": 1},
        tune_config=tune.TuneConfig(search_alg=make_search_alg(space, space.objectives), num_samples=2),
        run_config=tune.RunConfig(
            name=exp_dir.name,
            storage_path=str(exp_dir.parent),
            callbacks=[TrialsTableCallback(space.objectives, space.constraints, str(exp_dir))],
        ),
    )


def test_cut_tune_state_files_are_exit_2_naming_them_before_ray_starts(tmp_path, capsys):
    from _trials_fixture import make_experiment

    from ddecs_search.experiment import StateFileError

    exp_dir = make_experiment(tmp_path / "exp", n=3)
    exp = Experiment.at(exp_dir)
    _real_tune_state(exp_dir)
    state = {"trial_data": [], "runner_data": {"_iteration": 7}}
    (exp_dir / "experiment_state-2026-12-01_10-00-00.json").write_text(json.dumps(state))
    (exp_dir / "experiment_state-2026-12-01_09-00-00.json").write_text("{cut")  # older: Tune ignores it
    exp.check_tune_state()  # intact (the newest of each kind is what Tune reads)

    ray = sys.modules.get("ray")
    ray_was_up = ray is not None and ray.is_initialized()
    search_state = [p.name for g in ("search_gen_state-*", "searcher-state-*") for p in exp_dir.glob(g)]
    assert len(search_state) == 2, search_state  # search_gen_state-*.json (a pickle) + searcher-state-*.pkl
    for name in ("tuner.pkl", "experiment_state-2026-12-01_10-00-00.json", *search_state):
        target = exp_dir / name
        intact = target.read_bytes()
        _truncate(target)
        with pytest.raises(StateFileError, match="corrupt"):
            exp.check_tune_state()
        assert main(["resume", str(exp_dir), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{target}: corrupt (ValueError" in err or f"{target}: corrupt (JSONDecodeError" in err, err
        assert "Ray Tune's own state" in err and "start a new search" in err and "Traceback" not in err, err
        target.write_bytes(intact)
    assert (sys.modules["ray"].is_initialized()) == ray_was_up  # refused before Ray started
    (exp_dir / "tuner.pkl").write_bytes(b"")
    with pytest.raises(StateFileError, match=r"tuner.pkl: empty"):
        exp.check_tune_state()


def test_status_names_the_driver_holding_the_lock_or_says_no_driver(tmp_path, capsys):
    from _trials_fixture import make_experiment

    exp_dir = make_experiment(tmp_path / "exp", n=3)
    Experiment.at(exp_dir).update_record(status="running", host="elsewhere", pid=1)
    code = (
        "import time\nfrom ddecs_search.search._lock import DriverLock\n"
        f"lock = DriverLock({str(exp_dir)!r}, command='ddecs-search resume x').acquire()\n"
        "print('held', flush=True)\ntime.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["status", str(exp_dir)]) == 0
        out = capsys.readouterr().out
        assert f"driver lock: held by host {os.uname().nodename}, pid {holder.pid}, since " in out, out
        assert "driver: running" in out, out
        assert main(["status", str(exp_dir), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["driver_lock"]["pid"] == holder.pid and info["driver_lock"]["command"].endswith("x")
        assert "token" not in info["driver_lock"] and info["driver"] == "running"
    finally:
        holder.kill()
        holder.wait()
    # killed without releasing: no driver holds it; the record's "running" is known to be stale
    assert main(["status", str(exp_dir)]) == 0
    out = capsys.readouterr().out
    assert f"driver lock: no driver (the last driver, host {os.uname().nodename}, pid {holder.pid}" in out
    assert "driver: not running (killed?)" in out, out
    # released cleanly (the lock file is emptied): just "no driver"
    from ddecs_search.search._lock import DriverLock

    with DriverLock(str(exp_dir)):
        pass
    assert main(["status", str(exp_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["driver_lock"] is None and info["last_driver"] is None
    assert main(["status", str(exp_dir)]) == 0
    assert "driver lock: no driver\n" in capsys.readouterr().out


def test_a_status_probe_does_not_make_a_starting_driver_fail(tmp_path):
    """``status`` probes the lock with a shared flock for an instant; a driver starting just then retries
    instead of exiting 2 as if another driver held the experiment."""
    import fcntl
    import threading

    from ddecs_search.search._lock import LOCK_NAME, DriverLock

    exp = tmp_path / "exp"
    exp.mkdir()
    probe = open(exp / LOCK_NAME, "a+")  # (held across the acquire below)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.15, lambda: fcntl.flock(probe, fcntl.LOCK_UN)).start()
    try:
        with DriverLock(str(exp)) as lock:
            assert lock.took_over is None
    finally:
        probe.close()
