"""PPO and DQN exit policies trained with RLlib (new API stack) on the exit environment.

``fit`` builds the algorithm with no remote workers (``num_env_runners=0``, ``num_learners=0``: sampling
and learning run in this process), trains for up to ``iterations`` and stops early once the greedy
policy's mean return on the table has not improved by ``min_delta`` for ``patience`` iterations. The
best iteration's network is exported to a plain torch MLP (:class:`ExitMLP`), or to per-exit max-prob
thresholds with ``export="auto"`` when they reproduce the MLP on every row of the table. Ray is imported
inside ``fit`` only; a fitted policy saves, loads and runs without it.

Ray: RLlib puts its config into the object store even with no workers, so ``fit`` needs a Ray instance:
the running one (e.g. inside a Tune trial), else the search's loopback-only local Ray with one CPU
(:func:`ddecs_search.ray_setup.init_ray`), which stays up for later fits in this process.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ddecs_search._threads import torch_threads
from ddecs_search.policies._base import ExitPolicy
from ddecs_search.policies._features import FeatureSpec
from ddecs_search.policies._obs import observation, observation_table
from ddecs_search.policies._rl_options import (
    OBSERVATION_OPTIONS,
    Option,
    feature_spec_from_options,
    resolve_options,
)
from ddecs_search.policies._rl_portable import ExitMLP, fit_thresholds
from ddecs_search.policies._table import ExitTable
from ddecs_search.policies._threshold import ThresholdPolicy

if TYPE_CHECKING:
    from ray.rllib.algorithms import AlgorithmConfig
    from torch import nn

_COMMON: dict[str, Option] = {
    **OBSERVATION_OPTIONS,
    "iterations": Option(20, "int", low=1, help="most training iterations"),
    "patience": Option(5, "int", low=1, help="stop after this many iterations without improvement"),
    "min_delta": Option(1e-3, "float", help="smallest greedy-return gain that counts as improvement"),
    "seed": Option(0, "int"),
    "hidden": Option([32, 32], "ints", help="hidden layer sizes of the policy/Q network"),
    "export": Option("auto", "choice", choices=("auto", "mlp"), help="auto: thresholds when they are exact"),
}

_NUM_ENVS = 8  # vectorised sub-envs: episodes are 1-2 steps, so batching the module's forward pass pays


class RLlibExitPolicy(ExitPolicy):
    """An RLlib agent's exit decision, exported to plain torch after training.

    Keyword options are those of :attr:`options_spec` (``PolicyConfig.options``); unknown ones raise a
    ConfigError. After :meth:`fit`: ``train_time_s`` (wall time of ``fit``), ``final_return`` (mean
    return of the exported greedy policy on the fit table = ``accuracy - cost_weight * mean cost``),
    ``history`` (per iteration: RLlib's sampled ``episode_return_mean``, the ``greedy_return`` and the
    elapsed ``time_s`` since ``fit`` began),
    ``threshold_agreement`` (per exit, how well the best max-prob threshold reproduces the learned
    decision), ``mode`` (``"mlp"`` or ``"threshold"``) and ``rl_module`` (the trained RLModule with the
    best iteration's weights; not saved).
    """

    options_spec: ClassVar[dict[str, Option]] = {}

    def __init__(self, **options: Any) -> None:
        self.options = resolve_options(self.kind, options, self.options_spec)
        self.feature_spec: FeatureSpec | None = feature_spec_from_options(self.options)
        self.path_cost: np.ndarray | None = None  # stored for the rich observation's "cost so far"
        self.mode = "mlp"
        self.net: ExitMLP | None = None
        self.thresholds: list[float] | None = None
        self.threshold_agreement: list[float] = []
        self.num_exits = 0
        self.entropy_scale = 1.0
        self.train_time_s: float | None = None
        self.final_return: float | None = None
        self.history: list[dict[str, float]] = []
        self.rl_module: Any = None
        self._threshold_policy: ThresholdPolicy | None = None

    # -- decisions --------------------------------------------------------------------------------------
    def _as_thresholds(self) -> ThresholdPolicy:
        """The threshold form (``mode == "threshold"``) as a :class:`ThresholdPolicy` on max-prob."""
        assert self.thresholds is not None
        if self._threshold_policy is None or self._threshold_policy.thresholds != self.thresholds:
            self._threshold_policy = ThresholdPolicy(metric="max_prob", thresholds=self.thresholds)
        return self._threshold_policy

    def exit_mask(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        if self.mode == "threshold":
            return self._as_thresholds().exit_mask(exit_index, features)
        if self.net is None:
            raise RuntimeError(f"the {self.kind} policy is not fitted: call fit() or load_policy()")
        if next(self.net.parameters()).device != features.device:
            self.net.to(features.device)
        cost = self.path_cost if self.feature_spec is not None else None
        return self.net.exits(observation(exit_index, features, self.num_exits, self.entropy_scale, cost))

    def exit_mask_from_logits(
        self, exit_index: int, logits: torch.Tensor, prev_pred: torch.Tensor | None
    ) -> torch.Tensor:
        if self.mode == "threshold":  # only max-prob is needed
            return self._as_thresholds().exit_mask_from_logits(exit_index, logits, prev_pred)
        if self.feature_spec is not None:
            raise TypeError(
                f"the {self.kind} policy reads the rich observation: call exit_mask_from_outputs "
                "(MultiExitNet.early_exit does)"
            )
        return super().exit_mask_from_logits(exit_index, logits, prev_pred)

    def exit_mask_from_outputs(
        self, exit_index: int, logits_so_far: Any, hidden: torch.Tensor | None
    ) -> torch.Tensor:
        if self.mode == "threshold":  # exported as max-prob thresholds: only the current logits matter
            return self._as_thresholds().exit_mask_from_logits(exit_index, logits_so_far[exit_index], None)
        return super().exit_mask_from_outputs(exit_index, logits_so_far, hidden)

    # -- training ---------------------------------------------------------------------------------------
    def algorithm_config(self, env_class: type, env_config: dict[str, Any]) -> AlgorithmConfig:
        """The RLlib config (subclasses: PPO or DQN)."""
        raise NotImplementedError

    def module_layers(self, module: nn.Module) -> tuple[nn.Module, ...]:
        """The parts of the RLModule that map an observation to the two action scores, in order."""
        raise NotImplementedError

    def module_exits(self, module: Any, obs: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool greedy "exit" decision of the RLlib module itself (``forward_inference``)."""
        raise NotImplementedError

    def fit(
        self,
        table: ExitTable,
        path_cost: np.ndarray,
        cost_weight: float,
        *,
        select: ExitTable | None = None,
    ) -> RLlibExitPolicy:
        """Train on ``table`` (the fit part of validation) for ``accuracy - cost_weight * mean cost``.

        The iteration kept is the one whose greedy policy has the best mean return on ``select`` (the
        selection part of validation) when given, else on ``table``.
        """
        from ddecs_search.policies._env import ExitEnv, make_env_config, mean_return
        from ddecs_search.ray_setup import init_ray

        self.check_table(table)
        if select is not None:
            self.check_table(select)
        start = time.perf_counter()
        rich = self.feature_spec is not None
        env_config = make_env_config(table, path_cost, cost_weight, rich=rich)
        self.num_exits, self.entropy_scale, self.mode = table.num_exits, env_config["entropy_scale"], "mlp"
        self.path_cost = np.asarray(path_cost, dtype=np.float64)
        judge = table if select is None else select

        def greedy_return() -> float:
            return mean_return(judge, self.decide(judge.features), path_cost, cost_weight)

        init_ray(num_cpus=1)
        with torch_threads(1):  # a 32x32 MLP: more threads only add contention (4-20x slower on 2 cores)
            module = self._train(self.algorithm_config(ExitEnv, env_config), greedy_return, start)
        self.rl_module = module
        self.net = ExitMLP.from_sequentials(*self.module_layers(module))
        self._check_export(module, env_config)
        self.choose_export(table, self.options["export"])
        self.final_return = mean_return(table, self.decide(table.features), path_cost, cost_weight)
        self.train_time_s = time.perf_counter() - start
        return self

    def _train(self, config: AlgorithmConfig, greedy_return: Callable[[], float], start: float) -> Any:
        """Train until ``iterations`` or a plateau of the greedy return; the module with the best weights."""
        opts = self.options
        self.history = []
        with warnings.catch_warnings():  # RLlib re-registers its env wrapper with gymnasium on every build
            warnings.filterwarnings("ignore", message=".*Overriding environment")
            algo = config.build_algo()
        try:
            best, best_state, stale = -math.inf, None, 0
            for iteration in range(1, opts["iterations"] + 1):
                result = algo.train()
                module = algo.get_module()
                self.net = ExitMLP.from_sequentials(*self.module_layers(module))
                ret = greedy_return()
                sampled = float(result.get("env_runners", {}).get("episode_return_mean", math.nan))
                self.history.append(
                    {
                        "iteration": iteration,
                        "episode_return_mean": sampled,
                        "greedy_return": ret,
                        "time_s": time.perf_counter() - start,
                    }
                )
                stale = 0 if ret > best + opts["min_delta"] else stale + 1
                if ret > best:
                    best, best_state = ret, {k: v.detach().clone() for k, v in module.state_dict().items()}
                if stale >= opts["patience"]:
                    break
            module.load_state_dict(best_state)
        finally:
            algo.stop()
        return module

    def choose_export(self, table: ExitTable, export: str) -> None:
        """Fit per-exit max-prob thresholds to the MLP's decisions on ``table``; with ``export="auto"``
        use them instead of the MLP when they reproduce it on every row (and, with the rich observation,
        only then: the thresholds also spare the rich features' decision cost)."""
        self.mode = "mlp"
        self.thresholds, self.threshold_agreement = fit_thresholds(self.exit_mask, table.features)
        if export == "auto" and min(self.threshold_agreement) == 1.0:
            self.mode = "threshold"

    @torch.no_grad()
    def _check_export(self, module: Any, env_config: dict[str, Any]) -> None:
        """The exported MLP must decide like the RLModule on every observation of the table."""
        assert self.net is not None
        cost = env_config["path_cost"] if env_config["rich"] else None
        obs = torch.from_numpy(observation_table(env_config["features"], self.entropy_scale, cost))
        obs = obs.reshape(-1, obs.shape[-1])
        differ = int((self.module_exits(module, obs) != self.net.exits(obs)).sum())
        if differ:
            raise RuntimeError(
                f"exported {self.kind} MLP disagrees with the RLModule on {differ} of {len(obs)} "
                "observations (has RLlib's default module layout changed?)"
            )

    # -- persistence ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "mode": self.mode,
            "num_exits": self.num_exits,
            "entropy_scale": self.entropy_scale,
            "path_cost": None if self.path_cost is None else self.path_cost.tolist(),
            "net": None if self.net is None else self.net.state(),
            "thresholds": self.thresholds,
            "threshold_agreement": self.threshold_agreement,
            "train_time_s": self.train_time_s,
            "final_return": self.final_return,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.options = resolve_options(self.kind, state["options"], self.options_spec)
        self.mode = state["mode"]
        self.num_exits = int(state["num_exits"])
        self.entropy_scale = float(state["entropy_scale"])
        self.feature_spec = feature_spec_from_options(self.options)
        cost = state.get("path_cost")
        self.path_cost = None if cost is None else np.asarray(cost, dtype=np.float64)
        self.net = None if state["net"] is None else ExitMLP.from_state(state["net"])
        self.thresholds = state["thresholds"]
        self.threshold_agreement = list(state["threshold_agreement"])
        self.train_time_s = state["train_time_s"]
        self.final_return = state["final_return"]
        self.history = list(state["history"])


class PPOExitPolicy(RLlibExitPolicy):
    """PPO (actor-critic, separate actor and critic MLPs); the actor's logits are exported."""

    kind = "ppo"
    options_spec: ClassVar[dict[str, Option]] = {
        **_COMMON,
        "lr": Option(1e-3, "float", positive=True),
        "train_batch_size": Option(512, "int", low=1, help="env steps per iteration"),
        "num_epochs": Option(8, "int", low=1, help="passes over each batch"),
        "entropy_coeff": Option(0.0, "float"),
    }

    def algorithm_config(self, env_class: type, env_config: dict[str, Any]) -> AlgorithmConfig:
        from ray.rllib.algorithms.ppo import PPOConfig

        opts = self.options
        config = _common(PPOConfig(), env_class, env_config, opts, vf_share_layers=False)
        return config.training(
            lr=opts["lr"],
            gamma=1.0,  # episodes are <= E-1 steps; undiscounted return = the objective
            lambda_=1.0,
            train_batch_size_per_learner=opts["train_batch_size"],
            minibatch_size=min(128, opts["train_batch_size"]),
            num_epochs=opts["num_epochs"],
            entropy_coeff=opts["entropy_coeff"],
        )

    def module_layers(self, module: nn.Module) -> tuple[nn.Module, ...]:
        return (module.encoder.actor_encoder, module.pi)

    def module_exits(self, module: Any, obs: torch.Tensor) -> torch.Tensor:
        from ray.rllib.core.columns import Columns

        logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        return logits.argmax(dim=1) == 1


class DQNExitPolicy(RLlibExitPolicy):
    """Double DQN (no dueling head, so the exported MLP outputs the Q-values themselves)."""

    kind = "dqn"
    options_spec: ClassVar[dict[str, Option]] = {
        **_COMMON,
        "iterations": Option(10, "int", low=1, help="most training iterations (each samples 1000 steps)"),
        "lr": Option(1e-3, "float", positive=True),
        "rollout_fragment_length": Option(
            2, "int", low=1, help="steps per sub-env and sample call (x 8 sub-envs = 16; 1 env x 1 is slow)"
        ),
        "steps_per_iteration": Option(1000, "int", low=1, help="env steps sampled per iteration"),
        "explore_steps": Option(2000, "int", low=1, help="steps over which epsilon decays 1.0 -> 0.05"),
        "train_batch_size": Option(64, "int", low=1),
    }

    def algorithm_config(self, env_class: type, env_config: dict[str, Any]) -> AlgorithmConfig:
        from ray.rllib.algorithms.dqn import DQNConfig

        opts = self.options
        config = _common(DQNConfig(), env_class, env_config, opts)
        return (
            config.env_runners(rollout_fragment_length=opts["rollout_fragment_length"])
            .training(
                lr=opts["lr"],
                gamma=1.0,
                dueling=False,
                double_q=True,
                train_batch_size_per_learner=opts["train_batch_size"],
                epsilon=[(0, 1.0), (opts["explore_steps"], 0.05)],
                num_steps_sampled_before_learning_starts=min(500, opts["steps_per_iteration"]),
                target_network_update_freq=250,
            )
            .reporting(min_sample_timesteps_per_iteration=opts["steps_per_iteration"])
        )

    def module_layers(self, module: nn.Module) -> tuple[nn.Module, ...]:
        return (module.encoder, module.af)

    def module_exits(self, module: Any, obs: torch.Tensor) -> torch.Tensor:
        from ray.rllib.core.columns import Columns

        return module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS] == 1


def _common(
    config: AlgorithmConfig, env_class: type, env_config: dict[str, Any], opts: dict[str, Any], **model: Any
) -> Any:
    """Settings shared by PPO and DQN: in-process sampling and learning, small tanh MLP, seed, quiet logs."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    return (
        config.environment(env_class, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=_NUM_ENVS)
        .learners(num_learners=0)
        .rl_module(
            model_config=DefaultModelConfig(fcnet_hiddens=opts["hidden"], fcnet_activation="tanh", **model)
        )
        .debugging(seed=opts["seed"], log_level="ERROR")
    )
