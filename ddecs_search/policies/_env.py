"""A gymnasium environment over a cached validation :class:`ExitTable`: one episode = one sample.

Episode:
    ``reset`` draws a sample ``i`` uniformly from the table with the env's seeded generator
    (``reset(seed=...)``; ``reset(options={"sample": i})`` pins one). The agent starts at early exit 0 and
    walks the early exits in order; at exit ``k`` it observes
    ``[one_hot(k, E-1), max_prob, entropy / log(C), margin, agree_prev]`` (the ``confidence``
    observation) or, with ``rich=True``, that plus the table's rich columns and the cost spent so far
    (see ``_obs.py``).

Actions (``Discrete(2)``):
    ``0`` = continue, ``1`` = exit now. Continuing from the last *early* exit (``k = E-2``) reaches the
    final classifier, which always exits, so an episode lasts at most ``E-1`` steps.

Reward:
    Leaving at exit ``k`` (action 1 at an early exit, or action 0 at the last early exit for the final
    exit ``k = E-1``) ends the episode with

        ``r = correct(i, k) - cost_weight * c[k]``,   ``c = ExitCosts.normalised_path()``,

    where ``c[k]`` is the cost of leaving at ``k`` — stages ``0..k`` plus every branch evaluated on the
    way — divided by the static network's cost (so ``c[E-1] > 1``: the final exit pays the declined
    branches). Continuing gives 0. Undiscounted, an episode's return is exactly this sample's share of the
    objective every policy optimises, ``correct - cost_weight * cost`` of the path taken, and a
    deterministic policy's mean return over the table is ``accuracy - cost_weight * mean cost`` as
    :func:`score_decisions` reports it (:func:`mean_return`).

    The reward depends on the action. The published reference rewarded the correctness of the *current*
    exit whatever the agent chose, so the Q-values of both actions converged to the same number and the
    policy was noise; it also never updated the last early exit's state. Here "continue" from the last
    early exit is a terminal transition paid with the final exit's outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from ddecs_search.policies._obs import entropy_scale, observation_size, observation_table
from ddecs_search.policies._table import ExitTable

CONTINUE, EXIT = 0, 1


def reward_matrix(correct: np.ndarray, path_cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """``(N, E)`` reward of leaving sample ``i`` at exit ``k``: ``correct - cost_weight * path_cost``."""
    return (
        np.asarray(correct, dtype=np.float64) - cost_weight * np.asarray(path_cost, dtype=np.float64)[None, :]
    )


def mean_return(table: ExitTable, exits: np.ndarray, path_cost: np.ndarray, cost_weight: float) -> float:
    """Mean episode return of deterministic decisions ``exits`` ((N,) exit indices) over ``table``."""
    rewards = reward_matrix(table.correct, path_cost, cost_weight)
    return float(rewards[np.arange(table.num_samples), exits].mean())


def make_env_config(
    table: ExitTable, path_cost: np.ndarray, cost_weight: float, *, rich: bool = False
) -> dict[str, Any]:
    """The picklable ``env_config`` of :class:`ExitEnv` (a few arrays; fine for thousands of rows).

    ``rich=True`` gives the rich observation; it needs a table built with a ``feature_spec``.
    """
    if rich and table.feature_spec is None:
        raise ValueError("the rich observation needs an exit table built with a feature_spec")
    return {
        "features": np.ascontiguousarray(table.features, dtype=np.float32),
        "correct": table.correct,
        "path_cost": np.asarray(path_cost, dtype=np.float64),
        "cost_weight": float(cost_weight),
        "entropy_scale": entropy_scale(table),
        "rich": bool(rich),
    }


class ExitEnv(gym.Env):
    """Early-exit decisions for one sample at a time, over a cached exit table (see the module docstring).

    Args:
        config: ``features`` ``(N, E, F)``, ``correct`` ``(N, E)`` bool, ``path_cost`` ``(E,)`` normalised,
            ``cost_weight`` and ``entropy_scale`` (``log C``); build it with :func:`make_env_config`.
            RLlib passes its ``env_config`` here.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, config: Mapping[str, Any]) -> None:
        features = np.asarray(config["features"], dtype=np.float32)
        correct = np.asarray(config["correct"], dtype=bool)
        path_cost = np.asarray(config["path_cost"], dtype=np.float64)
        n, e, _ = features.shape
        if e < 2 or correct.shape != (n, e) or path_cost.shape != (e,) or n == 0:
            raise ValueError(
                f"exit env needs >= 1 sample and >= 2 exits with matching shapes: features {features.shape}, "
                f"correct {correct.shape}, path_cost {path_cost.shape}"
            )
        self.num_exits = e
        rich = bool(config.get("rich", False))
        scale = float(config["entropy_scale"])
        self._obs = observation_table(features, scale, path_cost if rich else None)  # (N, E-1, D)
        self._rewards = reward_matrix(correct, path_cost, float(config["cost_weight"]))  # (N, E)
        self._correct = correct
        size = self._obs.shape[2]
        if rich:  # hidden projections are in [-1, 1], the cost so far may pass 1
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        else:
            assert size == observation_size(e)
            self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._sample, self._exit, self._done = 0, 0, True

    @classmethod
    def from_table(
        cls, table: ExitTable, path_cost: np.ndarray, cost_weight: float, *, rich: bool = False
    ) -> ExitEnv:
        """Environment over ``table`` (the fit part of validation) for ``cost_weight``."""
        return cls(make_env_config(table, path_cost, cost_weight, rich=rich))

    @property
    def num_samples(self) -> int:
        return int(self._obs.shape[0])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "sample" in options:
            i = int(options["sample"])
            if not 0 <= i < self.num_samples:
                raise ValueError(f"options['sample'] must be in 0..{self.num_samples - 1}, got {i}")
        else:
            i = int(self.np_random.integers(self.num_samples))
        self._sample, self._exit, self._done = i, 0, False
        return self._obs[i, 0].copy(), {"sample": i}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode is over: call reset() first")
        action = int(action)
        if action not in (CONTINUE, EXIT):
            raise ValueError(f"action must be 0 (continue) or 1 (exit), got {action}")
        i, k = self._sample, self._exit
        if action == CONTINUE and k + 1 < self.num_exits - 1:
            self._exit = k + 1
            return self._obs[i, k + 1].copy(), 0.0, False, False, {}
        leave = k if action == EXIT else self.num_exits - 1  # continuing past the last early exit
        self._done = True
        info = {"sample": i, "exit": leave, "correct": bool(self._correct[i, leave])}
        return self._obs[i, k].copy(), float(self._rewards[i, leave]), True, False, info
