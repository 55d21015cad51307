"""Non-learned reference policies: the static network and the oracle."""

from __future__ import annotations

import numpy as np
import torch

from ddecs_search.config import PolicyConfig
from ddecs_search.errors import ConfigError
from ddecs_search.policies._base import ExitPolicy
from ddecs_search.policies._registry import register_policy
from ddecs_search.policies._table import ExitTable


class StaticPolicy(ExitPolicy):
    """Never exits early: every sample takes the final classifier (the static network's answer)."""

    kind = "static"

    def exit_mask(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        return torch.zeros(features.shape[0], dtype=torch.bool, device=features.device)


class OraclePolicy(ExitPolicy):
    """Leaves at the earliest exit that is correct — it reads the labels, so it is a bound, not a policy.

    It has the highest accuracy any exit policy can reach on these exits, and on every sample that
    another policy gets right, the oracle's path is no more expensive. Samples that no exit gets right
    leave at the first exit (wrong either way, so the cheapest choice).
    """

    kind = "oracle"
    deployable = False

    def exit_mask(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        raise TypeError("the oracle reads ground truth; it cannot drive real inference")

    def decide(self, features: np.ndarray) -> np.ndarray:
        raise TypeError("the oracle needs labels: call decide_table(table)")

    def decide_table(self, table: ExitTable) -> np.ndarray:
        correct = table.correct
        any_correct = correct.any(axis=1)
        return np.where(any_correct, correct.argmax(axis=1), 0).astype(np.int64)


def _no_options(config: PolicyConfig) -> None:
    if config.options:
        raise ConfigError(
            f"'policy.options': the {config.kind} policy takes no options, got {sorted(config.options)}"
        )


@register_policy("static")
def _static(config: PolicyConfig) -> ExitPolicy:
    _no_options(config)
    return StaticPolicy()


@register_policy("oracle")
def _oracle(config: PolicyConfig) -> ExitPolicy:
    _no_options(config)
    return OraclePolicy()
