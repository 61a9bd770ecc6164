"""Exact dynamic programming on a toy-text transition table, to grade learned policies.

``P`` is the table gymnasium's toy-text environments expose as ``env.unwrapped.P``: a dict
``s -> a -> list of (prob, next_state, reward, terminated)``. A transition with
``terminated=True`` ends the episode, so it contributes its reward and never bootstraps
from ``next_state``. Everything is built as dense numpy matrices (fine up to a few thousand
states: Taxi has 500 states x 6 actions).

A two-state example: from state 0 action 1 ends the episode with reward 1, action 0 moves
to state 1 with reward 0; state 1 only loops on itself with reward 0.5.

>>> P = {0: {0: [(1.0, 1, 0.0, False)], 1: [(1.0, 0, 1.0, True)]},
...      1: {0: [(1.0, 1, 0.5, False)], 1: [(1.0, 1, 0.5, False)]}}
>>> V, Q = value_iteration(P, 2, 2, gamma=0.9)
>>> V.round(6).tolist()                       # V(1) = 0.5 / (1 - 0.9); V(0) = 0.9 * 5
[4.5, 5.0]
>>> policy_evaluation(P, [1, 0], gamma=0.9).round(6).tolist()
[1.0, 5.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from replaystore.errors import ReplayStoreError, SchemaError

__all__ = [
    "transition_matrices",
    "value_iteration",
    "policy_evaluation",
    "initial_state_distribution",
    "policy_value_gap",
]

TransitionTable = Mapping[int, Mapping[int, Sequence[tuple[float, int, float, bool]]]]


def _table_shape(P: TransitionTable) -> tuple[int, int]:
    n_states = len(P)
    n_actions = max((len(P[s]) for s in P), default=0)
    return n_states, n_actions


def transition_matrices(
    P: TransitionTable, n_states: int, n_actions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``(T, R)`` from a toy-text table.

    ``T[s, a, s']`` is the probability of moving to ``s'`` *without terminating* (terminal
    transitions are left out, so rows may sum to less than 1) and ``R[s, a]`` the expected
    immediate reward. Then ``Q = R + gamma * T @ V`` is the Bellman backup.

    >>> T, R = transition_matrices({0: {0: [(0.5, 0, 1.0, False), (0.5, 0, 3.0, True)]}}, 1, 1)
    >>> T.tolist(), R.tolist()
    ([[[0.5]]], [[2.0]])
    """
    T = np.zeros((n_states, n_actions, n_states), dtype=np.float64)
    R = np.zeros((n_states, n_actions), dtype=np.float64)
    for s in range(n_states):
        if s not in P:
            raise SchemaError(f"transition table has no state {s}; expected states 0..{n_states - 1}")
        for a in range(n_actions):
            if a not in P[s]:
                raise SchemaError(
                    f"transition table has no action {a} in state {s}; "
                    f"expected actions 0..{n_actions - 1}"
                )
            total = 0.0
            for prob, s2, reward, terminated in P[s][a]:
                if not 0 <= s2 < n_states:
                    raise SchemaError(
                        f"P[{s}][{a}] leads to state {s2}, expected a state in [0, {n_states - 1}]"
                    )
                total += prob
                R[s, a] += prob * reward
                if not terminated:
                    T[s, a, s2] += prob
            if abs(total - 1.0) > 1e-8:
                raise SchemaError(
                    f"probabilities of P[{s}][{a}] sum to {total}, expected 1"
                )
    return T, R


def _policy_matrix(policy: Any, n_states: int, n_actions: int) -> np.ndarray:
    """A ``(n_states, n_actions)`` matrix of action probabilities from either form."""
    pi = np.asarray(policy)
    if pi.shape == (n_states,) and pi.dtype.kind in "iu":
        if pi.size and (pi.min() < 0 or pi.max() >= n_actions):
            raise SchemaError(
                f"policy actions must be in [0, {n_actions - 1}], got min {pi.min()}, "
                f"max {pi.max()}"
            )
        out = np.zeros((n_states, n_actions))
        out[np.arange(n_states), pi] = 1.0
        return out
    if pi.shape == (n_states, n_actions) and pi.dtype.kind == "f":
        if np.any(pi < 0) or not np.allclose(pi.sum(axis=1), 1.0):
            raise SchemaError("a stochastic policy needs non-negative rows that sum to 1")
        return pi.astype(np.float64)
    raise SchemaError(
        f"policy must be an int array of shape ({n_states},) or a float array of shape "
        f"({n_states}, {n_actions}), got {pi.dtype} {pi.shape}"
    )


def _evaluate(T: np.ndarray, R: np.ndarray, pi: np.ndarray, gamma: float) -> np.ndarray:
    n_states = T.shape[0]
    P_pi = np.einsum("sa,sat->st", pi, T)
    r_pi = np.einsum("sa,sa->s", pi, R)
    try:
        return np.linalg.solve(np.eye(n_states) - gamma * P_pi, r_pi)
    except np.linalg.LinAlgError as exc:
        raise ReplayStoreError(
            f"policy evaluation with gamma={gamma} is singular (a non-terminating loop "
            "with gamma=1?)"
        ) from exc


def value_iteration(
    P: TransitionTable, n_states: int, n_actions: int, gamma: float, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal ``(V*, Q*)`` with ``max |V - V*| <= tol``.

    Bellman backups, accelerated by an exact evaluation of the greedy policy every few
    sweeps (which makes the result exact as soon as the greedy policy is optimal). Stops
    when the Bellman residual ``r`` satisfies ``r / (1 - gamma) <= tol``, a bound on the
    distance to ``V*``. Needs ``0 <= gamma < 1``.
    """
    if not 0.0 <= gamma < 1.0:
        raise ReplayStoreError(f"value_iteration needs 0 <= gamma < 1, got {gamma}")
    T, R = transition_matrices(P, n_states, n_actions)
    V = np.zeros(n_states)
    for sweep in range(1, 100_000):
        Q = R + gamma * (T @ V)
        V_new = Q.max(axis=1)
        residual = float(np.abs(V_new - V).max())
        V = V_new
        if residual / (1.0 - gamma) <= tol:
            break
        if sweep % 8 == 0:  # policy-iteration jump: the value of the greedy policy
            pi = np.zeros((n_states, n_actions))
            pi[np.arange(n_states), Q.argmax(axis=1)] = 1.0
            V = _evaluate(T, R, pi, gamma)
    Q = R + gamma * (T @ V)
    return Q.max(axis=1), Q


def policy_evaluation(P: TransitionTable, policy: Any, gamma: float) -> np.ndarray:
    """Exact ``V^pi`` by solving ``(I - gamma * T_pi) V = r_pi``.

    ``policy`` is an int array of actions, shape ``(n_states,)``, or a float array of
    action probabilities, shape ``(n_states, n_actions)``.
    """
    n_states, n_actions = _table_shape(P)
    pi = _policy_matrix(policy, n_states, n_actions)
    T, R = transition_matrices(P, n_states, n_actions)
    return _evaluate(T, R, pi, gamma)


def initial_state_distribution(env: Any, *, n_resets: int = 10_000) -> np.ndarray:
    """Distribution of the first observation, shape ``(n_states,)``.

    Uses ``env.unwrapped.initial_state_distrib`` (FrozenLake, Taxi, CliffWalking have it).
    Otherwise it is estimated from ``n_resets`` resets with seeds ``0 .. n_resets - 1``
    (this resets ``env``).

    >>> import gymnasium as gym
    >>> d = initial_state_distribution(gym.make("FrozenLake-v1"))
    >>> d.shape, float(d[0])
    ((16,), 1.0)
    """
    unwrapped = env.unwrapped
    dist = getattr(unwrapped, "initial_state_distrib", None)
    if dist is not None:
        return np.asarray(dist, dtype=np.float64).copy()
    n_states = int(env.observation_space.n)
    counts = np.zeros(n_states)
    for seed in range(n_resets):
        obs, _ = env.reset(seed=seed)
        counts[int(obs) - int(getattr(env.observation_space, "start", 0))] += 1
    return counts / counts.sum()


def policy_value_gap(env: Any, policy: Any, gamma: float) -> dict[str, float]:
    """How far ``policy`` is from optimal, averaged over the initial-state distribution.

    Returns ``v_star = d0 @ V*``, ``v_pi = d0 @ V^pi``, ``gap = v_star - v_pi`` (>= 0 up to
    rounding) and ``rel_gap = gap / |v_star|`` (``gap`` itself when ``v_star == 0``).

    >>> import gymnasium as gym
    >>> env = gym.make("FrozenLake-v1", is_slippery=False)
    >>> right_down = [2, 2, 1, 0, 1, 0, 1, 0, 2, 2, 1, 0, 0, 2, 2, 0]
    >>> policy_value_gap(env, right_down, gamma=0.9)["rel_gap"] < 1e-12
    True
    """
    P = env.unwrapped.P
    n_states, n_actions = _table_shape(P)
    v_star, _ = value_iteration(P, n_states, n_actions, gamma)
    v_pi = policy_evaluation(P, policy, gamma)
    d0 = initial_state_distribution(env)
    star, mine = float(d0 @ v_star), float(d0 @ v_pi)
    gap = star - mine
    return {
        "v_star": star,
        "v_pi": mine,
        "gap": gap,
        "rel_gap": gap / abs(star) if star != 0 else gap,
    }
