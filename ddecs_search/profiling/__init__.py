"""Cost measurement of early-exit networks: MACs, latency tables, end-to-end timing and energy.

``mac_costs`` / ``latency_costs`` give per-stage and per-branch :class:`ExitCosts`
that policies are fitted on; ``compare_static_vs_early_exit`` and ``batched_throughput`` time real
inference against the static backbone in the same run; ``create_energy_meter`` picks NVML, RAPL or an
honest "unavailable". ``pynvml`` is imported only when an NVML meter is created.
"""

from ddecs_search.profiling._costs import ExitCosts
from ddecs_search.profiling._decision import decision_costs, decision_costs_in_loop
from ddecs_search.profiling._device import device_name, resolve_device, synchronize
from ddecs_search.profiling._energy import EnergyMeter, EnergyReading, UnavailableEnergyMeter
from ddecs_search.profiling._energy_factory import ENERGY_KINDS, create_energy_meter, energy_per_sample
from ddecs_search.profiling._latency import (
    ForcedExit,
    LatencyStats,
    batched_throughput,
    check_counts,
    compare_static_vs_early_exit,
    early_exit_table,
    forced_path_table,
    host_timer,
    latency_costs,
    module_table,
    round_robin,
    single_input,
    split_paths,
    time_interleaved,
    time_pass,
    time_per_sample,
    warm_up,
)
from ddecs_search.profiling._macs import count_macs, mac_costs
from ddecs_search.profiling._nvml import NvmlEnergyMeter
from ddecs_search.profiling._rapl import RaplEnergyMeter
from ddecs_search.profiling._source import latency_source

__all__ = [
    "ENERGY_KINDS",
    "EnergyMeter",
    "EnergyReading",
    "ExitCosts",
    "ForcedExit",
    "LatencyStats",
    "NvmlEnergyMeter",
    "RaplEnergyMeter",
    "UnavailableEnergyMeter",
    "batched_throughput",
    "check_counts",
    "compare_static_vs_early_exit",
    "count_macs",
    "create_energy_meter",
    "decision_costs",
    "decision_costs_in_loop",
    "device_name",
    "early_exit_table",
    "energy_per_sample",
    "forced_path_table",
    "host_timer",
    "latency_costs",
    "latency_source",
    "mac_costs",
    "module_table",
    "resolve_device",
    "round_robin",
    "single_input",
    "split_paths",
    "synchronize",
    "time_interleaved",
    "time_pass",
    "time_per_sample",
    "warm_up",
]
