"""Energy meters: one contract test over every backend, plus NVML (fake pynvml) and RAPL (fake powercap)."""

from __future__ import annotations

import math
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ddecs_search.errors import ConfigError
from ddecs_search.profiling import (
    EnergyMeter,
    NvmlEnergyMeter,
    RaplEnergyMeter,
    UnavailableEnergyMeter,
    _energy_factory,
    _rapl,
    create_energy_meter,
    energy_per_sample,
)

CPU = torch.device("cpu")
IDLE_W, BUSY_W = 20.0, 50.0


# ------------------------------------------------------------------------------------------ fake NVML
class FakeGpu:
    """A GPU drawing IDLE_W, or BUSY_W while ``work`` runs; its energy counter integrates that exactly."""

    def __init__(self) -> None:
        self.busy = False
        self.busy_seconds = 0.0
        self.broken = False
        self._mj = 1_000_000.0
        self._t = time.perf_counter()
        self._lock = threading.Lock()

    def _advance(self) -> None:
        now = time.perf_counter()
        dt = now - self._t
        self._mj += (BUSY_W if self.busy else IDLE_W) * dt * 1e3
        self.busy_seconds += dt if self.busy else 0.0
        self._t = now

    def set_busy(self, busy: bool) -> None:
        with self._lock:
            self._advance()
            self.busy = busy

    def energy_mj(self) -> int:
        with self._lock:
            self._advance()
            return int(self._mj)

    def work(self, seconds: float) -> None:
        self.set_busy(True)
        time.sleep(seconds)
        self.set_busy(False)


def fake_pynvml(
    gpu: FakeGpu, *, counter: bool = True, power: bool = True, init_ok: bool = True
) -> types.ModuleType:
    """A stand-in for ``pynvml`` with the calls the NVML meter uses."""
    mod = types.ModuleType("pynvml")
    messages = {3: "Not Supported", 9: "Driver Not Loaded", 15: "GPU is lost"}

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(value)
            self.value = value

        def __str__(self) -> str:
            return messages.get(self.value, "Unknown Error")

    class NVMLError_NotSupported(NVMLError):
        def __init__(self) -> None:
            super().__init__(3)

    mod.NVMLError = NVMLError
    mod.NVMLError_NotSupported = NVMLError_NotSupported
    mod.calls = {"init": 0, "shutdown": 0, "uuid": []}

    def nvmlInit() -> None:
        if not init_ok:
            raise NVMLError(9)
        mod.calls["init"] += 1

    def nvmlShutdown() -> None:
        mod.calls["shutdown"] += 1

    def nvmlDeviceGetHandleByIndex(index: int) -> str:
        if index != 0:
            raise NVMLError(2)
        return "gpu0"

    def nvmlDeviceGetHandleByUUID(uuid: str) -> str:
        mod.calls["uuid"].append(uuid)
        raise NVMLError(6)

    def nvmlDeviceGetTotalEnergyConsumption(handle: str) -> int:
        if not counter:
            raise NVMLError_NotSupported()
        if gpu.broken:
            raise NVMLError(15)
        return gpu.energy_mj()

    def nvmlDeviceGetPowerUsage(handle: str) -> int:
        if not power:
            raise NVMLError_NotSupported()
        return int((BUSY_W if gpu.busy else IDLE_W) * 1e3)  # mW

    for fn in (
        nvmlInit,
        nvmlShutdown,
        nvmlDeviceGetHandleByIndex,
        nvmlDeviceGetHandleByUUID,
        nvmlDeviceGetTotalEnergyConsumption,
        nvmlDeviceGetPowerUsage,
    ):
        setattr(mod, fn.__name__, fn)
    return mod


@pytest.fixture
def gpu() -> FakeGpu:
    return FakeGpu()


def install(monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu, **kwargs: bool) -> types.ModuleType:
    mod = fake_pynvml(gpu, **kwargs)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    return mod


# ------------------------------------------------------------------------------------------ fake RAPL
def make_powercap(root: Path, zones: dict[str, tuple[str, int, int]]) -> Path:
    """``zones``: directory name -> (domain name, energy_uj, max_energy_range_uj)."""
    for directory, (name, energy, max_range) in zones.items():
        zone = root / directory
        zone.mkdir(parents=True)
        (zone / "name").write_text(name + "\n")
        (zone / "energy_uj").write_text(f"{energy}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root


def advance(zone: Path, uj: int) -> None:
    """Add ``uj`` to a fake counter, wrapping at its max range like the kernel does."""
    max_range = int((zone / "max_energy_range_uj").read_text())
    value = int((zone / "energy_uj").read_text())
    (zone / "energy_uj").write_text(f"{(value + uj) % max_range}\n")


# ------------------------------------------------------------------------------------------ contract
Backend = Callable[[Path, pytest.MonkeyPatch], tuple[EnergyMeter, Callable[[], None]]]


def _nvml_fake(counter: bool) -> Backend:
    def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[EnergyMeter, Callable[[], None]]:
        gpu = FakeGpu()
        install(monkeypatch, gpu, counter=counter)
        return NvmlEnergyMeter(0, idle_seconds=0.1), lambda: gpu.work(0.005)

    return build


def _nvml_no_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[EnergyMeter, Callable[[], None]]:
    install(monkeypatch, FakeGpu(), init_ok=False)
    return NvmlEnergyMeter(0), lambda: None


def _rapl_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[EnergyMeter, Callable[[], None]]:
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 5, 10**9)})
    return RaplEnergyMeter(root, idle_seconds=0.05), lambda: advance(root / "intel-rapl:0", 1000)


BACKENDS: dict[str, Backend] = {
    "nvml-fake-counter": _nvml_fake(counter=True),
    "nvml-fake-power-sampling": _nvml_fake(counter=False),
    "nvml-fake-no-driver": _nvml_no_driver,
    "nvml-real": lambda p, m: (NvmlEnergyMeter(0, idle_seconds=0.1), lambda: None),
    "rapl-fake": _rapl_fake,
    "rapl-real": lambda p, m: (RaplEnergyMeter(idle_seconds=0.1), lambda: None),
    "rapl-missing": lambda p, m: (RaplEnergyMeter(p / "nope"), lambda: None),
    "unavailable": lambda p, m: (UnavailableEnergyMeter("no meter in this test"), lambda: None),
    "none": lambda p, m: (create_energy_meter("none", CPU), lambda: None),
    "auto-cpu": lambda p, m: (create_energy_meter("auto", CPU), lambda: None),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_energy_meter_contract(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meter, work = BACKENDS[backend](tmp_path, monkeypatch)
    calls = []

    def fn() -> None:
        calls.append(1)
        work()

    reading = meter.measure(fn, min_seconds=0.05)
    assert isinstance(reading.source, str) and reading.source
    if meter.available:
        assert reading.energy_mj is not None and math.isfinite(reading.energy_mj)
        assert reading.calls == len(calls) >= 1
        assert reading.seconds >= 0.05
        assert reading.source == meter.source and not reading.source.startswith("unavailable")
        assert meter.reason is None
        if meter.subtract_idle:
            assert reading.idle_power_w is not None and reading.source.endswith("-idle")
    else:
        assert reading.energy_mj is None
        assert reading.source.startswith("unavailable: ") and len(reading.source) > len("unavailable: ")
        assert reading.source == meter.source and meter.reason and meter.reason in reading.source
        assert reading.calls == 0 and calls == []  # no work run for nothing
    with pytest.raises(ValueError, match="min_seconds"):
        meter.measure(fn, min_seconds=0)
    meter.close()


# ----------------------------------------------------------------------------------------------- NVML
def test_nvml_energy_counter_gives_active_energy_above_idle(
    monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu
) -> None:
    mod = install(monkeypatch, gpu)
    meter = NvmlEnergyMeter(0, idle_seconds=0.2)
    assert meter.available and meter.source == "nvml:total_energy-idle"
    reading = meter.measure(lambda: gpu.work(0.02), min_seconds=0.3)
    assert reading.idle_power_w == pytest.approx(IDLE_W, rel=0.01)
    expected = (BUSY_W - IDLE_W) * gpu.busy_seconds * 1e3 / reading.calls  # mJ per call above idle
    assert reading.energy_mj == pytest.approx(expected, rel=0.02)
    assert reading.source == "nvml:total_energy-idle" and reading.calls >= 5
    meter.close()
    assert mod.calls["shutdown"] == mod.calls["init"] == 1
    assert not meter.available


def test_nvml_without_idle_subtraction_reports_total_energy(
    monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu
) -> None:
    install(monkeypatch, gpu)
    meter = NvmlEnergyMeter(0, subtract_idle=False)
    reading = meter.measure(lambda: gpu.work(0.02), min_seconds=0.2)
    assert reading.source == "nvml:total_energy" and reading.idle_power_w is None
    idle_seconds = reading.seconds - gpu.busy_seconds
    expected = (BUSY_W * gpu.busy_seconds + IDLE_W * idle_seconds) * 1e3 / reading.calls
    assert reading.energy_mj == pytest.approx(expected, rel=0.02)


def test_nvml_falls_back_to_power_sampling(monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu) -> None:
    install(monkeypatch, gpu, counter=False)
    meter = NvmlEnergyMeter(0, idle_seconds=0.2, sample_interval_s=0.01)
    assert meter.available and meter.source == "nvml:power_sampling-idle"
    reading = meter.measure(lambda: gpu.work(0.05), min_seconds=0.4)
    assert reading.idle_power_w == pytest.approx(IDLE_W)
    expected = (BUSY_W - IDLE_W) * gpu.busy_seconds * 1e3 / reading.calls
    assert reading.energy_mj == pytest.approx(expected, rel=0.15)  # sampling error at the window edges
    assert not any(t.name == "nvml-power-sampler" for t in threading.enumerate())


def test_nvml_workload_errors_propagate_and_stop_the_sampler(
    monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu
) -> None:
    install(monkeypatch, gpu, counter=False)
    meter = NvmlEnergyMeter(0, subtract_idle=False)

    def boom() -> None:
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        meter.measure(boom, min_seconds=0.05)
    assert not any(t.name == "nvml-power-sampler" for t in threading.enumerate())


def test_nvml_init_failure_is_unavailable_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu
) -> None:
    install(monkeypatch, gpu, init_ok=False)
    meter = NvmlEnergyMeter(0)
    assert not meter.available
    assert (
        meter.source
        == "unavailable: NVML: nvmlInit failed (Driver Not Loaded); no NVIDIA driver on this machine?"
    )
    assert meter.measure(lambda: None, min_seconds=0.01).energy_mj is None


def test_nvml_without_counter_or_power_is_unavailable(monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu) -> None:
    mod = install(monkeypatch, gpu, counter=False, power=False)
    meter = NvmlEnergyMeter(0)
    assert meter.source.startswith(
        "unavailable: NVML: GPU 0 supports neither the energy counter (Not Supported)"
    )
    assert mod.calls["shutdown"] == 1  # released at once


def test_nvml_unknown_gpu_index_is_unavailable(monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu) -> None:
    install(monkeypatch, gpu)
    assert NvmlEnergyMeter(3).source.startswith("unavailable: NVML: no GPU with index 3")


def test_nvml_counter_failing_mid_measurement_gives_unavailable(
    monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu
) -> None:
    install(monkeypatch, gpu)
    meter = NvmlEnergyMeter(0, subtract_idle=False)

    def breaks() -> None:
        gpu.broken = True

    reading = meter.measure(breaks, min_seconds=0.01)
    assert reading.energy_mj is None
    assert reading.source == (
        "unavailable: nvml:total_energy failed mid-measurement: "
        "nvmlDeviceGetTotalEnergyConsumption: GPU is lost"
    )


def test_create_energy_meter_uses_nvml_for_cuda(monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu) -> None:
    mod = install(monkeypatch, gpu)
    monkeypatch.setattr(_energy_factory, "_cuda_uuid", lambda device: "GPU-1234")
    meter = create_energy_meter("auto", torch.device("cuda", 0))
    assert isinstance(meter, NvmlEnergyMeter) and meter.source == "nvml:total_energy-idle"
    assert mod.calls["uuid"] == ["GPU-1234"]  # tried the UUID first, then fell back to the index


def test_create_energy_meter_for_cuda_without_driver_says_why(
    monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu
) -> None:
    install(monkeypatch, gpu, init_ok=False)
    meter = create_energy_meter("auto", torch.device("cuda", 0))
    assert meter.source.startswith("unavailable: NVML: nvmlInit failed")


# ----------------------------------------------------------------------------------------------- RAPL
def test_rapl_sums_package_domains_only(tmp_path: Path) -> None:
    root = make_powercap(
        tmp_path,
        {
            "intel-rapl:0": ("package-0", 100, 10**9),
            "intel-rapl:0:0": ("core", 100, 10**9),  # inside package 0
            "intel-rapl:1": ("package-1", 100, 10**9),
            "intel-rapl:2": ("psys", 100, 10**9),  # whole platform
        },
    )
    meter = RaplEnergyMeter(root, subtract_idle=False)
    assert meter.source == "rapl:package-0,package-1"

    def work() -> None:
        for zone, uj in (
            ("intel-rapl:0", 7000),
            ("intel-rapl:1", 3000),
            ("intel-rapl:0:0", 5000),
            ("intel-rapl:2", 9),
        ):
            advance(root / zone, uj)
        time.sleep(0.005)

    reading = meter.measure(work, min_seconds=0.03)
    assert reading.energy_mj == pytest.approx(10.0)  # (7000 + 3000) uJ per call


def test_rapl_handles_counter_wrap_around(tmp_path: Path) -> None:
    max_range = 1_000_000
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", max_range - 1000, max_range)})
    meter = RaplEnergyMeter(root, subtract_idle=False)

    def work() -> None:
        advance(root / "intel-rapl:0", 7000)
        time.sleep(0.01)

    reading = meter.measure(work, min_seconds=0.04)
    assert reading.energy_mj == pytest.approx(7.0)
    assert int((root / "intel-rapl:0" / "energy_uj").read_text()) < max_range - 1000  # it did wrap
    assert reading.calls * 7000 < max_range  # a single wrap, which is all a window may contain


def test_rapl_idle_subtraction_with_a_still_counter(tmp_path: Path) -> None:
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 0, 10**9)})
    meter = RaplEnergyMeter(root, idle_seconds=0.05)
    reading = meter.measure(lambda: advance(root / "intel-rapl:0", 2000), min_seconds=0.02)
    assert reading.idle_power_w == 0.0 and reading.source == "rapl:package-0-idle"
    assert reading.energy_mj == pytest.approx(2.0)


def test_rapl_permission_denied_is_unavailable_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 0, 10**9)})
    real_read = _rapl._read_int

    def read_int(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(_rapl, "_read_int", read_int)  # tests run as root here: chmod would not stop us
    meter = RaplEnergyMeter(root)
    assert not meter.available
    assert meter.source.startswith(
        f"unavailable: RAPL: permission denied reading {root / 'intel-rapl:0' / 'energy_uj'}"
    )


def test_rapl_without_package_domains_is_unavailable(tmp_path: Path) -> None:
    root = make_powercap(tmp_path, {"intel-rapl:0": ("psys", 0, 10**9)})
    assert RaplEnergyMeter(root).source.startswith("unavailable: RAPL: no readable package domain")


def test_energy_per_sample_weighs_every_sample(tmp_path: Path) -> None:
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 0, 10**9)})
    meter = RaplEnergyMeter(root, subtract_idle=False)
    seen = []

    def fn(x: torch.Tensor) -> None:
        seen.append(x.shape)
        advance(root / "intel-rapl:0", 1000 * (1 + int(x.item())))  # sample i costs (i + 1) mJ
        time.sleep(0.001)

    reading = energy_per_sample(meter, fn, torch.arange(4.0).reshape(4, 1), CPU, min_seconds=0.02, warmup=2)
    assert reading.energy_mj == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert reading.calls % 4 == 0 and all(s == (1, 1) for s in seen)
    unavailable = energy_per_sample(UnavailableEnergyMeter("x"), fn, torch.zeros(2, 1), CPU)
    assert unavailable.energy_mj is None and unavailable.source == "unavailable: x"


# -------------------------------------------------------------------------------------- factory / real
def test_create_energy_meter_kinds() -> None:
    assert (
        create_energy_meter("none", CPU).source
        == "unavailable: energy measurement disabled (measurement.energy: none)"
    )
    assert (
        create_energy_meter("nvml", CPU).source
        == "unavailable: NVML measures NVIDIA GPUs, but the device is cpu"
    )
    assert isinstance(create_energy_meter("rapl", CPU), RaplEnergyMeter)
    with pytest.raises(ConfigError, match="auto, nvml, rapl, none"):
        create_energy_meter("joulemeter", CPU)


def _rapl_readable() -> bool:
    try:
        return any(
            int(p.read_text()) >= 0 for p in Path("/sys/class/powercap").glob("intel-rapl:*/energy_uj")
        )
    except OSError:
        return False


@pytest.mark.skipif(_rapl_readable(), reason="this machine has readable RAPL counters")
def test_this_cpu_machine_reports_energy_as_unavailable_honestly() -> None:
    meter = create_energy_meter("auto", CPU)
    reading = meter.measure(lambda: None, min_seconds=0.01)
    assert not meter.available and reading.energy_mj is None and reading.idle_power_w is None
    assert reading.source.startswith(
        "unavailable: CPU device and no readable /sys/class/powercap/intel-rapl ("
    )
