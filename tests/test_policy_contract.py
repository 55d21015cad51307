"""One contract for every registered exit policy (``list_policies()``), in both observations where a
policy has them: decide == stepping exit_mask; the online decisions (exit_mask_from_logits,
exit_mask_from_outputs) == exit_mask on the table's feature rows; save -> load round trip; batch and
batch 1 agree (policy alone and real early-exit inference). A newly registered policy is tested here
automatically. RLlib kinds are marked slow (a couple of iterations each; decisions, not quality)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ddecs_search.config import BranchSpec, PolicyConfig
from ddecs_search.models import MultiExitNet, create_backbone
from ddecs_search.policies import (
    ExitPolicy,
    ExitTable,
    FeatureSpec,
    create_policy,
    exit_feature_row,
    exit_features,
    list_policies,
    load_policy,
)

COSTS = np.array([0.3, 0.6, 1.1])
RAY_NUM_CPUS = 1  # the conftest local_ray: RLlib fits run in-process
LAMBDA = 0.2
RL_KINDS = {"ppo", "dqn"}
FAST = {
    "ppo": {"iterations": 2, "patience": 2, "export": "mlp", "train_batch_size": 256},
    "dqn": {"iterations": 1, "steps_per_iteration": 200, "explore_steps": 200, "export": "mlp"},
    "qtable": {"episodes": 3000},
    "gate": {"hidden": 8},
}


def _observations(kind: str) -> list[str]:
    spec = getattr(create_policy(PolicyConfig(kind=kind)), "options_spec", {})
    return ["confidence", "rich"] if "observation" in spec else ["confidence"]


CASES = [
    pytest.param((kind, obs), id=f"{kind}-{obs}", marks=[pytest.mark.slow] if kind in RL_KINDS else [])
    for kind in list_policies()
    for obs in _observations(kind)
]


def _options(kind: str, obs: str) -> dict:
    opts = dict(FAST.get(kind, {}))
    if obs == "rich":
        opts.update(observation="rich", topk=3, hidden_dim=4, projection_seed=0)
    if "seed" in getattr(create_policy(PolicyConfig(kind=kind)), "options_spec", {}):
        opts["seed"] = 0
    return opts


@pytest.fixture(scope="module")
def net() -> MultiExitNet:
    """A LeNet with two early exits and data-driven BN statistics (random weights, real computation)."""
    torch.manual_seed(0)
    backbone = create_backbone("lenet", num_classes=6)
    branches = [BranchSpec(conv_layers=1, channels=8, pool="avg", pool_size=2), BranchSpec(hidden=16)]
    model = MultiExitNet(backbone, [0, 1], branches).float()
    x = torch.randn(64, *backbone.input_shape, generator=torch.Generator().manual_seed(1))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@pytest.fixture(scope="module")
def inputs(net: MultiExitNet) -> torch.Tensor:
    return torch.randn(300, *net.backbone.input_shape, generator=torch.Generator().manual_seed(2))


def _table(net: MultiExitNet, x: torch.Tensor, spec: FeatureSpec | None, batch_size: int) -> ExitTable:
    """The table of ``x``; labels = exit 0's prediction for half the rows, the final one's for the rest,
    so leaving early is right for some rows and wrong for others."""
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch_size)
    table = ExitTable.from_model(net, loader, torch.device("cpu"), spec)
    half = np.random.default_rng(3).random(len(x)) < 0.5
    labels = np.where(half, table.predictions[:, 0], table.predictions[:, -1])
    return ExitTable(table.features, table.predictions, labels, spec)


_FITTED: dict[tuple[str, str], tuple[ExitPolicy, ExitTable]] = {}


@pytest.fixture
def fitted(request, net, inputs) -> tuple[ExitPolicy, ExitTable]:
    """``(policy, table)``: the policy fitted on the table of its observation (cached per case)."""
    kind, obs = request.param
    if (kind, obs) not in _FITTED:
        if kind in RL_KINDS:
            request.getfixturevalue("local_ray")
        policy = create_policy(PolicyConfig(kind=kind, options=_options(kind, obs)))
        spec = policy.feature_spec
        table = _table(net, inputs, spec, batch_size=100)
        fit, select = table.split_selection(0.3, seed=0)
        policy.fit(fit, COSTS, LAMBDA, select=select)
        _FITTED[kind, obs] = (policy, table)
    return _FITTED[kind, obs]


def _cases(fn):
    return pytest.mark.parametrize("fitted", CASES, indirect=True)(fn)


@_cases
def test_decide_equals_stepping_exit_mask(fitted) -> None:
    policy, table = fitted
    if not policy.deployable:  # the oracle reads labels: it refuses feature-only decisions
        with pytest.raises(TypeError):
            policy.decide(table.features)
        with pytest.raises(TypeError):
            policy.exit_mask(0, torch.from_numpy(table.features[:, 0]))
        return
    exits = policy.decide(table.features)
    expected = np.full(table.num_samples, table.num_exits - 1)
    open_ = np.ones(table.num_samples, dtype=bool)
    for k in range(table.num_exits - 1):
        rows = np.flatnonzero(open_)
        mask = policy.exit_mask(k, torch.from_numpy(table.features[rows, k])).numpy()
        expected[rows[mask]] = k
        open_[rows[mask]] = False
    np.testing.assert_array_equal(exits, expected)
    np.testing.assert_array_equal(policy.decide_table(table), exits)


@_cases
def test_online_decisions_equal_exit_mask_on_features(fitted, net, inputs) -> None:
    policy, _ = fitted
    if not policy.deployable:
        return
    x = inputs[:64]
    with torch.no_grad():
        outs = net.forward_with_hidden(x)
    logits = [lg for lg, _ in outs]
    for k in range(net.num_exits - 1):
        row = exit_feature_row(k, logits[: k + 1], outs[k][1], net.num_exits, policy.feature_spec)
        expected = policy.exit_mask(k, row)
        online = policy.exit_mask_from_outputs(k, logits[: k + 1], outs[k][1])
        assert torch.equal(online, expected)
        prev = logits[k - 1].argmax(dim=1) if k else None
        if policy.feature_spec is None:
            from_logits = policy.exit_mask_from_logits(k, logits[k], prev)
            assert torch.equal(from_logits, policy.exit_mask(k, exit_features(logits[k], prev)))
        elif getattr(policy, "mode", "mlp") != "threshold":
            with pytest.raises(TypeError, match="exit_mask_from_outputs"):
                policy.exit_mask_from_logits(k, logits[k], prev)


@_cases
def test_save_load_round_trip(fitted, tmp_path) -> None:
    policy, table = fitted
    policy.save(tmp_path / "policy.json")
    again = load_policy(tmp_path / "policy.json")
    assert type(again) is type(policy) and again.kind == policy.kind
    assert again.feature_spec == policy.feature_spec
    assert json.dumps(again.state_dict(), sort_keys=True) == json.dumps(policy.state_dict(), sort_keys=True)
    np.testing.assert_array_equal(again.decide_table(table), policy.decide_table(table))


@_cases
def test_batch_and_batch_1_agree(fitted, net, inputs) -> None:
    policy, table = fitted
    if not policy.deployable:
        return
    feats = torch.from_numpy(table.features)
    for k in range(table.num_exits - 1):
        batch = policy.exit_mask(k, feats[:, k])
        singles = torch.cat([policy.exit_mask(k, feats[i : i + 1, k]) for i in range(len(feats))])
        assert torch.equal(batch, singles)
    # real early-exit inference: batch 1 equals the table built at batch 1, and the batched run agrees
    x = inputs[:48]
    table1 = _table(net, x, policy.feature_spec, batch_size=1)
    singles = [net.early_exit(x[i : i + 1], policy) for i in range(len(x))]
    single_exits = torch.cat([s.exit_indices for s in singles]).numpy()
    single_preds = torch.cat([s.predictions for s in singles]).numpy()
    np.testing.assert_array_equal(single_exits, policy.decide_table(table1))
    np.testing.assert_array_equal(single_preds, table1.predictions[np.arange(len(x)), single_exits])
    batched = net.early_exit(x, policy)
    np.testing.assert_array_equal(batched.exit_indices.numpy(), single_exits)
    np.testing.assert_array_equal(batched.predictions.numpy(), single_preds)


def test_every_registered_kind_is_covered() -> None:
    covered = {p.values[0][0] for p in CASES}
    assert covered == set(list_policies())
    assert {"gate", "ppo", "dqn", "threshold", "qtable"} <= covered


@_cases
def test_a_confidence_policy_decides_alike_on_a_rich_table(fitted, net, inputs) -> None:
    """Confidence policies read the first four columns, so a rich table of the same rows changes nothing."""
    policy, table = fitted
    if policy.feature_spec is not None or not policy.deployable:
        return
    rich = _table(net, inputs, FeatureSpec(topk=2, hidden_dim=3), batch_size=100)
    np.testing.assert_array_equal(rich.features[:, :, :4], table.features)
    np.testing.assert_array_equal(policy.decide_table(rich), policy.decide_table(table))
