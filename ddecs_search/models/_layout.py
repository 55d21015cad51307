"""The memory layout a model computes in while it trains or fills an exit table: channels-last on a CPU.

Why: PyTorch's CPU convolutions and max pooling run in oneDNN's NHWC kernels when the weights and the
input are channels-last; in the default (NCHW) layout max pooling takes a slow generic path. Measured
side by side on the 2-core Xeon VM of 2026-12-04 (torch 2.14.1, 1 thread, idle): ``max_pool2d`` on
(512, 32, 28, 28) 68.9 → 6.6 ms; LeNet forward over 512 images 209 → 102 ms; one joint training epoch
of the default candidate (20k images) 15.0 → 10.3–11.2 s, a frozen one 2.9 → 0.97 s. Values agree to
float rounding (≈ 1e-7; the summation order differs), not bit for bit.

Only training and the search's per-epoch proxies use it (``ExitTable.from_model(channels_last=True)``);
the evaluation's exit tables, the static network's figures, latency and energy run the model as
deployed (ONNX Runtime, or eager PyTorch in the default layout), bit for bit as before. On CUDA the
layout stays the default: not measured there. ``DDECS_CHANNELS_LAST=0`` in the environment turns it off
(read at each block, in the process that trains; a Ray worker sees it only if its environment has it).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch

_IN_LAYOUT: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()  # models inside a compute_layout block


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@contextlib.contextmanager
def compute_layout(
    model: Any, device: torch.device, *, enabled: bool = True
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Put ``model`` in the layout its device computes fastest in; yield the matching input converter.

    On a CPU the model's 4-D weights become channels-last for the block (parameters keep their identity,
    so an optimiser built before still steps them) and go back to the default layout after it, even on
    an error: checkpoints, ONNX export and latency timing see the usual model. Nested blocks on the same
    model (a training loop's early-stopping check scores the model it trains) leave the layout to the
    outermost. Anything that is not an ``nn.Module``, any other device, and ``enabled=False`` (a caller that
    needs the default layout's exact values) run unchanged.
    """
    off = not enabled or os.environ.get("DDECS_CHANNELS_LAST", "1").strip() == "0"
    if off or device.type != "cpu" or not isinstance(model, torch.nn.Module):
        yield _identity
        return
    if model in _IN_LAYOUT:
        yield _channels_last
        return
    model.to(memory_format=torch.channels_last)
    _IN_LAYOUT.add(model)
    try:
        yield _channels_last
    finally:
        _IN_LAYOUT.discard(model)
        model.to(memory_format=torch.contiguous_format)
