"""Learned exit policies: PPO and DQN (RLlib, on a loopback-only local Ray), the Q-table baseline, export
to plain torch, save/load without Ray, and real early-exit inference with an exported policy.

RLlib tests are marked slow (they still run in CI); sized for a 2-core CPU: a few iterations each.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ddecs_search.config import BranchSpec, PolicyConfig
from ddecs_search.errors import ConfigError
from ddecs_search.models import MultiExitNet, create_backbone
from ddecs_search.policies import (
    DQNExitPolicy,
    ExitTable,
    PPOExitPolicy,
    QTablePolicy,
    ThresholdPolicy,
    create_policy,
    load_policy,
)
from ddecs_search.policies._env import mean_return
from ddecs_search.policies._obs import observation
from ddecs_search.policies._rl_portable import ExitMLP

ROOT = Path(__file__).resolve().parents[1]
RAY_NUM_CPUS = 1  # the local_ray fixture (conftest): the one an RLlib fit would start
COSTS = np.array([0.3, 0.6, 1.05])
LAMBDA = 0.4


def _obvious_table(n: int = 300, seed: int = 0) -> ExitTable:
    """Every exit is always right, so leaving at the cheap exit 0 is best for every sample."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(0.0, 1.0, size=(n, 3, 4)).astype(np.float32)
    labels = rng.integers(0, 10, n)
    return ExitTable(features, np.repeat(labels[:, None], 3, axis=1), labels)


def _confidence_table(n: int = 600, seed: int = 0) -> ExitTable:
    """Exit 0 is right exactly when its max-prob > 0.55, exit 1 when > 0.35, the final exit always."""
    rng = np.random.default_rng(seed)
    max_prob = rng.uniform(0.1, 1.0, size=(n, 3)).astype(np.float32)
    entropy = (1.0 - max_prob) * math.log(10)
    features = np.stack([max_prob, entropy, 0.8 * max_prob, rng.integers(0, 2, (n, 3))], axis=2)
    labels = rng.integers(0, 10, n)
    right = np.stack([max_prob[:, 0] > 0.55, max_prob[:, 1] > 0.35, np.ones(n, dtype=bool)], axis=1)
    predictions = np.where(right, labels[:, None], (labels[:, None] + 1) % 10)
    return ExitTable(features.astype(np.float32), predictions, labels)


@pytest.fixture(scope="module")
def ppo_confident(local_ray) -> PPOExitPolicy:
    """PPO fitted on the confidence table, exported as an MLP (so it can be compared with RLlib's module)."""
    return PPOExitPolicy(iterations=6, patience=6, export="mlp", seed=0).fit(
        _confidence_table(), COSTS, LAMBDA
    )


# ---------------------------------------------------------------------------------------- options
def test_registry_builds_rl_kinds_and_rejects_unknown_options() -> None:
    assert isinstance(
        create_policy(PolicyConfig(kind="ppo", options={"iterations": 3, "lr": 1e-3})), PPOExitPolicy
    )
    assert isinstance(create_policy(PolicyConfig(kind="dqn")), DQNExitPolicy)
    assert isinstance(create_policy(PolicyConfig(kind="qtable", options={"bins": 5})), QTablePolicy)
    with pytest.raises(ConfigError, match=r"no option\(s\) \['itertions'\].*valid:.*iterations"):
        create_policy(PolicyConfig(kind="ppo", options={"itertions": 3}))
    with pytest.raises(ConfigError, match="policy.options.lr"):
        create_policy(PolicyConfig(kind="dqn", options={"lr": -1}))
    with pytest.raises(ConfigError, match="policy.options.hidden"):
        PPOExitPolicy(hidden=[32, 0])
    with pytest.raises(ConfigError, match="policy.options.iterations"):
        PPOExitPolicy(iterations=True)
    with pytest.raises(ConfigError, match="policy.options.export"):
        DQNExitPolicy(export="onnx")


def test_importing_policies_does_not_import_ray() -> None:
    code = (
        "import sys, ddecs_search.policies as p; "
        "assert {'ppo', 'dqn', 'qtable'} <= set(p.list_policies()); "
        "print(sorted(m for m in ('ray', 'gymnasium') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_unfitted_policies_say_so() -> None:
    feats = torch.zeros(2, 4)
    for policy in (PPOExitPolicy(), QTablePolicy()):
        with pytest.raises(RuntimeError, match="not fitted"):
            policy.exit_mask(0, feats)


# ---------------------------------------------------------------------------------------- Q-table
def test_qtable_learns_the_obvious_table() -> None:
    table = _obvious_table()
    policy = QTablePolicy(episodes=3000, seed=0).fit(table, COSTS, LAMBDA)
    assert (policy.decide_table(table) == 0).mean() > 0.9
    assert policy.final_return == pytest.approx(1 - LAMBDA * COSTS[0], abs=0.05)
    assert policy.train_time_s is not None and policy.train_time_s > 0


def test_qtable_uses_confidence_and_updates_the_last_early_exit() -> None:
    table = _confidence_table()
    policy = QTablePolicy(episodes=6000, seed=0).fit(table, COSTS, LAMBDA)
    # "continue" from the last early exit (a terminal transition) was learned: Q = 1 - λ·c_final there
    visited = policy.q[1, :, 0] != 0
    assert visited.any()
    np.testing.assert_allclose(policy.q[1, visited, 0], 1 - LAMBDA * COSTS[2], atol=1e-9)
    # it exits at 0 on confident samples and continues on unsure ones
    exits = policy.decide_table(table)
    confident = table.features[:, 0, 0] > 0.6
    unsure = table.features[:, 0, 0] < 0.5
    assert (exits[confident] == 0).mean() > 0.9 and (exits[unsure] != 0).mean() > 0.9
    threshold = ThresholdPolicy().fit(table, COSTS, LAMBDA)
    assert policy.final_return >= mean_return(table, threshold.decide_table(table), COSTS, LAMBDA) - 0.03


def test_qtable_is_seeded_and_round_trips(tmp_path) -> None:
    table = _confidence_table(300)
    a = QTablePolicy(episodes=1500, seed=1).fit(table, COSTS, LAMBDA)
    b = QTablePolicy(episodes=1500, seed=1).fit(table, COSTS, LAMBDA)
    np.testing.assert_array_equal(a.q, b.q)
    a.save(tmp_path / "q.json")
    loaded = load_policy(tmp_path / "q.json")
    assert isinstance(loaded, QTablePolicy) and loaded.options == a.options
    np.testing.assert_array_equal(loaded.decide_table(table), a.decide_table(table))


# ---------------------------------------------------------------------------------------- export
def _linear_policy(weight_max_prob: float, weight_entropy: float) -> PPOExitPolicy:
    """An unfitted PPO policy whose "network" scores exit - continue = w·(features) - 0.5·w_max_prob."""
    score = torch.zeros(2, 6)
    score[1, 2], score[1, 3] = weight_max_prob, weight_entropy  # obs = [one-hot(2), max_prob, entropy, ...]
    layer = torch.nn.Linear(6, 2)
    layer.load_state_dict({"weight": score, "bias": torch.tensor([0.0, -0.5 * weight_max_prob])})
    policy = PPOExitPolicy()
    policy.net, policy.num_exits, policy.entropy_scale = ExitMLP([layer]), 3, math.log(10)
    return policy


def test_auto_export_uses_thresholds_only_when_they_are_exact() -> None:
    table = _confidence_table()
    monotone = _linear_policy(10.0, 0.0)  # exit iff max_prob > 0.5
    before = monotone.decide_table(table)
    monotone.choose_export(table, "auto")
    assert monotone.mode == "threshold" and monotone.threshold_agreement == [1.0, 1.0]
    np.testing.assert_array_equal(monotone.decide_table(table), before)
    assert all(0.45 < t < 0.55 for t in monotone.thresholds)

    mixed = _linear_policy(10.0, 6.0)  # also rewards entropy: not a max-prob threshold any more
    mixed_table = _confidence_table(seed=3)
    mixed_table.features[:, :, 1] = np.random.default_rng(0).uniform(
        0, 2, size=mixed_table.features.shape[:2]
    )
    mixed.choose_export(mixed_table, "auto")
    assert mixed.mode == "mlp" and min(mixed.threshold_agreement) < 1.0

    forced = _linear_policy(10.0, 0.0)
    forced.choose_export(table, "mlp")
    assert forced.mode == "mlp" and forced.threshold_agreement == [1.0, 1.0]


def test_exit_mlp_json_round_trip_is_exact() -> None:
    torch.manual_seed(0)
    net = ExitMLP([torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)])
    copy = ExitMLP.from_state(json.loads(json.dumps(net.state())))
    obs = torch.rand(50, 6)
    assert torch.equal(net(obs), copy(obs))


# ---------------------------------------------------------------------------------------- RLlib
@pytest.mark.slow
def test_ppo_learns_to_exit_early_on_the_obvious_table(local_ray) -> None:
    table = _obvious_table()
    policy = PPOExitPolicy(iterations=6, patience=2, seed=0).fit(table, COSTS, LAMBDA)
    assert (policy.decide_table(table) == 0).mean() > 0.9
    assert policy.final_return == pytest.approx(mean_return(table, policy.decide_table(table), COSTS, LAMBDA))
    assert policy.train_time_s > 0 and 1 <= len(policy.history) <= 6
    assert all(
        set(h) == {"iteration", "episode_return_mean", "greedy_return", "time_s"} for h in policy.history
    )


@pytest.mark.slow
def test_ppo_uses_confidence(ppo_confident: PPOExitPolicy) -> None:
    table = _confidence_table()
    threshold = ThresholdPolicy().fit(table, COSTS, LAMBDA)
    best = mean_return(table, threshold.decide_table(table), COSTS, LAMBDA)
    static = 1 - LAMBDA * COSTS[2]
    assert ppo_confident.final_return > static + 0.05
    assert ppo_confident.final_return > best - 0.05, (ppo_confident.final_return, best)


@pytest.mark.slow
def test_exported_mlp_decides_like_the_rllib_module(ppo_confident: PPOExitPolicy) -> None:
    from ray.rllib.core.columns import Columns

    module = ppo_confident.rl_module
    assert ppo_confident.mode == "mlp"
    feats = torch.from_numpy(
        np.concatenate([_confidence_table(200, seed=5).features, _obvious_table(200, seed=6).features])
    )
    for k in range(2):
        obs = observation(k, feats[:, k], 3, ppo_confident.entropy_scale)
        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        rllib_exits = (logits.argmax(dim=1) == 1).numpy()
        ours = ppo_confident.exit_mask(k, feats[:, k]).numpy()
        np.testing.assert_array_equal(ours, rllib_exits)
        if k == 0:  # the comparison is not vacuous: the learned decision depends on the sample
            assert 0 < rllib_exits.mean() < 1


@pytest.mark.slow
def test_rl_policy_save_load_round_trip_without_ray(ppo_confident: PPOExitPolicy, tmp_path) -> None:
    path = tmp_path / "policy.json"
    ppo_confident.save(path)
    state = json.loads(path.read_text())
    assert state["kind"] == "ppo" and isinstance(state["state"]["net"], list)
    table = _confidence_table(200, seed=9)
    np.save(tmp_path / "features.npy", table.features)
    code = (
        "import sys, numpy as np; from ddecs_search.policies import load_policy; "
        f"p = load_policy({str(path)!r}); "
        f"print(p.kind, ' '.join(map(str, p.decide(np.load({str(tmp_path / 'features.npy')!r})))), "
        "'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    kind, *decisions, ray_loaded = out.stdout.split()
    assert kind == "ppo" and ray_loaded == "False"
    np.testing.assert_array_equal(np.array(decisions, dtype=int), ppo_confident.decide(table.features))
    loaded = load_policy(path)
    assert loaded.final_return == ppo_confident.final_return and loaded.history == ppo_confident.history


@pytest.mark.slow
def test_exported_policy_drives_real_early_exit_inference(ppo_confident: PPOExitPolicy) -> None:
    torch.manual_seed(0)
    model = MultiExitNet(
        create_backbone("lenet", num_classes=10), [0, 1], [BranchSpec(channels=8)] * 2
    ).eval()
    x = torch.randn(64, 1, 28, 28)
    loader = DataLoader(TensorDataset(x, torch.zeros(64, dtype=torch.long)), batch_size=16)
    table = ExitTable.from_model(model, loader, torch.device("cpu"))
    out = model.early_exit(x, ppo_confident)
    np.testing.assert_array_equal(out.exit_indices.numpy(), ppo_confident.decide_table(table))


@pytest.mark.slow
def test_dqn_smoke_learns_the_obvious_table(local_ray) -> None:
    table = _obvious_table()
    policy = DQNExitPolicy(iterations=3, steps_per_iteration=600, explore_steps=600, seed=0)
    policy.fit(table, COSTS, LAMBDA)
    assert (policy.decide_table(table) == 0).mean() > 0.9
    assert policy.train_time_s > 0 and policy.final_return is not None
