"""Where modules run during profiling: device resolution, synchronisation and readable device names.

Every measurement in this package is only meaningful with the device named precisely (a latency table
from one GPU model says little about another), so results carry :func:`device_name` in their source.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ddecs_search.errors import ConfigError

_CPUINFO = Path("/proc/cpuinfo")


def resolve_device(spec: str | torch.device) -> torch.device:
    """Turn a configuration string into a concrete device.

    Args:
        spec: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        The device; CUDA devices always carry an explicit index, so that two specs naming the same GPU
        compare equal (``"cuda"`` and ``"cuda:0"``) and the energy meter can find the matching GPU.

    Raises:
        ConfigError: an unknown spec, or CUDA asked for on a machine without a usable CUDA device.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text != "cuda" and not text.startswith("cuda:"):
        raise ConfigError(f"'measurement.device': must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"'measurement.device': {spec!r} asks for CUDA, but torch finds no usable CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use 'cpu' or 'auto'"
        )
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise ConfigError(f"'measurement.device': cannot parse {spec!r}: {exc}") from None
    index = torch.cuda.current_device() if device.index is None else device.index
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise ConfigError(
            f"'measurement.device': {spec!r} does not exist; this machine has {count} CUDA device(s)"
        )
    return torch.device("cuda", index)


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device``; a no-op on CPU (its kernels run synchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """Readable device name for result sources: ``"cpu:AMD EPYC"``, ``"cuda:NVIDIA H100 80GB HBM3"``."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu:{_cpu_model_name()}"
    return str(device)


def _cpu_model_name() -> str:
    try:
        for line in _CPUINFO.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux, or /proc is not mounted
        pass
    return platform.processor() or platform.machine() or "unknown"


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are the same, treating a CUDA device without index as the current one."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True

    def index(d: torch.device) -> int:
        return torch.cuda.current_device() if d.index is None else d.index

    return index(a) == index(b)


def check_on_device(module: nn.Module, device: torch.device) -> None:
    """Raise a ValueError when ``module``'s parameters live elsewhere than ``device``.

    Profiling never moves a caller's model: ``Module.to`` works in place, and silently relocating a model
    that is also being trained or evaluated elsewhere would be a surprising side effect.
    """
    for tensor in (*module.parameters(), *module.buffers()):
        if not same_device(tensor.device, device):
            raise ValueError(
                f"the model has tensors on {tensor.device} but measurements were asked for on {device}; "
                f"call model.to({str(device)!r}) first"
            )


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block and restore its previous mode afterwards.

    Measurements must see inference behaviour (BatchNorm running stats, no dropout; batch-1 BatchNorm1d
    even fails in training mode) without changing the caller's model state.
    """
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
