"""Tests of the exact dynamic-programming helpers used to grade learned policies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy import sparse

from replaystore.agents import (
    initial_state_distribution,
    policy_evaluation,
    policy_value_gap,
    transition_matrices,
    value_iteration,
)
from replaystore.errors import SchemaError

# A hand-solved MDP (gamma = 0.9).
#   state 0: action 0 -> state 1 (reward 0); action 1 -> terminal, reward 1.
#   state 1: action 0 -> with 0.5 stay in 1 (reward 2), with 0.5 terminal (reward 0);
#            action 1 -> state 0 (reward 0).
# V(1) = max(1 + 0.45 V(1), 0.9 V(0)), V(0) = max(0.9 V(1), 1).
# With action 0 in state 1: V(1) = 1 / 0.55 = 20/11; then V(0) = 0.9 * 20/11 = 18/11 > 1,
# and 0.9 V(0) = 162/110 < 20/11, so the optimal policy is (0, 0).
HAND_P = {
    0: {0: [(1.0, 1, 0.0, False)], 1: [(1.0, 0, 1.0, True)]},
    1: {0: [(0.5, 1, 2.0, False), (0.5, 0, 0.0, True)], 1: [(1.0, 0, 0.0, False)]},
}
GAMMA = 0.9
V_STAR = np.array([18 / 11, 20 / 11])
Q_STAR = np.array([[18 / 11, 1.0], [20 / 11, 0.9 * 18 / 11]])


def test_transition_matrices_leave_out_terminal_transitions():
    T, R = transition_matrices(HAND_P, 2, 2)
    np.testing.assert_allclose(T[1, 0], [0.0, 0.5])  # the terminal half is not in T
    np.testing.assert_allclose(T[0, 1], [0.0, 0.0])
    np.testing.assert_allclose(R, [[0.0, 1.0], [1.0, 0.0]])


def test_value_iteration_hand_solved():
    V, Q = value_iteration(HAND_P, 2, 2, GAMMA)
    np.testing.assert_allclose(V, V_STAR, atol=1e-10)
    np.testing.assert_allclose(Q, Q_STAR, atol=1e-10)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # policy (1, 0): V(0) = 1; V(1) = 1 + 0.45 V(1) = 20/11
        (np.array([1, 0]), [1.0, 20 / 11]),
        # policy (0, 1): V(0) = 0.9 V(1), V(1) = 0.9 V(0) -> both 0
        (np.array([0, 1]), [0.0, 0.0]),
        # stochastic: in state 1 half/half
        (np.array([[0.0, 1.0], [0.5, 0.5]]), [1.0, (0.5 + 0.45) / (1 - 0.225)]),
    ],
)
def test_policy_evaluation_hand_solved(policy, expected):
    np.testing.assert_allclose(policy_evaluation(HAND_P, policy, GAMMA), expected, atol=1e-12)


def test_policy_evaluation_validates_policy():
    with pytest.raises(SchemaError, match=r"\[0, 1\]"):
        policy_evaluation(HAND_P, np.array([0, 2]), GAMMA)
    with pytest.raises(SchemaError, match="shape"):
        policy_evaluation(HAND_P, np.array([0, 1, 0]), GAMMA)


def test_bad_transition_table():
    with pytest.raises(SchemaError, match="sum to 0.5"):
        transition_matrices({0: {0: [(0.5, 0, 0.0, False)]}}, 1, 1)
    with pytest.raises(SchemaError, match="leads to state 3"):
        transition_matrices({0: {0: [(1.0, 3, 0.0, False)]}}, 1, 1)


def plain_value_iteration(P, n_states, n_actions, gamma, sweeps):
    T, R = transition_matrices(P, n_states, n_actions)
    T = sparse.csr_array(T.reshape(n_states * n_actions, n_states))
    V = np.zeros(n_states)
    for _ in range(sweeps):
        V = (R + gamma * (T @ V).reshape(n_states, n_actions)).max(axis=1)
    return V


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("FrozenLake-v1", {"map_name": "4x4", "is_slippery": True}),
        ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": True}),
        ("Taxi-v4", {}),
        ("CliffWalkingSlippery-v1", {}),
    ],
)
@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_toy_text_optimal_policy_evaluates_to_v_star(env_id, kwargs, gamma):
    env = gym.make(env_id, **kwargs)
    P = env.unwrapped.P
    n_states, n_actions = env.observation_space.n, env.action_space.n
    V, Q = value_iteration(P, n_states, n_actions, gamma)
    # Bellman optimality holds ...
    T, R = transition_matrices(P, n_states, n_actions)
    np.testing.assert_allclose((R + gamma * T @ V).max(axis=1), V, atol=1e-9)
    # ... it agrees with slow plain value iteration ...
    sweeps = int(np.log(1e-12) / np.log(gamma)) + 50
    np.testing.assert_allclose(plain_value_iteration(P, n_states, n_actions, gamma, sweeps), V,
                               atol=1e-8)
    # ... and the greedy policy is worth exactly V*.
    np.testing.assert_allclose(policy_evaluation(P, Q.argmax(axis=1), gamma), V, atol=1e-9)
    result = policy_value_gap(env, Q.argmax(axis=1), gamma)
    assert abs(result["gap"]) < 1e-9 and abs(result["rel_gap"]) < 1e-9


def test_policy_value_gap_of_a_bad_policy():
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    always_left = np.zeros(16, dtype=np.int64)
    result = policy_value_gap(env, always_left, 0.95)
    assert result["v_star"] > 0.1
    assert result["v_pi"] == pytest.approx(
        policy_evaluation(env.unwrapped.P, always_left, 0.95)[0]
    )
    assert result["gap"] == pytest.approx(result["v_star"] - result["v_pi"])
    assert result["rel_gap"] == pytest.approx(result["gap"] / result["v_star"])
    assert result["rel_gap"] > 0.5


def test_initial_state_distribution():
    taxi = gym.make("Taxi-v4")
    d = initial_state_distribution(taxi)
    assert d.shape == (500,) and d.sum() == pytest.approx(1.0)
    assert np.count_nonzero(d) == 300  # 25 taxi cells x 4 pickups x 3 other destinations
    cliff = gym.make("CliffWalking-v1")
    assert np.flatnonzero(initial_state_distribution(cliff)).tolist() == [36]


class NoDistribution(gym.Env):
    """An env without ``initial_state_distrib``: starts in 0 or 2 with equal chance."""

    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return int(self.np_random.integers(0, 2)) * 2, {}

    def step(self, action):
        return 0, 0.0, True, False, {}


def test_initial_state_distribution_estimated_from_resets():
    d = initial_state_distribution(NoDistribution(), n_resets=4000)
    assert d[1] == 0.0
    assert d[0] == pytest.approx(0.5, abs=0.03)
