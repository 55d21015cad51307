"""Multiply-accumulate counts from PyTorch's own FLOP counter (no hand-written per-layer formulas).

``torch.utils.flop_counter.FlopCounterMode`` dispatches on the aten ops that actually run, so any
backbone or branch is counted without registering its layers. It counts matrix products and
convolutions (2 FLOPs per MAC); element-wise ops (BatchNorm, ReLU, pooling, biases) are not counted,
which is the usual MAC convention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ddecs_search.profiling._costs import ExitCosts
from ddecs_search.profiling._device import eval_mode

if TYPE_CHECKING:
    from ddecs_search.models import MultiExitNet

_MEGA = 1e6


def _macs_of(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """MACs of ``fn(x)`` and its output (the next stage's input)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = fn(x)
    return int(counter.get_total_flops()) // 2, out


def _module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def count_macs(
    module: nn.Module,
    input_shape: Sequence[int],
    device: torch.device | str | None = None,
) -> int:
    """MACs of one forward pass of ``module`` on a single sample.

    Args:
        module: any module; it is run once in eval mode (its mode is restored afterwards).
        input_shape: per-sample input shape, without the batch dimension, e.g. ``(1, 28, 28)``.
        device: where to run the dummy forward pass; default: where ``module``'s parameters are, so a
            model already on the GPU is counted there without being moved.

    Returns:
        FLOPs / 2 as counted by ``FlopCounterMode`` for a batch of 1.
    """
    param_device, dtype = _module_device_dtype(module)
    x = torch.zeros(1, *input_shape, device=param_device if device is None else device, dtype=dtype)
    with eval_mode(module):
        macs, _ = _macs_of(module, x)
    return macs


def mac_costs(model: MultiExitNet) -> ExitCosts:
    """Per-stage and per-branch MACs of a multi-exit network, in MMAC.

    Stage ``k``'s input shape is whatever stage ``k - 1`` produces, so the stages are run in order on a
    dummy batch-1 input and each is counted on its real input.

    Returns:
        ``ExitCosts`` with ``stage`` ``(E,)`` (the last stage includes the head), ``branch`` ``(E-1,)``,
        ``static`` = MACs of ``model.backbone`` alone, unit ``"MMAC"``, source ``"flop_counter"``.
    """
    device, dtype = _module_device_dtype(model)
    x = torch.zeros(1, *model.backbone.input_shape, device=device, dtype=dtype)  # (1, C, H, W)
    h = x
    stage, branch = [], []
    with eval_mode(model):
        for k in range(model.num_exits):
            macs, h = _macs_of(lambda t, k=k: model.run_stage(k, t), h)
            stage.append(macs)
            if k < model.num_exits - 1:
                macs, _ = _macs_of(lambda t, k=k: model.exit_logits(k, t), h)
                branch.append(macs)
        static, _ = _macs_of(model.backbone, x)
    return ExitCosts(
        stage=np.asarray(stage, dtype=np.float64) / _MEGA,
        branch=np.asarray(branch, dtype=np.float64) / _MEGA,
        static=static / _MEGA,
        unit="MMAC",
        source="flop_counter",
    )
