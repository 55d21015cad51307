"""Where measured inference runs: eager PyTorch or ONNX Runtime, behind one small interface.

``measurement.runtime`` picks it (``auto``: ONNX Runtime on a CPU, PyTorch on CUDA until a GPU runtime is
added). :func:`inference_backend` returns an :class:`InferenceBackend` whose methods time the static network
and early-exit inference the same way whatever the runtime (same samples, warm-up, interleaving and
statistics as :mod:`ddecs_search.profiling`), so a trial's latency table, end-to-end batch-1 timing,
batched throughput and energy windows all come from the one runtime, in the same run.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ddecs_search.errors import ConfigError
from ddecs_search.profiling import (
    ExitCosts,
    check_counts,
    device_name,
    early_exit_table,
    forced_path_table,
    host_timer,
    module_table,
    single_input,
    time_interleaved,
)
from ddecs_search.runtime._ort import ExitDecision, OnnxEarlyExitRunner, ort_version

if TYPE_CHECKING:
    from ddecs_search.config import MeasurementConfig
    from ddecs_search.models import MultiExitNet
    from ddecs_search.policies import ExitPolicy

RUNTIMES = ("auto", "torch", "onnxruntime")

# Export once per trained model: the latency table (before the policy is fitted) and the measurement
# (after) use the same graphs. Keyed weakly by the model, checked against its parameters' in-place versions.
_GRAPHS: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], str, Any]] = weakref.WeakKeyDictionary()


def _exported(model: MultiExitNet, exporter: str) -> Any:
    from ddecs_search.runtime._export import export_onnx

    signature = tuple(t._version for t in model.state_dict().values())
    hit = _GRAPHS.get(model)
    if hit is not None and hit[0] == signature and hit[1] == exporter:
        return hit[2]
    graphs = export_onnx(model, exporter=exporter)
    _GRAPHS[model] = (signature, exporter, graphs)
    return graphs


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """``auto`` -> ``onnxruntime`` on a CPU, ``torch`` on CUDA (no GPU runtime yet); checks the pair."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"'measurement.runtime': must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        return "onnxruntime" if device.type == "cpu" else "torch"
    if runtime == "onnxruntime" and device.type != "cpu":
        raise ConfigError(
            f"'measurement.runtime': onnxruntime measures on the CPU only (no GPU execution provider is "
            f"set up yet), but the device is {device}; use runtime 'torch' or 'auto', or device 'cpu'"
        )
    return runtime


def runtime_label(runtime: str, device: torch.device, threads: int) -> str:
    """``"onnxruntime 1.32.0 if-graph cpu:<cpu model> 1 thread"``: runtime, version, device, threads."""
    version = ort_version() if runtime == "onnxruntime" else torch.__version__.split("+")[0]
    # The label keys the search's table cache, so it also names what the runner (and its table) is:
    # ONNX Runtime runs batch 1 as one If graph (session 2 of issue 17), eager torch runs the Python
    # early-exit loop, timed forced out at every exit (session 3); tables measured module by module
    # before those changes are never mixed with these.
    version += " if-graph" if runtime == "onnxruntime" else " eager"
    thread_txt = f" {threads} thread{'s' if threads != 1 else ''}" if device.type == "cpu" else ""
    return f"{runtime} {version} {device_name(device)}{thread_txt}"


class InferenceBackend:
    """Static and early-exit inference of one candidate in one runtime, with its timing methods.

    Attributes:
        runtime: ``"torch"`` or ``"onnxruntime"``.
        source: runtime, version, device and threads (for ``latency_source``).
        device: the torch device inputs come from.
    """

    runtime = ""

    def __init__(self, device: torch.device, threads: int) -> None:
        self.device = device
        self.threads = threads
        self.source = runtime_label(self.runtime, device, threads)
        # for profiling.latency_source, which adds torch's version itself
        self.runtime_name = "torch" if self.runtime == "torch" else f"{self.runtime} {ort_version()}"

    # -- what subclasses provide: callables on the backend's native inputs -----------------------------
    def native(self, x: torch.Tensor) -> Any:
        """A batch of inputs in the form the callables take (moved/converted once, before timing)."""
        raise NotImplementedError

    def static_fn(self) -> Callable[[Any], Any]:
        raise NotImplementedError

    def early_exit_fn(self) -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
        """``x -> (predictions, exit_indices)`` as numpy arrays."""
        raise NotImplementedError

    def latency_costs(self, *, warmup: int, repeats: int, sample: torch.Tensor | None = None) -> ExitCosts:
        """Median batch-1 ms of every stage, branch and the static network (decisions not included)."""
        raise NotImplementedError

    def decision_costs(self, sample: torch.Tensor, *, warmup: int = 10, repeats: int = 30) -> np.ndarray:
        """``(E-1,)`` median ms of the exit decision at each early exit (added to the table's branches)."""
        raise NotImplementedError

    def _context(self) -> Any:
        return torch.inference_mode()

    # -- shared measurement ------------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Early-exit inference of one batch: ``(predictions, exit_indices)``."""
        with self._context():
            return self.early_exit_fn()(self.native(x))

    def compare(self, samples: torch.Tensor, *, warmup: int = 10, rounds: int = 3) -> dict[str, Any]:
        """Batch-1 latency of static vs early exit, as ``profiling.compare_static_vs_early_exit`` does
        (same keys, same method: alternating rounds, per-sample median over rounds)."""
        check_counts(warmup=warmup, rounds=rounds)
        xs = self.native(samples)
        contenders = [("static", self.static_fn()), ("early_exit", self.early_exit_fn())]
        with self._context():
            stats = time_interleaved(contenders, xs, self.device, warmup=warmup, rounds=rounds)
            early = self.early_exit_fn()
            outs = [early(xs[i : i + 1]) for i in range(xs.shape[0])]
        static, early_stats = stats["static"], stats["early_exit"]
        return {
            "static": static,
            "early_exit": early_stats,
            "speedup": static.mean_ms / early_stats.mean_ms,
            "predictions": np.concatenate([np.asarray(p) for p, _ in outs]),
            "exit_indices": np.concatenate([np.asarray(e) for _, e in outs]),
            "rounds": rounds,
            "device": device_name(self.device),
            "source": self.source,
        }

    def throughput(
        self, samples: torch.Tensor, *, batch_size: int = 256, warmup: int = 2, rounds: int = 3
    ) -> dict[str, Any]:
        """Samples/s of static vs early exit over the same batches (keys of ``batched_throughput``)."""
        check_counts(batch_size=batch_size, warmup=warmup, rounds=rounds)
        xs = self.native(samples)
        batches = [xs[i : i + batch_size] for i in range(0, xs.shape[0], batch_size)]
        contenders = [("static", self.static_fn()), ("early_exit", self.early_exit_fn())]
        rates: dict[str, list[float]] = {"static": [], "early_exit": []}
        timer = host_timer(self.device)
        with self._context():
            for i in range(warmup):
                for _, fn in contenders:
                    fn(batches[i % len(batches)])
            for r in range(rounds):
                for name, fn in contenders if r % 2 == 0 else contenders[::-1]:
                    ms = timer(lambda _, fn=fn: [fn(b) for b in batches], None)
                    rates[name].append(xs.shape[0] / (ms / 1e3))
        static_rate, early_rate = float(np.median(rates["static"])), float(np.median(rates["early_exit"]))
        return {
            "static_samples_per_s": static_rate,
            "early_exit_samples_per_s": early_rate,
            "throughput_speedup": early_rate / static_rate,
            "batch_size": batch_size,
            "num_samples": int(xs.shape[0]),
            "rounds": rounds,
            "device": device_name(self.device),
            "source": self.source,
        }

    def energy_fns(self) -> tuple[Callable[[torch.Tensor], Any], Callable[[torch.Tensor], Any]]:
        """``(static, early_exit)`` on a batch-1 torch tensor on the device (for ``energy_per_sample``)."""
        static, early = self.static_fn(), self.early_exit_fn()
        return (lambda x: static(self.native(x))), (lambda x: early(self.native(x)))

    def close(self) -> None:
        """Release sessions (nothing to do for torch)."""


class TorchBackend(InferenceBackend):
    """Eager PyTorch on the measurement device (the model's ``backbone`` and ``early_exit``)."""

    runtime = "torch"

    def __init__(self, model: MultiExitNet, policy: ExitPolicy, device: torch.device, threads: int) -> None:
        self.model, self.policy = model, policy
        super().__init__(device, threads)

    def native(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device)

    def static_fn(self) -> Callable[[Any], Any]:
        return self.model.backbone

    def early_exit_fn(self) -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
        def run(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            out = self.model.early_exit(x, self.policy)
            return out.predictions.cpu().numpy(), out.exit_indices.cpu().numpy()

        return run

    def _context(self) -> Any:
        self.model.eval()  # measurement happens after training; the model stays in eval mode
        return torch.inference_mode()

    def decision_costs(self, sample: torch.Tensor, *, warmup: int = 10, repeats: int = 30) -> np.ndarray:
        from ddecs_search.profiling import decision_costs_in_loop

        x = sample.to(self.device)
        return decision_costs_in_loop(self.model, self.policy, x, self.device, warmup=warmup, repeats=repeats)

    def compare(self, samples: torch.Tensor, *, warmup: int = 10, rounds: int = 3) -> dict[str, Any]:
        from ddecs_search.profiling import compare_static_vs_early_exit

        out = compare_static_vs_early_exit(
            self.model, self.policy, samples, self.device, warmup=warmup, rounds=rounds
        )
        return {**out, "source": self.source}

    def throughput(
        self, samples: torch.Tensor, *, batch_size: int = 256, warmup: int = 2, rounds: int = 3
    ) -> dict[str, Any]:
        from ddecs_search.profiling import batched_throughput

        out = batched_throughput(
            self.model, self.policy, samples, self.device, batch_size=batch_size, warmup=warmup, rounds=rounds
        )
        return {**out, "source": self.source}

    def latency_costs(self, *, warmup: int, repeats: int, sample: torch.Tensor | None = None) -> ExitCosts:
        """The table of what eager batch-1 early exit runs: ``model.early_exit`` forced out at every exit
        (the loop's per-exit Python overhead included; a per-module table under-estimated eager early
        exit by 10-40 %), split per module by the modules' own medians. The fitted policy's decision
        is added per exit by :meth:`decision_costs`."""
        return early_exit_table(
            self.model,
            self.device,
            warmup=warmup,
            repeats=repeats,
            sample=sample,
            source=f"measured:{self.source}, forced exits",
        )


class OnnxRuntimeBackend(InferenceBackend):
    """ONNX Runtime on the CPU: the model exported per stage and branch, decisions in numpy."""

    runtime = "onnxruntime"

    def __init__(
        self,
        model: MultiExitNet,
        policy: ExitPolicy | ExitDecision | None,
        device: torch.device,
        threads: int,
        *,
        exporter: str = "auto",
    ) -> None:
        if device.type != "cpu":
            resolve_runtime("onnxruntime", device)  # raises the explanatory error
        super().__init__(device, threads)
        self.model = model
        self.graphs = _exported(model, exporter)
        if policy is None:
            decision = ExitDecision("static", {}, model.num_exits)
        elif isinstance(policy, ExitDecision):
            decision = policy
        else:
            decision = ExitDecision(policy.kind, policy.state_dict(), model.num_exits)
        # the batch-1 graph scores the decision's metric; max-prob for the table (policy not fitted yet)
        self.runner = OnnxEarlyExitRunner(
            self.graphs.as_mapping(decision.graph_metric or "max_prob"), decision, threads=threads
        )

    def native(self, x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())

    def static_fn(self) -> Callable[[Any], Any]:
        return self.runner.static

    def early_exit_fn(self) -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
        return self.runner.early_exit

    def _timings(self, x: np.ndarray, *, warmup: int, repeats: int) -> tuple[ExitCosts, dict[str, Any]]:
        """The forced-path table of the batch-1 graph and its raw medians (``forced_path_table``)."""
        r = self.runner
        return forced_path_table(
            r.run_stage,
            r.run_branch,
            r.static,
            lambda k, t: r.run_fused(t, forced_thresholds(r.num_exits, k)),
            x,
            r.num_exits,
            host_timer(self.device),
            warmup=warmup,
            repeats=repeats,
            source=f"measured:{self.source}, forced exits",
        )

    def latency_costs(self, *, warmup: int, repeats: int, sample: torch.Tensor | None = None) -> ExitCosts:
        """The latency table of what batch-1 early exit runs: the ``If`` graph (one ``session.run``).

        The graph is timed forced out at every exit (``paths``: thresholds ``-inf`` at exit ``k``, ``+inf``
        before it), interleaved round-robin with every stage and branch graph and the static graph. The
        table's ``path()`` equals those medians: stage ``k`` + branch ``k`` = ``paths[k] - paths[k-1]``
        (the first also carries the one call's overhead), split between stage and branch in proportion to
        their own graphs' medians (the per-module keys a search caches need a split; only the sums enter
        ``expected_latency_ms``). The comparison of the threshold decision is inside the graph, so
        :meth:`decision_costs` adds nothing for threshold policies.
        """
        check_counts(warmup=warmup, repeats=repeats)
        r = self.runner
        x = self.native(single_input(self.model, torch.device("cpu"), sample))
        if r.fused_session is None:  # no batch-1 graph: the module-by-module table
            return module_table(
                r.run_stage,
                r.run_branch,
                r.static,
                x,
                r.num_exits,
                host_timer(self.device),
                warmup=warmup,
                repeats=repeats,
                source=f"measured:{self.source}",
            )
        return self._timings(x, warmup=warmup, repeats=repeats)[0]

    def decision_costs(self, sample: torch.Tensor, *, warmup: int = 10, repeats: int = 30) -> np.ndarray:
        """``(E-1,)`` ms to add to the table's branches for this backend's decision.

        Threshold decisions run inside the batch-1 graph the table timed: zeros. Other decisions (q-table,
        RL MLP) run module by module at batch 1: the numpy decision's median on the real branch outputs
        of ``sample``, plus, per early exit, what the separate stage and branch calls cost beyond that
        exit's share of the batch-1 graph (measured here, interleaved), so ``expected_latency_ms`` follows
        the path the runner takes. (The last stage's extra call, ~one ``session.run``, is not attributed.)
        """
        check_counts(warmup=warmup, repeats=repeats)
        r = self.runner
        if r.uses_fused:
            return np.zeros(r.num_exits - 1)
        h = self.native(sample.reshape(1, *self.model.backbone.input_shape))
        x = h
        inputs = []
        for k in range(r.num_exits - 1):
            h = r.run_stage(k, h)
            _, feats = r.run_branch(k, h)
            agree = np.zeros(1, dtype=np.float32) if r.decision.needs_agree else None
            inputs.append((feats, agree))
        out = np.empty((len(inputs), repeats), dtype=np.float64)
        for rep in range(warmup + repeats):
            for k, (feats, agree) in enumerate(inputs):
                t0 = time.perf_counter()
                bool(r.decision.exit_mask(k, feats, agree)[0])
                if rep >= warmup:
                    out[k, rep - warmup] = (time.perf_counter() - t0) * 1e3
        numpy_ms = np.median(out, axis=1) if out.size else np.zeros(0)
        if r.fused_session is None:
            return numpy_ms
        table, t = self._timings(x, warmup=warmup, repeats=repeats)
        extra = (t["stage"][:-1] + t["branch"]) - (table.stage[:-1] + table.branch)
        return numpy_ms + np.maximum(extra, 0.0)

    def close(self) -> None:
        self.runner = None  # type: ignore[assignment]


def forced_thresholds(num_exits: int, k: int) -> np.ndarray:
    """``thresholds`` input of the batch-1 graph that makes every sample leave at exit ``k``
    (``+inf`` before it: never; ``-inf`` at it: always; ``k = E-1``: all ``+inf``, the final exit)."""
    t = np.full(max(num_exits - 1, 1), np.inf, dtype=np.float32)
    if k < num_exits - 1:
        t[k] = -np.inf
    return t


def inference_backend(
    measurement: MeasurementConfig,
    model: MultiExitNet,
    policy: ExitPolicy | None,
    device: torch.device,
    *,
    exporter: str = "auto",
) -> InferenceBackend:
    """The backend ``measurement.runtime`` asks for on ``device``, with ``measurement.threads`` threads.

    ``policy`` may be None when only the latency table is needed (a static decision is used then).
    """
    runtime = resolve_runtime(getattr(measurement, "runtime", "auto"), device)
    if runtime == "onnxruntime":
        start = time.perf_counter()
        backend: InferenceBackend = OnnxRuntimeBackend(
            model, policy, device, measurement.threads, exporter=exporter
        )
        backend.export_time_s = time.perf_counter() - start  # type: ignore[attr-defined]
        return backend
    if policy is None:
        from ddecs_search.policies import StaticPolicy

        policy = StaticPolicy()
    return TorchBackend(model, policy, device, measurement.threads)
