"""Exit policies on exit tables: thresholds, the oracle bound, the static policy, persistence."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ddecs_search.config import PolicyConfig
from ddecs_search.errors import ConfigError
from ddecs_search.policies import (
    ExitCosts,
    ExitTable,
    OraclePolicy,
    StaticPolicy,
    ThresholdPolicy,
    create_policy,
    exit_features,
    list_policies,
    load_policy,
    score_decisions,
)


def _table(n: int = 600, exits: int = 3, classes: int = 5, seed: int = 0) -> ExitTable:
    """A synthetic table in which later exits are more often right and confidence tracks correctness."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    feats, preds, prev = [], [], None
    for k in range(exits):
        p_correct = 0.55 + 0.2 * k
        logits = rng.normal(0, 1, (n, classes))
        right = rng.random(n) < p_correct
        logits[np.arange(n), labels] += np.where(right, 2.5 + k, -1.0)
        t = torch.from_numpy(logits).float()
        feats.append(exit_features(t, prev))
        prev = t.argmax(1)
        preds.append(prev)
    return ExitTable(torch.stack(feats, 1).numpy(), torch.stack(preds, 1).numpy(), labels)


def _costs(exits: int = 3) -> ExitCosts:
    return ExitCosts(
        stage=np.array([1.0, 2.0, 4.0][:exits]),
        branch=np.array([0.2, 0.3][: exits - 1]),
        static=7.0,
        unit="ms",
        source="test",
    )


def test_path_costs_include_branches_on_the_way() -> None:
    costs = _costs()
    np.testing.assert_allclose(costs.path(), [1.2, 3.5, 7.5])
    np.testing.assert_allclose(costs.normalised_path(), np.array([1.2, 3.5, 7.5]) / 7.0)


def test_score_decisions_arithmetic() -> None:
    table = ExitTable(
        np.zeros((4, 2, 4), np.float32), np.array([[0, 1], [1, 1], [2, 0], [3, 3]]), np.array([0, 1, 0, 2])
    )
    stats = score_decisions(table, np.array([0, 1, 1, 0]), np.array([0.5, 1.0]))
    assert stats.accuracy == pytest.approx(0.75)  # rows 0, 1, 2 right, row 3 wrong
    assert stats.cost == pytest.approx(0.75)
    assert stats.exit_fractions == (0.5, 0.5)
    assert stats.exit_accuracies == (0.5, 1.0)


def test_threshold_cost_is_monotone_in_cost_weight() -> None:
    table, path = _table(), _costs().normalised_path()
    costs, accs = [], []
    for weight in [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]:
        pol = ThresholdPolicy().fit(table, path, weight)
        stats = score_decisions(table, pol.decide_table(table), path)
        costs.append(stats.cost)
        accs.append(stats.accuracy)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(costs)), costs
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(accs)), accs
    assert costs[-1] < costs[0]


def test_raising_a_threshold_never_lets_more_samples_leave_there() -> None:
    table = _table()
    fractions = []
    for t in np.linspace(0.2, 1.0, 9):
        exits = ThresholdPolicy(thresholds=[t, 0.9]).decide_table(table)
        fractions.append((exits == 0).mean())
    assert all(b <= a for a, b in itertools.pairwise(fractions))


@pytest.mark.parametrize("metric", ["max_prob", "entropy"])
def test_threshold_fit_beats_static_and_extremes(metric: str) -> None:
    table, path = _table(), _costs().normalised_path()
    weight = 0.3
    pol = ThresholdPolicy(metric=metric).fit(table, path, weight)

    def objective(exits: np.ndarray) -> float:
        stats = score_decisions(table, exits, path)
        return stats.accuracy - weight * stats.cost

    best = objective(pol.decide_table(table))
    assert best >= objective(StaticPolicy().decide_table(table)) - 1e-12
    assert best >= objective(np.zeros(table.num_samples, dtype=np.int64)) - 1e-12


def _cliff_table() -> tuple[ExitTable, np.ndarray]:
    """One early exit whose accuracy-cost curve bends the wrong way: the most confident 60 % are right,
    the next 30 % right 2 times in 5, the least confident 10 % right again; the final exit always right.
    Leaving 60 % and leaving everyone are on the convex hull; everything in between lies below it."""
    n = 1000
    conf = np.linspace(1.0, 0.0, n, endpoint=False)  # sorted, most confident first
    right0 = np.ones(n, dtype=bool)
    right0[600:900] = np.arange(300) % 5 < 2
    labels = np.zeros(n, dtype=np.int64)
    preds = np.stack([np.where(right0, 0, 1), labels], axis=1)
    feats = np.zeros((n, 2, 4), dtype=np.float32)
    feats[:, :, 0] = conf[:, None]  # max-prob at exit 0 (and an unused one at the final exit)
    return ExitTable(feats, preds, labels), np.array([0.2, 1.0])


def test_max_drop_reaches_the_points_a_cost_weight_jumps_over() -> None:
    """A weighted sum finds only the convex hull: λ jumps from 60 % to 100 % leaving early. With
    ``max_drop`` a large λ leaves as many as the bound allows, and the fit-part drop stays within it."""
    table, path = _cliff_table()
    fractions = {
        round(float((ThresholdPolicy().fit(table, path, w).decide_table(table) == 0).mean()), 3)
        for w in np.linspace(0.01, 2.0, 200)
    }
    assert not any(0.61 < f < 0.99 for f in fractions), sorted(fractions)  # the hull skips the middle
    for max_drop, most in [(0.0, 0.6), (0.05, 0.683), (0.1, 0.767), (0.15, 0.85)]:
        pol = ThresholdPolicy(max_drop=max_drop).fit(table, path, 2.0)
        exits = pol.decide_table(table)
        assert score_decisions(table, exits, path).accuracy >= 1.0 - max_drop - 1e-9
        assert (exits == 0).mean() == pytest.approx(most, abs=0.03), max_drop  # near the bound (grid)
    # a small λ still trades inside the bound: never more exits than without it
    free = ThresholdPolicy().fit(table, path, 0.01).decide_table(table)
    bounded = ThresholdPolicy(max_drop=0.1).fit(table, path, 0.01).decide_table(table)
    assert (bounded == 0).mean() <= (free == 0).mean()


def test_max_drop_option_is_validated_by_the_factory() -> None:
    pol = create_policy(PolicyConfig(kind="threshold", options={"max_drop": 0.01}))
    assert isinstance(pol, ThresholdPolicy) and pol.max_drop == 0.01
    for bad in (-0.1, 1.5, "1pt", True):
        with pytest.raises(ConfigError, match="max_drop"):
            create_policy(PolicyConfig(kind="threshold", options={"max_drop": bad}))


def test_oracle_bounds_every_policy() -> None:
    table, path = _table(), _costs().normalised_path()
    oracle_exits = OraclePolicy().decide_table(table)
    oracle = score_decisions(table, oracle_exits, path)
    rng = np.random.default_rng(1)
    rows = np.arange(table.num_samples)
    for _ in range(20):
        pol = ThresholdPolicy(thresholds=list(rng.uniform(0.2, 1.0, 2)))
        exits = pol.decide_table(table)
        stats = score_decisions(table, exits, path)
        assert oracle.accuracy >= stats.accuracy
        right = table.correct[rows, exits]
        # on every sample the policy gets right, the oracle's path is no more expensive
        assert np.all(path[oracle_exits[right]] <= path[exits[right]])


def test_oracle_is_not_deployable() -> None:
    with pytest.raises(TypeError):
        OraclePolicy().exit_mask(0, torch.zeros(2, 4))


def test_decide_matches_exit_mask_step_by_step() -> None:
    table = _table(n=50)
    pol = ThresholdPolicy(thresholds=[0.7, 0.6])
    exits = pol.decide_table(table)
    for i in range(table.num_samples):
        expected = table.num_exits - 1
        for k in range(table.num_exits - 1):
            if bool(pol.exit_mask(k, torch.from_numpy(table.features[i : i + 1, k]))[0]):
                expected = k
                break
        assert exits[i] == expected


def test_static_policy_always_takes_the_final_exit() -> None:
    table = _table(n=30)
    assert (StaticPolicy().decide_table(table) == table.num_exits - 1).all()


def test_policy_save_load_round_trip(tmp_path) -> None:
    table, path = _table(), _costs().normalised_path()
    pol = ThresholdPolicy(metric="entropy").fit(table, path, 0.2)
    pol.save(tmp_path / "policy.json")
    again = load_policy(tmp_path / "policy.json")
    assert isinstance(again, ThresholdPolicy)
    np.testing.assert_array_equal(again.decide_table(table), pol.decide_table(table))


def test_table_save_load_round_trip(tmp_path) -> None:
    table = _table(n=20)
    table.save(tmp_path / "t.npz")
    again = ExitTable.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(again.features, table.features)
    np.testing.assert_array_equal(again.predictions, table.predictions)


def test_registry_errors_name_valid_kinds() -> None:
    assert {"threshold", "oracle", "static"} <= set(list_policies())
    with pytest.raises(ConfigError, match="valid:.*threshold"):
        create_policy(PolicyConfig(kind="nope"))
    with pytest.raises(ConfigError, match="takes no option"):
        create_policy(PolicyConfig(kind="threshold", options={"bogus": 1}))
