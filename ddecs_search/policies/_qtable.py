"""Tabular Q-learning over (exit index, max-prob bin): the published reference's agent, reward corrected.

The state is the early exit ``k`` and the bin of its max-probability (``bins`` equal-width bins on
[0, 1], as in the reference); the agent is epsilon-greedy and seeded. Unlike the reference it learns on
:class:`ExitEnv`, whose reward depends on the action, and it updates the last early exit's state too:
continuing from there is a terminal transition paid with the final exit's outcome. It is the baseline
that measures what the RLlib agents' function approximation buys.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch

from ddecs_search.policies._base import ExitPolicy
from ddecs_search.policies._features import MAX_PROB
from ddecs_search.policies._rl_options import Option, resolve_options
from ddecs_search.policies._table import ExitTable


class QTablePolicy(ExitPolicy):
    """Exit at ``k`` when ``Q[k, bin(max_prob), exit] > Q[k, bin(max_prob), continue]``.

    Options: ``episodes``, ``bins``, ``epsilon`` (exploration rate), ``alpha`` (learning rate; ``None`` =
    ``1 / visits``, the running mean of the targets), ``seed``. After :meth:`fit`: ``q`` ``(E-1, bins, 2)``,
    ``train_time_s`` and ``final_return`` (greedy mean return on the fit table).
    """

    kind = "qtable"
    options_spec: ClassVar[dict[str, Option]] = {
        "episodes": Option(20000, "int", low=1),
        "bins": Option(10, "int", low=1),
        "epsilon": Option(0.1, "float", high=1.0),
        "alpha": Option(None, "float", positive=True, high=1.0),
        "seed": Option(0, "int"),
    }

    def __init__(self, **options: Any) -> None:
        self.options = resolve_options(self.kind, options, self.options_spec)
        self.q: np.ndarray | None = None
        self.train_time_s: float | None = None
        self.final_return: float | None = None

    def _bin(self, max_prob: np.ndarray) -> np.ndarray:
        bins = self.options["bins"]
        return np.clip((np.asarray(max_prob, dtype=np.float64) * bins).astype(np.int64), 0, bins - 1)

    def exit_mask(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        if self.q is None:
            raise RuntimeError("the qtable policy is not fitted: call fit() or load_policy()")
        q = self.q[exit_index, self._bin(features[:, MAX_PROB].cpu().numpy())]  # (B, 2)
        return torch.from_numpy(q[:, 1] > q[:, 0]).to(features.device)

    def fit(
        self,
        table: ExitTable,
        path_cost: np.ndarray,
        cost_weight: float,
        *,
        select: ExitTable | None = None,
    ) -> QTablePolicy:
        """Q-learning on :class:`ExitEnv` over ``table`` (fit part of validation), undiscounted."""
        from ddecs_search.policies._env import CONTINUE, ExitEnv, mean_return

        start = time.perf_counter()
        opts = self.options
        env = ExitEnv.from_table(table, path_cost, cost_weight)
        e = table.num_exits
        q = np.zeros((e - 1, opts["bins"], 2))
        visits = np.zeros_like(q)
        rng = np.random.default_rng(opts["seed"])
        env.reset(seed=opts["seed"])
        mp = e - 1 + MAX_PROB  # position of max_prob in the observation (after the one-hot)
        for _ in range(opts["episodes"]):
            obs, _ = env.reset()
            k, b = 0, int(self._bin(obs[mp]))
            while True:
                if rng.random() < opts["epsilon"]:
                    a = int(rng.integers(2))
                else:
                    a = int(q[k, b, 1] > q[k, b, 0])
                obs, reward, done, _, _ = env.step(a)
                target = reward
                if not done:  # continued to early exit k + 1
                    assert a == CONTINUE
                    k_next, b_next = k + 1, int(self._bin(obs[mp]))
                    target += q[k_next, b_next].max()
                visits[k, b, a] += 1
                lr = opts["alpha"] if opts["alpha"] is not None else 1.0 / visits[k, b, a]
                q[k, b, a] += lr * (target - q[k, b, a])
                if done:
                    break
                k, b = k_next, b_next
        self.q = q
        self.final_return = mean_return(table, self.decide(table.features), path_cost, cost_weight)
        self.train_time_s = time.perf_counter() - start
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "q": None if self.q is None else self.q.tolist(),
            "train_time_s": self.train_time_s,
            "final_return": self.final_return,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.options = resolve_options(self.kind, state["options"], self.options_spec)
        self.q = None if state["q"] is None else np.asarray(state["q"], dtype=np.float64)
        self.train_time_s = state["train_time_s"]
        self.final_return = state["final_return"]
