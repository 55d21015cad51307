"""NVML energy meter for NVIDIA GPUs: the total-energy counter, else sampled power.

``pynvml`` (package ``nvidia-ml-py``) is imported when a meter is created, never at package import.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from ddecs_search.profiling._device import synchronize
from ddecs_search.profiling._energy import CounterReadError, EnergyMeter

_EDGE_TIMEOUT_S = 0.25  # longest NVML counter update period we wait for (documented: 20-100 ms)
_EDGE_POLL_S = 0.001


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
            raise CounterReadError(f"nvmlDeviceGetTotalEnergyConsumption: {exc}") from exc

    def _read_mw(self) -> float:
        try:
            return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle))
        except self._nvml.NVMLError as exc:
            raise CounterReadError(f"nvmlDeviceGetPowerUsage: {exc}") from exc

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
        self._error: CounterReadError | None = None
        self._thread = threading.Thread(target=self._run, name="nvml-power-sampler", daemon=True)

    def _sample(self) -> None:
        self._samples.append((time.perf_counter(), self._read_mw()))

    def _run(self) -> None:
        while not self._halt.wait(self._interval):
            try:
                self._sample()
            except CounterReadError as exc:
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
        for (t0, p0), (t1, p1) in zip(self._samples, self._samples[1:], strict=False):
            energy += 0.5 * (p0 + p1) * (t1 - t0)  # mW * s = mJ
        return energy, self._samples[-1][0] - self._samples[0][0]
