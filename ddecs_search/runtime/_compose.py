"""One ONNX graph for batch-1 early exit: stage 0 -> branch 0 -> ``If(leave)`` then exit 0 else stage 1 -> ...

Why: at batch 1 on a CPU, a LeNet-sized stage or branch costs about as much as the Python
``session.run`` around it (~10-25 us each), so the per-module runner (one call per stage and per branch)
spends most of an early exit in call overhead. Nesting the stages and branches in ONNX ``If`` nodes makes
batch-1 early exit a single ``session.run`` that returns the prediction and the exit index.

The exit decision sits in the graph: ``leave at exit k  <=>  score >= thresholds[k]``, ``thresholds`` a
graph *input* ``(E-1,)``. The score is computed from the branch logits by the same kernels as the
per-module branch graph's features (``exit_features``): max-prob = ``max(exp(log_softmax))``; for the
entropy metric the score is ``sum(p * log p)`` = minus the entropy, compared with ``-t`` as
:class:`ExitDecision` does. Only the score the policy uses is computed (the other features cost ~10 tiny
kernels per exit). Threshold policies (``threshold``, ``ppo``/``dqn`` in threshold form) and ``static``
(all thresholds ``+inf``: branches evaluated, never taken, as the torch path does) use this graph. Because
the thresholds are inputs, the latency table can time this very graph with forced exits before any
policy is fitted (``-inf`` at exit ``k``, ``+inf`` before it): the table measures what the runner executes.

Built from the per-module graphs of :func:`~ddecs_search.runtime.export_onnx` with the ``onnx`` package
only (no second torch export); the graph is written to exported folders as ``early_exit.onnx`` and needs
nothing but onnxruntime to run.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
from onnx import TensorProto, helper

# names of the composed graph's inputs and outputs (the runner in _ort.py uses the same strings)
INPUTS = ("x", "thresholds")
METRICS = ("max_prob", "entropy")
OUTPUTS = ("prediction", "exit")


def _module(
    blob: bytes, prefix: str, upstream: str, keep: str | None = None
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], dict[str, str]]:
    """Nodes and initializers of one exported module, renamed with ``prefix``; its one input -> ``upstream``.

    ``keep``: only the nodes (and initializers) that output ``keep`` depends on (the branch's logits,
    without its feature nodes). Returns ``(nodes, initializers, outputs)`` with ``outputs`` mapping the
    module's output names (``h`` / ``logits`` / ``features``) to their new names.
    """
    model = onnx.load_from_string(blob)
    g = model.graph
    inits = {t.name for t in g.initializer}
    real_inputs = [i.name for i in g.input if i.name not in inits]
    if len(real_inputs) != 1:
        raise ValueError(f"{prefix}: expected one graph input, got {real_inputs}")

    def rename(name: str) -> str:
        if not name:
            return name
        return upstream if name == real_inputs[0] else prefix + name

    needed = None
    if keep is not None:  # walk back from `keep`: the nodes it depends on
        producer = {o: n for n in g.node for o in n.output}
        needed, todo = set(), [keep]
        while todo:
            node = producer.get(todo.pop())
            if node is not None and id(node) not in needed:
                needed.add(id(node))
                todo.extend(node.input)
    used: set[str] = set()
    nodes = []
    for node in g.node:
        if needed is not None and id(node) not in needed:
            continue
        used.update(node.input)
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"{prefix}: node {node.name or node.op_type} has a subgraph; cannot compose")
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = prefix + node.name if node.name else ""
        new.ClearField("input")
        new.ClearField("output")
        new.input.extend(rename(n) for n in node.input)
        new.output.extend(rename(n) for n in node.output)
        nodes.append(new)
    initializers = []
    for t in g.initializer:
        if t.name not in used:
            continue
        new_t = onnx.TensorProto()
        new_t.CopyFrom(t)
        new_t.name = prefix + t.name
        initializers.append(new_t)
    return nodes, initializers, {o.name: prefix + o.name for o in g.output}


def _leave(k: int, logits: str, suffix: str) -> onnx.GraphProto:
    """The ``then`` branch: prediction = argmax of ``logits``, exit = ``k``."""
    pred, ex = f"prediction_{suffix}", f"exit_{suffix}"
    nodes = [
        helper.make_node("ArgMax", [logits], [pred], axis=1, keepdims=0),
        helper.make_node(
            "Constant", [], [ex], value=helper.make_tensor(ex + "_v", TensorProto.INT64, [1], [k])
        ),
    ]
    return helper.make_graph(nodes, f"leave_{suffix}", [], _outs(pred, ex))


def _outs(pred: str, ex: str) -> list[onnx.ValueInfoProto]:
    return [
        helper.make_tensor_value_info(pred, TensorProto.INT64, [1]),
        helper.make_tensor_value_info(ex, TensorProto.INT64, [1]),
    ]


def _score(k: int, logits: str, metric: str) -> list[onnx.NodeProto]:
    """Nodes computing ``leave_{k}`` (``(1,)`` bool) from ``logits`` and ``thresholds[k]``.

    The arithmetic is the branch graph's (``exit_features``): log-softmax, exp, then the max (max-prob,
    exact whether by TopK or ReduceMax) or ``sum(p * log p)`` (minus the entropy, before its ``Neg``).
    """
    ls, p, score, idx, t = (f"{n}_{k}" for n in ("logsoftmax", "probs", "score", "index", "threshold"))
    axes = f"axes_{k}"
    nodes = [
        helper.make_node(
            "Constant", [], [axes], value=helper.make_tensor(axes + "_v", TensorProto.INT64, [1], [1])
        ),
        helper.make_node("LogSoftmax", [logits], [ls], axis=1),
        helper.make_node("Exp", [ls], [p]),
    ]
    if metric == "max_prob":
        nodes.append(helper.make_node("ReduceMax", [p, axes], [score], keepdims=0))  # (1,)
    else:
        nodes += [
            helper.make_node("Mul", [p, ls], [f"plogp_{k}"]),
            helper.make_node("ReduceSum", [f"plogp_{k}", axes], [score], keepdims=0),  # (1,) = -entropy
        ]
    return [
        *nodes,
        helper.make_node(
            "Constant", [], [idx], value=helper.make_tensor(idx + "_v", TensorProto.INT64, [1], [k])
        ),
        helper.make_node("Gather", ["thresholds", idx], [t], axis=0),  # (1,)
        helper.make_node("GreaterOrEqual", [score, t], [f"leave_{k}"]),  # (1,) bool: one element, as If needs
    ]


def compose_early_exit(stages: Sequence[bytes], branches: Sequence[bytes], metric: str = "max_prob") -> bytes:
    """The single batch-1 early-exit graph (see the module docstring) from per-module graphs.

    Inputs: ``x`` ``(1, ...)`` float32, ``thresholds`` ``(E-1,)`` float32 (for ``metric`` ``entropy``:
    minus the entropy thresholds, as :class:`ExitDecision` stores them). Outputs: ``prediction`` ``(1,)``
    int64, ``exit`` ``(1,)`` int64. Each level's initializers live in the subgraph that uses them, so
    ONNX Runtime optimises every level like a plain graph.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    e = len(stages)
    if len(branches) != e - 1:
        raise ValueError(f"{e} stages need {e - 1} branches, got {len(branches)}")
    first = onnx.load_from_string(stages[0])

    def level(k: int, upstream: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str, str]:
        """Nodes from stage ``k`` on, reading ``upstream``; returns (nodes, inits, prediction, exit)."""
        nodes, inits, outs = _module(stages[k], f"s{k}_", upstream)
        h = outs["h"]
        if k == e - 1:
            pred, ex = f"prediction_l{k}", f"exit_l{k}"
            nodes.append(helper.make_node("ArgMax", [h], [pred], axis=1, keepdims=0))
            nodes.append(
                helper.make_node(
                    "Constant", [], [ex], value=helper.make_tensor(ex + "_v", TensorProto.INT64, [1], [k])
                )
            )
            return nodes, inits, pred, ex
        b_nodes, b_inits, b_outs = _module(branches[k], f"b{k}_", h, keep="logits")
        nodes += b_nodes
        inits += b_inits
        nodes += _score(k, b_outs["logits"], metric)
        then_g = _leave(k, b_outs["logits"], f"t{k}")
        r_nodes, r_inits, r_pred, r_ex = level(k + 1, h)
        else_g = helper.make_graph(r_nodes, f"continue_{k}", [], _outs(r_pred, r_ex), initializer=r_inits)
        pred, ex = f"prediction_l{k}", f"exit_l{k}"
        nodes.append(
            helper.make_node("If", [f"leave_{k}"], [pred, ex], then_branch=then_g, else_branch=else_g)
        )
        return nodes, inits, pred, ex

    x_info = next(i for i in first.graph.input if i.name == "x")
    nodes, inits, pred, ex = level(0, "x")
    nodes += [
        helper.make_node("Identity", [pred], [OUTPUTS[0]]),
        helper.make_node("Identity", [ex], [OUTPUTS[1]]),
    ]
    graph = helper.make_graph(
        nodes,
        "early_exit_batch1",
        [
            x_info,
            helper.make_tensor_value_info("thresholds", TensorProto.FLOAT, [max(e - 1, 1)]),
        ],
        _outs(*OUTPUTS),
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=list(first.opset_import), producer_name="ddecs-search")
    model.ir_version = first.ir_version
    return model.SerializeToString()
