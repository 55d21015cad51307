"""Portable forms of a learned RLlib decision in plain torch: an MLP copy of the RLModule, or thresholds.

The exported forms need only torch and numpy, travel as JSON (weights as lists) and make the same
decision as the RLlib module: ``exit`` when the action-1 score beats the action-0 score (PPO logits or
DQN Q-values; ties continue, like ``argmax``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from ddecs_search.policies._features import MAX_PROB

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU}
_NAMES = {cls: name for name, cls in _ACTIVATIONS.items()}


class ExitMLP(nn.Module):
    """Linear layers and activations in order: ``(B, observation_size)`` -> ``(B, 2)`` action scores."""

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    @torch.no_grad()
    def exits(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: the greedy action is "exit" (action 1)."""
        scores = self.net(obs.to(torch.float32))
        return scores[:, 1] > scores[:, 0]

    @classmethod
    def from_sequentials(cls, *parts: nn.Module) -> ExitMLP:
        """Copy the ``Linear`` and activation layers of ``parts`` (in order) into a plain MLP."""
        layers: list[nn.Module] = []
        for part in parts:
            for layer in part.modules():  # depth first, in registration order
                if isinstance(layer, nn.Linear):
                    copy = nn.Linear(layer.in_features, layer.out_features)
                    copy.load_state_dict({k: v.detach().cpu().clone() for k, v in layer.state_dict().items()})
                    layers.append(copy)
                elif type(layer) in _NAMES:
                    layers.append(type(layer)())
                elif next(layer.children(), None) is None:  # a leaf that is neither: not an MLP
                    raise ValueError(
                        f"cannot export {type(layer).__name__}: only Linear and {sorted(_ACTIVATIONS)}"
                    )
        return cls(layers).eval()

    def state(self) -> list[dict[str, Any]]:
        """Layers as JSON: ``{"linear": {"weight": [[...]], "bias": [...]}}`` or ``{"activation": str}``."""
        out: list[dict[str, Any]] = []
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                out.append({"linear": {"weight": layer.weight.tolist(), "bias": layer.bias.tolist()}})
            else:
                out.append({"activation": _NAMES[type(layer)]})
        return out

    @classmethod
    def from_state(cls, state: list[dict[str, Any]]) -> ExitMLP:
        layers: list[nn.Module] = []
        for item in state:
            if "linear" in item:
                weight = torch.tensor(item["linear"]["weight"], dtype=torch.float32)
                linear = nn.Linear(weight.shape[1], weight.shape[0])
                linear.load_state_dict({"weight": weight, "bias": torch.tensor(item["linear"]["bias"])})
                layers.append(linear)
            else:
                layers.append(_ACTIVATIONS[item["activation"]]())
        return cls(layers).eval()


def fit_thresholds(
    exit_mask: Callable[[int, torch.Tensor], torch.Tensor], features: np.ndarray
) -> tuple[list[float], list[float]]:
    """Per early exit, the max-prob threshold that best reproduces ``exit_mask`` on ``features``.

    For each early exit ``k`` the decisions on every row of ``features`` ``(N, E, F)`` are compared with
    "exit iff max_prob >= t" for every cut between distinct max-prob values. Returns the thresholds
    (``inf`` = never exit) and the fraction of rows each reproduces; an agreement of 1.0 at every exit
    means the learned decision is monotone in max-prob on this table, and thresholds can replace the MLP.
    """
    feats = torch.from_numpy(np.ascontiguousarray(features))
    thresholds, agreement = [], []
    for k in range(features.shape[1] - 1):
        decisions = exit_mask(k, feats[:, k]).cpu().numpy().astype(bool)
        values = features[:, k, MAX_PROB].astype(np.float32)
        order = np.argsort(values, kind="stable")
        v, d = values[order], decisions[order]
        # cut c: rows [0, c) continue, rows [c, N) exit; only cuts between distinct values are realisable
        continue_before = np.concatenate([[0], np.cumsum(~d)])
        exit_from = np.concatenate([np.cumsum(d[::-1])[::-1], [0]])
        valid = np.concatenate([[True], v[1:] > v[:-1], [True]])
        score = np.where(valid, continue_before + exit_from, -1)
        cut = int(score.argmax())
        agreement.append(float(score[cut] / len(v)))
        if cut == len(v):
            thresholds.append(float("inf"))
        elif cut == 0:
            thresholds.append(float(v[0]))
        else:  # halfway between the two rows, in float32 as exit_mask compares
            mid = np.float32(0.5 * (float(v[cut - 1]) + float(v[cut])))
            thresholds.append(float(mid if v[cut - 1] < mid <= v[cut] else v[cut]))
    return thresholds, agreement
