"""A per-exit learned gate: the strong simple baseline that RL exit policies must beat.

At each early exit ``k`` a small classifier (logistic regression, or one tanh hidden layer) reads the
exit's feature row — the four confidence features, or the rich layout with ``observation: rich`` —
standardised with the fit table's mean and spread, and predicts whether *leaving now loses nothing*:
exit ``k`` is right, or no later exit is (``target: no_loss``; ``target: correct`` predicts only
whether exit ``k`` is right). The classifier does not depend on the cost weight; one threshold per exit
on its logit does, and is tuned like :class:`ThresholdPolicy`'s, on the same fit table, for
``accuracy - cost_weight * mean normalised cost``.

Everything is seeded and the fitted state is plain JSON (weights as lists): it loads and runs with
torch only, no Ray, no pickle.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ddecs_search._threads import torch_threads
from ddecs_search.config import PolicyConfig
from ddecs_search.policies._base import ExitPolicy
from ddecs_search.policies._features import NUM_BASE
from ddecs_search.policies._registry import register_policy
from ddecs_search.policies._rl_options import (
    OBSERVATION_OPTIONS,
    Option,
    feature_spec_from_options,
    resolve_options,
)
from ddecs_search.policies._rl_portable import ExitMLP
from ddecs_search.policies._table import ExitTable
from ddecs_search.policies._threshold import tune_thresholds


class GatePolicy(ExitPolicy):
    """Leave at early exit ``k`` when gate ``k``'s logit is >= ``thresholds[k]`` (``inf`` = never).

    Options (``policy.options``): the observation options (``observation``, ``topk``, ``hidden_dim``,
    ``projection_seed``), ``hidden`` (0 = logistic regression), ``l2``, ``max_iter`` (L-BFGS steps),
    ``target`` and ``seed``. After :meth:`fit`: ``train_time_s`` and ``final_return`` (objective on the
    fit table).
    """

    kind = "gate"
    options_spec: ClassVar[dict[str, Option]] = {
        **OBSERVATION_OPTIONS,
        "hidden": Option(0, "int", low=0, help="0: logistic regression; N: one tanh layer of N units"),
        "l2": Option(1e-3, "float", help="weight decay of the gate's loss"),
        "max_iter": Option(100, "int", low=1, help="L-BFGS iterations per gate"),
        "target": Option("no_loss", "choice", choices=("no_loss", "correct")),
        "seed": Option(0, "int"),
    }

    def __init__(self, **options: Any) -> None:
        self.options = resolve_options(self.kind, options, self.options_spec)
        self.feature_spec = feature_spec_from_options(self.options)
        self.num_exits = 0
        self.nets: list[ExitMLP] = []
        self.mean: list[torch.Tensor] = []
        self.std: list[torch.Tensor] = []
        self.thresholds: list[float] | None = None
        self.train_time_s: float | None = None
        self.final_return: float | None = None

    # -- decisions --------------------------------------------------------------------------------------
    @torch.no_grad()
    def gate_logits(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` feature rows at early exit ``exit_index`` -> ``(B,)`` float32 gate logits."""
        if not self.nets:
            raise RuntimeError("the gate policy is not fitted: call fit() or load_policy()")
        net = self.nets[exit_index]
        if next(net.parameters()).device != features.device:
            net.to(features.device)
        mean = self.mean[exit_index].to(features.device)
        std = self.std[exit_index].to(features.device)
        if self.feature_spec is None:  # the confidence gate reads the first four columns of any table
            features = features[:, :NUM_BASE]
        return net((features.to(torch.float32) - mean) / std)[:, 0]

    def exit_mask(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        assert self.thresholds is not None
        return self.gate_logits(exit_index, features) >= self.thresholds[exit_index]

    def exit_mask_from_logits(
        self, exit_index: int, logits: torch.Tensor, prev_pred: torch.Tensor | None
    ) -> torch.Tensor:
        if self.feature_spec is not None:
            raise TypeError(
                "the gate policy reads the rich observation: call exit_mask_from_outputs "
                "(MultiExitNet.early_exit does)"
            )
        return super().exit_mask_from_logits(exit_index, logits, prev_pred)

    # -- training ---------------------------------------------------------------------------------------
    def fit(
        self,
        table: ExitTable,
        path_cost: np.ndarray,
        cost_weight: float,
        *,
        select: ExitTable | None = None,
    ) -> GatePolicy:
        """Train one gate per early exit on ``table`` (the fit part of validation), then tune thresholds."""
        self.check_table(table)
        start = time.perf_counter()
        opts = self.options
        e = table.num_exits
        correct = table.correct
        feats = torch.from_numpy(np.ascontiguousarray(table.features, dtype=np.float32))
        self.num_exits, self.nets, self.mean, self.std = e, [], [], []
        with torch_threads(1):  # tiny full-batch problems: threads only add overhead
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(opts["seed"])
                for k in range(e - 1):
                    if opts["target"] == "no_loss":
                        target = correct[:, k] >= correct[:, k + 1 :].max(axis=1)
                    else:
                        target = correct[:, k]
                    cols = feats[:, k] if self.feature_spec is not None else feats[:, k, :NUM_BASE]
                    self._fit_gate(cols, torch.from_numpy(target.astype(np.float32)))
            scores = np.stack([self.gate_logits(k, feats[:, k]).numpy() for k in range(e - 1)], axis=1)
        self.thresholds = tune_thresholds(scores, correct, path_cost, cost_weight)
        from ddecs_search.policies._env import mean_return

        self.final_return = mean_return(table, self.decide(table.features), path_cost, cost_weight)
        self.train_time_s = time.perf_counter() - start
        return self

    def _fit_gate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One gate: standardise ``x`` ``(N, F)``, fit a logistic / 1-hidden-layer net to ``y`` (L-BFGS)."""
        opts = self.options
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False).clamp_min(1e-6)
        z = (x - mean) / std
        f = x.shape[1]
        if opts["hidden"]:
            layers: list[nn.Module] = [nn.Linear(f, opts["hidden"]), nn.Tanh(), nn.Linear(opts["hidden"], 1)]
        else:
            layers = [nn.Linear(f, 1)]
        net = ExitMLP(layers)
        weights = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
        optim = torch.optim.LBFGS(net.parameters(), max_iter=opts["max_iter"], line_search_fn="strong_wolfe")
        loss_fn = nn.BCEWithLogitsLoss()

        def closure() -> torch.Tensor:
            optim.zero_grad()
            loss = loss_fn(net(z)[:, 0], y) + 0.5 * opts["l2"] * sum((w**2).sum() for w in weights)
            loss.backward()
            return loss

        if 0.0 < float(y.mean()) < 1.0:  # a constant target: keep the initial net (thresholds decide)
            optim.step(closure)
        self.nets.append(net.eval())
        self.mean.append(mean)
        self.std.append(std)

    # -- persistence ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "num_exits": self.num_exits,
            "nets": [net.state() for net in self.nets],
            "mean": [m.tolist() for m in self.mean],
            "std": [s.tolist() for s in self.std],
            "thresholds": self.thresholds,
            "train_time_s": self.train_time_s,
            "final_return": self.final_return,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.options = resolve_options(self.kind, state["options"], self.options_spec)
        self.feature_spec = feature_spec_from_options(self.options)
        self.num_exits = int(state["num_exits"])
        self.nets = [ExitMLP.from_state(s) for s in state["nets"]]
        self.mean = [torch.tensor(m, dtype=torch.float32) for m in state["mean"]]
        self.std = [torch.tensor(s, dtype=torch.float32) for s in state["std"]]
        self.thresholds = None if state["thresholds"] is None else [float(t) for t in state["thresholds"]]
        self.train_time_s = state["train_time_s"]
        self.final_return = state["final_return"]


@register_policy("gate")
def _gate(config: PolicyConfig) -> ExitPolicy:
    return GatePolicy(**config.options)
