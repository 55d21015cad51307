"""What a latency number is: one sentence that travels with it (``latency_source``)."""

from __future__ import annotations

import torch


def latency_source(runtime: str, device: str, threads: int | None, how: str) -> str:
    """``"torch 2.14.1 cpu (...), 1 thread, end-to-end batch 1, in-trial"``.

    Args:
        runtime: ``torch`` (eager) or another runtime's name with its version.
        device: :func:`device_name` of the device measured on.
        threads: intra-op threads on a CPU; None on a GPU.
        how: what was timed and in which conditions (end to end / table, batch, isolated / in-trial).
    """
    version = f" {torch.__version__.split('+')[0]}" if runtime == "torch" else ""
    thread_text = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return f"{runtime}{version} {device}{thread_text}, {how}"
