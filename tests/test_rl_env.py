"""The RL exit environment: gymnasium contract, reward arithmetic, and the reference's reward bug.

The published reference rewarded the *current* exit's correctness whatever the agent chose, so both
actions had the same value and its policy was noise. ``_ReferenceRewardEnv`` reproduces that reward; the
checks below must pass on :class:`ExitEnv` and fail on it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from ddecs_search.policies import ExitTable, ThresholdPolicy, score_decisions
from ddecs_search.policies._env import CONTINUE, EXIT, ExitEnv, make_env_config, mean_return
from ddecs_search.policies._obs import observation_size

COSTS = np.array([0.3, 0.6, 1.05])  # normalised path cost of leaving at exits 0, 1, 2 (final)
LAMBDA = 0.4


def _hand_table() -> ExitTable:
    """2 samples x 3 exits, known correctness; features chosen to check the observation layout."""
    features = np.array(
        [
            [[0.9, 0.5, 0.8, 0.0], [0.7, 1.0, 0.4, 1.0], [0.95, 0.2, 0.9, 1.0]],
            [[0.4, 2.0, 0.1, 0.0], [0.6, 1.5, 0.3, 0.0], [0.8, 0.7, 0.6, 1.0]],
        ],
        dtype=np.float32,
    )
    predictions = np.array([[3, 1, 3], [0, 4, 4]])
    labels = np.array([3, 4])  # sample 0: right at exits 0 and 2; sample 1: right at exits 1 and 2
    return ExitTable(features, predictions, labels)


def _confidence_table(n: int = 600, seed: int = 0) -> ExitTable:
    """Exit 0 is right exactly when its max-prob > 0.55, exit 1 when > 0.35, the final exit always."""
    rng = np.random.default_rng(seed)
    max_prob = rng.uniform(0.1, 1.0, size=(n, 3)).astype(np.float32)
    entropy = (1.0 - max_prob) * math.log(10)
    features = np.stack([max_prob, entropy, 0.8 * max_prob, np.zeros_like(max_prob)], axis=2)
    labels = rng.integers(0, 10, n)
    right = np.stack([max_prob[:, 0] > 0.55, max_prob[:, 1] > 0.35, np.ones(n, dtype=bool)], axis=1)
    predictions = np.where(right, labels[:, None], (labels[:, None] + 1) % 10)
    return ExitTable(features, predictions, labels)


class _ReferenceRewardEnv(ExitEnv):
    """The reference's reward: the current exit's correctness, whatever the action (a bug)."""

    def step(self, action):
        i, k = self._sample, self._exit
        obs, _, done, truncated, info = super().step(action)
        return obs, float(self._correct[i, k]), done, truncated, info


def _episode(env: ExitEnv, sample: int, exit_at: int) -> tuple[list[float], dict]:
    """Rewards of the episode that continues until ``exit_at`` (the final exit = always continue)."""
    env.reset(options={"sample": sample})
    rewards, k = [], 0
    while True:
        action = EXIT if k == exit_at else CONTINUE
        _, reward, done, _, info = env.step(action)
        rewards.append(reward)
        k += 1
        if done:
            return rewards, info


def _rollout_return(env: ExitEnv, decide, episodes: int, seed: int) -> float:
    """Mean return of ``decide(obs) -> action`` over seeded random episodes."""
    total = 0.0
    env.reset(seed=seed)
    for _ in range(episodes):
        obs, _ = env.reset()
        done = False
        while not done:
            obs, reward, done, _, _ = env.step(decide(obs))
            total += reward
    return total / episodes


def _action_values(env: ExitEnv, table: ExitTable) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, at early exit 0: immediate reward of "exit" and return of "continue to the final exit"."""
    exit_now = np.array([_episode(env, i, 0)[0][0] for i in range(table.num_samples)])
    go_on = np.array([sum(_episode(env, i, table.num_exits - 1)[0]) for i in range(table.num_samples)])
    return exit_now, go_on


# --------------------------------------------------------------------------------------- contract
def test_env_passes_gymnasium_checker() -> None:
    env = ExitEnv.from_table(_confidence_table(50), COSTS, LAMBDA)
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (observation_size(3),)


def test_reset_seed_makes_sample_draws_reproducible() -> None:
    env = ExitEnv.from_table(_confidence_table(), COSTS, LAMBDA)

    def draws(seed: int) -> list[int]:
        env.reset(seed=seed)
        return [env.reset()[1]["sample"] for _ in range(20)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_invalid_use_raises() -> None:
    env = ExitEnv.from_table(_hand_table(), COSTS, LAMBDA)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(EXIT)
    env.reset(options={"sample": 0})
    with pytest.raises(ValueError, match="action"):
        env.step(2)
    with pytest.raises(ValueError, match="sample"):
        env.reset(options={"sample": 2})


# ------------------------------------------------------------------------------------- arithmetic
def test_observation_layout_and_entropy_scale() -> None:
    table = _hand_table()
    config = make_env_config(table, COSTS, LAMBDA)
    assert config["entropy_scale"] == pytest.approx(math.log(5))  # classes 0..4 appear in the table
    env = ExitEnv(config)
    obs, _ = env.reset(options={"sample": 1})
    np.testing.assert_allclose(obs, [1, 0, 0.4, 1.0, 0.1, 0.0], rtol=1e-6)  # entropy 2.0 / log 5 -> clipped
    obs, *_ = env.step(CONTINUE)
    np.testing.assert_allclose(obs, [0, 1, 0.6, 1.5 / math.log(5), 0.3, 0.0], rtol=1e-6)


def test_reward_arithmetic_on_hand_made_table() -> None:
    env = ExitEnv.from_table(_hand_table(), COSTS, LAMBDA)
    # sample 0: right at exits 0 and 2
    assert _episode(env, 0, 0) == (
        [pytest.approx(1 - LAMBDA * 0.3)],
        {"sample": 0, "exit": 0, "correct": True},
    )
    assert _episode(env, 0, 1)[0] == [0.0, pytest.approx(-LAMBDA * 0.6)]
    # continuing from the last early exit is terminal and paid with the final exit's outcome
    rewards, info = _episode(env, 0, 2)
    assert rewards == [0.0, pytest.approx(1 - LAMBDA * 1.05)] and info["exit"] == 2
    # sample 1: right at exits 1 and 2
    assert _episode(env, 1, 0)[0] == [pytest.approx(-LAMBDA * 0.3)]
    assert _episode(env, 1, 1)[0] == [0.0, pytest.approx(1 - LAMBDA * 0.6)]


def test_episode_return_equals_the_policy_objective() -> None:
    table = _confidence_table()
    policy = ThresholdPolicy().fit(table, COSTS, LAMBDA)
    exits = policy.decide_table(table)
    env = ExitEnv.from_table(table, COSTS, LAMBDA)
    returns = [sum(_episode(env, i, int(exits[i]))[0]) for i in range(table.num_samples)]
    stats = score_decisions(table, exits, COSTS)
    assert np.mean(returns) == pytest.approx(stats.accuracy - LAMBDA * stats.cost)
    assert mean_return(table, exits, COSTS, LAMBDA) == pytest.approx(np.mean(returns))


# ------------------------------------------------------------------------------- reference bug
@pytest.mark.parametrize("env_class, fixed", [(ExitEnv, True), (_ReferenceRewardEnv, False)])
def test_action_values_differ_and_follow_confidence(env_class: type[ExitEnv], fixed: bool) -> None:
    """In a state, "exit" and "continue" must have different expected rewards, in the right direction."""
    table = _confidence_table()
    env = env_class(make_env_config(table, COSTS, LAMBDA))
    exit_now, go_on = _action_values(env, table)
    confident = table.features[:, 0, 0] > 0.55
    # expected value of each action in the "confident" and "unsure" states at exit 0
    gap_confident = exit_now[confident].mean() - go_on[confident].mean()
    gap_unsure = exit_now[~confident].mean() - go_on[~confident].mean()
    ok = gap_confident > 0.1 and gap_unsure < -0.1
    assert ok == fixed, (gap_confident, gap_unsure)


@pytest.mark.parametrize("env_class, fixed", [(ExitEnv, True), (_ReferenceRewardEnv, False)])
def test_confidence_policy_beats_policies_that_ignore_confidence(
    env_class: type[ExitEnv], fixed: bool
) -> None:
    table = _confidence_table()
    env = env_class(make_env_config(table, COSTS, LAMBDA))
    mp = observation_size(3) - 4  # max_prob follows the one-hot exit index
    rng = np.random.default_rng(0)
    ignorant = {
        "exit at 0": lambda obs: EXIT,
        "exit at 1": lambda obs: EXIT if obs[1] == 1 else CONTINUE,
        "never exit": lambda obs: CONTINUE,
        "random": lambda obs: int(rng.integers(2)),
    }
    confident = _rollout_return(
        env, lambda obs: EXIT if obs[mp] > (0.55 if obs[0] else 0.35) else CONTINUE, 800, 1
    )
    others = {name: _rollout_return(env, fn, 800, 1) for name, fn in ignorant.items()}
    assert all(confident > r + 0.05 for r in others.values()) == fixed, (confident, others)
