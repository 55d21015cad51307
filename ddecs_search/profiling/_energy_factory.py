"""Choosing an energy meter for a device, and energy per inference sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import torch

from ddecs_search.errors import ConfigError
from ddecs_search.profiling._energy import EnergyMeter, EnergyReading, UnavailableEnergyMeter
from ddecs_search.profiling._nvml import NvmlEnergyMeter
from ddecs_search.profiling._rapl import RaplEnergyMeter

ENERGY_KINDS = ("auto", "nvml", "rapl", "none")


def _cuda_uuid(device: torch.device) -> str | None:
    """NVML-style UUID of a CUDA device, so NVML reads the GPU CUDA runs on (their orders differ)."""
    try:
        text = str(torch.cuda.get_device_properties(device).uuid)
    except Exception:  # best effort (no driver, old torch without .uuid): NVML then falls back to the index
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
