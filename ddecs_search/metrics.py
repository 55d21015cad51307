"""The metric catalogue: one place that says what every number a trial reports is.

Every key of a trial's metrics (the trials table, ``evaluate --out``, ``pareto --format json``) is
described here once: its direction, unit, what it is computed on, whether it is bound to the device it
was measured on, and which metric is its static-network and oracle counterpart. Config validation,
the search, the Pareto analyzer and the report all read this table instead of keeping their own lists,
so a metric cannot mean one thing in the search and another in the report.

``computed_on`` is the rule of measurement the metric follows:

- ``selection``: the held-out *selection* part of validation (never seen by the exit policy's fit);
  objectives, constraints, picks and λ sweeps may only use these, ``table``, ``measured`` or ``config``.
- ``test``: the test split; reported, never used for choosing (test labels only score).
- ``table``: an estimate from a cost table (per-module latency, MACs) weighted by the exits taken on the
  selection part; it reads no labels.
- ``measured``: end-to-end timing or energy of real inference (see ``latency_source``/``energy_source``).
- ``bound``: what the label-reading oracle reaches on the same exits (an upper bound for any policy).
- ``config``/``info``: properties of the configuration or of the run.

This module imports nothing of the package (a leaf): config, search and analysis all depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ComputedOn = Literal["selection", "test", "table", "measured", "bound", "config", "info"]
Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Metric:
    """One key of a trial's metrics.

    Attributes:
        name: the key.
        direction: ``max``/``min`` when larger/smaller is better; None for descriptive keys.
        unit: e.g. ``"fraction"``, ``"ms"``, ``"MAC"``, ``"mJ"``, ``"x"``.
        computed_on: see the module docstring.
        device_bound: values from different devices (or runtimes) must never meet in one front.
        baseline: the key holding the static network's value of the same quantity.
        oracle: the key holding the oracle's value on the same exits.
        description: one line for docs and error messages.
    """

    name: str
    direction: Direction | None
    unit: str
    computed_on: ComputedOn
    description: str
    device_bound: bool = False
    baseline: str | None = None
    oracle: str | None = None

    @property
    def selectable(self) -> bool:
        """May this metric choose (objective, constraint, pick)? Test metrics may not."""
        return self.computed_on in ("selection", "table", "measured", "config")


def _m(*args: object, **kwargs: object) -> Metric:
    return Metric(*args, **kwargs)  # type: ignore[arg-type]


_CATALOGUE: tuple[Metric, ...] = (
    # accuracy on the selection part of validation: what a search chooses with
    _m(
        "val_accuracy",
        "max",
        "fraction",
        "selection",
        "early-exit accuracy on the selection part of validation (policy fitted on the other part)",
        baseline="baseline_val_accuracy",
    ),
    _m(
        "baseline_val_accuracy",
        "max",
        "fraction",
        "selection",
        "the static network's accuracy on the selection part of validation",
    ),
    _m(
        "val_accuracy_drop",
        "min",
        "fraction",
        "selection",
        "baseline_val_accuracy - val_accuracy (negative: the exits helped)",
    ),
    _m(
        "backbone_val_accuracy",
        "max",
        "fraction",
        "selection",
        "this network with its early exits switched off (its final exit alone; a joint candidate's own "
        "backbone, a static network of the same budget) on the selection part of validation",
    ),
    # accuracy on test: reported only
    _m(
        "accuracy",
        "max",
        "fraction",
        "test",
        "real early-exit inference accuracy on the test split",
        baseline="baseline_accuracy",
        oracle="oracle_accuracy",
    ),
    _m("baseline_accuracy", "max", "fraction", "test", "the static network's accuracy on the test split"),
    _m("accuracy_drop", "min", "fraction", "test", "baseline_accuracy - accuracy on the test split"),
    _m(
        "backbone_accuracy",
        "max",
        "fraction",
        "test",
        "this network with its early exits switched off, on the test split",
    ),
    _m("table_accuracy", "max", "fraction", "test", "test accuracy simulated from the exit table"),
    _m(
        "oracle_accuracy",
        "max",
        "fraction",
        "bound",
        "test accuracy of the label-reading oracle on the same exits (upper bound)",
    ),
    _m("exit_fractions", None, "fraction", "test", "share of test samples leaving at each exit (list)"),
    _m("exit_accuracies", None, "fraction", "test", "accuracy of the test samples leaving at each exit"),
    _m("oracle_exit_fractions", None, "fraction", "bound", "the oracle's exit shares on test (list)"),
    # end-to-end measured inference
    _m(
        "latency_ms",
        "min",
        "ms",
        "measured",
        "mean batch-1 time of real early-exit inference, decisions included (see latency_source)",
        device_bound=True,
        baseline="baseline_latency_ms",
    ),
    _m(
        "latency_p95_ms",
        "min",
        "ms",
        "measured",
        "95th percentile of the batch-1 early-exit time",
        device_bound=True,
        baseline="baseline_latency_p95_ms",
    ),
    _m(
        "baseline_latency_p95_ms",
        "min",
        "ms",
        "measured",
        "95th percentile of the static network's batch-1 time, measured in the same run as latency_p95_ms",
        device_bound=True,
    ),
    _m(
        "baseline_latency_ms",
        "min",
        "ms",
        "measured",
        "mean batch-1 time of the static network, measured in the same run as latency_ms",
        device_bound=True,
    ),
    _m(
        "speedup",
        "max",
        "x",
        "measured",
        "baseline_latency_ms / latency_ms (same run, interleaved)",
        device_bound=True,
    ),
    _m(
        "batched_throughput_speedup",
        "max",
        "x",
        "measured",
        "early-exit over static throughput at measurement.batch_size",
        device_bound=True,
    ),
    _m(
        "energy_mj",
        "min",
        "mJ",
        "measured",
        "energy per sample above idle (see energy_source)",
        device_bound=True,
        baseline="baseline_energy_mj",
    ),
    _m(
        "baseline_energy_mj",
        "min",
        "mJ",
        "measured",
        "the static network's energy per sample",
        device_bound=True,
    ),
    # cost-table estimates over the exits taken on the selection part
    _m(
        "expected_latency_ms",
        "min",
        "ms",
        "table",
        "per-module latency table x exits taken on the selection part (decision and sync included)",
        device_bound=True,
        baseline="baseline_expected_latency_ms",
        oracle="oracle_expected_latency_ms",
    ),
    _m(
        "baseline_expected_latency_ms",
        "min",
        "ms",
        "table",
        "the static network in the latency table",
        device_bound=True,
    ),
    _m(
        "expected_speedup",
        "max",
        "x",
        "table",
        "baseline_expected_latency_ms / expected_latency_ms",
        device_bound=True,
    ),
    _m(
        "expected_cost",
        "min",
        "fraction",
        "table",
        "mean normalised path cost on the selection part (static network = 1)",
    ),
    _m(
        "macs",
        "min",
        "MAC",
        "table",
        "multiply-accumulates per sample over the exits taken",
        baseline="baseline_macs",
        oracle="oracle_macs",
    ),
    _m("baseline_macs", "min", "MAC", "table", "multiply-accumulates of the static network"),
    _m(
        "oracle_expected_latency_ms",
        "min",
        "ms",
        "bound",
        "the oracle's table latency on the test split (upper bound)",
        device_bound=True,
    ),
    _m("oracle_macs", "min", "MAC", "bound", "the oracle's MACs per sample on the test split"),
    # verified after the search (isolated end-to-end re-measurement of the picks)
    _m(
        "verified_latency_ms",
        "min",
        "ms",
        "measured",
        "batch-1 early-exit time re-measured end to end after the search, nothing else running",
        device_bound=True,
    ),
    _m(
        "verified_speedup",
        "max",
        "x",
        "measured",
        "verified static over early-exit time, same run",
        device_bound=True,
    ),
    _m(
        "verified_baseline_latency_ms",
        "min",
        "ms",
        "measured",
        "the static network re-measured beside verified_latency_ms",
        device_bound=True,
    ),
    _m(
        "verified_latency_min_ms",
        None,
        "ms",
        "info",
        "fastest of verify's rounds (verified_latency_ms is their median): the run-to-run spread",
        device_bound=True,
    ),
    _m(
        "verified_latency_max_ms",
        None,
        "ms",
        "info",
        "slowest of verify's rounds (verified_latency_ms is their median): the run-to-run spread",
        device_bound=True,
    ),
    _m("verified_speedup_min", None, "x", "info", "lowest verified speedup over verify's rounds"),
    _m("verified_speedup_max", None, "x", "info", "highest verified speedup over verify's rounds"),
    _m(
        "verified_rounds",
        None,
        "",
        "info",
        "rounds of table and end-to-end timing verify's medians come from",
    ),
    _m(
        "verified_slow_rounds",
        None,
        "",
        "info",
        "verify rounds whose static network ran over 1.1x the table's (a slow spell of the machine): set "
        "aside and retried, or all used when no round was calm",
    ),
    _m(
        "verified_static_over_reference",
        None,
        "x",
        "info",
        "verify's static network over the latency table's (its reference conditions): above 1.1, verify "
        "timed a slow spell and expected_over_verified cannot judge the table",
    ),
    _m(
        "expected_over_verified",
        None,
        "x",
        "info",
        "expected_latency_ms / verified_latency_ms: how well the search's table predicts the real time",
    ),
    _m(
        "verified_table_latency_ms",
        None,
        "ms",
        "info",
        "the latency table re-measured at verify time, weighted by the timed samples' own exits",
        device_bound=True,
    ),
    _m(
        "table_over_verified",
        None,
        "x",
        "info",
        "verified_table_latency_ms / verified_latency_ms: the table method's error in the same conditions",
    ),
    # agreement checks, configuration, bookkeeping
    _m(
        "inference_table_agreement",
        "max",
        "fraction",
        "test",
        "share of test samples where real batched inference matches the table (prediction and exit)",
    ),
    _m(
        "batch1_table_agreement",
        "max",
        "fraction",
        "test",
        "share of timed batch-1 samples whose exit matches the table",
    ),
    _m("cost_weight", None, "", "config", "λ of the exit policy"),
    _m("num_exits", None, "", "config", "exits including the final classifier"),
    _m(
        "rl_return",
        "max",
        "",
        "info",
        "final greedy return of an RL or gate policy on the fit part of validation, where it trained "
        "(a training diagnostic, not for choosing)",
    ),
    _m("train_time_s", "min", "s", "info", "branch training time"),
    _m("policy_train_time_s", "min", "s", "info", "exit-policy fitting time"),
    _m("wall_time_s", "min", "s", "info", "whole candidate evaluation time"),
    _m(
        "measurement_pause_s",
        "min",
        "s",
        "info",
        "time this trial's training paused while another trial of the search measured latency or energy",
    ),
)

METRICS: dict[str, Metric] = {m.name: m for m in _CATALOGUE}

# Descriptive text keys every evaluation reports (not numbers; documented here so they have one owner).
TEXT_KEYS: dict[str, str] = {
    "latency_source": "how latency_ms was measured: runtime, device, threads, batch, in-trial/isolated",
    "expected_latency_source": "where the latency table of expected_latency_ms comes from",
    "energy_source": "how energy was measured (nvml, rapl) or why it is unavailable",
    "device": "the device measured on",
    "runtime": "the inference runtime measured (torch, onnxruntime)",
    "candidate": "the evaluated configuration (JSON): backbone, exit points, branches, training, policy",
    "backbone": "the backbone every candidate of the space shares",
    "exits": "exit points by the backbone's names, e.g. conv1+conv2",
    "summary": "one line naming the configuration: exits, branches, training, policy and λ",
    "policy_kind": "the exit policy's kind",
    # bookkeeping of the search (never objectives: not in the numeric catalogue)
    "worker_pid": "the worker process that ran the trial (workers are reused between trials)",
    "worker_trial_number": "how many trials that worker had run before this one",
    "worker_idle_s": "seconds the worker waited for this trial",
    "worker_reset_s": (
        "the worker's own part of worker_idle_s: from Tune handing it the trial to the trial starting "
        "(the rest is the driver's: the last result, callbacks, the sampler's suggest)"
    ),
    "reused_from_trial": (
        "the trial whose evaluation of the same candidate this trial re-reports (not trained again: same "
        "network, seeds and policy; its measured numbers are that trial's)"
    ),
    "network_from_trial": (
        "the trial whose trained network this trial's evaluation loaded instead of training (the same "
        "exits, branches, training and seed; another policy or λ): train_time_s 0; empty when it trained"
    ),
    "network_epochs_from_trial": (
        "the trial whose checkpoint of the same network at an early-stopping rung this trial's training "
        "continued from (that trial was stopped there or had not finished): those epochs were not trained "
        "again, train_time_s counts the rest; empty when it trained from the start"
    ),
    "network_epochs_loaded": "how many epochs of training that checkpoint held (network_epochs_from_trial)",
    "network_epochs_train_s": "seconds it took to train those epochs there (not in train_time_s)",
    "rung_epoch": "epoch of the last early-stopping rung the trial reached (a fraction: inside that epoch)",
    "rung_val_accuracy": "validation-proxy accuracy at that rung (selection part)",
    "rung_expected_macs": "expected MACs of the trial's exits at that rung",
}

NUMERIC_METRICS: tuple[str, ...] = tuple(sorted(n for n, m in METRICS.items() if m.unit or m.direction))
SELECTABLE_METRICS: tuple[str, ...] = tuple(sorted(n for n, m in METRICS.items() if m.selectable))
DEVICE_BOUND_METRICS: frozenset[str] = frozenset(n for n, m in METRICS.items() if m.device_bound)
BASELINE_OF: dict[str, str] = {n: m.baseline for n, m in METRICS.items() if m.baseline}
ORACLE_OF: dict[str, str] = {n: m.oracle for n, m in METRICS.items() if m.oracle}

# A test metric named where a choice is made -> the validation metric to use instead.
SELECTION_PARTNER: dict[str, str] = {
    "accuracy": "val_accuracy",
    "accuracy_drop": "val_accuracy_drop",
    "baseline_accuracy": "baseline_val_accuracy",
    "backbone_accuracy": "backbone_val_accuracy",
    "table_accuracy": "val_accuracy",
    "exit_accuracies": "val_accuracy",
    "exit_fractions": "expected_latency_ms",
    "oracle_accuracy": "val_accuracy",
    "oracle_expected_latency_ms": "expected_latency_ms",
    "oracle_macs": "macs",
    "inference_table_agreement": "val_accuracy",
    "batch1_table_agreement": "val_accuracy",
}

# The static network as a front member: its value of each metric, from the columns trials report.
STATIC_VALUES: dict[str, str | float] = {
    "val_accuracy": "baseline_val_accuracy",
    "accuracy": "baseline_accuracy",
    "latency_ms": "baseline_latency_ms",
    "latency_p95_ms": "baseline_latency_p95_ms",
    "expected_latency_ms": "baseline_expected_latency_ms",
    "energy_mj": "baseline_energy_mj",
    "macs": "baseline_macs",
    "verified_latency_ms": "verified_baseline_latency_ms",
    "val_accuracy_drop": 0.0,
    "accuracy_drop": 0.0,
    "speedup": 1.0,
    "expected_speedup": 1.0,
    "verified_speedup": 1.0,
    "batched_throughput_speedup": 1.0,
    "expected_cost": 1.0,
}
STATIC_TRIAL_ID = "static"


def metric(name: str) -> Metric:
    """The catalogue entry of ``name``.

    Raises:
        KeyError: an unknown metric, with the valid names.
    """
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; valid: {', '.join(NUMERIC_METRICS)}") from None


def static_value_error(name: str) -> str | None:
    """Why ``name`` may not be an objective because the static network has no value of it; None if it
    has one. The static network is always a contender: a front ranked without it could recommend a
    configuration it dominates, and verify could not check its picks against it."""
    if name in STATIC_VALUES:
        return None
    known = ", ".join(n for n in STATIC_VALUES if METRICS[n].selectable)
    return (
        f"the static network has no value of {name!r}, so it could not be ranked as the contender it "
        f"always is; objectives it has a value of: {known}"
    )


def selection_error(name: str) -> str | None:
    """Why ``name`` may not choose (objective/constraint/pick), naming the metric to use; None if it may."""
    entry = METRICS.get(name)
    if entry is None or entry.selectable:
        return None
    partner = SELECTION_PARTNER.get(name)
    use = f"; use {partner!r} (computed on the selection part of validation)" if partner else ""
    what = {
        "test": "is computed on the test split",
        "bound": "is a bound (an oracle that reads the labels)",
    }.get(entry.computed_on, "describes the run, not the candidate")
    rule = "choose on validation, report on test"
    return f"{name!r} {what} and may only be reported, never used to choose ({rule}){use}"
