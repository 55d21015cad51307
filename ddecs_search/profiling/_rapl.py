"""RAPL energy meter for CPU packages, read from Linux powercap (``/sys/class/powercap/intel-rapl:N``).

The same driver exposes AMD packages (Zen and newer) under the ``intel-rapl`` name.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddecs_search.profiling._energy import CounterReadError, EnergyMeter


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
            raise CounterReadError(str(exc)) from exc

    def _start(self) -> Any:
        return self._read_all(), time.perf_counter()

    def _stop(self, state: Any) -> tuple[float, float]:
        values0, t0 = state
        values1, t1 = self._read_all(), time.perf_counter()
        total_uj = 0
        for domain, v0, v1 in zip(self._domains, values0, values1, strict=False):
            total_uj += v1 - v0 if v1 >= v0 else v1 + domain.max_range_uj - v0
        return total_uj / 1e3, t1 - t0
