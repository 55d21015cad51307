"""The baseline backbone, trained once per search and shipped to every trial through the object store.

It is trained by one Ray task with a trial's resources (so on a GPU node when trials use GPUs), which
also probes the target device's energy meter and times the latency table's reference before, during
(after each epoch) and after its training (``_latency_broker.reference_table``: a process on the
otherwise idle machine; the fastest is kept). The trained
weights travel to the trials as bytes inside ``tune.with_parameters`` (works across nodes without
shared disk); each trial writes them into a local cache folder under the same content-hash name
:func:`ddecs_search.training.train_baseline` looks up, so ``evaluate_candidate`` finds the pre-trained
backbone and never trains it again.

The same task continues the baseline for every ``training.epochs`` a joint candidate of the space can have
(the static reference it is compared with, ``training.static_reference``): in one run to the longest, on
the otherwise idle machine, instead of in the first joint trial of each epoch count while the others wait
on its lock. They travel and are stored with the baseline (``continued/<epochs>ep-<hash>/``); an experiment
stored before they did gets them trained by its trials, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddecs_search import storage
from ddecs_search.config import SearchSpace, TrainingConfig
from ddecs_search.errors import UserError
from ddecs_search.experiment import Experiment
from ddecs_search.search._worker import node_cache_dir


@dataclass(frozen=True)
class BaselineBlob:
    """A trained baseline as bytes plus what the driver learnt about the target device with it."""

    folder: str  # "<backbone>-<content hash>", the cache folder name train_baseline uses
    weights: bytes  # backbone.pt
    meta: dict[str, Any]  # meta.json (val_accuracy, train_time_s, ...)
    probe: dict[str, Any]  # device, energy_available, energy_source, node_id
    #: static references of joint candidates: "<epochs>ep-<hash>" -> (backbone.pt bytes, meta.json dict)
    continued: dict[str, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)

    def materialise(self, cache_dir: Path) -> Path:
        """Write the baseline (and its static references) into ``cache_dir/<folder>/`` unless they are
        there; returns ``cache_dir``."""
        folder = Path(cache_dir) / self.folder
        parts = [(folder, self.weights, self.meta)]
        parts += [(folder / CONTINUED / name, w, m) for name, (w, m) in sorted(self.continued.items())]
        for where, weights, meta in parts:
            if not (where / "backbone.pt").is_file() or not (where / "meta.json").is_file():
                storage.write_bytes(str(where / "backbone.pt"), weights)
                storage.write_text(str(where / "meta.json"), json.dumps(meta))  # last: marks it complete
        return Path(cache_dir)

    def store(self, exp: Experiment) -> None:
        """Keep the baseline in the experiment (for resume, export and the record)."""
        storage.write_bytes(exp.path("baseline", self.folder, "backbone.pt"), self.weights)
        storage.write_text(exp.path("baseline", self.folder, "meta.json"), json.dumps(self.meta, indent=2))
        for name, (weights, meta) in sorted(self.continued.items()):
            storage.write_bytes(exp.path("baseline", self.folder, CONTINUED, name, "backbone.pt"), weights)
            storage.write_text(
                exp.path("baseline", self.folder, CONTINUED, name, "meta.json"), json.dumps(meta, indent=2)
            )
        probe = json.dumps({"folder": self.folder, **self.probe})  # last: marks the whole baseline stored
        storage.write_text(exp.path("baseline", "probe.json"), probe)

    @classmethod
    def load(cls, exp: Experiment) -> BaselineBlob | None:
        """The baseline a previous run stored, or None."""
        from ddecs_search.experiment import StateFileError, read_state

        probe_path = exp.path("baseline", "probe.json")
        if not storage.exists(probe_path):
            return None
        probe = dict(read_state(probe_path, json.loads, kind="probe.json"))
        folder = str(probe.pop("folder", ""))
        meta = read_state(exp.path("baseline", folder, "meta.json"), json.loads, kind="probe.json")
        weights_path = exp.path("baseline", folder, "backbone.pt")
        fix = f"delete {exp.path('baseline')} and `ddecs-search resume` trains the baseline again"
        try:  # a truncated or corrupt backbone would fail every trial: check it loads (weights only)
            import io

            import torch

            weights = storage.read_bytes(weights_path)
            torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        except Exception as exc:  # (missing, truncated, not a checkpoint)
            raise StateFileError(weights_path, f"missing or corrupt ({type(exc).__name__})", fix) from None
        continued = {}
        for name in storage.list_names(exp.path("baseline", folder, CONTINUED)):
            where = exp.path("baseline", folder, CONTINUED, name)
            try:  # a damaged reference is trained again by the trial that needs it, like a missing one
                ref_meta = json.loads(storage.read_text(storage.join(where, "meta.json")))
                ref_weights = storage.read_bytes(storage.join(where, "backbone.pt"))
                torch.load(io.BytesIO(ref_weights), map_location="cpu", weights_only=True)
            except Exception:  # (missing, truncated, not JSON, not a checkpoint)
                continue
            continued[name] = (ref_weights, ref_meta)
        return cls(folder, weights, meta, probe, continued)


def reference_trainings(space: SearchSpace) -> list[TrainingConfig]:
    """The recipes a joint trial of ``space`` can be compared under: one per ``training.epochs`` choice,
    each the training config a sampled joint trial with that epoch count gets (built by the search
    space's own decoding, so the references' keys match the trials')."""
    from ddecs_search.search._space_fn import ConditionalSpace, build_candidate

    if "joint" not in space.training.mode:
        return []
    fn = ConditionalSpace.from_space(space)
    return [
        build_candidate(space, fn, {"training": {"mode": "joint", "epochs": e}}).training
        for e in sorted(set(space.training.epochs))
        if e > 0
    ]


#: sub-folder of a baseline's folder holding its static references (``training.reference_folder``)
CONTINUED = "continued"


def trial_cache_dir(exp_uid: str) -> Path:
    """Node-local folder where trials of one experiment materialise the shared baseline."""
    return node_cache_dir(exp_uid) / "baselines"


def _usable_checkpoints(work_dir: Path) -> list[str]:
    """Drop epoch checkpoints of the baseline that cannot be loaded (training then starts that baseline
    afresh instead of failing on every resume); returns what was dropped."""
    from ddecs_search.training import load_checkpoint

    dropped = []
    for path in sorted(Path(work_dir).glob("*/checkpoint.pt")):
        try:
            state = load_checkpoint(path)
            if not isinstance(state, dict) or "model" not in state:
                raise ValueError("not a training checkpoint")
        except Exception:  # (any unreadable file: truncated, garbage, wrong format)
            path.unlink(missing_ok=True)
            dropped.append(str(path))
    return dropped


def _train(
    space: SearchSpace, threads: int, quiet: bool, work_dir: str | None = None, epochs_queue: Any = None
) -> BaselineBlob:
    """Body of the baseline task (runs in a Ray worker); each trained epoch goes to ``epochs_queue``.

    With ``work_dir`` (the experiment's ``baseline/training/`` on local or shared storage) the epoch
    checkpoints live there, so a driver killed during baseline training resumes it from its last epoch.
    """
    import torch

    from ddecs_search.data import load_splits
    from ddecs_search.models import backbone_info
    from ddecs_search.profiling import create_energy_meter, device_name, resolve_device
    from ddecs_search.ray_setup import node_id
    from ddecs_search.search._latency_broker import quieter_reference, reference_static_ms, reference_timer
    from ddecs_search.training import static_references, train_baseline

    torch.set_num_threads(max(1, threads))
    device = resolve_device(space.measurement.device)
    splits = load_splits(space.dataset, backbone_info(space.backbone.name).input_shape)
    # the latency table's reference, timed in this process on the otherwise idle machine before training,
    # after every epoch and after training: the fastest is kept (see quieter_reference)
    time_reference = reference_timer(space, splits.num_classes, device)
    references = [time_reference()]
    with contextlib.ExitStack() as scratch:  # a temp folder only where no work_dir keeps the epochs
        cache = Path(work_dir or scratch.enter_context(tempfile.TemporaryDirectory(prefix="ddecs-baseline-")))
        dropped = _usable_checkpoints(cache)
        resumed = any(cache.glob("*/checkpoint.pt"))  # an interrupted baseline training continues

        def on_epoch(epoch: int, stats: dict[str, float], checkpoint: Path) -> None:
            references.append(time_reference(1))
            if epochs_queue is not None:
                epochs_queue.put((epoch + 1, stats.get("loss")))

        result = train_baseline(
            space.backbone.name,
            splits,
            space.dataset,
            space.backbone.baseline,
            device=device,
            cache_dir=cache,
            seed=0,
            quiet=quiet,
            on_epoch=on_epoch,
        )
        folder = result.path.parent
        continued = {}
        for ref in static_references(result, reference_trainings(space), splits, device=device, quiet=True):
            where = ref.path.parent
            continued[where.name] = (ref.path.read_bytes(), json.loads((where / "meta.json").read_text()))
        weights = (folder / "backbone.pt").read_bytes()
        meta = json.loads((folder / "meta.json").read_text())
        if dropped:
            meta["restarted_after_corrupt_checkpoint"] = dropped
        if resumed:
            meta["resumed_from_checkpoint"] = True
    references.append(time_reference())
    reference = quieter_reference(*references)
    meter = create_energy_meter(space.measurement.energy, device)
    probe = {
        "device": device_name(device),
        "energy_available": bool(meter.available),
        "energy_source": meter.source,
        "node_id": node_id(),
        "host": os.uname().nodename,
        "latency_reference": reference,
        "latency_reference_static_ms": [reference_static_ms(r) for r in references],  # before, epochs, after
    }
    meter.close()
    return BaselineBlob(folder.name, weights, meta, probe, continued)


def train_shared_baseline(
    space: SearchSpace, *, num_cpus: float, num_gpus: float, quiet: bool, work_dir: str | None = None
) -> BaselineBlob:
    """Train the search's baseline in one Ray task with the given resources.

    Raises:
        UserError: what the task raised when it is a user error (missing data, bad device ...).
    """
    import ray

    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=1)(_train)
    try:
        if quiet:
            return ray.get(task.remote(space, max(1, int(num_cpus)), True, work_dir))
        return _with_epochs_shown(space, task, max(1, int(num_cpus)), work_dir)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            raise type(cause)(str(cause)) from None
        raise


def _with_epochs_shown(space: SearchSpace, task: Any, threads: int, work_dir: str | None) -> BaselineBlob:
    """Run the baseline task while showing its epochs on the driver (they arrive through a Ray queue)."""
    import ray
    from ray.util.queue import Empty, Queue

    from ddecs_search.search._progress import EpochsBar

    queue = Queue(actor_options={"num_cpus": 0})
    bar = EpochsBar(space.backbone.baseline.epochs, f"baseline {space.backbone.name}", quiet=False)
    try:
        ref = task.remote(space, threads, True, work_dir, queue)
        while True:
            ready, _ = ray.wait([ref], timeout=0.5)
            while True:
                try:
                    bar.epoch(*queue.get_nowait())
                except Empty:
                    break
            if ready:
                return ray.get(ref)
    finally:
        bar.close()
        queue.shutdown()
