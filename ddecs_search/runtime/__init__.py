"""Deployment runtimes: early-exit inference exported to ONNX and run on ONNX Runtime (CPU).

- :func:`export_onnx` / :func:`save_onnx`: a trained ``MultiExitNet`` -> one ONNX graph per stage, per
  branch (logits plus exit features) and the static network; every branch the search builds exports,
  including adaptive pools whose output does not divide the feature map (:class:`ExportableAdaptivePool2d`).
- :func:`compose_early_exit`: batch-1 early exit as one graph (stages and branches nested in ``If`` nodes,
  the threshold decision inside): one ``session.run`` per sample.
- :class:`OnnxEarlyExitRunner` + :class:`ExitDecision`: batch 1 through that graph (threshold decisions),
  else stage -> branch -> numpy decision -> next stage, removing samples as they leave; needs only
  onnxruntime and numpy (its module is copied into exported folders).
- :func:`inference_backend`: what ``measurement.runtime`` (``auto | torch | onnxruntime``) measures with.
"""

from ddecs_search.runtime._backend import (
    RUNTIMES,
    InferenceBackend,
    OnnxRuntimeBackend,
    TorchBackend,
    inference_backend,
    resolve_runtime,
    runtime_label,
)
from ddecs_search.runtime._compose import compose_early_exit
from ddecs_search.runtime._export import (
    EXPORTERS,
    OnnxGraphs,
    export_onnx,
    resolve_exporter,
    runner_source,
    save_onnx,
)
from ddecs_search.runtime._ort import ExitDecision, OnnxEarlyExitRunner, ort_version
from ddecs_search.runtime._pool import ExportableAdaptivePool2d, adaptive_bins, exportable_copy

__all__ = [
    "EXPORTERS",
    "RUNTIMES",
    "ExitDecision",
    "ExportableAdaptivePool2d",
    "InferenceBackend",
    "OnnxEarlyExitRunner",
    "OnnxGraphs",
    "OnnxRuntimeBackend",
    "TorchBackend",
    "adaptive_bins",
    "compose_early_exit",
    "export_onnx",
    "exportable_copy",
    "inference_backend",
    "ort_version",
    "resolve_exporter",
    "resolve_runtime",
    "runner_source",
    "runtime_label",
    "save_onnx",
]
