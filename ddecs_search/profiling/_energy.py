"""The energy-meter interface shared by every backend, and the reading it returns.

All backends share one measurement loop (:meth:`EnergyMeter.measure`): run the workload repeatedly for
at least ``min_seconds`` — hardware counters update only every few to 100 ms, so short windows are
mostly quantisation error — then divide by the number of calls. By default the idle power, measured once
in a short window with no work, is subtracted: readings are *active energy above idle*, which is what a
faster inference path actually saves, and the source string says so with a ``-idle`` suffix.

A meter that cannot measure never invents a number: ``energy_mj`` is ``None`` and ``source`` starts with
``"unavailable: "`` followed by the precise reason. Backends: :mod:`._nvml` (NVIDIA GPUs), :mod:`._rapl`
(CPU packages); :mod:`._energy_factory` picks one for a device.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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


class CounterReadError(Exception):
    """A backend could not read its counter; :meth:`EnergyMeter.measure` turns this into an "unavailable"
    reading instead of losing the trial. Internal to the backends (not exported)."""


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
            except CounterReadError:
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
        except CounterReadError as exc:
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
            with contextlib.suppress(
                CounterReadError
            ):  # close the window (stop a sampler thread), keep fn's error
                self._stop(state)
            raise
        try:
            energy_mj, seconds = self._stop(state)
        except CounterReadError as exc:
            return self._failed(exc)
        if idle_w is not None:
            energy_mj -= idle_w * seconds * 1e3  # W * s = J -> mJ
        return EnergyReading(energy_mj / calls, self.source, seconds, calls, idle_w)

    def _failed(self, exc: CounterReadError) -> EnergyReading:
        return EnergyReading(None, f"unavailable: {self._backend_source()} failed mid-measurement: {exc}")

    @property
    def reason(self) -> str | None:
        """Why this meter cannot measure, or ``None`` when it can."""
        return self._reason

    def close(self) -> None:  # noqa: B027 (an optional hook: most meters hold nothing to release)
        """Release the backend (NVML); the meter is unavailable afterwards."""

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Backend interface --------------------------------------------------------------------------------
    def _sync(self) -> None:  # noqa: B027 (an optional hook: a no-op on CPUs)
        """Wait for queued device work before a counter is read (no-op by default)."""

    @abstractmethod
    def _backend_source(self) -> str:
        """Source without the ``-idle`` suffix, e.g. ``"rapl:package-0"``."""

    @abstractmethod
    def _start(self) -> Any:
        """Open a window; returns what :meth:`_stop` needs. Raises :class:`CounterReadError`."""

    @abstractmethod
    def _stop(self, state: Any) -> tuple[float, float]:
        """Close the window: ``(energy in mJ, seconds)`` it covers. Raises :class:`CounterReadError`."""


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
