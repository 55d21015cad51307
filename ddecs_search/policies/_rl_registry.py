"""Registers the learned exit policies ``ppo``, ``dqn`` and ``qtable``.

The factories are lazy about the heavy parts: the policy classes import only numpy and torch, and Ray,
RLlib and gymnasium are imported inside ``fit``. Importing :mod:`ddecs_search.policies` therefore never
imports Ray, and a saved policy loads (``load_policy``) and runs without it.
"""

from __future__ import annotations

from ddecs_search.config import PolicyConfig
from ddecs_search.policies._base import ExitPolicy
from ddecs_search.policies._qtable import QTablePolicy
from ddecs_search.policies._registry import register_policy
from ddecs_search.policies._rllib import DQNExitPolicy, PPOExitPolicy, RLlibExitPolicy

__all__ = ["DQNExitPolicy", "PPOExitPolicy", "QTablePolicy", "RLlibExitPolicy"]


@register_policy("ppo")
def _ppo(config: PolicyConfig) -> ExitPolicy:
    return PPOExitPolicy(**config.options)


@register_policy("dqn")
def _dqn(config: PolicyConfig) -> ExitPolicy:
    return DQNExitPolicy(**config.options)


@register_policy("qtable")
def _qtable(config: PolicyConfig) -> ExitPolicy:
    return QTablePolicy(**config.options)
