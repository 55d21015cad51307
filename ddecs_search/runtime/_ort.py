"""Early-exit inference on ONNX Runtime with the exit decision in numpy: needs only onnxruntime and numpy.

This file imports nothing but the standard library, numpy and onnxruntime, because ``ddecs-search export``
copies it verbatim next to the ONNX files (as ``ddecs_ort.py``), where ``predict.py`` uses it without
torch or ddecs-search installed. The package uses the same code for its measurements, so what is measured
is what is deployed.

Graphs (written by :func:`ddecs_search.runtime.export_onnx`, listed in ``manifest.json``):

- ``stage_k.onnx``: ``x`` -> ``h`` (stage ``k``; the last stage includes the head and outputs logits);
- ``branch_k.onnx``: ``h`` -> ``logits`` ``(B, C)`` and ``features`` ``(B, 3)`` = max-prob, entropy,
  margin, computed in the graph exactly as ``ddecs_search.policies.exit_features`` does;
- ``static.onnx``: the static network, ``x`` -> ``logits``;
- ``early_exit.onnx`` (optional): batch-1 early exit as ONE graph, stages and branches nested in ``If``
  nodes with the threshold decision inside (``x``, ``thresholds`` -> ``prediction``, ``exit``; built by
  ``ddecs_search.runtime.compose_early_exit``). At batch 1 a LeNet stage costs about as much as a
  ``session.run`` call (~10 us), so one call instead of one per stage and branch is most of the gain.
  Used for threshold decisions on the metric it was built for; other decisions run module by module.

The decision (:class:`ExitDecision`) reads the policy's JSON state (``policy.json``) and adds the fourth
feature, ``agree_prev`` (this exit's prediction equals the previous exit's), only where it is needed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
FUSED_OUTPUTS = ["prediction", "exit"]  # of early_exit.onnx
MAX_PROB, ENTROPY, MARGIN, AGREE_PREV = range(4)  # columns of the feature vector (FEATURE_NAMES)
_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, np.float32(0.0)),
    "silu": lambda v: v / (np.float32(1.0) + np.exp(-v)),
    "elu": lambda v: np.where(v > 0, v, np.expm1(v)),
}


def ort_version() -> str:
    """The installed onnxruntime version."""
    return str(ort.__version__)


def session_options(threads: int) -> ort.SessionOptions:
    """Sequential execution with ``threads`` intra-op threads and full graph optimisation.

    One inter-op thread: the graphs are chains, so parallel branches do not exist; spinning is disabled so
    idle pool threads do not steal cores from other processes between the many tiny calls of early exit.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class ExitDecision:
    """A policy's online exit decision in numpy, from its JSON form ``{"kind": ..., "state": ...}``.

    Supported: ``static`` (never exit), ``threshold`` (max-prob or entropy), ``qtable`` (max-prob bins),
    ``ppo``/``dqn`` exported as thresholds or as an MLP over the observation
    ``[one_hot(k), max_prob, entropy / log C, margin, agree_prev]`` clamped to [0, 1]. Comparisons use
    float32 features against the thresholds as torch does, so decisions match the torch path except where
    a feature lies within float rounding of a threshold.
    """

    def __init__(self, kind: str, state: Mapping[str, Any], num_exits: int) -> None:
        self.kind = kind
        self.num_exits = int(num_exits)
        self.needs_agree = False
        self._thresholds: np.ndarray | None = None
        self._score = "max_prob"
        rich = (state.get("options") or {}).get("observation", "confidence") != "confidence"
        if kind == "gate" or (rich and state.get("mode") != "threshold"):
            raise ValueError(
                f"the {kind} policy ({'rich observation' if rich else 'learned gate'}) is not supported by "
                "the ONNX runner, which computes the confidence features only: use runtime torch"
            )
        if kind == "static":
            pass
        elif kind == "threshold":
            self._set_thresholds(state["metric"], state["thresholds"])
        elif kind == "qtable":
            self._q = np.asarray(state["q"], dtype=np.float64)
            self._bins = int(state["options"]["bins"])
        elif kind in ("ppo", "dqn"):
            if state["mode"] == "threshold":
                self._set_thresholds("max_prob", state["thresholds"])
            else:
                self.kind = "mlp"
                self.needs_agree = True
                self._scale = np.float32(state["entropy_scale"])
                self._layers = [_layer(item) for item in state["net"]]
        else:
            raise ValueError(f"policy kind {kind!r} cannot drive inference (oracle reads labels?)")

    @classmethod
    def from_json(cls, policy: Mapping[str, Any] | str | os.PathLike[str], num_exits: int) -> ExitDecision:
        """From the dict ``ExitPolicy.save`` writes, or the path of that JSON file."""
        data = policy if isinstance(policy, Mapping) else json.loads(Path(policy).read_text())
        return cls(str(data["kind"]), data.get("state") or {}, num_exits)

    def _set_thresholds(self, metric: str, thresholds: Sequence[float]) -> None:
        if metric not in ("max_prob", "entropy"):
            raise ValueError(f"threshold metric must be 'max_prob' or 'entropy', got {metric!r}")
        self.kind = "threshold"
        self._score = metric
        ts = [float(t) for t in thresholds]
        # score >= t with score = max_prob, or -entropy >= -t; float32 like torch's wrapped scalars
        self._thresholds = np.asarray(ts if metric == "max_prob" else [-t for t in ts], dtype=np.float32)

    @property
    def graph_metric(self) -> str | None:
        """The score the batch-1 graph must compute for this decision (``None``: not expressible there)."""
        if self.kind == "threshold":
            return self._score
        return "max_prob" if self.kind == "static" else None

    def graph_thresholds(self) -> np.ndarray | None:
        """``(E-1,)`` float32 ``thresholds`` input of ``early_exit.onnx`` (``score >= t``; for entropy
        ``t`` is minus the entropy threshold), ``+inf`` everywhere for static; ``None`` if not expressible."""
        if self.kind == "threshold":
            assert self._thresholds is not None
            return self._thresholds.copy()
        if self.kind == "static":
            return np.full(max(self.num_exits - 1, 1), np.inf, dtype=np.float32)
        return None

    def exit_mask(self, k: int, features: np.ndarray, agree: np.ndarray | None = None) -> np.ndarray:
        """Early exit ``k``: ``features`` ``(B, 3)`` float32 (and ``agree`` ``(B,)`` when
        :attr:`needs_agree`) -> ``(B,)`` bool, True = leave now."""
        if self.kind == "threshold":
            assert self._thresholds is not None
            score = features[:, MAX_PROB] if self._score == "max_prob" else -features[:, ENTROPY]
            return score >= self._thresholds[k]
        if self.kind == "static":
            return np.zeros(features.shape[0], dtype=bool)
        if self.kind == "qtable":
            bins = np.clip(
                (features[:, MAX_PROB].astype(np.float64) * self._bins).astype(np.int64), 0, self._bins - 1
            )
            q = self._q[k, bins]  # (B, 2)
            return q[:, 1] > q[:, 0]
        return self._mlp_exits(k, features, agree)

    def _mlp_exits(self, k: int, features: np.ndarray, agree: np.ndarray | None) -> np.ndarray:
        b = features.shape[0]
        obs = np.zeros((b, self.num_exits - 1 + 4), dtype=np.float32)
        obs[:, k] = 1.0
        feats = obs[:, self.num_exits - 1 :]
        feats[:, :3] = features
        feats[:, ENTROPY] = features[:, ENTROPY] / self._scale
        feats[:, AGREE_PREV] = 0.0 if agree is None else agree
        np.clip(feats, 0.0, 1.0, out=feats)
        v = obs
        for layer in self._layers:
            v = layer(v)
        return v[:, 1] > v[:, 0]


def _layer(item: Mapping[str, Any]) -> Any:
    if "linear" in item:
        weight = np.asarray(item["linear"]["weight"], dtype=np.float32).T.copy()  # (in, out)
        bias = np.asarray(item["linear"]["bias"], dtype=np.float32)
        return lambda v: v @ weight + bias
    return _ACTIVATIONS[item["activation"]]


class OnnxEarlyExitRunner:
    """Stage -> branch -> decision -> next stage on ONNX Runtime, stopping at the exit.

    Batch 1 runs ``early_exit.onnx`` (one ``session.run``) when it is given and the decision is a
    threshold on its metric; larger batches run module by module, removing samples as they leave.

    Args:
        graphs: ``{"stages": [...], "branches": [...], "static": ..., "early_exit": ...,
            "early_exit_metric": "max_prob" | "entropy"}``, each graph a path or the serialised model
            bytes (as described in the module docstring); ``static`` and ``early_exit`` are optional.
        decision: the exit decision.
        threads: ONNX Runtime intra-op threads (``measurement.threads``).
    """

    def __init__(self, graphs: Mapping[str, Any], decision: ExitDecision, *, threads: int = 1) -> None:
        opts = session_options(threads)
        providers = ["CPUExecutionProvider"]

        def session(graph: Any) -> ort.InferenceSession:
            src = graph if isinstance(graph, bytes) else str(graph)
            return ort.InferenceSession(src, sess_options=opts, providers=providers)

        self.stages = [session(g) for g in graphs["stages"]]
        self.branches = [session(g) for g in graphs["branches"]]
        self.static_session = session(graphs["static"]) if graphs.get("static") is not None else None
        if len(self.branches) != len(self.stages) - 1:
            raise ValueError(f"{len(self.stages)} stages need {len(self.stages) - 1} branches")
        self.num_exits = len(self.stages)
        if decision.num_exits != self.num_exits:
            raise ValueError(f"decision is for {decision.num_exits} exits, the graphs have {self.num_exits}")
        self.decision = decision
        self.threads = threads
        # the batch-1 graph: kept for timing forced paths (the latency table) whatever the decision;
        # used by early_exit only when the decision is a threshold on the metric it computes
        self.fused_session = session(graphs["early_exit"]) if graphs.get("early_exit") is not None else None
        self.fused_metric = graphs.get("early_exit_metric", "max_prob") if self.fused_session else None
        thresholds = decision.graph_thresholds()
        self.uses_fused = (
            self.fused_session is not None
            and thresholds is not None
            and decision.graph_metric == self.fused_metric
        )
        self._fused_thresholds = thresholds if self.uses_fused else None

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike[str], *, threads: int = 1, policy: Any = None
    ) -> OnnxEarlyExitRunner:
        """Load an exported folder: ``manifest.json``, the graphs, and ``policy.json`` (or ``policy``)."""
        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{folder / MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT_VERSION}"
            )
        fused = manifest.get("early_exit") or {}
        graphs = {
            "stages": [folder / f for f in manifest["stages"]],
            "branches": [folder / f for f in manifest["branches"]],
            "static": folder / manifest["static"] if manifest.get("static") else None,
            "early_exit": folder / fused["file"] if fused.get("file") else None,
            "early_exit_metric": fused.get("metric", "max_prob"),
        }
        if policy is None:
            policy = folder / manifest.get("policy", "policy.json")
            if not Path(policy).is_file():
                policy = folder.parent / "policy.json"
        decision = (
            policy
            if isinstance(policy, ExitDecision)
            else ExitDecision.from_json(policy, manifest["num_exits"])
        )
        return cls(graphs, decision, threads=threads)

    # -- single modules (the latency table times these) --------------------------------------------------
    def run_stage(self, k: int, x: np.ndarray) -> np.ndarray:
        """Stage ``k`` (the last one outputs the final logits)."""
        return self.stages[k].run(None, {"x": x})[0]

    def run_branch(self, k: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Branch ``k``: ``(logits (B, C), features (B, 3))``."""
        logits, feats = self.branches[k].run(None, {"h": h})
        return logits, feats

    def branch_and_decide(self, k: int, h: np.ndarray, prev_pred: np.ndarray | None = None) -> np.ndarray:
        """Branch ``k`` plus its exit decision: what early exit pays at every exit it passes."""
        logits, feats = self.run_branch(k, h)
        agree = None
        if self.decision.needs_agree and prev_pred is not None:
            agree = (logits.argmax(axis=1) == prev_pred).astype(np.float32)
        return self.decision.exit_mask(k, feats, agree)

    def run_fused(self, x: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``early_exit.onnx`` on one sample with explicit ``thresholds``: ``(prediction (1,), exit (1,))``.

        ``-inf`` at exit ``k`` and ``+inf`` before it forces a sample out at ``k``: how the latency table
        times each path of the graph the runner executes."""
        if self.fused_session is None:
            raise ValueError("no early_exit graph was loaded")
        pred, ex = self.fused_session.run(FUSED_OUTPUTS, {"x": x, "thresholds": thresholds})
        return pred, ex

    def static(self, x: np.ndarray) -> np.ndarray:
        """The static network's logits ``(B, C)``."""
        if self.static_session is None:
            raise ValueError("no static graph was loaded")
        return self.static_session.run(None, {"x": x})[0]

    # -- early exit ----------------------------------------------------------------------------------------
    def early_exit(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(predictions (N,), exit_indices (N,))`` int64; samples that leave are removed from the batch."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[0] == 1:
            if self.uses_fused:
                pred, ex = self.fused_session.run(  # type: ignore[union-attr]
                    FUSED_OUTPUTS, {"x": x, "thresholds": self._fused_thresholds}
                )
                return pred, ex
            return self._early_exit_one(x)
        n = x.shape[0]
        predictions = np.empty(n, dtype=np.int64)
        exits = np.empty(n, dtype=np.int64)
        index = np.arange(n)
        prev_pred: np.ndarray | None = None
        h = x
        last = self.num_exits - 1
        for k in range(self.num_exits):
            h = self.run_stage(k, h)
            if k == last:
                predictions[index] = h.argmax(axis=1)
                exits[index] = k
                break
            logits, feats = self.run_branch(k, h)
            pred = logits.argmax(axis=1)
            agree = None
            if self.decision.needs_agree and prev_pred is not None:
                agree = (pred == prev_pred).astype(np.float32)
            mask = self.decision.exit_mask(k, feats, agree)
            if mask.any():
                predictions[index[mask]] = pred[mask]
                exits[index[mask]] = k
                keep = ~mask
                if not keep.any():
                    break
                h, index, pred = np.ascontiguousarray(h[keep]), index[keep], pred[keep]
            prev_pred = pred
        return predictions, exits

    def _early_exit_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batch-1 path module by module (decisions the batch-1 graph cannot express): the same decisions
        as the batched path without its index bookkeeping."""
        prev_pred: np.ndarray | None = None
        h = x
        last = self.num_exits - 1
        for k in range(self.num_exits):
            h = self.stages[k].run(None, {"x": h})[0]
            if k == last:
                return h.argmax(axis=1), np.array([k], dtype=np.int64)
            logits, feats = self.branches[k].run(None, {"h": h})
            agree = None
            if self.decision.needs_agree:
                pred = logits.argmax(axis=1)
                agree = None if prev_pred is None else (pred == prev_pred).astype(np.float32)
                prev_pred = pred
            if self.decision.exit_mask(k, feats, agree)[0]:
                return logits.argmax(axis=1), np.array([k], dtype=np.int64)
        raise AssertionError("unreachable")

    def predict(self, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Early exit over ``x`` in batches of ``batch_size``: concatenated predictions and exits."""
        preds, exits = [], []
        for start in range(0, x.shape[0], batch_size):
            p, e = self.early_exit(x[start : start + batch_size])
            preds.append(p)
            exits.append(e)
        return np.concatenate(preds), np.concatenate(exits)


def summary(predictions: np.ndarray, exits: np.ndarray, labels: np.ndarray, num_exits: int) -> dict[str, Any]:
    """Accuracy and exit fractions, the figures ``predict.py`` prints."""
    n = int(labels.shape[0])
    counts = np.bincount(exits, minlength=num_exits)
    return {
        "accuracy": float((predictions == labels).mean()) if n else math.nan,
        "samples": n,
        "exit_fractions": [float(c) / n for c in counts],
    }
