"""The experiment directory: its layout, the run record and the tidy trials table (one owner).

The search writes through this module, and analysis, the CLI, benchmarks and test fixtures read (and
write) through it, so the folder layout and the trials table's columns are described once. A location
is a local path or any URI that ``run --storage`` accepts (see :mod:`ddecs_search.storage`).

::

    EXP/
      space.yaml            the validated space the search ran (CLI overrides and energy fallback applied)
      run.json              run record: status, objectives, notices, baseline, timing, resume command
      baseline/<name>-<key>/backbone.pt, meta.json   the backbone trained once for all trials
      baseline/training/    its epoch checkpoints while it trains (removed once stored)
      driver.lock           held by the one driver (run/resume) of the experiment: host, pid, since
      trials/<trial_id>/    model.pt, spec.json, policy.json, test_exits.npz, metrics.json
      evaluations/          one JSON record per finished candidate evaluation (an audit trail)
      candidates/<sha256>.json   the trial that evaluated a candidate (a later trial of it re-reports that)
      networks/<sha256>.json     the trial that trained a network (a later candidate of it loads its weights)
      networks/<sha256>.epoch.pt, .epoch.json   a network's training checkpoint at its last early-stopping
                            rung reached, while no trial has finished training it (a later candidate of it
                            continues from there); removed once one has
      trials.csv, trials.parquet   one row per trial, rewritten atomically as trials finish
      trials.sha256.json    what trials.csv should hold (SHA-256, rows): a cut table is then caught
      verified.csv          isolated end-to-end re-measurement of the final Pareto picks
      latency_table.json    the isolated per-module latency table (rewritten as modules are measured)
      tuner.pkl, experiment_state-*.json, <trial dirs>   Ray Tune's own state (restore)
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import math
import pickletools
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ddecs_search import storage
from ddecs_search.config import Constraint, Objective, SearchSpace, to_dict
from ddecs_search.errors import UserError
from ddecs_search.spaces import parse_space
from ddecs_search.strict_json import json_safe

# Tune's own bookkeeping keys, dropped from the trials table (timing is kept under our own names).
_TUNE_KEYS = frozenset(
    {
        "config",
        "date",
        "done",
        "experiment_id",
        "experiment_tag",
        "hostname",
        "iterations_since_restore",
        "pid",
        "should_checkpoint",
        "checkpoint_dir_name",
        "time_since_restore",
        "time_this_iter_s",
        "timestamp",
        "timesteps_since_restore",
        "timesteps_total",
        "episodes_total",
        "trial_id",
        "training_iteration",
        "node_ip",
    }
)

# Key set by the trainable on the final result of a full evaluation (per-epoch results lack it).
EVALUATED_KEY = "evaluated"
# Bookkeeping key of a trial that re-reported an earlier trial's evaluation of the same candidate.
REUSED_FROM_KEY = "reused_from_trial"
NETWORK_FROM_KEY = "network_from_trial"  # the trial whose trained weights this trial's evaluation loaded
# the trial whose rung checkpoint of the same network this trial's training continued from, and its epochs
NETWORK_EPOCHS_FROM_KEY = "network_epochs_from_trial"
NETWORK_EPOCHS_KEY = "network_epochs_loaded"
NETWORK_EPOCHS_TRAIN_S_KEY = "network_epochs_train_s"  # the seconds it took to train them there
# run.json: draws of an evaluated candidate the searcher answered from the earlier result and drew again.
REDRAWN_KEY = "redrawn_repeats"


def candidate_key(candidate: Any) -> str:
    """SHA-256 of a candidate's full configuration (backbone, exits, branches, training, policy and its λ):
    two trials with the same key train the same network with the same seeds and fit the same policy."""
    return hashlib.sha256(json.dumps(to_dict(candidate), sort_keys=True).encode()).hexdigest()


def network_key(candidate: Any) -> str:
    """SHA-256 of what a candidate's trained weights depend on: everything but its exit policy (backbone,
    exit points, branches, training recipe, seed). Candidates that differ only in the policy or its λ
    train the same network: the second one loads the first one's weights instead of training."""
    network = {k: v for k, v in to_dict(candidate).items() if k != "policy"}
    return hashlib.sha256(json.dumps(network, sort_keys=True).encode()).hexdigest()


# Version of the folder layout and run.json; bumped when a reader could misread an older folder.
FORMAT_VERSION = 2
LATENCY_TABLE_FILE = "latency_table.json"

TRIALS_CHECK_FILE = "trials.sha256.json"
_TRIALS_FIX = (
    "it is derived from Ray Tune's state: `{resume}` rewrites it (no need to delete it; a finished "
    "search then also re-measures its verify picks, unless --no-verify)"
)
_TUNE_FIX = (
    "it is Ray Tune's own state, without which the search cannot continue: the finished trials' results "
    "stay in trials/ and trials.csv (pareto/report/export still work); start a new search with "
    "`ddecs-search run` (another --name)"
)
# Ray Tune's state files that `resume` restores from (the newest of each pattern, as Tune picks them)
# and what they hold: search_gen_state-*.json is a (cloud)pickle despite its name.
TUNE_STATE_FILES = {
    "tuner.pkl": "pickle",
    "experiment_state-*.json": "json",
    "searcher-state-*.pkl": "pickle",
    "search_gen_state-*.json": "pickle",
}

# What to do when a state file is broken, per file (read_state names the file and says why).
_FIX = {
    "space.yaml": "it is the space this search ran: copy the space file you started the search with to "
    "{path} (the same settings) and delete the `space_sha256` line of run.json next to it, "
    "or start a new search with `ddecs-search run`",
    "run.json": "it is the run record (status, objectives, timing): delete it and `ddecs-search resume` "
    "writes a new one (the recorded history is lost; trials and results are kept)",
    "trials.csv": _TRIALS_FIX,
    TRIALS_CHECK_FILE: _TRIALS_FIX,
    LATENCY_TABLE_FILE: "it caches measured module latencies: delete it and `ddecs-search resume` "
    "measures the modules again",
    "metrics.json": "delete it: a trial that had not finished is evaluated again by `ddecs-search resume`; "
    "a finished one keeps its row in trials.csv (rebuilt from Ray Tune's state)",
    "probe.json": "the stored baseline is unreadable: delete {folder} and `ddecs-search resume` trains "
    "the baseline again",
    **dict.fromkeys(TUNE_STATE_FILES, _TUNE_FIX),
}


class StateFileError(UserError):
    """A state file of an experiment is missing, corrupt or of a newer format (CLI exit code 2)."""

    def __init__(self, location: str, problem: str, fix: str) -> None:
        super().__init__(f"{location}: {problem}; {fix}")
        self.location, self.problem = location, problem


def read_state(location: str, parse: Any, *, kind: str | None = None, binary: bool = False) -> Any:
    """Read one state file of an experiment through ``parse(text)`` (``parse(bytes)`` when ``binary``).

    Every state file is read here, so a missing, truncated, corrupt or newer-format file becomes a
    :class:`StateFileError` naming the file and what to do (exit 2), never a traceback.
    """
    name = kind or location.rstrip("/").rsplit("/", 1)[-1]
    folder = location.rstrip("/").rsplit("/", 1)[0]
    fix = next((f for pattern, f in _FIX.items() if fnmatch.fnmatchcase(name, pattern)), None)
    fix = (fix or "restore it from a backup or start a new search").format(
        path=location, folder=folder, resume=f"ddecs-search resume {shlex.quote(folder)}"
    )
    try:
        text = storage.read_bytes(location) if binary else storage.read_text(location)
    except FileNotFoundError:
        raise StateFileError(location, "missing", fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(location, f"unreadable ({type(exc).__name__}: {exc})", fix) from None
    if not text.strip():
        raise StateFileError(location, "empty (truncated?)", fix)
    try:
        return parse(text)
    except StateFileError:
        raise
    except UserError as exc:  # a space that no longer validates
        raise StateFileError(location, f"invalid ({exc})", fix) from None
    except Exception as exc:  # (JSON/YAML/CSV errors of a corrupt file)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StateFileError(location, f"corrupt ({type(exc).__name__}: {detail})", fix) from None


def _json_object(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _whole_pickle(data: bytes) -> None:
    """A complete pickle stream (up to its STOP opcode), checked without building any object."""
    ops = list(pickletools.genops(data))  # (raises ValueError on a stream cut inside an opcode)
    if not ops or ops[-1][0].name != "STOP":
        raise ValueError("the pickle stream ends before its STOP opcode (truncated)")


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


SPACE_FILE, RECORD_FILE, TRIALS_FILE, VERIFIED_FILE = "space.yaml", "run.json", "trials.csv", "verified.csv"
COMPLETED_STATE = "TERMINATED"
CONFIG_PREFIX = "config/"
# columns that hold text even when every value looks numeric (trial ids like "00012", "78220455", "1e345678")
TEXT_COLUMNS = (
    "trial_id",
    REUSED_FROM_KEY,
    NETWORK_FROM_KEY,
    NETWORK_EPOCHS_FROM_KEY,
    "state",
    "device",
    "node_id",
    "energy_source",
    "latency_source",
    "expected_latency_source",
    "policy_kind",
    "error",
    "exits",
    "summary",
    "runtime",
    "backbone",
)


@dataclass(frozen=True)
class NetworkEpoch:
    """A network's checkpoint kept at an early-stopping rung (:meth:`Experiment.network_epoch_of`)."""

    trial_id: str  # the trial that trained it up to there
    epoch: int  # 0-based: the checkpoint after this epoch
    loss: float  # that epoch's training loss (nan when not recorded)
    train_s: float  # seconds of training up to there (over the trials that trained it there)
    checkpoint: bytes  # the training loop's checkpoint file (model, optimiser, scaler, epoch)


@dataclass(frozen=True)
class Experiment:
    """Paths inside one experiment directory (a local path or a URI)."""

    root: str

    @classmethod
    def at(cls, location: str) -> Experiment:
        return cls(storage.normalise(location))

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def name(self) -> str:
        return self.root.rstrip("/").rsplit("/", 1)[-1]

    @property
    def storage(self) -> str:
        return self.root.rstrip("/").rsplit("/", 1)[0]

    def trial_dir(self, trial_id: str) -> str:
        return self.path("trials", trial_id)

    # ------------------------------------------------------------------------------------ space, record
    def write_space(self, space: SearchSpace) -> None:
        """``space.yaml`` and its SHA-256 in ``run.json`` (a cut file that still parses is then caught)."""
        text = yaml.safe_dump(to_dict(space), sort_keys=False)
        storage.write_text(self.path("space.yaml"), text)
        self.update_record(space_sha256=hashlib.sha256(text.encode()).hexdigest())

    def read_space(self) -> SearchSpace:
        location = self.path("space.yaml")
        if not storage.exists(location):
            raise UserError(
                f"{self.root}: not an experiment directory (no space.yaml); "
                "start one with `ddecs-search run SPACE.yaml`"
            )
        expected = self.read_record().get("space_sha256") if storage.exists(self.path("run.json")) else None

        def parse(text: str) -> SearchSpace:
            if expected and hashlib.sha256(text.encode()).hexdigest() != expected:
                raise ValueError("its content differs from what the search wrote (SHA-256 in run.json)")
            return parse_space(yaml.safe_load(text), location)

        return read_state(location, parse)

    def read_record(self) -> dict[str, Any]:
        """``run.json`` ({} before the first write); a newer format than this version reads is an error."""
        location = self.path("run.json")
        if not storage.exists(location):
            return {}
        record = read_state(location, _json_object)
        version = record.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise StateFileError(
                location,
                f"written by a newer ddecs-search (format {version}; this version "
                f"reads up to {FORMAT_VERSION})",
                "upgrade ddecs-search to read it",
            )
        return record

    def read_latency_table(self) -> dict[str, float]:
        """The persisted per-module latency table ({} when none was measured yet)."""
        location = self.path(LATENCY_TABLE_FILE)
        if not storage.exists(location):
            return {}
        table = read_state(location, _json_object)
        return {str(k): float(v) for k, v in table.items()}

    def update_record(self, **fields: Any) -> dict[str, Any]:
        record = {**self.read_record(), **fields, "format_version": FORMAT_VERSION, "updated_at": time.time()}
        storage.write_text(self.path("run.json"), json.dumps(record, indent=2, default=str))
        return record

    # ------------------------------------------------------------------------------------ trial results
    def read_trial_metrics(self, trial_id: str) -> dict[str, Any] | None:
        """The final metrics a trial stored on completion, or None (not finished)."""
        location = storage.join(self.trial_dir(trial_id), "metrics.json")
        return read_state(location, _json_object) if storage.exists(location) else None

    def record_evaluation(self, trial_id: str, record: Mapping[str, Any]) -> None:
        """One audit record per finished evaluation: a rerun of a finished trial would show up twice."""
        name = f"{trial_id}.{time.time_ns()}.json"
        storage.write_text(self.path("evaluations", name), json.dumps(dict(record), default=str))

    def record_candidate(self, key: str, trial_id: str) -> None:
        """Name ``trial_id`` as the evaluation of the candidate ``key`` (:func:`candidate_key`); call it after
        the trial's ``metrics.json`` is stored. The first evaluation stays the named one."""
        location = self.path("candidates", f"{key}.json")
        if not storage.exists(location):
            storage.write_text(location, json.dumps({"trial_id": trial_id}))

    def record_network(self, key: str, trial_id: str) -> None:
        """Name ``trial_id`` as the trial that trained the network ``key`` (:func:`network_key`); call it
        after the trial's ``metrics.json`` (and so its ``model.pt``) is stored. The first stays named while
        its result is readable."""
        if self.network_of(key) is None:  # (also when the named trial's result is gone)
            storage.write_text(self.path("networks", f"{key}.json"), json.dumps({"trial_id": trial_id}))
        for suffix in (".epoch.json", ".epoch.pt"):  # its rung checkpoint is not needed any more
            storage.remove(self.path("networks", key + suffix))

    def record_network_epoch(
        self, key: str, epoch: int, trial_id: str, checkpoint: bytes, loss: float | None, train_s: float
    ) -> None:
        """Keep the network ``key``'s training checkpoint after ``epoch`` (0-based; an early-stopping rung)
        that ``trial_id`` reached, with the epoch's training loss and the seconds training took to get there.

        Why: a trial stopped at a rung leaves no trained network, and samplers draw the same network again
        with another policy or λ; without this the next one trains again up to the rung (and is judged
        there again). Only a later epoch replaces the kept one (trials of one network train the same
        weights); :meth:`record_network` removes it once a trial has trained the network in full.
        """
        kept = self._network_epoch_record(key)
        if kept is not None and int(kept["epoch"]) >= epoch:
            return
        storage.write_bytes(self.path("networks", f"{key}.epoch.pt"), checkpoint)
        record = {
            "trial_id": trial_id,
            "epoch": int(epoch),
            "loss": loss,
            "train_s": train_s,
            "sha256": hashlib.sha256(checkpoint).hexdigest(),
        }
        storage.write_text(self.path("networks", f"{key}.epoch.json"), json.dumps(record))

    def network_epoch_of(self, key: str) -> NetworkEpoch | None:
        """The kept rung checkpoint of network ``key`` (:meth:`record_network_epoch`); None when none is
        kept, or it is unreadable or not the one its record names (the network is then trained from the
        start)."""
        record = self._network_epoch_record(key)
        if record is None:
            return None
        try:
            data = storage.read_bytes(self.path("networks", f"{key}.epoch.pt"))
            if hashlib.sha256(data).hexdigest() != record["sha256"]:
                return None
            loss, train_s = (record.get(name) for name in ("loss", "train_s"))
            return NetworkEpoch(
                trial_id=str(record["trial_id"]),
                epoch=int(record["epoch"]),
                loss=float("nan") if loss is None else float(loss),
                train_s=float("nan") if train_s is None else float(train_s),
                checkpoint=data,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _network_epoch_record(self, key: str) -> dict[str, Any] | None:
        location = self.path("networks", f"{key}.epoch.json")
        try:
            record = json.loads(storage.read_text(location)) if storage.exists(location) else None
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("epoch"), int) else None

    def network_of(self, key: str) -> str | None:
        """The trial whose stored ``model.pt`` holds the network ``key`` trained; None when none does
        (not trained yet, or that trial's result is gone or unreadable: the network is trained again)."""
        found = self._indexed_trial("networks", key)
        return None if found is None else found[0]

    def record_redraws(self, draws: int) -> int:
        """Count ``draws`` draws of candidates evaluated before that the searcher told Optuna the known
        result for and replaced by another draw (no trial ran them); return the count (``run.json``
        ``redrawn_repeats``, over every run and resume of the experiment)."""
        count = int(self.read_record().get(REDRAWN_KEY, 0)) + draws
        self.update_record(**{REDRAWN_KEY: count})
        return count

    def evaluation_of(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """The trial whose stored result is the candidate ``key``'s, with that result; None when not
        evaluated yet, or its result is gone or unreadable (the candidate is then evaluated again)."""
        return self._indexed_trial("candidates", key)

    def _indexed_trial(self, index: str, key: str) -> tuple[str, dict[str, Any]] | None:
        """``(trial_id, its stored metrics)`` named by ``index/<key>.json`` (``candidates``, ``networks``);
        None when the index has no entry, or it or the trial's result is gone or unreadable."""
        location = self.path(index, f"{key}.json")
        try:
            if not storage.exists(location):
                return None
            trial_id = str(json.loads(storage.read_text(location))["trial_id"])
            stored = self.read_trial_metrics(trial_id)
        except (OSError, ValueError, KeyError, TypeError, UserError):
            return None
        return None if stored is None else (trial_id, stored)

    def trial_ids(self) -> list[str]:
        """Trials with a folder in ``trials/`` (a finished one holds ``metrics.json``, see
        :meth:`read_trial_metrics`), whether or not Tune's state names them: a trial that finished after Ray
        Tune last saved its state is forgotten by a resume, and its result is found here
        (``search/_optuna_search.py`` adopts it)."""
        return storage.list_names(self.path("trials"))

    def evaluation_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in storage.list_names(self.path("evaluations")):
            trial_id = name.split(".", 1)[0]
            counts[trial_id] = counts.get(trial_id, 0) + 1
        return counts

    # ------------------------------------------------------------------------------------ trials table
    def write_trials(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write ``trials.csv`` and ``trials.parquet`` atomically."""
        self.write_frame(trials_frame(rows))

    def write_frame(self, frame: Any) -> None:
        """Write a trials DataFrame as ``trials.csv`` and ``trials.parquet`` (each atomically).

        Half a CSV usually still parses (fewer rows), so what the table should hold is recorded first in
        ``trials.sha256.json``: its SHA-256 and row count, plus the SHA-256 of the table it replaces
        (vouched for by the previous record). A driver killed between the two renames thus leaves a pair
        that still checks out, while a cut or edited table does not (:meth:`read_trials`).
        """
        text = frame.to_csv(index=False)
        check = {"sha256": _sha256(text), "rows": len(frame), "previous_sha256": self._vouched_trials_sha()}
        storage.write_text(self.path(TRIALS_CHECK_FILE), json.dumps(check))
        storage.write_text(self.path(TRIALS_FILE), text)
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        storage.write_bytes(self.path("trials.parquet"), buf.getvalue())

    def _vouched_trials_sha(self) -> str | None:
        """SHA-256 of the trials.csv on disk if it is the one the product wrote (None: none, or corrupt)."""
        location = self.path(TRIALS_FILE)
        if not storage.exists(location):
            return None
        current = _sha256(storage.read_bytes(location))
        try:
            check = self._trials_check()
        except StateFileError:
            return None
        return current if check is None or current in _accepted(check) else None

    def _trials_check(self) -> dict[str, Any] | None:
        """``trials.sha256.json`` (None in folders written before it existed)."""
        location = self.path(TRIALS_CHECK_FILE)
        if not storage.exists(location):
            return None

        def parse(text: str) -> dict[str, Any]:
            check = _json_object(text)
            if not isinstance(check.get("sha256"), str) or not isinstance(check.get("rows"), int):
                raise ValueError("expected {'sha256': str, 'rows': int, 'previous_sha256': str | null}")
            return check

        return read_state(location, parse)

    def read_trials(self):  # -> pandas.DataFrame
        """``trials.csv``; one whose content is not what the product wrote (cut, edited) is an error."""
        import pandas as pd

        location = self.path(TRIALS_FILE)
        if not storage.exists(location):
            return pd.DataFrame(columns=["trial_id", "state"])
        check = self._trials_check()
        if check is None and not storage.read_text(location).strip():  # an older folder's empty table
            return pd.DataFrame(columns=["trial_id", "state"])

        def parse(text: str):
            if check is not None and _sha256(text) not in _accepted(check):
                raise ValueError(
                    f"its content differs from what the search wrote ({TRIALS_CHECK_FILE} records "
                    f"{check['rows']} row(s) with another SHA-256: cut short or edited)"
                )
            frame = pd.read_csv(io.StringIO(text), dtype=dict.fromkeys(TEXT_COLUMNS, str))
            missing = {"trial_id", "state"} - set(frame.columns)
            if missing:
                raise ValueError(f"no {sorted(missing)} column(s)")
            return frame

        return read_state(location, parse)

    def check_tune_state(self) -> None:
        """Read Ray Tune's own state files (the newest of each kind) before Ray starts: a cut or corrupt
        one is exit 2 naming it, instead of a failure deep inside ``Tuner.restore`` or ``fit()``.

        Only their integrity is checked (complete JSON, a complete pickle stream); nothing is unpickled.
        """
        names = storage.list_names(self.root)
        for pattern, kind in TUNE_STATE_FILES.items():
            matching = fnmatch.filter(names, pattern)
            if not matching:
                continue
            location = self.path(max(matching))
            if kind == "pickle":
                read_state(location, _whole_pickle, kind=pattern, binary=True)
            else:
                read_state(location, _json_object, kind=pattern)

    def has_trials(self) -> bool:
        """Whether the search has written its trials table (it may still be empty)."""
        return storage.exists(self.path(TRIALS_FILE))

    # ------------------------------------------------------------------------------------ what it chose
    def read_objectives(self) -> tuple[Objective, ...]:
        """The objectives the search actually optimised: ``run.json``'s record (energy fallback applied),
        else the ``objectives:`` of ``space.yaml``; empty when neither exists."""
        recorded = self.read_record().get("objectives")
        if recorded:
            return tuple(Objective(str(o["name"]), str(o["mode"])) for o in recorded)  # type: ignore[arg-type]
        return self.read_space().objectives if storage.exists(self.path(SPACE_FILE)) else ()

    def read_constraints(self) -> tuple[Constraint, ...]:
        """The ``constraints:`` of ``space.yaml`` (empty without one)."""
        return self.read_space().constraints if storage.exists(self.path(SPACE_FILE)) else ()


def _accepted(check: Mapping[str, Any]) -> set[str]:
    """The trials.csv contents a check record vouches for: the table it describes, or (a driver killed
    between writing the record and renaming the table) the table that was in place before."""
    return {str(h) for h in (check.get("sha256"), check.get("previous_sha256")) if h}


def violations(metrics: Mapping[str, Any], constraints: Sequence[Constraint]) -> list[str]:
    """Human-readable constraint violations of one trial's metrics (empty = feasible).

    A missing or non-finite constrained metric counts as a violation: feasibility must be shown.
    """
    out = []
    for c in constraints:
        value = _number(metrics.get(c.metric))
        if value is None:
            out.append(f"{c.metric} missing")
            continue
        if c.max is not None and value > c.max:
            out.append(f"{c.metric}={value:.4g} > max {c.max:g}")
        if c.min is not None and value < c.min:
            out.append(f"{c.metric}={value:.4g} < min {c.min:g}")
    return out


def constraint_values(metrics: Mapping[str, Any], constraints: Sequence[Constraint]) -> dict[str, float]:
    """Each bound's signed excess, Optuna's constraint convention (> 0 violated, <= 0 feasible).

    The same rule as :func:`violations`, as numbers a sampler can rank by: keyed ``metric<=max`` and
    ``metric>=min``; a missing or non-finite constrained metric is infinitely violated.
    """
    out: dict[str, float] = {}
    for c in constraints:
        value = _number(metrics.get(c.metric))
        if c.max is not None:
            out[f"{c.metric}<={c.max:g}"] = math.inf if value is None else value - c.max
        if c.min is not None:
            out[f"{c.metric}>={c.min:g}"] = math.inf if value is None else c.min - value
    return out


def objective_values(metrics: Mapping[str, Any], objectives: Sequence[Objective]) -> list[float] | None:
    """The objective vector of one trial, or None when any value is missing or not finite."""
    values = [_number(metrics.get(o.name)) for o in objectives]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def scalar(value: Any) -> Any:
    """Lists/dicts become JSON strings (parseable, one cell); numpy scalars become Python numbers."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(json_safe(value), default=str)
    return value


def flat_config(config: Mapping[str, Any], prefix: str = "config") -> dict[str, Any]:
    """``{"branch0": {"channels": 32}}`` -> ``{"config/branch0/channels": 32}`` (lists as JSON)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            out.update(flat_config(value, name))
        else:
            out[name] = scalar(value)
    return out


def stopped_early(state: str, result: dict[str, Any] | None) -> bool:
    """A trial the scheduler stopped at a rung (ASHA or the multi-objective one): ended, not evaluated.

    Tune marks it TERMINATED with a last result that says ``done``; a trial Tune stopped because the
    search was interrupted is TERMINATED too, but its last result never says ``done`` (it resumes).
    """
    result = result or {}
    return not result.get(EVALUATED_KEY) and state == "TERMINATED" and bool(result.get("done"))


def trial_row(
    *,
    trial_id: str,
    index: int,
    state: str,
    config: Mapping[str, Any],
    result: Mapping[str, Any] | None,
    error: str | None,
    num_failures: int,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
) -> dict[str, Any]:
    """One row of the trials table from what Tune knows about a trial."""
    result = dict(result or {})
    evaluated = bool(result.get(EVALUATED_KEY))
    row: dict[str, Any] = {"trial_id": trial_id, "trial_index": index, "state": state}
    row.update(flat_config(config))
    metrics = {k: scalar(v) for k, v in result.items() if k not in _TUNE_KEYS and not k.startswith("config/")}
    row.update(metrics)
    row[EVALUATED_KEY] = evaluated
    row["stopped_early"] = stopped_early(state, result)
    # ASHA-stopped trials and running ones carry per-epoch results only: never on the front.
    row["full_fidelity"] = evaluated and bool(result.get("full_fidelity", True))
    bad = violations(result, constraints) if evaluated else ["not evaluated"]
    row["feasible"] = evaluated and not bad
    row["violations"] = "; ".join(bad)
    row["objectives_ok"] = evaluated and all(_finite(result.get(o.name)) for o in objectives)
    row["num_failures"] = num_failures
    row["trial_time_total_s"] = result.get("time_total_s")
    row["error"] = error or ""
    return row


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _finite(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


_FIRST_COLUMNS = (
    "trial_id",
    "trial_index",
    "state",
    "evaluated",
    "stopped_early",
    "full_fidelity",
    "feasible",
    "violations",
    "objectives_ok",
    "error",
    "num_failures",
    "node_id",
    "device",
)


def trials_frame(rows: Iterable[Mapping[str, Any]]):  # -> pandas.DataFrame
    """A tidy frame: fixed leading columns, then config columns, then metrics; mixed columns as text."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=list(_FIRST_COLUMNS))
    first = [c for c in _FIRST_COLUMNS if c in frame.columns]
    config = sorted(c for c in frame.columns if c.startswith("config/"))
    rest = [c for c in frame.columns if c not in first and c not in config]
    frame = frame[first + config + rest].sort_values("trial_index", kind="stable").reset_index(drop=True)
    for col in frame.columns:  # parquet needs one type per column
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col] if not _missing(v)}
            if len(kinds) > 1:
                frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    return frame
