"""Export a trained :class:`~ddecs_search.models.MultiExitNet` to ONNX, one graph per stage and per branch.

The graphs are exported with ``torch.onnx.export`` (see :func:`resolve_exporter` for which exporter) with
a dynamic batch axis, from a copy of
the model in which adaptive pools are replaced by :class:`ExportableAdaptivePool2d`. Branch graphs also
output the exit features (max-prob, entropy, margin) computed by the same arithmetic as
:func:`~ddecs_search.policies.exit_features`, so the runtime's decision needs no torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ddecs_search._atomic import write_bytes_atomic, write_text_atomic
from ddecs_search.runtime._compose import compose_early_exit
from ddecs_search.runtime._ort import FORMAT_VERSION, MANIFEST
from ddecs_search.runtime._pool import exportable_copy

if TYPE_CHECKING:
    from ddecs_search.models import MultiExitNet

OPSET = 18


class _Stage(nn.Module):
    def __init__(self, model: MultiExitNet, k: int) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.run_stage(self.k, x)


class _BranchWithFeatures(nn.Module):
    """Branch logits plus the first three exit features (``exit_features`` without ``agree_prev``)."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.branch(h)
        log_probs = torch.log_softmax(logits.float(), dim=1)
        probs = log_probs.exp()
        top2, _ = probs.topk(2, dim=1)  # (B, 2)
        entropy = -(probs * log_probs).sum(dim=1)
        return logits, torch.stack([top2[:, 0], entropy, top2[:, 0] - top2[:, 1]], dim=1)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter reports progress through warnings and loggers; keep trial logs readable."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


EXPORTERS = ("auto", "dynamo", "torchscript")


def resolve_exporter(exporter: str) -> str:
    """``auto``: the TorchScript exporter while torch still ships it, else the torch.export-based one.

    Both give the same graphs here (the tests check it), but ``dynamo`` is 10-20x slower per graph
    (about 1 s vs 0.06 s for a LeNet stage on an idle core), which a search pays in every trial.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if exporter != "auto":
        return exporter
    try:
        from torch.onnx import utils  # noqa: F401  (the TorchScript exporter's home)
    except ImportError:
        return "dynamo"
    return "torchscript"


def export_module(
    module: nn.Module,
    example: torch.Tensor,
    input_name: str,
    output_names: list[str],
    *,
    exporter: str = "auto",
) -> bytes:
    """One module -> serialised ONNX model with a dynamic batch axis (``example`` on CPU, batch >= 2)."""
    if resolve_exporter(exporter) == "torchscript":
        buffer = io.BytesIO()
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                buffer,
                input_names=[input_name],
                output_names=output_names,
                opset_version=OPSET,
                dynamo=False,
                dynamic_axes={name: {0: "batch"} for name in [input_name, *output_names]},
            )
        return buffer.getvalue()
    batch = torch.export.Dim("batch", min=1)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[input_name],
            output_names=output_names,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    assert program is not None
    return program.model_proto.SerializeToString()


@dataclass
class OnnxGraphs:
    """Serialised graphs of one network: what :class:`OnnxEarlyExitRunner` and :func:`save_onnx` take."""

    stages: list[bytes]
    branches: list[bytes]
    static: bytes
    num_exits: int
    input_shape: tuple[int, ...]
    num_classes: int
    exporter: str = "torchscript"
    _fused: dict[str, bytes] = field(default_factory=dict, repr=False)

    def early_exit(self, metric: str = "max_prob") -> bytes:
        """The batch-1 ``If`` graph scoring ``metric`` (composed once per metric: ``compose_early_exit``)."""
        if metric not in self._fused:
            self._fused[metric] = compose_early_exit(self.stages, self.branches, metric)
        return self._fused[metric]

    def as_mapping(self, metric: str | None = "max_prob") -> dict[str, Any]:
        """The runner's ``graphs``; ``metric``: the batch-1 graph's score (``None``: no batch-1 graph)."""
        out: dict[str, Any] = {"stages": self.stages, "branches": self.branches, "static": self.static}
        if metric is not None:
            out.update(early_exit=self.early_exit(metric), early_exit_metric=metric)
        return out


def export_onnx(model: MultiExitNet, *, with_static: bool = True, exporter: str = "auto") -> OnnxGraphs:
    """Export every stage, every branch (with exit features) and the static network of ``model``.

    The model is copied to the CPU in eval mode first; it is not changed. The static graph is the
    backbone alone (what the static contender runs). ``exporter``: see :func:`resolve_exporter`.
    """
    exporter = resolve_exporter(exporter)
    cpu = exportable_copy(model).to("cpu").float().eval()
    x = torch.randn(2, *cpu.backbone.input_shape, generator=torch.Generator().manual_seed(0))
    stages, branches = [], []
    h = x
    with torch.no_grad():
        for k in range(cpu.num_exits):
            stages.append(export_module(_Stage(cpu, k).eval(), h, "x", ["h"], exporter=exporter))
            h = cpu.run_stage(k, h)
            if k < cpu.num_exits - 1:
                branch = _BranchWithFeatures(cpu.branches[k]).eval()
                branches.append(export_module(branch, h, "h", ["logits", "features"], exporter=exporter))
    static = export_module(cpu.backbone, x, "x", ["logits"], exporter=exporter) if with_static else b""
    shape, classes = tuple(cpu.backbone.input_shape), cpu.backbone.num_classes
    return OnnxGraphs(stages, branches, static, cpu.num_exits, shape, classes, exporter)


def save_onnx(
    graphs: OnnxGraphs,
    folder: str | Path,
    *,
    policy_file: str = "policy.json",
    early_exit_metric: str | None = "max_prob",
) -> Path:
    """Write ``stage_k.onnx``, ``branch_k.onnx``, ``static.onnx``, ``early_exit.onnx`` (the batch-1 graph
    for ``early_exit_metric``, the policy's score; ``None``: not written) and ``manifest.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, Any] = {"stages": [], "branches": []}
    for kind, key, blobs in (("stage", "stages", graphs.stages), ("branch", "branches", graphs.branches)):
        for k, blob in enumerate(blobs):
            name = f"{kind}_{k}.onnx"
            write_bytes_atomic(blob, folder / name)
            names[key].append(name)
    if graphs.static:
        write_bytes_atomic(graphs.static, folder / "static.onnx")
    if early_exit_metric is not None:
        write_bytes_atomic(graphs.early_exit(early_exit_metric), folder / "early_exit.onnx")
    manifest = {
        "format": FORMAT_VERSION,
        "num_exits": graphs.num_exits,
        "input_shape": list(graphs.input_shape),
        "num_classes": graphs.num_classes,
        **names,
        "static": "static.onnx" if graphs.static else None,
        "early_exit": (
            {"file": "early_exit.onnx", "metric": early_exit_metric, "inputs": ["x", "thresholds"]}
            if early_exit_metric is not None
            else None
        ),
        "policy": policy_file,
        "inputs": {"stage": "x", "branch": "h"},
        "outputs": {"stage": "h (last stage: logits)", "branch": ["logits", "features"]},
        "features": ["max_prob", "entropy", "margin"],
        "opset": OPSET,
        "exported_with": f"torch {torch.__version__} torch.onnx.export ({graphs.exporter} exporter)",
    }
    write_text_atomic(json.dumps(manifest, indent=2), folder / MANIFEST)
    return folder


def runner_source() -> str:
    """The source of the torch-free runner module (``ddecs_ort.py`` in exported folders)."""
    import inspect

    from ddecs_search.runtime import _ort

    return inspect.getsource(_ort)
