"""Running and resuming a search: Ray, the shared baseline, the Tuner, and the run record."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddecs_search import _faults
from ddecs_search import storage as storage_io
from ddecs_search.config import SearchSpace
from ddecs_search.errors import UserError
from ddecs_search.experiment import TRIALS_CHECK_FILE, TRIALS_FILE, Experiment, StateFileError
from ddecs_search.search._lock import DriverLock, describe_holder

DEFAULT_STORAGE = "experiments"


@dataclass
class SearchOutcome:
    """What a run or resume ended with."""

    exp_root: str
    finished: bool  # every trial reached TERMINATED or ERROR
    counts: dict[str, int]
    wall_s: float
    errors: list[str] = field(default_factory=list)
    verified: int = 0
    notices: list[str] = field(default_factory=list)

    @property
    def resume_command(self) -> str:
        return resume_command(self.exp_root)


def resume_command(exp_root: str) -> str:
    return f"ddecs-search resume {shlex.quote(exp_root)}"


def default_name(space: SearchSpace) -> str:
    return f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_search(
    space: SearchSpace,
    *,
    name: str | None = None,
    storage: str | None = None,
    address: str | None = None,
    quiet: bool = False,
    verify: bool | None = None,
    verbose: bool = False,
) -> SearchOutcome:
    """Start a new search of ``space`` in ``storage/name`` (see :class:`Experiment` for the layout).

    ``quiet`` silences the live progress; ``verbose`` adds each trial's epochs and its workers' output.

    Raises:
        UserError: the experiment directory exists already, or the cluster cannot fit one trial.
    """
    from ddecs_search.search._warm_start import check_warm_start

    check_warm_start(space)  # a bad search.warm_start entry fails before any work
    storage_root = storage_io.normalise(storage or DEFAULT_STORAGE)
    _check_storage(storage_root, "--storage" if storage else "the default storage ./experiments")
    exp = Experiment.at(storage_io.join(storage_root, name or default_name(space)))
    if storage_io.exists(exp.path("space.yaml")) or storage_io.exists(exp.path("tuner.pkl")):
        raise UserError(
            f"{exp.root} exists already: resume it with `{resume_command(exp.root)}` or choose another --name"
        )
    if not storage_io.is_uri(exp.root) and os.path.exists(exp.root) and not os.path.isdir(exp.root):
        raise UserError(f"{exp.root} is a file, not an experiment folder; choose another --name")
    # everything a user can get wrong is checked before the experiment folder exists: a failed check
    # leaves nothing behind, so the same --name works once it is fixed
    check_data(space)
    from ddecs_search.ray_setup import init_ray

    _check_fits(space, init_ray(address, log_to_driver=verbose and not quiet))
    command = " ".join(shlex.quote(a) for a in sys.argv)
    with DriverLock(exp.root, command=command):  # a concurrent `run --name` of the same: exit 2
        if storage_io.exists(exp.path("space.yaml")):
            raise UserError(f"{exp.root} was just created by another ddecs-search run; choose another --name")
        exp.write_space(space)
        exp.update_record(
            status="starting",
            exp_uid=uuid.uuid4().hex[:12],
            started_at=time.time(),
            command=command,
            resume_command=resume_command(exp.root),
            num_samples=space.search.num_samples,
        )
        return _execute(
            exp, space, address=address, quiet=quiet, verify=verify, restore=False, verbose=verbose
        )


def resume_search(
    exp_dir: str,
    *,
    address: str | None = None,
    quiet: bool = False,
    verify: bool | None = None,
    force: bool = False,
    verbose: bool = False,
) -> SearchOutcome:
    """Continue an interrupted search: finished trials stay, running ones continue from their last epoch.

    Raises:
        ExperimentLocked: another driver holds the experiment (``force`` takes the lock over anyway).
        UserError: not an experiment, or a state file is missing, corrupt or of a newer format.
    """
    exp = Experiment.at(exp_dir)
    if not storage_io.exists(exp.path("space.yaml")):
        exp.read_space()  # raises "not an experiment directory"
    with DriverLock(exp.root, force=force, command=" ".join(shlex.quote(a) for a in sys.argv)) as lock:
        if lock.took_over:
            print(
                f"notice: took over the lock of a driver that is gone ({describe_holder(lock.took_over)})",
                file=sys.stderr,
            )
        space = exp.read_space()
        _check_state(exp)
        check_data(space)
        return _execute(
            exp, space, address=address, quiet=quiet, verify=verify, restore=True, verbose=verbose
        )


def _check_state(exp: Experiment) -> None:
    """Read every state file once before Ray starts: a broken one is exit 2 naming it, before any work."""
    from ddecs_search.search._shared_baseline import BaselineBlob

    if not storage_io.is_uri(exp.root):  # temp files of writes a killed driver never renamed
        for leftover in Path(exp.root).glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
    exp.read_record()
    try:
        exp.read_trials()
    except StateFileError as exc:  # derived from Tune's state: this resume rewrites it, no need to stop
        if exc.location not in (exp.path(TRIALS_FILE), exp.path(TRIALS_CHECK_FILE)):
            raise
        print(
            f"notice: {exc.location}: {exc.problem}; this resume rewrites it from Ray Tune's state",
            file=sys.stderr,
        )
    exp.check_tune_state()
    exp.read_latency_table()
    BaselineBlob.load(exp)
    for trial_id in exp.trial_ids():
        try:
            exp.read_trial_metrics(trial_id)
        except UserError as exc:  # an unfinished trial is evaluated again (see _trainable); say so now
            print(f"notice: {exc}", file=sys.stderr)


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C before or after Tune's loop (Tune itself stops gracefully); carries the experiment."""

    def __init__(self, exp_root: str) -> None:
        super().__init__(exp_root)
        self.exp_root = exp_root


def _execute(exp: Experiment, space: SearchSpace, **options: Any) -> SearchOutcome:
    """:func:`_execute_inner` (same keyword options), recording an interrupted run in ``run.json``."""
    try:
        return _execute_inner(exp, space, **options)
    except KeyboardInterrupt:
        exp.update_record(status="interrupted")
        raise SearchInterrupted(exp.root) from None


def _execute_inner(
    exp: Experiment,
    space: SearchSpace,
    *,
    address: str | None,
    quiet: bool,
    verify: bool | None,
    restore: bool,
    verbose: bool = False,
) -> SearchOutcome:
    from ddecs_search.ray_setup import init_ray

    start = time.time()
    record = exp.read_record()
    if "exp_uid" not in record:  # run.json was deleted (its broken-state fix): a new identity for this run
        record = exp.update_record(
            exp_uid=uuid.uuid4().hex[:12],
            resume_command=resume_command(exp.root),
            num_samples=space.search.num_samples,
        )
    resources = init_ray(address, log_to_driver=verbose and not quiet)
    _check_fits(space, resources)
    exp.update_record(
        status="running", pid=os.getpid(), host=os.uname().nodename, address=address, last_start_at=start
    )
    blob, notices, objectives = _prepare(exp, space, resources, local=address is None, quiet=quiet)
    tuner, broker = _make_tuner(exp, space, blob, objectives, record["exp_uid"], restore=restore, quiet=quiet)
    from ddecs_search.search import _callbacks

    _callbacks.RUNTIME.update(
        exp_root=exp.root, quiet=quiet, started=start, verbosity=0 if quiet else 2 if verbose else 1
    )
    _quiet_tune()
    _say(
        quiet,
        f"search {space.name}: {space.search.num_samples} trials, {space.search.algorithm}, "
        f"{space.search.max_concurrent} at a time -> {exp.root}",
    )
    fit_start = time.time()
    with _SigintWatch() as watch:
        results = tuner.fit()
    fit_s = time.time() - fit_start
    counts = _counts(results, space.search.num_samples)
    finished = (
        not watch.interrupted
        and counts.get("TERMINATED", 0) + counts.get("ERROR", 0) >= space.search.num_samples
    )
    if not finished:
        counts = _mark_interrupted(exp, space.search.num_samples)
    _faults.point("search-finished")  # crash tests: every trial done, latency table and record not written
    _save_latency_table(exp, broker)
    if finished:
        notices = _sampler_notices(exp, space, notices)
    if finished:  # trials materialised the baseline and the data on their nodes; nothing needs them any more
        from ddecs_search.search._worker import node_cache_dir, remove_node_folder, remove_node_folders

        if address is None:  # one node: this one
            remove_node_folder(record["exp_uid"])
        elif missed := remove_node_folders(record["exp_uid"]):  # (housekeeping: said, not recorded)
            print(
                f"notice: the node folder {node_cache_dir(record['exp_uid'])} stays on node(s) "
                f"{', '.join(missed)} (not reached): remove it there by hand",
                file=sys.stderr,
            )
    errors = [
        f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        for e in results.errors
    ]
    outcome = SearchOutcome(exp.root, finished, counts, time.time() - start, errors, notices=notices)
    fit_total = record.get("fit_s", 0.0) + fit_s
    exp.update_record(
        status="finished" if finished else "interrupted",
        counts=counts,
        fit_s=fit_total,
        last_fit_started_at=fit_start,  # benchmarks: actor start-up = first trial start - this
        wall_s=record.get("wall_s", 0.0) + outcome.wall_s,
    )
    if finished and (space.search.verify if verify is None else verify):
        from ddecs_search.search._verify import verify_front

        verified = verify_front(exp, space, objectives, quiet=quiet)
        outcome.verified = len(verified)
        exp.update_record(verified=len(verified))
    return outcome


class _SigintWatch:
    """Tells whether Tune's fit() ended because of Ctrl-C / SIGUSR1.

    Tune installs its own SIGINT handler for the run and, when it fires, stops gracefully and puts back
    the handler it found. A sentinel installed before ``fit()`` that is back in place afterwards therefore
    means: interrupted (the trials Tune stopped then look TERMINATED in memory, but not in its saved state).
    """

    def __enter__(self) -> _SigintWatch:
        import signal
        import threading

        import ray

        self.interrupted = False
        # Tune watches SIGINT only in the main thread of a process that runs fit() itself (not ray://)
        self._active = (
            threading.current_thread() is threading.main_thread()
            and not ray.util.client.ray.is_connected()
            and os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "0"
        )
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._sentinel)
        return self

    @staticmethod
    def _sentinel(signum: int, frame: Any) -> None:  # only runs if Tune is not watching
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._active:
            self.interrupted = signal.getsignal(signal.SIGINT) is self._sentinel
            signal.signal(signal.SIGINT, self._previous)


def _mark_interrupted(exp: Experiment, num_samples: int) -> dict[str, int]:
    """After an interruption: trials Tune stopped without a result are INTERRUPTED, not TERMINATED."""
    trials = exp.read_trials()
    if not trials.empty and "evaluated" in trials.columns:
        stopped = (trials["state"] == "TERMINATED") & (trials["evaluated"] != True)  # noqa: E712
        if "stopped_early" in trials.columns:
            stopped &= trials["stopped_early"] != True  # noqa: E712  (ASHA's decision, not the interrupt)
        trials.loc[stopped, "state"] = "INTERRUPTED"
        exp.write_frame(trials)
    counts = trials["state"].value_counts().to_dict() if not trials.empty else {}
    counts["NOT_STARTED"] = max(0, num_samples - len(trials))
    return {str(k): int(v) for k, v in counts.items()}


def _quiet_tune() -> None:
    """Tune settings of the driver process (read when ``fit()`` runs)."""
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # per-epoch results carry no objectives
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # legacy output + verbose=0: silent; our ProgressCallback reports
    # num_to_keep=1 forces a state snapshot after every epoch checkpoint: wanted (exact resume), not a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _check_storage(storage_root: str, flag: str) -> None:
    """The storage is a folder we may write (or can become one); a file or a read-only place is exit 2."""
    if storage_io.is_uri(storage_root):
        return  # object stores: permissions show on the first write (Tune's own storage check)
    path = storage_root
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path} is a file; give a folder (it is created if missing) or a URI")
    existing = path
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise UserError(f"{flag} {path}: {existing} is a file, so the folder cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable; choose a folder you may write")


def check_data(space: SearchSpace) -> None:
    """The dataset is on disk (or may be downloaded): a missing one is a DataError before anything starts."""
    from ddecs_search.data import require_available

    require_available(space.dataset)


def _check_fits(space: SearchSpace, resources: dict[str, Any]) -> None:
    need = space.resources
    if need.cpu > resources.get("CPU", 0) or need.gpu > resources.get("GPU", 0):
        have = f"CPU={resources.get('CPU', 0):g}, GPU={resources.get('GPU', 0):g}"
        hint = " (set resources.gpu: 0 to run on CPU)" if need.gpu > resources.get("GPU", 0) else ""
        raise UserError(
            f"'resources': one trial needs cpu={need.cpu:g}, gpu={need.gpu:g} but the Ray "
            f"cluster has {have}; lower them{hint} or connect to a bigger cluster with --address"
        )


def _prepare(
    exp: Experiment, space: SearchSpace, resources: dict[str, Any], *, local: bool, quiet: bool
) -> tuple[Any, list[str], tuple]:
    """The shared baseline (trained now, or the one a previous run stored) and the effective objectives."""
    from ddecs_search.search._objectives import effective_objectives
    from ddecs_search.search._shared_baseline import BaselineBlob, reference_trainings, train_shared_baseline

    blob = BaselineBlob.load(exp)
    if blob is not None and not storage_io.is_uri(exp.root):  # stored; a kill may have left its checkpoints
        shutil.rmtree(exp.path("baseline", "training"), ignore_errors=True)
    if blob is None:
        # alone on a local machine the baseline may use every core; on a cluster, one trial's share
        cpus = max(space.resources.cpu, resources.get("CPU", 1)) if local else space.resources.cpu
        b = space.backbone.baseline
        budget = f"{b.epochs}" if b.patience is None else f"until val stops improving, <= {b.epochs}"
        budget += " epochs" + (" decaying the rate (cosine)" if b.lr_schedule == "cosine" else "")
        joint = [t.epochs for t in reference_trainings(space)]
        # a constant rate trains every epoch count in one run to the longest; a decaying schedule one each
        more = max(joint) if joint and space.training.lr_schedule == "constant" else sum(joint)
        refs = f", then {more} more for joint candidates' static references" if joint else ""
        _say(
            quiet,
            f"training the baseline {space.backbone.name} once for all trials "
            f"({budget}{refs}, {cpus:g} CPU)...",
        )
        t0 = time.time()
        # epoch checkpoints inside the experiment (local or shared folder): a kill resumes the baseline
        work_dir = None if storage_io.is_uri(exp.root) else exp.path("baseline", "training")
        blob = train_shared_baseline(
            space, num_cpus=cpus, num_gpus=space.resources.gpu, quiet=quiet, work_dir=work_dir
        )
        blob.store(exp)
        _faults.point("baseline-stored")
        if work_dir:  # stored (probe.json last): the epoch checkpoints are no longer needed
            shutil.rmtree(work_dir, ignore_errors=True)
        _say(
            quiet,
            f"baseline: val accuracy {blob.meta.get('selection_val_accuracy', float('nan')):.4f} on the "
            f"selection part, {blob.meta.get('all_val_accuracy', float('nan')):.4f} on all of validation; "
            f"best epoch {blob.meta.get('epochs')} of {blob.meta.get('epochs_trained')}, "
            f"in {time.time() - t0:.0f} s on {blob.probe.get('device')}",
        )
    objectives, notices = effective_objectives(space, bool(blob.probe.get("energy_available")))
    for notice in notices:
        print(f"notice: {notice}", file=sys.stderr)
    exp.update_record(
        objectives=[dataclasses.asdict(o) for o in objectives],
        notices=notices,
        baseline={"folder": blob.folder, **blob.probe, **blob.meta},
    )
    return blob, notices, objectives


def _make_tuner(
    exp: Experiment,
    space: SearchSpace,
    blob: Any,
    objectives: tuple,
    exp_uid: str,
    *,
    restore: bool,
    quiet: bool,
) -> tuple[Any, Any]:
    from ray import tune

    from ddecs_search.search._callbacks import ProgressCallback, TrialsTableCallback
    from ddecs_search.search._latency_broker import seeded_table, start_broker
    from ddecs_search.search._restore import restorable_trainable
    from ddecs_search.search._scheduler import active_rungs, final_rung_active, make_rung_scheduler
    from ddecs_search.search._searcher import make_scheduler, make_search_alg
    from ddecs_search.search._space_fn import ConditionalSpace
    from ddecs_search.search._study_callback import StudyCallback
    from ddecs_search.search._trainable import TrialContext, search_trial, trial_dirname
    from ddecs_search.study import StudyMirror

    broker = start_broker(
        f"ddecs-latency-{exp_uid}-{uuid.uuid4().hex[:6]}",
        seeded_table(_load_latency_table(exp), blob.probe.get("latency_reference")),
        exp.path("latency_table.json"),
    )
    ctx = TrialContext(
        space=space,
        space_fn=ConditionalSpace.from_space(space),
        exp_root=exp.root,
        exp_uid=exp_uid,
        baseline=blob,
        broker=broker,
        objectives=tuple(objectives),
        asha=space.search.asha,
        rungs=active_rungs(space, objectives)[0],
        final_rung=final_rung_active(space, objectives),
    )
    trainable = restorable_trainable(  # restore puts back a checkpoint Tune deleted too early (_restore.py)
        tune.with_resources(
            tune.with_parameters(search_trial, ctx=ctx),
            {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
        )
    )
    if restore and tune.Tuner.can_restore(exp.root):
        try:
            return tune.Tuner.restore(
                exp.root, trainable=trainable, resume_unfinished=True, resume_errored=True
            ), broker
        except Exception as exc:  # (Tune's own state files are corrupt or of another version)
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            problem = (
                f"Ray Tune cannot restore the search from its state files (tuner.pkl, "
                f"experiment_state-*.json: {type(exc).__name__}: {detail})"
            )
            raise StateFileError(
                exp.path("tuner.pkl"),
                problem,
                "the finished trials' results stay in trials/ and trials.csv; start a new "
                "search with `ddecs-search run` (another --name)",
            ) from None
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_search_alg(space, objectives, exp.root),
            scheduler=make_scheduler(space, objectives) or make_rung_scheduler(space, objectives, exp.root),
            num_samples=space.search.num_samples,
            trial_dirname_creator=trial_dirname,
            reuse_actors=True,
        ),  # imports + data once per worker (_worker.py)
        run_config=tune.RunConfig(
            name=exp.name,
            storage_path=exp.storage,
            verbose=0,
            callbacks=[
                TrialsTableCallback(objectives, space.constraints, exp.root),
                StudyCallback(
                    StudyMirror(exp.root, exp.name, ctx.space_fn, tuple(objectives), space.constraints)
                ),
                ProgressCallback(objectives, space.constraints, space.search.num_samples, quiet),
            ],
            failure_config=tune.FailureConfig(max_failures=space.search.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    ), broker


def _sampler_notices(exp: Experiment, space: SearchSpace, notices: list[str]) -> list[str]:
    """``notices`` plus what the finished search's trials say about its sampler, recorded in run.json."""
    from ddecs_search.search._searcher import sampler_notice

    trials = exp.read_trials()
    complete = trials["full_fidelity"] == True if "full_fidelity" in trials else trials.index < 0  # noqa: E712
    if "objectives_ok" in trials:  # Optuna is told COMPLETE only with every objective value
        complete &= trials["objectives_ok"] == True  # noqa: E712
    notice = sampler_notice(space, int(complete.sum()))
    if notice is None:
        return notices
    print(f"notice: {notice}", file=sys.stderr)
    notices = [*notices, notice]
    exp.update_record(notices=notices)
    return notices


def _counts(results: Any, num_samples: int) -> dict[str, int]:
    counts = {"TERMINATED": results.num_terminated, "ERROR": results.num_errors}
    counts["UNFINISHED"] = len(results) - counts["TERMINATED"] - counts["ERROR"]
    counts["NOT_STARTED"] = max(0, num_samples - len(results))
    return counts


def _load_latency_table(exp: Experiment) -> dict[str, float]:
    return exp.read_latency_table()


def _save_latency_table(exp: Experiment, broker: Any) -> None:
    import json

    import ray

    table = ray.get(broker.snapshot.remote())
    storage_io.write_text(exp.path("latency_table.json"), json.dumps(table, indent=1, sort_keys=True))


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)
