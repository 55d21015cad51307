"""The observation an RL exit policy sees at an early exit, built identically in training and inference.

Two observations (``policy.options.observation``):

``confidence`` (default): ``[one_hot(k, E-1), max_prob, entropy / log(C), margin, agree_prev]``
(float32, every entry in [0, 1]): the exit index as a one-hot over the ``E-1`` early exits, then the
four exit features of :data:`~ddecs_search.policies.FEATURE_NAMES` with the entropy divided by its
largest possible value ``log(C)`` (``C`` classes) so that all inputs share one scale. ``C`` is read from
the validation table at fit time and stored with the policy, so live inference divides by the same number.

``rich``: the same, then the table's rich columns (``FeatureSpec.names``: top-k probabilities and
agreement / total-variation divergence with every earlier exit, in [0, 1]; the tanh of a fixed random
projection of the branch's pooled hidden features, in [-1, 1]), then the cost spent so far, the
normalised path cost ``c[k]`` of leaving at exit ``k`` (stored with the policy).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ddecs_search.policies._features import ENTROPY, FEATURE_NAMES, NUM_BASE, FeatureSpec
from ddecs_search.policies._table import ExitTable


def observation_size(num_exits: int, spec: FeatureSpec | None = None) -> int:
    """Length of the observation vector for a network with ``num_exits`` exits (final included)."""
    base = num_exits - 1 + len(FEATURE_NAMES)
    return base if spec is None else base + spec.width(num_exits) + 1


def entropy_scale(table: ExitTable) -> float:
    """``log(C)``, with ``C`` the number of classes seen in ``table`` (labels or predictions, >= 2)."""
    num_classes = max(int(table.labels.max(initial=0)), int(table.predictions.max(initial=0))) + 1
    return math.log(max(num_classes, 2))


def observation(
    exit_index: int,
    features: torch.Tensor,
    num_exits: int,
    scale: float,
    path_cost: np.ndarray | None = None,
) -> torch.Tensor:
    """``(B, F)`` raw features at early exit ``exit_index`` -> ``(B, observation_size)`` float32.

    With ``path_cost`` (the rich observation) the feature columns after the first four are appended as
    they are, then ``path_cost[exit_index]``; without it only the first four columns are read.
    """
    b = features.shape[0]
    one_hot = torch.zeros(b, num_exits - 1, dtype=torch.float32, device=features.device)
    one_hot[:, exit_index] = 1.0
    feats = features[:, :NUM_BASE].to(torch.float32).clone()
    feats[:, ENTROPY] = feats[:, ENTROPY] / scale
    parts = [one_hot, feats.clamp(0.0, 1.0)]
    if path_cost is not None:
        cost = torch.full((b, 1), float(path_cost[exit_index]), dtype=torch.float32, device=features.device)
        parts += [features[:, NUM_BASE:].to(torch.float32), cost]
    return torch.cat(parts, dim=1)


def observation_table(features: np.ndarray, scale: float, path_cost: np.ndarray | None = None) -> np.ndarray:
    """Every early exit's observation for a whole table: ``(N, E, F)`` -> ``(N, E-1, observation_size)``."""
    feats = torch.from_numpy(np.ascontiguousarray(features))
    e = feats.shape[1]
    return torch.stack(
        [observation(k, feats[:, k], e, scale, path_cost) for k in range(e - 1)], dim=1
    ).numpy()
