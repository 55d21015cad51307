"""Exit policies: when a sample may leave. Fitted and scored on cached exit-output tables."""

from ddecs_search.policies._base import ExitPolicy
from ddecs_search.policies._features import (
    FEATURE_NAMES,
    FeatureSpec,
    exit_feature_row,
    exit_features,
    extra_features,
)
from ddecs_search.policies._gate import GatePolicy
from ddecs_search.policies._registry import create_policy, list_policies, load_policy, register_policy
from ddecs_search.policies._rl_registry import DQNExitPolicy, PPOExitPolicy, QTablePolicy, RLlibExitPolicy
from ddecs_search.policies._static_oracle import OraclePolicy, StaticPolicy
from ddecs_search.policies._table import DecisionStats, ExitTable, score_decisions, selection_split
from ddecs_search.policies._threshold import ThresholdPolicy
from ddecs_search.profiling import ExitCosts  # re-export: profiling owns it (its producer)

__all__ = [
    "FEATURE_NAMES",
    "DQNExitPolicy",
    "DecisionStats",
    "ExitCosts",
    "ExitPolicy",
    "ExitTable",
    "FeatureSpec",
    "GatePolicy",
    "OraclePolicy",
    "PPOExitPolicy",
    "QTablePolicy",
    "RLlibExitPolicy",
    "StaticPolicy",
    "ThresholdPolicy",
    "create_policy",
    "exit_feature_row",
    "exit_features",
    "extra_features",
    "list_policies",
    "load_policy",
    "register_policy",
    "score_decisions",
    "selection_split",
]


def __getattr__(name: str) -> object:
    """Lazy exports: the RL environment module imports gymnasium, which plain policies do not need."""
    if name == "mean_return":
        from ddecs_search.policies._env import mean_return

        return mean_return
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
