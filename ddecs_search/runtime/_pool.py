"""Adaptive pooling that every ONNX exporter accepts, equal to ``adaptive_{avg,max}_pool2d``.

ONNX has no adaptive pool. The exporters map ``AdaptiveAvgPool2d`` to ``AveragePool`` only when the output
size divides the input (14x14 -> 7x7), and fail otherwise (14x14 -> 4x4, 3x3 -> 2x2, or up-sampling 1x1 ->
6x6 in AlexNet's head on small inputs). PyTorch's adaptive bins are ``[floor(i*n/o), ceil((i+1)*n/o))`` per
axis; they are rectangles, so pooling rows first and then columns gives the same value (the mean of a
rectangle is the mean of its rows' means, each row having the same width). With only the batch axis
dynamic, ``H`` and ``W`` are plain integers at export time, so the bins become constant slices.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


def adaptive_bins(size_in: int, size_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling bins along one axis: ``[start, end)`` per output index."""
    return [((i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)) for i in range(size_out)]


def _pool_axis(x: torch.Tensor, dim: int, size_out: int, mode: str) -> torch.Tensor:
    bins = adaptive_bins(int(x.shape[dim]), size_out)
    parts = []
    for start, end in bins:
        part = x.narrow(dim, start, end - start)
        parts.append(part.mean(dim=dim, keepdim=True) if mode == "avg" else part.amax(dim=dim, keepdim=True))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


def _uniform_windows(size_in: int, size_out: int) -> tuple[int, int, list[int] | None] | None:
    """``(kernel, stride, starts)`` when every adaptive bin along an axis has the same length, else ``None``.

    ``starts`` is ``None`` when the starts are evenly spaced (``stride``), so a strided pool gives the bins
    directly; otherwise the pool runs with stride 1 and ``starts`` picks the bins' windows (14 -> 4: bins of
    4 starting at 0, 3, 7, 10).
    """
    bins = adaptive_bins(size_in, size_out)
    lengths = {e - s for s, e in bins}
    if len(lengths) != 1:
        return None
    starts = [s for s, _ in bins]
    steps = {b - a for a, b in itertools.pairwise(starts)}
    if len(steps) <= 1 and (not steps or min(steps) > 0):
        return lengths.pop(), (steps.pop() if steps else 1), None
    return lengths.pop(), 1, starts


def _windowed_max(
    x: torch.Tensor, rows: tuple[int, int, list[int] | None], cols: tuple[int, int, list[int] | None]
) -> torch.Tensor:
    """Adaptive max pooling as one ``max_pool2d`` over the bins' common window, then the bins' windows
    picked by ``index_select`` where their starts are not evenly spaced: 3 graph nodes instead of
    ``2 * (oh + ow)`` slices and reductions (each a ~1-2 us kernel call at batch 1)."""
    out = nn.functional.max_pool2d(x, (rows[0], cols[0]), (rows[1], cols[1]))
    for dim, starts in ((-2, rows[2]), (-1, cols[2])):
        if starts is not None:
            out = out.index_select(dim, torch.tensor(starts, device=x.device))
    return out


def _mean_weights(h: int, w: int, oh: int, ow: int) -> torch.Tensor:
    """``(h * w, oh * ow)``: column ``a * ow + b`` averages the rectangle of bins ``a`` (rows) x ``b`` (cols).

    Built as one literal tensor so the exported graph holds one constant (a product of two bin weights,
    ``1/n * 1/m``), and the pool is a single matrix product of the flattened map, which ONNX Runtime runs
    as one GEMM (two broadcast matmuls cost ~3x more at batch 1).
    """
    rows = [[1.0 / (e - s) if s <= i < e else 0.0 for s, e in adaptive_bins(h, oh)] for i in range(h)]
    cols = [[1.0 / (e - s) if s <= j < e else 0.0 for s, e in adaptive_bins(w, ow)] for j in range(w)]
    return torch.tensor([[ra * cb for ra in rows[i] for cb in cols[j]] for i in range(h) for j in range(w)])


class ExportableAdaptivePool2d(nn.Module):
    """Drop-in for ``nn.AdaptiveAvgPool2d`` / ``nn.AdaptiveMaxPool2d`` built from slices, means and maxes.

    Where the output divides the input it is a plain ``avg_pool2d``/``max_pool2d`` (kernel = stride); else
    for average, one constant bin-averaging matrix over the flattened map (a single GEMM between two
    constant-shape reshapes), equal to the adaptive pool up to float rounding (the summation order
    differs), which the tests bound; for max, one ``max_pool2d`` over the bins' common window when all
    bins along each axis have one length (14 -> 4: four bins of 4), else a separable pooling by slices and
    maxes; both exact. Few graph nodes matter: at batch 1 each is a kernel call of ~1-2 us in ONNX Runtime.
    """

    def __init__(self, output_size: int | tuple[int, int], mode: str) -> None:
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"mode must be 'avg' or 'max', got {mode!r}")
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        if len(size) != 2 or any(s is None or s < 1 for s in size):
            raise ValueError(f"output_size must be positive ints, got {output_size!r}")
        self.output_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, oh, ow)
        h, w = int(x.shape[-2]), int(x.shape[-1])  # constants in the graph (only the batch axis is dynamic)
        oh, ow = self.output_size
        if h % oh == 0 and w % ow == 0:
            kernel = (h // oh, w // ow)
            if self.mode == "avg":
                return nn.functional.avg_pool2d(x, kernel, kernel)
            return nn.functional.max_pool2d(x, kernel, kernel)
        if self.mode == "avg":  # 1 GEMM instead of 2 * (oh + ow) slices
            weights = _mean_weights(h, w, oh, ow).to(dtype=x.dtype, device=x.device)  # (h * w, oh * ow)
            c = int(x.shape[-3])  # constant shapes: one Reshape each, not Shape/Slice/Concat chains
            flat = torch.matmul(x.reshape(-1, c, h * w), weights)  # (B, C, oh * ow)
            return flat.reshape(-1, c, oh, ow)
        window = _uniform_windows(h, oh), _uniform_windows(w, ow)
        if window[0] is not None and window[1] is not None:  # max over equal windows: one MaxPool (+ Gathers)
            return _windowed_max(x, window[0], window[1])
        return _pool_axis(_pool_axis(x, -2, oh, self.mode), -1, ow, self.mode)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, mode={self.mode!r}"


def _sizes(module: nn.Module) -> tuple[int, int]:
    size = module.output_size
    if isinstance(size, int):
        return size, size
    if any(s is None for s in size):
        raise ValueError(f"{module}: an output size of None (keep the input size) is not supported")
    return int(size[0]), int(size[1])


def exportable_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in eval mode with every adaptive 2-D pool replaced by the exportable one."""
    out = copy.deepcopy(module).eval()
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                if getattr(child, "return_indices", False):
                    raise ValueError(f"{name}: adaptive max pooling with return_indices cannot be exported")
                mode = "avg" if isinstance(child, nn.AdaptiveAvgPool2d) else "max"
                setattr(parent, name, ExportableAdaptivePool2d(_sizes(child), mode))
    return out
