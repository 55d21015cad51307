"""Energy meters: NVML (NVIDIA GPUs), RAPL (CPU packages via powercap), or an honest "unavailable".

All backends share one measurement loop (:meth:`EnergyMeter.measure`): run the workload repeatedly for
at least ``min_seconds`` — hardware counters update only every few to 100 ms, so short windows are
mostly quantisation error — then divide by the number of calls. By default the idle power, measured once
in a short window with no work, is subtracted: readings are *active energy above idle*, which is what a
faster inference path actually saves, and the source string says so with a ``-idle`` suffix.

A meter that cannot measure never invents a number: ``energy_mj`` is ``None`` and ``source`` starts with
``"unavailable: "`` followed by the precise reason.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from ddecs_search.errors import ConfigError
from ddecs_search.profiling._device import synchronize

ENERGY_KINDS = ("auto", "nvml", "rapl", "none")
_EDGE_TIMEOUT_S = 0.25  # longest NVML counter update period we wait for (documented: 20-100 ms)
_EDGE_POLL_S = 0.001


@dataclass(frozen=True)
class EnergyReading:
    """Result of one :meth:`EnergyMeter.measure`.

    Attributes:
        energy_mj: energy per call of the workload in millijoules (above idle when ``idle_power_w`` is
            set), or ``None`` when nothing could be measured. Noise can make a tiny workload's
            above-idle energy slightly negative; it is reported as measured, not clipped.
        source: where the number comes from (``"nvml:total_energy-idle"``, ``"rapl:package-0"``) or
            ``"unavailable: <reason>"``; always set.
        seconds: length of the measured window.
        calls: how many times the workload ran in it.
        idle_power_w: the idle power that was subtracted, if any.
    """

    energy_mj: float | None
    source: str
    seconds: float = 0.0
    calls: int = 0
    idle_power_w: float | None = None


class _ReadError(Exception):
    """A counter could not be read; turned into an "unavailable" reading instead of losing the trial."""


class EnergyMeter(ABC):
    """Interface of all energy backends; subclasses implement reading the hardware counter.

    Args:
        subtract_idle: measure idle power once (``idle_seconds`` without work) and subtract it.
        idle_seconds: length of the idle window.
    """

    def __init__(self, *, subtract_idle: bool = True, idle_seconds: float = 0.5) -> None:
        if idle_seconds <= 0:
            raise ValueError(f"`idle_seconds` must be > 0, got {idle_seconds}")
        self.subtract_idle = subtract_idle
        self.idle_seconds = idle_seconds
        self._reason: str | None = None  # set by a subclass that cannot measure
        self._idle_w: float | None = None
        self._idle_done = False

    @property
    def available(self) -> bool:
        """Whether :meth:`measure` returns numbers."""
        return self._reason is None

    @property
    def source(self) -> str:
        """The source string readings carry (``-idle`` when idle power is subtracted)."""
        if self._reason is not None:
            return f"unavailable: {self._reason}"
        idle = self.subtract_idle and (not self._idle_done or self._idle_w is not None)
        return self._backend_source() + ("-idle" if idle else "")

    def idle_power_w(self) -> float | None:
        """Idle power in W, measured on first use; ``None`` when not subtracting or unreadable."""
        if not self.subtract_idle or not self.available:
            return None
        if not self._idle_done:
            self._idle_done = True
            try:
                self._sync()
                state = self._start()
                time.sleep(self.idle_seconds)
                energy_mj, seconds = self._stop(state)
                self._idle_w = energy_mj / seconds / 1e3 if seconds > 0 else None
            except _ReadError:
                self._idle_w = None
        return self._idle_w

    def measure(self, fn: Callable[[], None], *, min_seconds: float = 1.0) -> EnergyReading:
        """Run ``fn`` repeatedly for at least ``min_seconds`` and return the energy per call.

        Exceptions from ``fn`` propagate; a counter that fails mid-measurement gives an "unavailable"
        reading naming the failure instead.
        """
        if min_seconds <= 0:
            raise ValueError(f"`min_seconds` must be > 0, got {min_seconds}")
        if not self.available:
            return EnergyReading(None, self.source)
        idle_w = self.idle_power_w()
        try:
            self._sync()
            state = self._start()
        except _ReadError as exc:
            return self._failed(exc)
        calls = 0
        start = time.perf_counter()
        try:
            while True:
                fn()
                calls += 1
                if time.perf_counter() - start >= min_seconds:
                    break
            self._sync()  # work queued on the device belongs in this window
        except BaseException:
            with contextlib.suppress(_ReadError):  # close the window (stop a sampler thread), keep fn's error
                self._stop(state)
            raise
        try:
            energy_mj, seconds = self._stop(state)
        except _ReadError as exc:
            return self._failed(exc)
        if idle_w is not None:
            energy_mj -= idle_w * seconds * 1e3  # W * s = J -> mJ
        return EnergyReading(energy_mj / calls, self.source, seconds, calls, idle_w)

    def _failed(self, exc: _ReadError) -> EnergyReading:
        return EnergyReading(None, f"unavailable: {self._backend_source()} failed mid-measurement: {exc}")

    @property
    def reason(self) -> str | None:
        """Why this meter cannot measure, or ``None`` when it can."""
        return self._reason

    def close(self) -> None:
        """Release the backend (NVML); the meter is unavailable afterwards."""

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Backend interface --------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Wait for queued device work before a counter is read (no-op by default)."""

    @abstractmethod
    def _backend_source(self) -> str:
        """Source without the ``-idle`` suffix, e.g. ``"rapl:package-0"``."""

    @abstractmethod
    def _start(self) -> Any:
        """Open a window; returns what :meth:`_stop` needs. Raises :class:`_ReadError`."""

    @abstractmethod
    def _stop(self, state: Any) -> tuple[float, float]:
        """Close the window: ``(energy in mJ, seconds)`` it covers. Raises :class:`_ReadError`."""


class UnavailableEnergyMeter(EnergyMeter):
    """A meter that knows why it cannot measure; every reading is ``energy_mj=None`` with that reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(subtract_idle=False)
        self._reason = reason or "no reason given"

    def _backend_source(self) -> str:
        return "unavailable"

    def _start(self) -> Any:  # pragma: no cover - measure() never gets here
        raise AssertionError("an unavailable meter has no counter")

    def _stop(self, state: Any) -> tuple[float, float]:  # pragma: no cover
        raise AssertionError("an unavailable meter has no counter")


# ------------------------------------------------------------------------------------------------ NVML
class NvmlEnergyMeter(EnergyMeter):
    """GPU energy from NVML: the total-energy counter (mJ, Volta and newer), else sampled power.

    With the counter, both window ends are aligned to a counter update (we poll until the value
    changes), which removes most of the 20-100 ms quantisation. Without it, a background thread samples
    ``nvmlDeviceGetPowerUsage`` (mW) every ``sample_interval_s`` and integrates power x time
    (trapezoids); some drivers average that reading over ~1 s, so use long windows in that mode.
    Sources: ``nvml:total_energy`` / ``nvml:power_sampling``, with ``-idle`` when the idle power (a
    window with no work; the GPU stays in its recently-active clock state) is subtracted.

    Args:
        device_index: NVML index of the GPU (NVML enumerates in PCI order, unlike CUDA by default).
        uuid: NVML UUID (``"GPU-..."``), preferred over ``device_index`` when given and found.
        cuda_device: the CUDA device whose queued work is synchronised before each counter read.
    """

    def __init__(
        self,
        device_index: int = 0,
        *,
        uuid: str | None = None,
        cuda_device: torch.device | None = None,
        subtract_idle: bool = True,
        idle_seconds: float = 0.5,
        sample_interval_s: float = 0.02,
    ) -> None:
        super().__init__(subtract_idle=subtract_idle, idle_seconds=idle_seconds)
        self.device_index = device_index
        self.cuda_device = cuda_device
        self.sample_interval_s = sample_interval_s
        self._nvml: Any = None
        self._handle: Any = None
        self._mode = ""
        try:
            import pynvml
        except ImportError as exc:
            self._reason = f"NVML: pynvml is not importable ({exc}); pip install nvidia-ml-py"
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self._reason = f"NVML: nvmlInit failed ({exc}); no NVIDIA driver on this machine?"
            return
        self._nvml = pynvml
        self._reason = self._open(uuid)
        if self._reason is not None:
            self.close()

    def _open(self, uuid: str | None) -> str | None:
        """Find the GPU and pick the counter; returns the reason it cannot measure, or ``None``."""
        nvml = self._nvml
        if uuid is not None:
            try:
                self._handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
            except nvml.NVMLError:
                self._handle = None  # e.g. a MIG or unusual UUID form: fall back to the index
        if self._handle is None:
            try:
                self._handle = nvml.nvmlDeviceGetHandleByIndex(self.device_index)
            except nvml.NVMLError as exc:
                return f"NVML: no GPU with index {self.device_index} ({exc})"
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self._mode = "total_energy"
            return None
        except nvml.NVMLError as counter_exc:
            try:
                nvml.nvmlDeviceGetPowerUsage(self._handle)
            except nvml.NVMLError as power_exc:
                return (
                    f"NVML: GPU {self.device_index} supports neither the energy counter ({counter_exc}) "
                    f"nor power readings ({power_exc})"
                )
        self._mode = "power_sampling"
        return None

    def close(self) -> None:
        """Release NVML (``nvmlInit``/``nvmlShutdown`` are reference-counted)."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None
            if self._reason is None:
                self._reason = "NVML: meter closed"

    def _backend_source(self) -> str:
        return f"nvml:{self._mode}"

    def _sync(self) -> None:
        if self.cuda_device is not None:
            synchronize(self.cuda_device)
        elif torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def _read_mj(self) -> int:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._nvml.NVMLError as exc:
            raise _ReadError(f"nvmlDeviceGetTotalEnergyConsumption: {exc}") from exc

    def _read_mw(self) -> float:
        try:
            return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle))
        except self._nvml.NVMLError as exc:
            raise _ReadError(f"nvmlDeviceGetPowerUsage: {exc}") from exc

    def _read_at_edge(self) -> tuple[int, float]:
        """The counter right after its next update, and when that was seen."""
        first = self._read_mj()
        deadline = time.perf_counter() + _EDGE_TIMEOUT_S
        while time.perf_counter() < deadline:
            time.sleep(_EDGE_POLL_S)
            value = self._read_mj()
            if value != first:
                return value, time.perf_counter()
        return first, time.perf_counter()  # no update seen: the counter is as fresh as it gets

    def _start(self) -> Any:
        if self._mode == "total_energy":
            return self._read_at_edge()
        sampler = _PowerSampler(self._read_mw, self.sample_interval_s)
        sampler.start()
        return sampler

    def _stop(self, state: Any) -> tuple[float, float]:
        if self._mode == "total_energy":
            value0, t0 = state
            value1, t1 = self._read_at_edge()
            return float(value1 - value0), t1 - t0
        return state.stop()


class _PowerSampler:
    """Background thread reading power (mW) every ``interval`` s; integrates it to energy (mJ)."""

    def __init__(self, read_mw: Callable[[], float], interval: float) -> None:
        self._read_mw = read_mw
        self._interval = interval
        self._samples: list[tuple[float, float]] = []  # (perf_counter s, mW)
        self._halt = threading.Event()
        self._error: _ReadError | None = None
        self._thread = threading.Thread(target=self._run, name="nvml-power-sampler", daemon=True)

    def _sample(self) -> None:
        self._samples.append((time.perf_counter(), self._read_mw()))

    def _run(self) -> None:
        while not self._halt.wait(self._interval):
            try:
                self._sample()
            except _ReadError as exc:
                self._error = exc
                return

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> tuple[float, float]:
        self._halt.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._sample()
        energy = 0.0
        for (t0, p0), (t1, p1) in zip(self._samples, self._samples[1:]):
            energy += 0.5 * (p0 + p1) * (t1 - t0)  # mW * s = mJ
        return energy, self._samples[-1][0] - self._samples[0][0]


# ------------------------------------------------------------------------------------------------ RAPL
def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


@dataclass(frozen=True)
class _RaplDomain:
    name: str
    energy_path: Path
    max_range_uj: int


class RaplEnergyMeter(EnergyMeter):
    """CPU package energy from Linux powercap RAPL counters (``intel-rapl:N/energy_uj``, µJ).

    Only top-level package domains are summed: sub-zones (``intel-rapl:N:M``, cores/uncore/dram) lie
    inside a package and ``psys`` covers the whole platform, so adding them would double-count. The
    counters wrap at ``max_energy_range_uj``; one wrap per window is corrected (windows must be shorter
    than a full wrap, hours at typical power). On Linux >= 5.10 ``energy_uj`` is readable by root only.
    RAPL covers every process on the package, which is one more reason to subtract idle power.
    """

    def __init__(
        self,
        root: str | Path = "/sys/class/powercap",
        *,
        subtract_idle: bool = True,
        idle_seconds: float = 0.5,
    ) -> None:
        super().__init__(subtract_idle=subtract_idle, idle_seconds=idle_seconds)
        self.root = Path(root)
        self._domains: list[_RaplDomain] = []
        self._reason = self._open()

    def _open(self) -> str | None:
        if not self.root.is_dir():
            return f"RAPL: no {self.root} on this machine"
        zones = [p for p in self.root.iterdir() if re.fullmatch(r"intel-rapl:\d+", p.name)]
        zones.sort(key=lambda p: int(p.name.split(":")[1]))
        for zone in zones:
            try:
                name = (zone / "name").read_text().strip()
                if not name.startswith("package"):
                    continue
                _read_int(zone / "energy_uj")
                max_range = _read_int(zone / "max_energy_range_uj")
            except PermissionError as exc:
                return (
                    f"RAPL: permission denied reading {exc.filename or zone / 'energy_uj'} (root-only since "
                    f"Linux 5.10; run as root or grant read access, e.g. a udev rule or chmod o+r)"
                )
            except (OSError, ValueError) as exc:
                return f"RAPL: cannot read {zone}: {exc}"
            self._domains.append(_RaplDomain(name, zone / "energy_uj", max_range))
        if not self._domains:
            return f"RAPL: no readable package domain (intel-rapl:N with name package-*) under {self.root}"
        return None

    def _backend_source(self) -> str:
        return "rapl:" + ",".join(d.name for d in self._domains)

    def _read_all(self) -> list[int]:
        try:
            return [_read_int(d.energy_path) for d in self._domains]
        except (OSError, ValueError) as exc:
            raise _ReadError(str(exc)) from exc

    def _start(self) -> Any:
        return self._read_all(), time.perf_counter()

    def _stop(self, state: Any) -> tuple[float, float]:
        values0, t0 = state
        values1, t1 = self._read_all(), time.perf_counter()
        total_uj = 0
        for domain, v0, v1 in zip(self._domains, values0, values1):
            total_uj += v1 - v0 if v1 >= v0 else v1 + domain.max_range_uj - v0
        return total_uj / 1e3, t1 - t0


# --------------------------------------------------------------------------------------------- factory
def _cuda_uuid(device: torch.device) -> str | None:
    """NVML-style UUID of a CUDA device, so NVML reads the GPU CUDA runs on (their orders differ)."""
    try:
        text = str(torch.cuda.get_device_properties(device).uuid)
    except (AttributeError, RuntimeError, AssertionError):
        return None
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


EnergyKind = Literal["auto", "nvml", "rapl", "none"]


def create_energy_meter(kind: EnergyKind | str, device: torch.device) -> EnergyMeter:
    """The energy meter for ``device``.

    ``auto``: NVML for a CUDA device; RAPL for the CPU when readable; otherwise an
    :class:`UnavailableEnergyMeter` whose source gives the precise reason. ``nvml`` / ``rapl`` force a
    backend (still unavailable-with-reason when it cannot work); ``none`` disables measurement.

    Raises:
        ConfigError: unknown ``kind``.
    """
    if kind not in ENERGY_KINDS:
        raise ConfigError(f"'measurement.energy': must be one of {', '.join(ENERGY_KINDS)}, got {kind!r}")
    if kind == "none":
        return UnavailableEnergyMeter("energy measurement disabled (measurement.energy: none)")
    if kind == "nvml" or (kind == "auto" and device.type == "cuda"):
        if device.type != "cuda":
            return UnavailableEnergyMeter(f"NVML measures NVIDIA GPUs, but the device is {device}")
        return NvmlEnergyMeter(device.index or 0, uuid=_cuda_uuid(device), cuda_device=device)
    meter = RaplEnergyMeter()
    if kind == "auto" and not meter.available:
        why = (meter.reason or "").removeprefix("RAPL: ")
        return UnavailableEnergyMeter(f"CPU device and no readable /sys/class/powercap/intel-rapl ({why})")
    return meter


def energy_per_sample(
    meter: EnergyMeter,
    fn: Callable[[torch.Tensor], Any],
    samples: torch.Tensor,
    device: torch.device,
    *,
    min_seconds: float = 1.0,
    warmup: int = 10,
) -> EnergyReading:
    """Energy per batch-1 call of ``fn`` averaged over all ``samples``.

    One measured call is a full pass over the samples, so every sample weighs the same (an early-exit
    model's energy depends on which samples it sees; stopping mid-pass would bias towards the first).
    ``samples`` is moved to ``device`` once; ``fn`` runs under ``torch.inference_mode()``.
    """
    xs = samples.to(device)
    n = xs.shape[0]
    if n == 0:
        raise ValueError("`samples` is empty")

    def one_pass() -> None:
        for i in range(n):
            fn(xs[i : i + 1])

    with torch.inference_mode():
        for i in range(warmup if meter.available else 0):
            fn(xs[i % n : i % n + 1])
        reading = meter.measure(one_pass, min_seconds=min_seconds)
    if reading.energy_mj is None:
        return reading
    return replace(reading, energy_mj=reading.energy_mj / n, calls=reading.calls * n)
