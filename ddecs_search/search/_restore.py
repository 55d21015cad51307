"""Restoring a trial whose recorded epoch checkpoint is gone, instead of failing every retry.

Tune keeps one checkpoint per trial (``CheckpointConfig(num_to_keep=1)`` in _runner.py): registering epoch
k+1's checkpoint deletes epoch k's at once, and the experiment state on disk, which a resume reads, is
written only after that (Tune forces a snapshot after each checkpoint, the deletion comes first). A driver
killed in between leaves a state that names the deleted
checkpoint, and Tune's ``Trainable.restore`` then raises "does not exist on storage anymore" on every
retry, so the trial ends in ERROR and the resumed search exits 3 (ray-project/ray#27790; seen in CI by
``test_study_in_step_after_sigkill_and_resume``). Keeping every checkpoint would only move the problem to
disk space.

The newer checkpoint is still in the trial's folder, and it holds the epoch before it (``previous/``, see
_trainable.py). So before Tune's own restore runs, the missing folder is put back from there: the epoch
the state records when one of them holds it (the scheduler then sees the same rungs again), else the
newest epoch there is. With nothing left (or an unreadable epoch file), the folder is put back holding
only a note, and the trial starts its training afresh (``_restore_checkpoint`` finds nothing usable).

A trial that is over for good needs none of its checkpoints (:func:`drop_checkpoints`): an evaluated one
stored ``metrics.json`` before reporting and, restarted by a resume, re-reports it before it reads a
checkpoint (_trainable.py; a checkpoint gone by then is put back as a note, above); one stopped at a rung
never trains again. Tune keeps the last one of every trial (≈ 11 MB on the default space, the branch
weights and optimiser state twice: the epoch and ``previous/``), 226 MB for a 24-trial search against
31 MB of artefacts the product reads (``trials/``).
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

from ddecs_search.search._trainable import CHECKPOINT_FILE, EPOCH_FILE, PREVIOUS_DIR

CHECKPOINT_PREFIX = "checkpoint_"  # Tune's folder names: checkpoint_000003
GONE_NOTE = "GONE.txt"  # what a put-back folder holds when no checkpoint of the trial was left


def restorable_trainable(fn: Any) -> Any:
    """Tune's class for the function trainable ``fn``, whose restore puts a gone checkpoint back first.

    Its ``reset`` (Tune handing a reused actor its next trial) also marks the hand-over for the trial's
    ``worker_reset_s`` (_worker.py), which only the actor's class sees.

    ``fn`` carries its resources (``tune.with_resources``), which Tune's class reads. The subclass keeps
    the class's names, so Ray's process titles (``ray::ImplicitFunc.train``) and the trainable name that
    ``Tuner.restore`` checks (``search_trial``) stay what they were before it existed.
    """
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(fn)

    class Restorable(base):  # type: ignore[misc, valid-type]
        def reset(self, new_config: Any, *args: Any, **kwargs: Any) -> Any:
            from ddecs_search.search._worker import mark_handed_over

            mark_handed_over()  # a reused actor's next trial: where the driver's part of its wait ends
            return super().reset(new_config, *args, **kwargs)

        def restore(self, checkpoint_path: Any) -> Any:
            checkpoint = getattr(checkpoint_path, "checkpoint", None)
            if checkpoint is not None:
                metrics = getattr(checkpoint_path, "metrics", None) or {}
                put_back_checkpoint(checkpoint.filesystem, checkpoint.path, recorded_epoch(metrics))
            return super().restore(checkpoint_path)

    Restorable.__name__, Restorable.__qualname__ = base.__name__, base.__qualname__
    return Restorable


def recorded_epoch(metrics: dict[str, Any]) -> int | None:
    """The 0-based epoch of a checkpoint's recorded result (results report ``epoch`` 1-based)."""
    try:
        return int(metrics["epoch"]) - 1
    except (KeyError, TypeError, ValueError):
        return None


def put_back_checkpoint(fs: Any, path: str, epoch: int | None) -> str | None:
    """Make the checkpoint folder ``path`` (on pyarrow filesystem ``fs``) exist again if it is gone.

    Returns None when it exists; else what was put there: the source folder copied (the one holding
    ``epoch``, else the newest), or ``GONE_NOTE`` when no other checkpoint of the trial is readable.
    On a local filesystem the copy is written next to it under a hidden name and renamed, so a kill
    leaves no half folder.
    """
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return None
    parent, _, name = path.rstrip("/").rpartition("/")
    sources = _sources(fs, parent, name)
    chosen = next((s for s, e in sources if epoch is not None and e == epoch), None)
    if chosen is None and sources:
        chosen = sources[0][0]
    # local: staged and renamed; object stores cannot rename a folder, so there the copy goes straight in
    # (a kill mid-copy leaves an unreadable checkpoint, which _restore_checkpoint falls back from)
    atomic = fs.type_name == "local"
    staging = f"{parent}/.{name}.restoring-{uuid.uuid4().hex[:8]}" if atomic else path
    fs.create_dir(staging)  # (copy_files makes the folders below it, not the top one)
    if chosen is not None:
        pafs.copy_files(chosen, staging, source_filesystem=fs, destination_filesystem=fs)
        how = f"from {chosen}"
    else:
        with fs.open_output_stream(f"{staging}/{GONE_NOTE}") as out:
            out.write(
                b"Tune recorded this checkpoint, then deleted it; no other checkpoint of the trial was left\n"
            )
        how = "empty (no other checkpoint of the trial left): the trial trains afresh"
    if atomic:
        fs.move(staging, path)
    print(
        f"ddecs-search: checkpoint {path} was gone (Tune deleted it before its experiment state recorded the "
        f"next one); put back {how}",
        file=sys.stderr,
    )
    return chosen if chosen is not None else GONE_NOTE


def drop_checkpoints(fs: Any, trial_path: str) -> int:
    """Delete the Tune checkpoint folders (``checkpoint_*``) of the trial folder ``trial_path`` on ``fs``.

    Only for a trial that is over for good (evaluated, or stopped at a rung once its stop is in the saved
    experiment state). Returns how many were deleted; a folder that cannot be deleted is left, with a line
    on stderr: disk space is not worth failing a search for.
    """
    try:
        folders = _checkpoint_folders(fs, trial_path)
    except OSError as exc:
        print(f"ddecs-search: could not list {trial_path} to drop its checkpoints: {exc}", file=sys.stderr)
        return 0
    dropped = 0
    for folder in folders:
        try:
            fs.delete_dir(folder)
            dropped += 1
        except OSError as exc:
            print(f"ddecs-search: could not delete {folder}: {exc}", file=sys.stderr)
    return dropped


def _checkpoint_folders(fs: Any, trial_path: str) -> list[str]:
    """Tune's checkpoint folders (``checkpoint_*``) in a trial's folder, newest first (zero-padded)."""
    import pyarrow.fs as pafs

    found = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    return sorted(
        (
            info.path
            for info in found
            if info.type == pafs.FileType.Directory and info.base_name.startswith(CHECKPOINT_PREFIX)
        ),
        reverse=True,
    )


def _sources(fs: Any, parent: str, missing: str) -> list[tuple[str, int]]:
    """Readable checkpoint folders of the trial: each sibling then its ``previous/``, newest sibling first."""
    siblings = [f for f in _checkpoint_folders(fs, parent) if f.rstrip("/").rpartition("/")[2] != missing]
    sources = []
    for folder in siblings:
        for source in (folder, f"{folder}/{PREVIOUS_DIR}"):
            epoch = _epoch_of(fs, source)
            if epoch is not None:
                sources.append((source, epoch))
    return sources


def _epoch_of(fs: Any, folder: str) -> int | None:
    """The epoch a checkpoint folder holds (its ``EPOCH_FILE``, beside the branch checkpoint), else None."""
    import pyarrow.fs as pafs

    try:
        if fs.get_file_info(f"{folder}/{CHECKPOINT_FILE}").type != pafs.FileType.File:
            return None
        with fs.open_input_stream(f"{folder}/{EPOCH_FILE}") as stream:
            return int(json.loads(stream.read())["epoch"])
    except Exception:  # (missing, garbage: not a source)
        return None
