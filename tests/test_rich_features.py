"""The rich exit features: one function for the table and live inference, bit-identical at batch 1 and
batched; and a table where a non-confidence feature decides correctness (gate and PPO solve it,
thresholds cannot)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ddecs_search.config import BranchSpec
from ddecs_search.models import MultiExitNet, create_backbone
from ddecs_search.policies import (
    ExitPolicy,
    ExitTable,
    FeatureSpec,
    GatePolicy,
    ThresholdPolicy,
    exit_feature_row,
    extra_features,
)
from ddecs_search.policies._env import mean_return
from ddecs_search.policies._features import MAX_PROB, NUM_BASE

SPEC = FeatureSpec(topk=3, hidden_dim=6, seed=1)
RAY_NUM_CPUS = 1  # the conftest local_ray: RLlib fits run in-process
N = 24


def _model() -> MultiExitNet:
    """A LeNet with two early exits (one with a hidden FC layer), data-driven BN statistics."""
    torch.manual_seed(0)
    backbone = create_backbone("lenet", num_classes=7)
    branches = [BranchSpec(conv_layers=1, channels=8, pool="avg", pool_size=2), BranchSpec(hidden=16)]
    model = MultiExitNet(backbone, [0, 1], branches).float()
    x = torch.randn(32, *backbone.input_shape, generator=torch.Generator().manual_seed(1))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _inputs(model: MultiExitNet, n: int = N) -> torch.Tensor:
    return torch.randn(n, *model.backbone.input_shape, generator=torch.Generator().manual_seed(2))


def _table(model: MultiExitNet, x: torch.Tensor, batch_size: int) -> ExitTable:
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch_size)
    return ExitTable.from_model(model, loader, torch.device("cpu"), SPEC)


class Recorder(ExitPolicy):
    """Records every feature row early-exit inference computes; leaves where ``leave(k, row)`` says."""

    kind = "recorder"

    def __init__(self, num_exits: int, leave) -> None:
        self.feature_spec = SPEC
        self.num_exits = num_exits
        self.leave = leave
        self.seen: list[tuple[int, torch.Tensor]] = []

    def exit_mask(self, exit_index: int, features: torch.Tensor) -> torch.Tensor:
        self.seen.append((exit_index, features.clone()))
        return self.leave(exit_index, features)


def test_rich_columns_are_named_and_sized() -> None:
    table = _table(_model(), _inputs(_model()), batch_size=8)
    assert table.features.shape == (N, 3, NUM_BASE + SPEC.width(3))
    assert len(table.feature_names) == table.features.shape[2]
    assert table.feature_names[NUM_BASE : NUM_BASE + 3] == ("top1", "top2", "top3")
    # top1 is max_prob; exit 0 has no earlier exit (its history columns are 0); the final exit has no
    # branch (its hidden projection is 0); earlier exits' history is filled
    np.testing.assert_array_equal(table.features[:, :, NUM_BASE], table.features[:, :, MAX_PROB])
    hist = slice(NUM_BASE + 3, NUM_BASE + 3 + 4)
    assert not table.features[:, 0, hist].any()
    assert table.features[:, 2, hist].any()
    assert not table.features[:, 2, -SPEC.hidden_dim :].any()
    assert np.abs(table.features[:, :2, -SPEC.hidden_dim :]).max() > 0


def test_feature_rows_do_not_depend_on_the_batch() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = [torch.randn(40, 5, generator=gen) * 3 for _ in range(3)]
    hidden = torch.relu(torch.randn(40, 200, generator=gen)) * 5
    spec = FeatureSpec(topk=7, hidden_dim=8, seed=2)  # topk > classes: zero-padded
    batch = exit_feature_row(2, logits, hidden, 4, spec)
    assert batch.shape == (40, NUM_BASE + spec.width(4))
    for i in range(40):
        row = exit_feature_row(2, [lg[i : i + 1] for lg in logits], hidden[i : i + 1], 4, spec)
        assert torch.equal(row[0], batch[i])
    again = extra_features(2, logits, hidden, 4, FeatureSpec(topk=7, hidden_dim=8, seed=2))
    assert torch.equal(again, batch[:, NUM_BASE:])  # the projection is fixed by its seed
    other = extra_features(2, logits, hidden, 4, FeatureSpec(topk=7, hidden_dim=8, seed=3))
    assert not torch.equal(other, again)


def _by_sample(table: ExitTable, seen: list[tuple[int, torch.Tensor]], order: list[list[int]]) -> None:
    """``seen[j]`` holds the rows of samples ``order[j]`` at its exit: each equals the table's row."""
    assert len(seen) == len(order)
    for (k, rows), samples in zip(seen, order, strict=True):
        expected = torch.from_numpy(table.features[samples, k])
        assert torch.equal(rows, expected), f"exit {k}: live features differ from the table"


def test_table_and_live_features_identical_at_batch_1() -> None:
    model = _model()
    x = _inputs(model)
    table = _table(model, x, batch_size=1)  # the same kernels as live batch-1 inference
    median = float(np.median(table.features[:, 0, MAX_PROB]))
    policy = Recorder(3, lambda k, f: f[:, MAX_PROB] >= median)
    order = []
    for i in range(N):
        out = model.early_exit(x[i : i + 1], policy)
        left = int(out.exit_indices[0])
        order += [[i]] * (1 if left == 0 else 2)  # exit 0 always decides; exit 1 unless left at 0
        assert (left == 0) == bool(table.features[i, 0, MAX_PROB] >= median)
        assert int(out.predictions[0]) == int(table.predictions[i, left])
    _by_sample(table, policy.seen, order)


def test_table_and_live_features_identical_batched() -> None:
    model = _model()
    x = _inputs(model)
    table = _table(model, x, batch_size=N)
    # nobody leaves: the live batch stays the table's batch, so every row must match bit for bit
    policy = Recorder(3, lambda k, f: torch.zeros(len(f), dtype=torch.bool))
    out = model.early_exit(x, policy)
    assert out.exit_indices.tolist() == [2] * N
    _by_sample(table, policy.seen, [list(range(N))] * 2)
    # some leave at exit 0: exit 0 rows are the table's; later rows come from a smaller batch
    median = float(np.median(table.features[:, 0, MAX_PROB]))
    policy = Recorder(3, lambda k, f: (f[:, MAX_PROB] >= median) if k == 0 else f[:, MAX_PROB] < 0)
    out = model.early_exit(x, policy)
    stay = np.flatnonzero(table.features[:, 0, MAX_PROB] < median)
    assert np.flatnonzero(out.exit_indices.numpy() == 2).tolist() == stay.tolist()
    (_, rows0), (_, rows1) = policy.seen
    assert torch.equal(rows0, torch.from_numpy(table.features[:, 0]))
    sub = _table(model, x[stay], batch_size=len(stay))  # the same batch as the remaining live one
    assert torch.equal(rows1, torch.from_numpy(sub.features[:, 1]))


def test_table_save_load_keeps_the_layout(tmp_path) -> None:
    table = _table(_model(), _inputs(_model()), batch_size=8)
    table.save(tmp_path / "t.npz")
    again = ExitTable.load(tmp_path / "t.npz")
    assert again.feature_spec == SPEC
    np.testing.assert_array_equal(again.features, table.features)
    fit, select = table.split_selection(0.25, seed=0)
    assert fit.feature_spec == select.feature_spec == SPEC


def test_a_rich_policy_refuses_a_confidence_table() -> None:
    model = _model()
    loader = DataLoader(TensorDataset(_inputs(model), torch.zeros(N, dtype=torch.long)), batch_size=8)
    table = ExitTable.from_model(model, loader, torch.device("cpu"))
    with pytest.raises(ValueError, match="rich features"):
        GatePolicy(observation="rich").fit(table, np.array([0.3, 0.6, 1.1]), 0.2)


# --- a table where a non-confidence feature decides correctness -----------------------------------------
HIDDEN_SPEC = FeatureSpec(topk=2, hidden_dim=2, seed=0)
HIDDEN_COSTS = np.array([0.3, 1.05])
HIDDEN_LAMBDA = 0.4


def hidden_feature_table(n: int, seed: int) -> ExitTable:
    """Two exits. Exit 0 is right exactly when the first hidden-projection column is > 0; its confidence
    columns are noise independent of that; the final exit is always right.

    Best: leave at exit 0 iff ``hidden_0 > 0``, return ``0.5 (1 - 0.4 * 0.3) + 0.5 (1 - 0.4 * 1.05) = 0.73``;
    any max-prob threshold gets at most ``max(0.58, 0.38)`` (all final, all early) up to sampling noise.
    """
    rng = np.random.default_rng(seed)
    e = 2
    width = NUM_BASE + HIDDEN_SPEC.width(e)
    feats = np.zeros((n, e, width), dtype=np.float32)
    max_prob = rng.uniform(0.2, 1.0, (n, e))
    feats[:, :, 0] = max_prob
    feats[:, :, 1] = (1 - max_prob) * np.log(10)
    feats[:, :, 2] = 0.5 * max_prob
    feats[:, :, NUM_BASE] = max_prob
    feats[:, :, NUM_BASE + 1] = 0.5 * (1 - max_prob)
    hidden = rng.uniform(-1, 1, (n, 2))
    feats[:, 0, -2:] = hidden
    labels = rng.integers(0, 10, n)
    right0 = hidden[:, 0] > 0
    preds = np.stack([np.where(right0, labels, (labels + 1) % 10), labels], axis=1)
    return ExitTable(feats, preds, labels, HIDDEN_SPEC)


def _rich(**options):
    spec = HIDDEN_SPEC
    return {
        "observation": "rich",
        "topk": spec.topk,
        "hidden_dim": spec.hidden_dim,
        "projection_seed": spec.seed,
        **options,
    }


def _held_out_return(policy: ExitPolicy) -> float:
    test = hidden_feature_table(2000, seed=9)
    return mean_return(test, policy.decide_table(test), HIDDEN_COSTS, HIDDEN_LAMBDA)


def _confidence_only(table: ExitTable) -> ExitTable:
    return ExitTable(table.features[:, :, :NUM_BASE], table.predictions, table.labels)


def test_gate_solves_a_non_confidence_feature_that_thresholds_cannot() -> None:
    fit = hidden_feature_table(1500, seed=0)
    threshold = ThresholdPolicy().fit(fit, HIDDEN_COSTS, HIDDEN_LAMBDA)
    gate = GatePolicy(**_rich()).fit(fit, HIDDEN_COSTS, HIDDEN_LAMBDA)
    confidence_gate = GatePolicy().fit(_confidence_only(fit), HIDDEN_COSTS, HIDDEN_LAMBDA)
    test = hidden_feature_table(2000, seed=9)
    assert _held_out_return(threshold) < 0.62
    conf = _confidence_only(test)
    assert mean_return(conf, confidence_gate.decide_table(conf), HIDDEN_COSTS, HIDDEN_LAMBDA) < 0.62
    assert _held_out_return(gate) > 0.71


@pytest.mark.slow
def test_ppo_solves_a_non_confidence_feature(local_ray) -> None:
    from ddecs_search.policies import PPOExitPolicy

    fit = hidden_feature_table(1500, seed=0)
    select = hidden_feature_table(500, seed=1)
    ppo = PPOExitPolicy(**_rich(iterations=12, patience=12, seed=0, export="mlp"))
    ppo.fit(fit, HIDDEN_COSTS, HIDDEN_LAMBDA, select=select)
    assert _held_out_return(ppo) > 0.69, ppo.history
