"""The latency table of a search, measured serialised and once per distinct module.

Trials running side by side share CPUs (and GPUs), so a latency a trial measures of itself is biased
by whatever its neighbours do at that moment, differently for every trial. The search therefore keeps
one table per experiment in a small actor: a module (a backbone stage between two exit points, a branch
of a given spec at a given point, the static backbone) is measured once on the target device, under a
lease that only one trial holds at a time, and every later candidate containing it reuses that number.
Candidates are compared on the same numbers, and the final picks are re-measured end to end with
nothing else running (``_verify``).

The lease alone does not make a measurement quiet: on a 2-core machine running two trials, the other
trial's work took the CPU while the table was measured, and the default job's tables came out up to
45 % slower than the same modules re-measured after the search (1.00-1.45x over three picks). So every
timing of a trial is taken under the lease (the module table here; the decision costs, end-to-end
comparison, throughput and energy in ``evaluation.measure_candidate``), and while a trial holds it the
other trials pause at their next *pause point* (after a training step: :class:`PausePoint`); the holder
waits ``QUIET_GRACE_S`` before it starts timing. What does not pause: a neighbour's exit-table passes and
RL policy fitting (minutes of work without a step boundary we own) and any process outside the search;
verify's re-measurement says when the search-time table was measured under another load.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ddecs_search.models import MultiExitNet
    from ddecs_search.profiling import ExitCosts

STATIC_SUFFIX = "|static"  # the static backbone's cache key ends so (module_keys)
LEASE_SECONDS = 30.0  # a trial that dies holding the lease blocks others at most this long
RENEW_EVERY_S = LEASE_SECONDS / 4  # the holder renews the lease this often while it measures
PAUSE_CHECK_S = 0.25  # how often a training trial asks the broker whether a measurement is running
QUIET_GRACE_S = 0.5  # what the lease holder waits for its neighbours to reach their pause point


class LatencyBroker:
    """Actor body: the per-module latency cache and the measurement lease (async, one per experiment)."""

    def __init__(self, table: dict[str, float] | None = None, location: str | None = None) -> None:
        self._table: dict[str, float] = dict(table or {})
        self._holder: str | None = None
        self._expires = 0.0
        self._location = location  # the experiment's latency_table.json: rewritten as modules are measured

    async def lookup(self, keys: list[str]) -> dict[str, float]:
        return {k: self._table[k] for k in keys if k in self._table}

    async def acquire(self, token: str, lease_s: float = LEASE_SECONDS) -> None:
        while self._holder is not None and time.monotonic() < self._expires:
            await asyncio.sleep(0.05)
        self._holder, self._expires = token, time.monotonic() + lease_s

    async def renew(self, token: str, lease_s: float = LEASE_SECONDS) -> None:
        """Extend the holder's lease. A measurement can outlast a short lease; a holder that died (its
        node lost, its process killed) stops renewing, so the others wait ``lease_s`` at most, not the
        whole search (seen: a worker node killed while its trial measured; the surviving trial waited at
        its pause point for the old 600 s lease)."""
        if self._holder == token:
            self._expires = time.monotonic() + lease_s

    async def wait_quiet(self, timeout_s: float = LEASE_SECONDS) -> float:
        """Return once no measurement lease is held (or after ``timeout_s``); the seconds waited."""
        start = time.monotonic()
        while self._holder is not None and time.monotonic() < min(self._expires, start + timeout_s):
            await asyncio.sleep(0.02)
        return time.monotonic() - start

    async def release(self, token: str, values: dict[str, float]) -> None:
        added = False
        for key, value in values.items():
            if key not in self._table:  # the first measurement of a module wins
                self._table[key] = float(value)
                added = True
        if added and self._location:  # persisted before the lease passes on: a killed driver loses nothing
            from ddecs_search import storage as _io

            _io.write_text(self._location, json.dumps(self._table, indent=1, sort_keys=True))
        if self._holder == token:
            self._holder = None

    async def snapshot(self) -> dict[str, float]:
        return dict(self._table)


def start_broker(name: str, table: dict[str, float] | None = None, location: str | None = None) -> Any:
    """Start the experiment's broker actor (no CPU reserved: it only serves a dictionary).

    It is pinned to the driver's node: with no resources of its own Ray could place it on any worker,
    and losing that worker would end every later measurement (and the search) with ActorDiedError.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, max_concurrency=64)(LatencyBroker)
    return actor.options(name=name, scheduling_strategy=here).remote(table, location)


def module_keys(model: MultiExitNet, backbone: str, device_label: str) -> list[str]:
    """Cache keys of every stage, every branch and the static backbone, in ``latency_costs`` order.

    A stage is identified by the backbone and the segment range it runs (the last one includes the
    head); a branch by its exit point and spec. Weights do not matter for latency, shapes do.
    """
    from ddecs_search.config import to_dict

    base = f"{device_label}|{backbone}/{model.backbone.num_classes}"
    ends = [p + 1 for p in model.exit_points] + [len(model.backbone.segments)]
    starts = [0, *ends[:-1]]
    keys = [f"{base}|stage|{a}-{b}" for a, b in zip(starts, ends, strict=False)]
    keys[-1] += "+head"
    for point, spec in zip(model.exit_points, model.branch_specs, strict=False):
        keys.append(f"{base}|branch|{point}|{json.dumps(to_dict(spec), sort_keys=True)}")
    keys.append(f"{base}{STATIC_SUFFIX}")
    return keys


class PausePoint:
    """``on_batch`` callback of a trial's training: wait while a neighbour measures latency.

    The broker is asked at most every ``every_s`` seconds (one actor round trip, about a millisecond),
    so training pays well under 1 % for it; a neighbour's measurement starts after ``QUIET_GRACE_S``,
    longer than one check interval plus a training step of the search's backbones on a CPU.
    """

    def __init__(self, broker: Any, every_s: float = PAUSE_CHECK_S) -> None:
        self._broker = broker
        self._every_s = every_s
        self._next = 0.0
        self.paused_s = 0.0  # total time this trial waited for measurements (reported per trial)

    def __call__(self, *_: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        import ray

        self.paused_s += float(ray.get(self._broker.wait_quiet.remote()))
        self._next = time.monotonic() + self._every_s


@contextlib.contextmanager
def _held_lease(broker: Any) -> Iterator[dict[str, float]]:
    """Hold the broker's measurement lease: taken, renewed while held (a holder that dies stops renewing,
    so its lease lapses within ``LEASE_SECONDS``), the neighbours given ``QUIET_GRACE_S`` to reach their
    pause point. Yields the dict of module measurements handed to the broker when the lease is released."""
    import threading

    import ray

    token = uuid.uuid4().hex
    ray.get(broker.acquire.remote(token))
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(RENEW_EVERY_S):
            ray.get(broker.renew.remote(token))

    threading.Thread(target=renew, name="ddecs-lease-renewal", daemon=True).start()
    measured: dict[str, float] = {}
    try:
        time.sleep(QUIET_GRACE_S)
        yield measured
    finally:
        stop.set()
        ray.get(broker.release.remote(token, measured))


def measurement_lease(broker: Any) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A context-manager factory holding the broker's measurement lease (the one latency measurements take).

    Used for energy: while it is held no other trial of the search measures latency or energy.
    """
    return functools.partial(_held_lease, broker)


def _load_scale(static_ref: float | None, static_now: float) -> float:
    """Factor that brings a measurement to the conditions of the table's reference one.

    Every table measurement times the static network in the same interleaved rounds as the candidate's
    modules; what a neighbour's load (or a clock change, or the trial process itself) adds to those
    rounds shows in the static network's time. Scaling the new modules by ``static_ref / static_now``
    keeps every module of the table in one set of conditions (those of the reference measurement,
    :func:`reference_table`, which records ``static_ref``), the side-by-side ratio rule applied to the
    table. Without a reference (an experiment whose baseline predates it: then the first trial's
    measurement is the reference) or a usable time: 1.
    """
    if static_ref is None or not np.isfinite(static_now) or static_now <= 0 or static_ref <= 0:
        return 1.0
    return float(static_ref) / float(static_now)


REFERENCE_ROUNDS = 3  # rounds of the reference table; the median per module (verify takes 3 as well)


def reference_timer(space: Any, num_classes: int, device: torch.device) -> Callable[[int], dict[str, float]]:
    """``time(rounds)`` -> the table's reference: the default candidate's modules and the static network,
    timed by the baseline task before any trial runs (before it trains, after each epoch, after training).
    The model and its runtime backend (for ONNX Runtime, an export) are built once, here.

    Why: the default job's first table measurement, taken in a trial's process after its training, timed
    the static network at 0.217 ms where verify's fresh process, after the search, timed 0.164 ms; every
    later module was scaled to that first measurement (:func:`_load_scale`), so the whole table came out
    1.32-1.46x verify's end-to-end times. Timed here, on the idle machine before the search starts, the
    reference is taken in the conditions verify measures in, and trials scale their modules to it.
    Weights do not matter for timing (shapes do): the backbone is untrained. Each call returns the median
    of ``rounds`` rounds per module.
    """
    import torch

    from ddecs_search.evaluation import measurement_threads
    from ddecs_search.models import MultiExitNet, create_backbone
    from ddecs_search.runtime import inference_backend, resolve_runtime, runtime_label
    from ddecs_search.spaces import candidate_from_dict

    m = space.measurement
    candidate = candidate_from_dict(space, {}, "default_candidate")
    with torch.random.fork_rng(devices=[]):  # initialising weights must not move the caller's RNG
        backbone = create_backbone(space.backbone.name, num_classes=num_classes)
        model = MultiExitNet(backbone, candidate.exit_points, candidate.branches).to(device).eval()
    with measurement_threads(space, device):
        backend = inference_backend(m, model, None, device)
    label = runtime_label(resolve_runtime(m.runtime, device), device, m.threads)
    keys = module_keys(model, space.backbone.name, label)

    def time_rounds(rounds: int = REFERENCE_ROUNDS) -> dict[str, float]:
        with measurement_threads(space, device):
            timed = [backend.latency_costs(warmup=m.warmup, repeats=m.repeats) for _ in range(rounds)]
        rows = np.array([[*c.stage, *c.branch, c.static] for c in timed], dtype=np.float64)
        return {k: float(v) for k, v in zip(keys, np.median(rows, axis=0), strict=True)}

    return time_rounds


def reference_table(
    space: Any, num_classes: int, device: torch.device, rounds: int = REFERENCE_ROUNDS
) -> dict[str, float]:
    """One reference, timed now (:func:`reference_timer` for several in one process)."""
    return reference_timer(space, num_classes, device)(rounds)


def reference_static_ms(table: dict[str, float]) -> float:
    """The static network's time in a reference (or a table of one runtime)."""
    return min(v for k, v in table.items() if k.endswith(STATIC_SUFFIX))


def quieter_reference(*references: dict[str, float]) -> dict[str, float]:
    """The reference whose static network timed fastest (the quieter machine state), of several taken
    apart in time.

    One reference is not enough on a shared VM: in one default job the baseline task timed the static
    network at 0.200 ms before training (every module 10-50 % slower than usual) while every in-trial and
    verify timing of it was 0.163-0.170 ms; in another, 0.238 before and 0.186 after training. Slow
    spells on this machine last seconds to minutes and only ever add time, so the baseline task times the
    reference before training, after each epoch and after training, and the fastest is kept.
    """
    usable = [r for r in references if r]
    return min(usable, key=reference_static_ms) if usable else {}


def seeded_table(table: dict[str, float], reference: dict[str, float] | None) -> dict[str, float]:
    """The broker's starting table: ``table`` (a resumed search's) plus the reference measurement.

    The reference enters only where the table has no static network of its runtime yet: a table that
    has one was scaled to it already, and mixing two references would put its modules in two sets of
    conditions.
    """
    if not reference:
        return dict(table)
    statics = [k for k in reference if k.endswith(STATIC_SUFFIX)]
    if any(k in table for k in statics):
        return dict(table)
    return {**reference, **table}


SLOW_STATE = 1.10  # a measurement whose static network is this much slower than the reference's is retried
RETRY_WAIT_S = 2.0
RETRY_ATTEMPTS = 3  # further attempts, at most (the fastest of all is kept)


def usable_time(value: Any) -> float | None:
    """``value`` as a positive finite time in ms, else None (a missing or failed measurement)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def slow_spell(static_now: float, static_ref: Any) -> bool:
    """Whether the static network timed now runs more than ``SLOW_STATE`` times slower than in the
    table's reference (False without a usable reference): the one rule the search and verify share."""
    ref = usable_time(static_ref)
    return ref is not None and static_now > SLOW_STATE * ref


def _calmest(measure: Any, static_ref: float | None, wait_s: float = RETRY_WAIT_S) -> ExitCosts:
    """``measure()`` once, or again up to ``RETRY_ATTEMPTS`` times while its static network runs more
    than ``SLOW_STATE`` times slower than the reference: the attempt with the fastest static network.

    Scaling (:func:`_load_scale`) corrects a slow state only in part: in the slow reference above, small
    modules were slowed more than the static network (a branch 0.154 vs 0.193 of it). Waiting out the
    state is better where it passes within seconds; where it does not, the scaling is what remains.
    """
    costs = measure()
    for _ in range(RETRY_ATTEMPTS):
        if not slow_spell(costs.static, static_ref):
            break
        time.sleep(wait_s)
        again = measure()
        if again.static < costs.static:
            costs = again
    return costs


def isolated_latency_fn(
    broker: Any, backbone: str, *, warmup: int, repeats: int, runtime: str = "auto", threads: int = 1
) -> Any:
    """A ``latency_fn(model, device) -> ExitCosts`` for ``evaluate_candidate`` backed by the broker.

    Modules are measured in ``runtime`` (``measurement.runtime``) with ``threads`` threads, and the cache
    keys name runtime, version, device and threads: a table never mixes runtimes. Each measurement is
    scaled to the conditions of the table's reference (:func:`reference_table`, :func:`_load_scale`).
    """

    def latency_fn(model: MultiExitNet, device: torch.device) -> ExitCosts:
        import ray

        from ddecs_search.config import MeasurementConfig
        from ddecs_search.profiling import ExitCosts
        from ddecs_search.runtime import inference_backend, resolve_runtime, runtime_label

        label = runtime_label(resolve_runtime(runtime, device), device, threads)
        keys = module_keys(model, backbone, label)
        table = ray.get(broker.lookup.remote(keys))
        if len(table) < len(keys):
            with _held_lease(broker) as measured:
                table = ray.get(broker.lookup.remote(keys))  # a neighbour may have measured them meanwhile
                if len(table) < len(keys):
                    measurement = MeasurementConfig(runtime=runtime, threads=threads)  # type: ignore[arg-type]
                    backend = inference_backend(measurement, model, None, device)
                    costs = _calmest(
                        lambda: backend.latency_costs(warmup=warmup, repeats=repeats), table.get(keys[-1])
                    )
                    values = [*costs.stage, *costs.branch, costs.static]
                    scale = _load_scale(table.get(keys[-1]), costs.static)
                    measured.update(
                        {k: float(v) * scale for k, v in zip(keys, values, strict=False) if k not in table}
                    )
            table = ray.get(broker.lookup.remote(keys))
        values = np.array([table[k] for k in keys], dtype=np.float64)
        e = model.num_exits
        return ExitCosts(
            stage=values[:e],
            branch=values[e:-1],
            static=float(values[-1]),
            unit="ms",
            source=f"isolated_table:{label} (load-normalised by the static network timed alongside)",
        )

    return latency_fn
