"""Latency on the target device: a per-module lookup table and end-to-end timing of real inference.

Rules every function here follows, because early-exit speed-ups are small effects easily faked by
measurement artefacts:

- eval mode, ``torch.inference_mode()``, inputs already on the device (transfers are not timed);
- warm-up calls before any timing (lazy init, cuDNN autotuning, allocator growth, CPU frequency);
- everything that is compared is measured in the same run, interleaved (round-robin / alternating
  rounds), so slow drift (thermals, other tenants) affects all contenders alike.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ddecs_search.profiling._costs import ExitCosts
from ddecs_search.profiling._device import check_on_device, device_name, eval_mode, synchronize

if TYPE_CHECKING:
    from ddecs_search.models import MultiExitNet, OnlineExitPolicy

Timer = Callable[[Callable[[torch.Tensor], Any], torch.Tensor], float]


@dataclass(frozen=True)
class LatencyStats:
    """Per-sample latencies of one contender and their summary, in milliseconds."""

    mean_ms: float
    median_ms: float
    p95_ms: float
    n: int
    per_sample_ms: np.ndarray  # (n,)

    @classmethod
    def from_ms(cls, per_sample_ms: np.ndarray | Sequence[float]) -> LatencyStats:
        """Summarise an array of per-sample latencies (ms)."""
        ms = np.asarray(per_sample_ms, dtype=np.float64)
        if ms.ndim != 1 or ms.size == 0:
            raise ValueError(f"need a non-empty 1-D array of latencies, got shape {ms.shape}")
        return cls(float(ms.mean()), float(np.median(ms)), float(np.percentile(ms, 95)), int(ms.size), ms)

    def to_dict(self) -> dict[str, float | int]:
        """The summary numbers (no per-sample array), for metrics and JSON."""
        return {"mean_ms": self.mean_ms, "median_ms": self.median_ms, "p95_ms": self.p95_ms, "n": self.n}


# ---------------------------------------------------------------------------------------------- timers
def _time_host(device: torch.device) -> Timer:
    """Host wall clock around ``fn(x)`` with synchronisation on both sides: what a caller waits for."""

    def timer(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> float:
        synchronize(device)
        start = time.perf_counter_ns()
        fn(x)
        synchronize(device)
        return (time.perf_counter_ns() - start) / 1e6

    return timer


def _time_cuda_events(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> float:
    """GPU-timeline time of one isolated call (the previous call has finished: we wait on its end event).

    The end event is recorded after the host has launched every kernel, so kernel-launch overhead that
    starves the GPU at batch 1 is included; the host-side cost of the final synchronisation is not, as
    a real pipeline pays it once per sample, not once per module.
    """
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn(x)
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end))


def _module_timer(device: torch.device) -> Timer:
    return _time_cuda_events if device.type == "cuda" else _time_host(device)


def _on(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Make ``device`` current, so CUDA events and kernels land on the measured GPU's stream."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        minimum = 0 if name == "warmup" else 1
        if value < minimum:
            raise ValueError(f"`{name}` must be >= {minimum}, got {value}")


# -------------------------------------------------------------------------------------- lookup table
def latency_costs(
    model: MultiExitNet,
    device: torch.device,
    *,
    warmup: int = 10,
    repeats: int = 30,
    sample: torch.Tensor | None = None,
) -> ExitCosts:
    """Median batch-1 latency of every stage, every branch and the static backbone, measured in isolation.

    Each module is timed on its real input (stage ``k`` on stage ``k - 1``'s output), and repetitions
    are interleaved round-robin across modules (with a rotating start) so drift hits them equally.

    Args:
        model: the network, already on ``device`` (it is not moved; its train/eval mode is restored).
        device: the target device.
        warmup: untimed rounds over all modules before timing.
        repeats: timed rounds; each entry is the median over them.
        sample: one input ``(C, H, W)`` or ``(1, C, H, W)``, e.g. a test image; default a fixed-seed
            standard-normal tensor (inputs are normalised, so this matches their scale).

    Returns:
        ``ExitCosts`` in ``"ms"`` with source ``"measured:<device name>"``.
    """
    _check_counts(warmup=warmup, repeats=repeats)
    check_on_device(model, device)
    x = _single_input(model, device, sample)
    with eval_mode(model), torch.inference_mode(), _on(device):
        return module_table(
            model.run_stage,
            model.exit_logits,
            model.backbone,
            x,
            model.num_exits,
            _module_timer(device),
            warmup=warmup,
            repeats=repeats,
            source=f"measured:{device_name(device)}",
        )


def module_table(
    run_stage: Callable[[int, Any], Any],
    run_branch: Callable[[int, Any], Any],
    static: Callable[[Any], Any],
    x: Any,
    num_exits: int,
    timer: Timer,
    *,
    warmup: int,
    repeats: int,
    source: str,
) -> ExitCosts:
    """The per-module latency table of any runtime: each stage, branch and the static network timed on
    its real input (stage ``k`` on stage ``k - 1``'s output), interleaved round-robin; medians in ms."""
    last = num_exits - 1
    jobs = _module_jobs(run_stage, run_branch, x, num_exits)
    jobs.append((static, x))
    medians = np.median(_round_robin(jobs, timer, warmup, repeats), axis=1)  # (modules,)
    return ExitCosts(
        stage=medians[[2 * k for k in range(num_exits)]],  # jobs alternate stage, branch, ..., last stage
        branch=medians[[2 * k + 1 for k in range(last)]],
        static=float(medians[-1]),
        unit="ms",
        source=source,
    )


def _module_jobs(
    run_stage: Callable[[int, Any], Any], run_branch: Callable[[int, Any], Any], x: Any, num_exits: int
) -> list[tuple[Callable[[Any], Any], Any]]:
    """Stage and branch jobs on their real inputs, in network order: stage 0, branch 0, ..., last stage."""
    jobs: list[tuple[Callable[[Any], Any], Any]] = []
    h = x
    for k in range(num_exits):
        jobs.append((lambda t, k=k: run_stage(k, t), h))
        h = run_stage(k, h)
        if k < num_exits - 1:
            jobs.append((lambda t, k=k: run_branch(k, t), h))
    return jobs


def forced_path_table(
    run_stage: Callable[[int, Any], Any],
    run_branch: Callable[[int, Any], Any],
    static: Callable[[Any], Any],
    forced_path: Callable[[int, Any], Any],
    x: Any,
    num_exits: int,
    timer: Timer,
    *,
    warmup: int,
    repeats: int,
    source: str,
) -> tuple[ExitCosts, dict[str, Any]]:
    """The latency table of what early-exit inference really runs, in any runtime.

    A per-module table misses what the early-exit loop costs around the modules (Python and framework
    overhead per call, the exit test, building the output); in eager PyTorch at batch 1 that is a large
    share of a small network's time. So the end-to-end early-exit call is timed forced out at every exit
    (``forced_path(k, x)``: every sample leaves at exit ``k``), interleaved round-robin with every stage,
    branch and the static network on their real inputs, each timed call right after an untimed one of
    the same job (:func:`_primed`: warm, as in real inference). The table's ``path()`` equals those
    forced-path medians (:func:`split_paths`); the per-module split follows the modules' own medians.

    Returns:
        the table, and the raw medians ``{"stage": (E,), "branch": (E-1,), "static": float, "paths": (E,)}``.
    """
    e = num_exits
    jobs = _module_jobs(run_stage, run_branch, x, e)
    jobs.append((static, x))
    jobs += [(lambda t, k=k: forced_path(k, t), x) for k in range(e)]
    med = np.median(_round_robin(jobs, _primed(timer), warmup, repeats), axis=1)
    raw = {
        "stage": med[0 : 2 * e - 1 : 2],
        "branch": med[1 : 2 * e - 2 : 2],
        "static": float(med[2 * e - 1]),
        "paths": med[2 * e :],
    }
    stage, branch = split_paths(raw["paths"], raw["stage"], raw["branch"])
    return ExitCosts(stage=stage, branch=branch, static=raw["static"], unit="ms", source=source), raw


def _primed(timer: Timer) -> Timer:
    """``timer`` that first runs the call once untimed, so the timed call finds its weights in cache.

    Real batch-1 inference runs the same early-exit call sample after sample; the round robin runs a
    different job before every call, which evicts a small graph's weights. On the default candidate
    (ONNX Runtime, exit-1 path ≈ 0.04 ms; 4 alternating repetitions, 2026-12-02) the exit-1 path came
    out 0.052-0.070 ms cold and 0.044-0.067 ms primed, and the table over its real early exit 1.05-1.23
    cold against 1.01-1.10 primed (one outlier 1.29). Only this table is primed: a module-by-module
    runner itself calls a different graph each time (``module_table`` times it so).
    """

    def timed(fn: Callable[[Any], Any], inp: Any) -> float:
        fn(inp)
        return timer(fn, inp)

    return timed


def split_paths(paths: np.ndarray, stage: np.ndarray, branch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-module costs whose cumulative path is ``paths`` (``(E,)`` ms, forced exits of one runner).

    Chunk ``k`` = ``paths[k] - paths[k-1]`` (floored at 1 % of its modules' own medians, so timing noise
    never makes a cost negative), shared between stage ``k`` and branch ``k`` in proportion to their own
    medians ``stage`` ``(E,)`` and ``branch`` ``(E-1,)``; the last chunk is the last stage's.
    """
    paths = np.asarray(paths, dtype=np.float64)
    stage, branch = np.asarray(stage, dtype=np.float64), np.asarray(branch, dtype=np.float64)
    own = stage + np.append(branch, 0.0)
    chunk = np.maximum(np.diff(paths, prepend=0.0), 0.01 * own)
    share = stage / own
    new_stage = chunk * share
    return new_stage, chunk[:-1] - new_stage[:-1]


class ForcedExit:
    """An exit policy that sends every sample out at exit ``k`` (the forced paths of the latency table).

    Its decision is a ready tensor, so the forced path costs what the loop costs around the modules and
    nothing for deciding; the fitted policy's own decision time is added per exit by ``decision_costs``.
    """

    def __init__(self, k: int, device: torch.device) -> None:
        self.k = k
        self._yes = torch.ones(1, dtype=torch.bool, device=device)
        self._no = torch.zeros(1, dtype=torch.bool, device=device)

    def exit_mask_from_logits(
        self, exit_index: int, logits: torch.Tensor, prev_pred: torch.Tensor | None
    ) -> torch.Tensor:
        return (self._yes if exit_index == self.k else self._no).expand(logits.shape[0])


def early_exit_table(
    model: MultiExitNet,
    device: torch.device,
    *,
    warmup: int = 10,
    repeats: int = 30,
    sample: torch.Tensor | None = None,
    source: str | None = None,
) -> ExitCosts:
    """The eager-PyTorch latency table of ``model.early_exit`` at batch 1 (see :func:`forced_path_table`).

    Unlike :func:`latency_costs` (modules in isolation), its ``path()`` includes the early-exit loop's
    own per-exit overhead, so a table estimate matches end-to-end timing of real early exit. Timed on the
    host (what a caller waits for), device synchronised on both sides of every call.
    """
    _check_counts(warmup=warmup, repeats=repeats)
    check_on_device(model, device)
    x = _single_input(model, device, sample)
    forced = [ForcedExit(k, device) for k in range(model.num_exits)]
    with eval_mode(model), torch.inference_mode(), _on(device):
        table, _ = forced_path_table(
            model.run_stage,
            model.exit_logits,
            model.backbone,
            lambda k, t: model.early_exit(t, forced[k]),
            x,
            model.num_exits,
            _time_host(device),
            warmup=warmup,
            repeats=repeats,
            source=source or f"measured:{device_name(device)}, forced exits",
        )
    return table


def _single_input(model: MultiExitNet, device: torch.device, sample: torch.Tensor | None) -> torch.Tensor:
    shape = tuple(model.backbone.input_shape)
    dtype = next(model.parameters()).dtype
    if sample is None:
        gen = torch.Generator().manual_seed(0)
        return torch.randn(1, *shape, generator=gen).to(device=device, dtype=dtype)  # (1, C, H, W)
    x = sample if sample.dim() == len(shape) + 1 else sample.unsqueeze(0)
    if tuple(x.shape) != (1, *shape):
        raise ValueError(f"`sample` must have shape {shape} or {(1, *shape)}, got {tuple(sample.shape)}")
    return x.to(device=device, dtype=dtype)


def _round_robin(
    jobs: Sequence[tuple[Callable[[torch.Tensor], Any], torch.Tensor]],
    timer: Timer,
    warmup: int,
    repeats: int,
) -> np.ndarray:
    """``(len(jobs), repeats)`` ms: one call of every job per round, the start rotating every round."""
    n = len(jobs)
    times = np.empty((n, repeats), dtype=np.float64)
    for r in range(warmup + repeats):
        for j in (*range(r % n, n), *range(r % n)):
            fn, inp = jobs[j]
            ms = timer(fn, inp)
            if r >= warmup:
                times[j, r - warmup] = ms
    return times


# --------------------------------------------------------------------------------- end-to-end timing
def _time_pass(fn: Callable[[torch.Tensor], Any], xs: torch.Tensor, device: torch.device) -> np.ndarray:
    """``(N,)`` ms: ``fn`` on every sample at batch 1, each call synchronised and timed on the host."""
    timer = _time_host(device)
    return np.array([timer(fn, xs[i : i + 1]) for i in range(xs.shape[0])], dtype=np.float64)


def _warm_up(fns: Sequence[Callable[[torch.Tensor], Any]], xs: torch.Tensor, warmup: int) -> None:
    for i in range(warmup):
        x = xs[i % xs.shape[0] : i % xs.shape[0] + 1]
        for fn in fns:
            fn(x)


def _prepare_samples(samples: torch.Tensor, device: torch.device) -> torch.Tensor:
    if samples.dim() < 2 or samples.shape[0] == 0:
        raise ValueError(f"`samples` must be a non-empty batch (N, ...), got shape {tuple(samples.shape)}")
    return samples.to(device)


def time_per_sample(
    fn: Callable[[torch.Tensor], Any],
    samples: torch.Tensor,
    device: torch.device,
    *,
    warmup: int = 10,
) -> LatencyStats:
    """End-to-end batch-1 latency of ``fn(samples[i:i+1])`` for every sample.

    The timed region is everything a caller waits for: the call, any decision logic inside it and the
    device synchronisation at the end. ``samples`` is moved to ``device`` once, before timing. ``fn``
    runs under ``torch.inference_mode()``; putting a module in eval mode is the caller's job.
    """
    _check_counts(warmup=warmup)
    xs = _prepare_samples(samples, device)
    with torch.inference_mode(), _on(device):
        _warm_up([fn], xs, warmup)
        return LatencyStats.from_ms(_time_pass(fn, xs, device))


def time_interleaved(
    contenders: Sequence[tuple[str, Callable[[torch.Tensor], Any]]],
    xs: torch.Tensor,
    device: torch.device,
    *,
    warmup: int,
    rounds: int,
) -> dict[str, LatencyStats]:
    """Batch-1 latency of each contender on the same samples ``xs`` (already on ``device``), side by side.

    Every contender gets the same warm-up; rounds alternate the order (A B, B A, ...) to cancel order and
    drift effects, and a sample's latency is its median over the rounds. The caller sets the context (eval
    mode, inference mode, device) so that a torch module and an ONNX Runtime session are timed alike.
    """
    _warm_up([fn for _, fn in contenders], xs, warmup)
    runs: dict[str, list[np.ndarray]] = {name: [] for name, _ in contenders}
    for r in range(rounds):
        for name, fn in contenders if r % 2 == 0 else contenders[::-1]:
            runs[name].append(_time_pass(fn, xs, device))
    return {name: LatencyStats.from_ms(np.median(np.stack(times), axis=0)) for name, times in runs.items()}


def compare_static_vs_early_exit(
    model: MultiExitNet,
    policy: OnlineExitPolicy,
    samples: torch.Tensor,
    device: torch.device,
    *,
    warmup: int = 10,
    rounds: int = 3,
) -> dict[str, Any]:
    """Batch-1 latency of ``model.backbone(x)`` vs ``model.early_exit(x, policy)``, in the same run.

    Both contenders get the same warm-up and the same timing method on the same samples; rounds
    alternate which goes first (S E, E S, S E, ...) to cancel order and drift effects. A sample's latency
    is its median over the rounds, so the tail (``p95_ms``) reflects samples that go deep, not OS jitter.

    Returns:
        ``{"static": LatencyStats, "early_exit": LatencyStats, "speedup": static mean / early-exit mean,
        "predictions": (N,) int64, "exit_indices": (N,) int64, "rounds": int, "device": str}``;
        predictions and exits come from one extra, untimed batch-1 pass.
    """
    _check_counts(warmup=warmup, rounds=rounds)
    check_on_device(model, device)
    xs = _prepare_samples(samples, device)

    def early(x: torch.Tensor) -> Any:
        return model.early_exit(x, policy)

    with eval_mode(model), torch.inference_mode(), _on(device):
        stats = time_interleaved(
            [("static", model.backbone), ("early_exit", early)], xs, device, warmup=warmup, rounds=rounds
        )
        outs = [model.early_exit(xs[i : i + 1], policy) for i in range(xs.shape[0])]
    static, early_stats = stats["static"], stats["early_exit"]
    return {
        "static": static,
        "early_exit": early_stats,
        "speedup": static.mean_ms / early_stats.mean_ms,
        "predictions": torch.cat([o.predictions for o in outs]).cpu().numpy(),
        "exit_indices": torch.cat([o.exit_indices for o in outs]).cpu().numpy(),
        "rounds": rounds,
        "device": device_name(device),
    }


def batched_throughput(
    model: MultiExitNet,
    policy: OnlineExitPolicy,
    samples: torch.Tensor,
    device: torch.device,
    *,
    batch_size: int = 256,
    warmup: int = 2,
    rounds: int = 3,
) -> dict[str, Any]:
    """Samples per second of the static backbone vs early-exit inference over the same batches.

    The early-exit batch shrinks as samples leave, so later stages run on small, less efficient batches
    and every exit pays a host synchronisation; that is the honest cost of early exit when batching.
    Each round times one full pass per contender (synchronised at both ends), order alternating.

    Returns:
        ``{"static_samples_per_s", "early_exit_samples_per_s"`` (medians over rounds),
        ``"throughput_speedup"`` (early / static), ``"batch_size", "num_samples", "rounds", "device"}``.
    """
    _check_counts(batch_size=batch_size, warmup=warmup, rounds=rounds)
    check_on_device(model, device)
    batches = list(_prepare_samples(samples, device).split(batch_size))
    n = samples.shape[0]

    def early(x: torch.Tensor) -> Any:
        return model.early_exit(x, policy)

    contenders = [("static", model.backbone), ("early_exit", early)]
    rates: dict[str, list[float]] = {"static": [], "early_exit": []}
    with eval_mode(model), torch.inference_mode(), _on(device):
        for i in range(warmup):
            for _, fn in contenders:
                fn(batches[i % len(batches)])
        for r in range(rounds):
            for name, fn in contenders if r % 2 == 0 else contenders[::-1]:
                synchronize(device)
                start = time.perf_counter_ns()
                for batch in batches:
                    fn(batch)
                synchronize(device)
                rates[name].append(n / ((time.perf_counter_ns() - start) / 1e9))
    static_rate = float(np.median(rates["static"]))
    early_rate = float(np.median(rates["early_exit"]))
    return {
        "static_samples_per_s": static_rate,
        "early_exit_samples_per_s": early_rate,
        "throughput_speedup": early_rate / static_rate,
        "batch_size": batch_size,
        "num_samples": n,
        "rounds": rounds,
        "device": device_name(device),
    }


# Timing building blocks, public so that every runtime (ddecs_search.runtime) is timed the same way.
check_counts = _check_counts
host_timer = _time_host
round_robin = _round_robin
single_input = _single_input
time_pass = _time_pass
warm_up = _warm_up
