"""The Tune function trainable: one candidate evaluation, checkpointed every epoch, resumable.

A trial (1) re-reports its stored metrics if it already finished before an interruption (Tune saves
its experiment state only every few seconds, so a finished trial can come back "unfinished"); (2)
restores the branch-training checkpoint of its last epoch when resumed; (3) runs
``evaluate_candidate`` with the shared baseline and the isolated latency table; (4) copies its
artefacts to ``EXP/trials/<trial_id>/``, stores ``metrics.json`` there last and reports the flat
metrics. Lists are reported as JSON strings (Tune flattens results into scalar columns). A candidate
another trial of the experiment already evaluated is not trained again: that trial's result is
re-reported, marked ``reused_from_trial`` (:func:`_reuse`).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddecs_search.config import Objective, SearchSpace
from ddecs_search.errors import UserError
from ddecs_search.experiment import (
    EVALUATED_KEY,
    NETWORK_EPOCHS_FROM_KEY,
    NETWORK_EPOCHS_KEY,
    NETWORK_EPOCHS_TRAIN_S_KEY,
    NETWORK_FROM_KEY,
    REUSED_FROM_KEY,
    Experiment,
    NetworkEpoch,
    candidate_key,
    network_key,
    scalar,
)
from ddecs_search.search._shared_baseline import BaselineBlob, trial_cache_dir
from ddecs_search.search._space_fn import ConditionalSpace, build_candidate
from ddecs_search.search._worker import begin_trial, end_trial, trial_scratch_dir

CHECKPOINT_FILE = "branches_checkpoint.pt"
PREVIOUS_DIR = "previous"  # inside a trial's checkpoint: the epoch before, the fallback for a corrupt one
EPOCH_FILE = "epoch.json"  # inside a trial's checkpoint (and previous/): {"epoch": 0-based epoch}
ARTEFACTS = ("model.pt", "spec.json", "policy.json", "test_exits.npz")


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its config (shipped once through the object store)."""

    space: SearchSpace
    space_fn: ConditionalSpace
    exp_root: str
    exp_uid: str
    baseline: BaselineBlob
    broker: Any  # LatencyBroker actor handle
    objectives: tuple[Objective, ...]
    asha: bool = False
    rungs: tuple[float, ...] = ()  # multi-objective early-stopping rungs (search/_scheduler.py); () = off
    final_rung: bool = False  # also a rung at the end of each candidate's training (search/_scheduler.py)


def search_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """Tune function trainable (wrap with ``tune.with_parameters(search_trial, ctx=...)``)."""
    from ray import tune

    started = time.time()
    trial_id = tune.get_context().get_trial_id()
    exp = Experiment(ctx.exp_root)
    try:
        stored = exp.read_trial_metrics(trial_id)
    except UserError as exc:  # unreadable stored result: evaluate again rather than fail every retry
        print(f"ddecs-search: {exc}; evaluating trial {trial_id} again", file=sys.stderr)
        stored = None
    if stored is not None:  # finished before the driver went down: report again, never re-evaluate
        if trial_id not in exp.evaluation_counts():  # killed between metrics.json and its audit record
            _record(exp, trial_id, stored, recovered=True)
        tune.report(stored)
        return
    worker = begin_trial(ctx.exp_uid)  # reused process: reseed, shared data cache (search/_worker.py)
    candidate = build_candidate(ctx.space, ctx.space_fn, config)
    key = candidate_key(candidate)
    source, stored = exp.evaluation_of(key) or (None, {})
    if source is not None and source != trial_id:  # the sampler drew a candidate evaluated before
        try:
            scratch = trial_scratch_dir(ctx.exp_uid)
            flat = _reuse(exp, trial_id, source, stored, {**worker, "trial_started_at": started}, scratch)
        except (OSError, UserError) as exc:  # its artefacts unreadable: evaluate, as if never evaluated
            print(f"ddecs-search: trial {trial_id}: {source}'s result not reused ({exc})", file=sys.stderr)
        else:
            try:
                tune.report(flat)
            finally:
                end_trial()
            return
    workdir = Path(tempfile.mkdtemp(prefix=f"ddecs-trial-{trial_id}-", dir=trial_scratch_dir(ctx.exp_uid)))
    try:
        net_key = network_key(candidate)
        network_source, trained_state = _trained_network(exp, net_key, trial_id)
        resumed_epoch = None  # a loaded network trains nothing: no epoch checkpoint of this trial to resume
        continued = None
        if trained_state is None:
            resumed_epoch = _restore_checkpoint(tune.get_checkpoint(), workdir)
            if resumed_epoch is None:
                continued = _continue_network(exp, net_key, trial_id, workdir)

        def keep_rung(epoch: int, stats: dict[str, float], checkpoint_path: Path) -> None:
            _keep_network_epoch(exp, net_key, epoch, trial_id, stats, checkpoint_path, continued)

        metrics = _evaluate(ctx, candidate, workdir, trained_state, continued, keep_rung)
        metrics.update(
            {
                EVALUATED_KEY: True,
                NETWORK_FROM_KEY: network_source,
                **_continued_marks(continued),
                "full_fidelity": True,
                "trial_id": trial_id,
                "node_id": _node_id(),
                "resumed_from_epoch": resumed_epoch,
                "trial_started_at": started,
                "trial_finished_at": time.time(),
                "trial_wall_s": time.time() - started,
                "baseline_key": ctx.baseline.folder,
                **worker,
            }
        )
        if ctx.asha:
            from ddecs_search.search._searcher import proxy_key

            (objective,) = ctx.objectives
            metrics[proxy_key(objective)] = metrics.get(objective.name)
        flat = {k: scalar(v) for k, v in metrics.items() if k != "trial_id"}
        _publish(exp, trial_id, workdir, flat)
        exp.record_candidate(key, trial_id)
        if network_source is None:  # this trial trained it
            exp.record_network(net_key, trial_id)
        tune.report(flat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        end_trial()


def trial_dirname(trial: Any) -> str:
    """Tune's folder of a trial inside the experiment (short: the default embeds the whole config)."""
    return f"tune_trial_{trial.trial_id}"


def _trained_network(exp: Experiment, key: str, trial_id: str) -> tuple[str | None, dict[str, Any] | None]:
    """(the trial that trained this network, its weights), or (None, None) when this trial must train it.

    Samplers propose the same network with another policy or λ often (with ``algorithm: gp``, 12-27 of
    48 trials of a search on the default space trained a network an earlier trial had trained: 28-61 %
    of all training time). Training depends on the network's configuration alone (seeded
    by it), so such a trial loads the stored ``model.pt`` of the first and fits only its own policy. A
    stored model that cannot be read is trained again, with a line saying so.
    """
    import io

    import torch

    from ddecs_search import storage
    from ddecs_search.artifacts import MODEL_FILE

    source = exp.network_of(key)
    if source is None or source == trial_id:
        return None, None
    try:
        data = storage.read_bytes(storage.join(exp.trial_dir(source), MODEL_FILE))
        return source, torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # (missing, truncated, garbage: all mean "train it")
        note = f"ddecs-search: trial {trial_id}: {source}'s trained network not loaded ({exc}); training it"
        print(note, file=sys.stderr)
        return None, None


def _continue_network(exp: Experiment, key: str, trial_id: str, workdir: Path) -> NetworkEpoch | None:
    """The kept rung checkpoint of this trial's network, put where training resumes
    from; None when none is kept or it does not load (the network is trained from the start).

    A trial stopped at a rung leaves no trained network, and samplers draw the same network again with
    another policy or λ (with ``algorithm: gp`` and a tolerance at the rungs, session 36: 4 of 48 trials,
    ≈ 5 % of a search's trial time, trained an epoch or two that an earlier, stopped trial had trained).
    Training resumes exactly at an epoch boundary (``training/_loop.py``: seeds, schedule and optimiser
    state are the epoch's), so continuing from that checkpoint gives the weights training from the start
    gives. The trial is still judged at that rung, with its own policy (:func:`_evaluate`).
    """
    kept = exp.network_epoch_of(key)
    if kept is None or kept.trial_id == trial_id:
        return None
    path = workdir / CHECKPOINT_FILE
    path.write_bytes(kept.checkpoint)
    state = _training_state(path)
    if state is None or state.get("epoch") != kept.epoch:
        note = f"ddecs-search: trial {trial_id}: {kept.trial_id}'s rung checkpoint not usable; trained afresh"
        print(note, file=sys.stderr)
        path.unlink(missing_ok=True)
        return None
    return kept


def _continued_marks(continued: NetworkEpoch | None) -> dict[str, Any]:
    """What a trial reports about the rung checkpoint it continued from (every key None when it did not)."""
    return {
        NETWORK_EPOCHS_FROM_KEY: None if continued is None else continued.trial_id,
        NETWORK_EPOCHS_KEY: None if continued is None else continued.epoch + 1,
        NETWORK_EPOCHS_TRAIN_S_KEY: None if continued is None else continued.train_s,
    }


def _keep_network_epoch(
    exp: Experiment,
    key: str,
    epoch: int,
    trial_id: str,
    stats: dict[str, float],
    checkpoint_path: Path,
    continued: NetworkEpoch | None = None,
) -> None:
    """Keep the network's checkpoint at an intermediate rung, before the rung result (which may stop this
    trial) is reported; a failure to store it costs only the reuse, never the trial. Its training time
    counts the epochs this trial continued from (``continued``) too."""
    train_s = float(stats.get("train_s", float("nan"))) + (0.0 if continued is None else continued.train_s)
    try:
        exp.record_network_epoch(
            key, epoch, trial_id, checkpoint_path.read_bytes(), stats.get("loss"), train_s
        )
    except OSError as exc:
        print(f"ddecs-search: trial {trial_id}: rung checkpoint not kept ({exc})", file=sys.stderr)


def _evaluate(
    ctx: TrialContext,
    candidate: Any,
    workdir: Path,
    trained_state: dict[str, Any] | None = None,
    continued: NetworkEpoch | None = None,
    keep_rung: Any = None,
) -> dict[str, Any]:
    """The candidate's evaluation with the experiment's isolated latency table.

    ``expected_latency_ms`` (what the search compares trials on) comes from the table, which every
    trial shares and which was measured one module at a time; ``latency_ms`` stays what it is
    everywhere: this trial's end-to-end measurement, labelled in-trial by ``latency_source``. Its
    training pauses while a neighbour measures (``measurement_pause_s``: how long). With
    ``trained_state`` (the network as another trial trained it) nothing is trained and no epoch reported.
    With ``continued`` (another trial's checkpoint of this network at a rung, in ``workdir``) this trial
    first reports that rung with its own policy, as if it had trained there, then trains on from it.
    ``keep_rung(epoch, stats, checkpoint_path)`` runs at every intermediate rung this trial trains to.
    """
    from ddecs_search.evaluation import evaluate_candidate
    from ddecs_search.search._latency_broker import PausePoint, isolated_latency_fn, measurement_lease

    m = ctx.space.measurement
    table_fn = isolated_latency_fn(
        ctx.broker,
        ctx.space.backbone.name,
        warmup=m.warmup,
        repeats=m.repeats,
        runtime=m.runtime,
        threads=m.threads,
    )
    pause = PausePoint(ctx.broker)  # a neighbour measuring latency gets the CPUs to itself
    marks = {} if continued is None else _continued_marks(continued)
    # the rung passes pause too
    on_epoch, known_val_table, partial = _epoch_reporter(ctx, candidate, pause, keep_rung, marks)
    if continued is not None:  # judged at the kept rung with this trial's policy (the scheduler may stop it)
        on_epoch(continued.epoch, {"loss": continued.loss, "train_s": 0.0}, workdir / CHECKPOINT_FILE)
    metrics = evaluate_candidate(
        ctx.space,
        candidate,
        workdir=workdir,
        baseline_dir=ctx.baseline.materialise(trial_cache_dir(ctx.exp_uid)),
        quiet=True,
        on_epoch=on_epoch,
        on_batch=pause,
        latency_fn=table_fn,
        lease=measurement_lease(ctx.broker),
        known_val_table=known_val_table,
        trained_state=trained_state,
        partial=partial,
    )
    metrics["measurement_pause_s"] = pause.paused_s
    return metrics


def _epoch_reporter(
    ctx: TrialContext,
    candidate: Any,
    pause: Any = None,
    keep_rung: Any = None,
    marks: dict[str, Any] | None = None,
) -> tuple[Any, Any, Any]:
    """``on_epoch`` callback: report the epoch with its checkpoint (and ASHA's proxy value).

    ``pause``: the trial's pause point, passed to the proxy's and rung's prediction passes (a pass over
    validation at every rung is seconds of CPU, which would otherwise run while a neighbour times).
    Also returns the evaluation's ``known_val_table`` (None without rungs): the final rung's validation
    exit table, so that the evaluation does not compute the same table again. ``keep_rung(epoch, stats,
    checkpoint_path)``: called at each intermediate rung before its result is reported. ``marks``: added
    to every epoch's result (a trial stopped at a rung is known by its last one).

    Third: the training's ``PartialEpochs`` for rungs inside an epoch (None when there are none): each
    reports its rung point without a checkpoint (Tune keeps epoch checkpoints only; a trial resumed before
    the epoch's end trains it again and reports the point again, the same weights giving the same point).
    """
    from ray import tune

    from ddecs_search.search._scheduler import RUNG_EPOCH, RUNG_FINAL

    proxy = None
    if ctx.asha:
        from ddecs_search.search._fidelity import EpochProxy
        from ddecs_search.search._searcher import proxy_key

        (objective,) = ctx.objectives
        # the selection part, as the proxy's own accuracy (an experiment stored before the key existed has
        # the whole validation split's: a constant shift for every trial, so ASHA ranks them the same)
        meta = ctx.baseline.meta
        baseline_val = meta.get("selection_val_accuracy", meta.get("val_accuracy", float("nan")))
        proxy = EpochProxy(ctx.space, candidate, objective, baseline_val, on_batch=pause)
        key = proxy_key(objective)

    rung = None
    if ctx.rungs or ctx.final_rung:
        from ddecs_search.search._scheduler import RungProxy

        rung = RungProxy(ctx.space, candidate, ctx.rungs, final=ctx.final_rung, on_batch=pause)

    def on_epoch(epoch: int, stats: dict[str, float], checkpoint_path: Path) -> None:
        result: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": stats.get("loss"),
            EVALUATED_KEY: False,
            **(marks or {}),
        }
        if proxy is not None:
            result[key] = proxy(checkpoint_path)
        if rung is not None:
            result.update(rung(epoch + 1, checkpoint_path))
        if keep_rung is not None and RUNG_EPOCH in result and not result.get(RUNG_FINAL):
            keep_rung(epoch, stats, checkpoint_path)
        with tempfile.TemporaryDirectory(prefix="ddecs-ckpt-", dir=trial_scratch_dir(ctx.exp_uid)) as tmp:
            fill_epoch_checkpoint(Path(tmp), checkpoint_path, epoch)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        keep_as_previous(checkpoint_path, epoch)

    partial = None
    if rung is not None and rung.partial:
        from ddecs_search.training import PartialEpochs

        def on_partial(point: float, weights_path: Path) -> None:
            tune.report({"epoch": point, EVALUATED_KEY: False, **(marks or {}), **rung(point, weights_path)})

        partial = PartialEpochs(rung.partial, on_partial)
    return on_epoch, (rung.val_table if rung is not None else None), partial


def fill_epoch_checkpoint(folder: Path, checkpoint_path: Path, epoch: int) -> None:
    """``folder``: what Tune stores for ``epoch`` (0-based) of a trial, from its training's checkpoint file.

    The branch checkpoint, its epoch, and the epoch before it (``previous/``, written by
    :func:`keep_as_previous`) when there is one: the fallback for a corrupt checkpoint here and the
    source for putting back one that Tune deleted too early (_restore.py).
    """
    previous = checkpoint_path.parent / PREVIOUS_DIR
    shutil.copy2(checkpoint_path, folder / CHECKPOINT_FILE)
    (folder / EPOCH_FILE).write_text(json.dumps({"epoch": epoch}))
    if (previous / CHECKPOINT_FILE).is_file() and (previous / EPOCH_FILE).is_file():
        shutil.copytree(previous, folder / PREVIOUS_DIR)


def keep_as_previous(checkpoint_path: Path, epoch: int) -> None:
    """Keep ``epoch``'s checkpoint beside the training's file, for the next epoch's Tune checkpoint."""
    previous = checkpoint_path.parent / PREVIOUS_DIR
    previous.mkdir(exist_ok=True)
    shutil.copy2(checkpoint_path, previous / CHECKPOINT_FILE)
    (previous / EPOCH_FILE).write_text(json.dumps({"epoch": epoch}))


def _restore_checkpoint(checkpoint: Any, workdir: Path) -> int | None:
    """Put the last epoch's branch checkpoint where training resumes from; returns that epoch.

    A checkpoint that cannot be loaded (truncated, corrupt) falls back to the previous epoch's, kept inside
    the same Tune checkpoint, and then to a fresh start of the trial, instead of failing every retry.
    """
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        for source in (Path(folder), Path(folder, PREVIOUS_DIR)):
            epoch = _usable_checkpoint(source)
            if epoch is None:
                print(
                    f"ddecs-search: checkpoint in {source} is unreadable; trying the one before",
                    file=sys.stderr,
                )
                continue
            shutil.copy2(source / CHECKPOINT_FILE, workdir / CHECKPOINT_FILE)
            if source == Path(folder) and _usable_checkpoint(Path(folder, PREVIOUS_DIR)) is not None:
                shutil.copytree(Path(folder, PREVIOUS_DIR), workdir / PREVIOUS_DIR, dirs_exist_ok=True)
            return epoch
    return None  # nothing usable: the trial starts afresh


def _usable_checkpoint(folder: Path) -> int | None:
    """The epoch of the checkpoint in ``folder`` if it loads, else None."""
    try:
        epoch = int(json.loads(Path(folder, EPOCH_FILE).read_text())["epoch"])
    except Exception:  # (missing, truncated, garbage: all mean "not usable")
        return None
    return None if _training_state(Path(folder, CHECKPOINT_FILE)) is None else epoch


def _training_state(path: Path) -> dict[str, Any] | None:
    """The training loop's checkpoint at ``path`` (a dict with the model's state), or None when it does not
    load as one."""
    from ddecs_search.training import load_checkpoint

    try:
        state = load_checkpoint(path)
    except Exception:  # (missing, truncated, garbage, wrong format: all mean "not usable")
        return None
    return state if isinstance(state, dict) and "model" in state else None


def _reuse(
    exp: Experiment,
    trial_id: str,
    source: str,
    stored: dict[str, Any],
    bookkeeping: dict[str, Any],
    scratch: Path,
) -> dict[str, Any]:
    """Publish trial ``source``'s evaluation (its stored metrics) as this trial's, marked
    ``reused_from_trial``; return it.

    A sampler may draw a candidate it already had evaluated (seen: 1-8 of 24 trials with ``algorithm:
    gp``, whose flat encoding lets two draws differ only where the network reads nothing). Its training is
    seeded by the candidate, so a second evaluation would give the same accuracies and table estimates,
    and only ``latency_ms`` would be another sample of the same network: the stored result and artefacts
    are re-reported instead, and the sampler is told the same values. This trial's own bookkeeping (when,
    where, which worker) replaces the source's; its measured numbers stay the source's and say so.
    The searcher answers most such draws without a trial (``_optuna_search.py``); what reaches here is a
    warm-start entry listed twice, or a draw after ``MAX_REDRAWS`` known ones. The source's artefacts
    pass through ``scratch`` (the node folder's, removed with it: a trial killed here leaves nothing
    loose in the temp folder).
    """
    from ddecs_search import storage

    flat = {
        **stored,
        **{k: scalar(v) for k, v in bookkeeping.items()},
        "node_id": _node_id(),
        "resumed_from_epoch": None,
        REUSED_FROM_KEY: source,
    }
    with tempfile.TemporaryDirectory(prefix="ddecs-reuse-", dir=scratch) as tmp:
        storage.download_dir(exp.trial_dir(source), tmp)
        flat["trial_finished_at"] = time.time()
        flat["trial_wall_s"] = flat["trial_finished_at"] - float(bookkeeping["trial_started_at"])
        _publish(exp, trial_id, Path(tmp), flat)
    return flat


def _publish(exp: Experiment, trial_id: str, workdir: Path, flat: dict[str, Any]) -> None:
    """Artefacts to ``EXP/trials/<id>/``, then ``metrics.json`` (its presence means: finished).

    The artefacts are gathered next to ``workdir`` (in the node folder's scratch, as ``workdir`` is), not
    loose in the temp folder, where a trial killed while publishing would leave them.
    """
    from ddecs_search import storage

    with tempfile.TemporaryDirectory(prefix="ddecs-publish-", dir=workdir.parent) as tmp:
        for name in ARTEFACTS:
            if (workdir / name).is_file():
                shutil.copy2(workdir / name, Path(tmp, name))
        storage.upload_dir(tmp, exp.trial_dir(trial_id))
    location = storage.join(exp.trial_dir(trial_id), "metrics.json")
    storage.write_text(location, json.dumps(flat, indent=2, default=str))
    _record(exp, trial_id, flat)


def _record(exp: Experiment, trial_id: str, flat: dict[str, Any], recovered: bool = False) -> None:
    exp.record_evaluation(
        trial_id,
        {
            "trial_id": trial_id,
            "node_id": flat.get("node_id"),
            "finished_at": flat.get("trial_finished_at"),
            "wall_time_s": flat.get("wall_time_s"),
            "recovered": recovered,
            REUSED_FROM_KEY: flat.get(REUSED_FROM_KEY),
        },
    )


def _node_id() -> str:
    from ddecs_search.ray_setup import node_id

    return node_id()
