"""The compiled Q-learning step (``replaystore.agents.kernels.q_step``, called by
``update_small``) against its numpy reference (``update_small_numpy``): same Q-table, visit
counts and returned value on random batches -- bit for bit for the "visits" and "constant"
schedules, within 1 ulp for "polynomial" (numpy's array ``power`` is SIMD code that
differs from libm's ``pow`` in the last bit) -- and the same refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from replaystore.agents import QLearningAgent
from replaystore.agents.small_batch import update_small, update_small_numpy
from replaystore.errors import SchemaError


def _batch(rng, n_states, n_actions, m, reward_dtype=np.float32):
    return {"obs": rng.integers(0, n_states, m), "action": rng.integers(0, n_actions, m),
            "reward": (rng.standard_normal(m) * 3).astype(reward_dtype),
            "next_obs": rng.integers(0, n_states, m), "terminated": rng.random(m) < 0.3,
            "truncated": rng.random(m) < 0.1}


def _ulps(x: np.ndarray, y: np.ndarray) -> float:
    """Largest distance between ``x`` and ``y`` in units of the last place of ``y``."""
    return float(np.max(np.abs(x - y) / np.spacing(np.maximum(np.abs(x), np.abs(y)))))


def _pair(n_states, n_actions, **hp):
    a, b = QLearningAgent(n_states, n_actions, **hp), QLearningAgent(n_states, n_actions, **hp)
    return a, b


@pytest.mark.parametrize("schedule", ["visits", "constant"])
@pytest.mark.parametrize("reward_dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n_states", "n_actions", "gamma"), [(3, 2, 0.9), (48, 4, 0.99), (500, 6, 1.0)])
def test_kernel_is_bit_identical_to_the_numpy_step(schedule, reward_dtype, n_states, n_actions, gamma):
    """Two agents fed the same 400 batches (duplicates in nearly every one on the 3x2
    table, rarely on the 500x6 one) through the kernel and through numpy stay equal bit
    for bit, and every update returns the same float."""
    rng = np.random.default_rng([n_states, len(schedule), int(gamma * 100)])
    fast, ref = _pair(n_states, n_actions, alpha=0.7, gamma=gamma, alpha_schedule=schedule,
                      q_init=0.25)
    for _ in range(400):
        b = _batch(rng, n_states, n_actions, int(rng.integers(1, 65)), reward_dtype)
        d_fast, d_ref = update_small(fast, b), update_small_numpy(ref, b)
        assert type(d_fast) is float and d_fast == d_ref
    assert np.array_equal(fast.q, ref.q) and np.array_equal(fast.visits, ref.visits)
    assert fast.visits.sum() > 0 and (fast.q != 0.25).any()
    assert not fast._scratch[0].any() and not fast._scratch[1].any()  # scratch left all-zero


@pytest.mark.parametrize("power", [0.6, 0.8, 1.0])
def test_kernel_polynomial_schedule_is_within_one_ulp(power):
    """From the same state, one step of each: the same visits, and Q-values and returned
    value as close as a step size 1 ulp off allows (the step size ``alpha * (k/n) **
    power`` goes through pow): 2 ulp of the change (the product's rounding) plus 1 ulp of
    the sum."""
    rng = np.random.default_rng(7)
    fast, ref = _pair(7, 3, alpha=0.9, gamma=0.95, alpha_schedule="polynomial", alpha_power=power)
    worst, differ = 0.0, 0
    for _ in range(400):
        before = fast.q.copy()
        ref.q, ref.visits = before.copy(), fast.visits.copy()
        b = _batch(rng, 7, 3, int(rng.integers(1, 40)))
        d_fast, d_ref = update_small(fast, b), update_small_numpy(ref, b)
        np.testing.assert_array_equal(fast.visits, ref.visits)
        bound = 2 * np.spacing(np.abs(ref.q - before)) + np.spacing(np.abs(ref.q))
        assert np.all(np.abs(fast.q - ref.q) <= bound)
        worst = max(worst, _ulps(np.array([d_fast]), np.array([d_ref])))
        differ += not np.array_equal(fast.q, ref.q)
    assert worst <= 2.0
    if power == 1.0:
        assert worst == 0.0 and differ == 0  # x ** 1 is exact on both sides


def test_kernel_takes_large_batches_and_nan_like_numpy():
    """4096 rows on a small table (every cell many times), and a Q-table holding NaN and
    infinities: the same as numpy (np.max propagates NaN; NaN == NaN here)."""
    rng = np.random.default_rng(3)
    fast, ref = _pair(5, 3, gamma=0.9)
    b = _batch(rng, 5, 3, 4096)
    assert update_small(fast, b) == update_small_numpy(ref, b)
    assert np.array_equal(fast.q, ref.q) and np.array_equal(fast.visits, ref.visits)
    for agent in (fast, ref):
        agent.q[1, 2] = np.nan
        agent.q[3, 0] = np.inf
        agent.q[4, 1] = -np.inf
    for _ in range(20):
        b = _batch(rng, 5, 3, 16)
        with np.errstate(invalid="ignore"):  # (inf - inf in numpy)
            d1, d2 = update_small(fast, b), update_small_numpy(ref, b)
        assert d1 == d2 or (np.isnan(d1) and np.isnan(d2))
        np.testing.assert_array_equal(fast.q, ref.q)  # (NaN at the same places)
    assert np.isnan(fast.q).sum() > 1


@pytest.mark.parametrize("change", [
    {"obs": np.array([0, 7])}, {"obs": np.array([-1, 0])}, {"action": np.array([3, 0])},
    {"action": np.array([0, -3])}, {"next_obs": np.array([0, 9])}, {"next_obs": np.array([-7, 0])},
    {"reward": np.array([1.0, 2.0, 3.0])}, {"terminated": np.array([True])},
])
def test_kernel_refuses_out_of_range_and_ragged_batches_untouched(change):
    """Indices out of range (negative ones too: no wrap-around) or fields of other lengths:
    None, nothing changed, and update() then raises the general path's SchemaError."""
    agent = QLearningAgent(7, 3)
    b = {"obs": np.array([0, 1]), "action": np.array([0, 2]), "reward": np.array([1.0, 2.0]),
         "next_obs": np.array([1, 2]), "terminated": np.array([False, True]), **change}
    assert update_small(agent, b) is None
    assert not agent.q.any() and not agent.visits.any()
    with pytest.raises(SchemaError):
        agent.update(b)


@pytest.mark.parametrize("change", [
    {"obs": np.array([0, 1], np.int32)}, {"action": np.array([0.0, 1.0])},
    {"terminated": np.array([0, 1])}, {"obs": np.array([[0], [1]])}, {"truncated": np.array([0, 1])},
    {"truncated": np.array([False])}, {"obs": [0, 1]},
])
def test_kernel_leaves_other_types_to_the_general_path(change):
    """Types the kernel is not compiled for (int32 indices, float actions, int flags,
    2-D fields, lists, a bad truncated): None, untouched -- never a new compilation."""
    agent = QLearningAgent(7, 3)
    b = {"obs": np.array([0, 1]), "action": np.array([0, 2]), "reward": np.array([1.0, 2.0]),
         "next_obs": np.array([1, 2]), "terminated": np.array([False, True]), **change}
    assert update_small(agent, b) is None
    assert not agent.q.any() and not agent.visits.any()


def test_float16_rewards_and_fortran_tables_take_the_numpy_step():
    rng = np.random.default_rng(5)
    fast, ref = _pair(6, 2, gamma=0.9)
    b = _batch(rng, 6, 2, 30, np.float16)
    assert update_small(fast, b) == update_small_numpy(ref, b) is not None
    np.testing.assert_array_equal(fast.q, ref.q)
    fast.q = np.asfortranarray(fast.q)
    assert update_small(fast, _batch(rng, 6, 2, 8)) is None  # (general path: update() works)
    assert fast.update(_batch(rng, 6, 2, 8)) >= 0.0


def test_numba_is_loaded_by_the_first_update_not_by_the_import():
    code = ("import sys, numpy as np, replaystore\n"
            "from replaystore.agents import QLearningAgent\n"
            "print('numba' in sys.modules)\n"
            "a = QLearningAgent(2, 2)\n"
            "a.update({'obs': np.array([0]), 'action': np.array([1]), 'reward': np.array([1.0]),\n"
            "          'next_obs': np.array([1]), 'terminated': np.array([True])})\n"
            "print('numba' in sys.modules, a.q[0, 1])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "1.0"]
