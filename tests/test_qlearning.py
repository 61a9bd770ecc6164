"""Tests of the tabular Q-learning agent: update rule, duplicates, schedules, acting, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gymnasium.spaces import Box, Discrete, MultiDiscrete
from scipy import stats

from replaystore.agents import AgentConfigError, QLearningAgent
from replaystore.errors import (
    CorruptStoreError,
    FormatVersionError,
    NotAStoreError,
    ReplayStoreError,
    SchemaError,
    SpaceError,
)


def make_batch(obs, action, reward, next_obs, terminated, truncated=None):
    batch = {
        "obs": np.asarray(obs, dtype=np.int64),
        "action": np.asarray(action, dtype=np.int64),
        "reward": np.asarray(reward, dtype=np.float64),
        "next_obs": np.asarray(next_obs, dtype=np.int64),
        "terminated": np.asarray(terminated, dtype=bool),
    }
    if truncated is not None:
        batch["truncated"] = np.asarray(truncated, dtype=bool)
    return batch


@pytest.fixture
def agent() -> QLearningAgent:
    a = QLearningAgent(3, 2, alpha=0.5, gamma=0.9, alpha_schedule="constant")
    a.q[:] = [[1.0, 2.0], [3.0, 5.0], [-1.0, 4.0]]
    return a


# ---------------------------------------------------------------- update rule


def test_update_matches_hand_computation(agent):
    # Row 0: (0,0) -> 1, not terminated:  target 1 + 0.9*5 = 5.5, td 4.5,  dQ 2.25
    # Row 1: (1,1) -> 2, terminated:      target 2,               td -3,   dQ -1.5
    # Row 2: (2,0) -> 1, only truncated:  target 0 + 0.9*5 = 4.5, td 5.5,  dQ 2.75
    batch = make_batch(
        obs=[0, 1, 2],
        action=[0, 1, 0],
        reward=[1.0, 2.0, 0.0],
        next_obs=[1, 1, 1],
        terminated=[False, True, False],
        truncated=[False, False, True],
    )
    delta = agent.update(batch)
    expected = np.array([[1.0 + 2.25, 2.0], [3.0, 5.0 - 1.5], [-1.0 + 2.75, 4.0]])
    np.testing.assert_allclose(agent.q, expected)
    assert delta == pytest.approx(2.75)
    np.testing.assert_array_equal(agent.visits, [[1, 0], [0, 1], [1, 0]])


def test_terminated_and_truncated_together_do_not_bootstrap(agent):
    batch = make_batch([0], [0], [1.0], [1], terminated=[True], truncated=[True])
    agent.update(batch)
    assert agent.q[0, 0] == pytest.approx(1.0 + 0.5 * (1.0 - 1.0))


def test_truncated_is_optional_and_changes_nothing(agent):
    other = QLearningAgent(3, 2, alpha=0.5, gamma=0.9, alpha_schedule="constant")
    other.q[:] = agent.q
    kwargs = dict(obs=[0, 2], action=[1, 1], reward=[0.5, -1.0], next_obs=[2, 0],
                  terminated=[False, False])
    agent.update(make_batch(**kwargs))
    other.update(make_batch(**kwargs, truncated=[True, True]))
    np.testing.assert_array_equal(agent.q, other.q)


def test_targets_use_table_from_before_the_batch(agent):
    # (0,1) bootstraps from state 1 whose entries are also updated in this batch.
    batch = make_batch([0, 1], [1, 1], [0.0, 10.0], [1, 1], [False, True])
    agent.update(batch)
    assert agent.q[0, 1] == pytest.approx(2.0 + 0.5 * (0.9 * 5.0 - 2.0))
    assert agent.q[1, 1] == pytest.approx(5.0 + 0.5 * (10.0 - 5.0))


def test_duplicates_are_averaged_not_summed(agent):
    # Three copies of (1,0) with terminal rewards 10, 20, 60: mean td = 30 - 3 = 27.
    batch = make_batch([1, 1, 1], [0, 0, 0], [10.0, 20.0, 60.0], [0, 0, 0], [True] * 3)
    delta = agent.update(batch)
    assert agent.q[1, 0] == pytest.approx(3.0 + 0.5 * 27.0)
    assert delta == pytest.approx(13.5)
    assert agent.visits[1, 0] == 3


def test_duplicates_never_overshoot_with_full_step():
    a = QLearningAgent(1, 1, alpha=1.0, gamma=0.0, alpha_schedule="constant")
    batch = make_batch([0] * 100, [0] * 100, [1.0] * 100, [0] * 100, [True] * 100)
    a.update(batch)
    assert a.q[0, 0] == pytest.approx(1.0)


def test_polynomial_schedule_with_power_one_is_running_mean():
    a = QLearningAgent(1, 1, alpha=1.0, gamma=0.0, alpha_schedule="polynomial", alpha_power=1.0)
    rewards = [3.0, 5.0, 1.0, 7.0, 4.0, 4.0]
    a.update(make_batch([0], [0], rewards[:1], [0], [True]))
    a.update(make_batch([0, 0], [0, 0], rewards[1:3], [0, 0], [True, True]))
    a.update(make_batch([0] * 3, [0] * 3, rewards[3:], [0] * 3, [True] * 3))
    assert a.q[0, 0] == pytest.approx(np.mean(rewards))
    assert a.visits[0, 0] == 6


def test_visits_schedule_step_sizes():
    # rescaled linear: alpha * k / (k + (1 - gamma) * (n - k)), here 1 - gamma = 0.25
    a = QLearningAgent(1, 1, alpha=0.9, gamma=0.75)
    assert a.alpha_schedule == "visits"
    a.update(make_batch([0], [0], [1.0], [0], [True]))  # k=1, n=1: lr 0.9
    assert a.q[0, 0] == pytest.approx(0.9)
    a.update(make_batch([0], [0], [1.0], [0], [True]))  # k=1, n=2: lr 0.9 / 1.25
    q = 0.9 + 0.9 / 1.25 * 0.1
    assert a.q[0, 0] == pytest.approx(q)
    a.update(make_batch([0] * 4, [0] * 4, [0.0] * 4, [0] * 4, [True] * 4))  # k=4, n=6
    assert a.q[0, 0] == pytest.approx(q - 0.9 * 4 / (4 + 0.25 * 2) * q)
    assert a.visits[0, 0] == 6


def test_visits_schedule_with_gamma_zero_is_running_mean():
    a = QLearningAgent(1, 1, alpha=1.0, gamma=0.0)
    rewards = [3.0, 5.0, 1.0, 7.0]
    a.update(make_batch([0], [0], rewards[:1], [0], [True]))
    a.update(make_batch([0] * 3, [0] * 3, rewards[1:], [0] * 3, [True] * 3))
    assert a.q[0, 0] == pytest.approx(np.mean(rewards))


def test_polynomial_schedule_step_sizes():
    a = QLearningAgent(1, 1, alpha=0.8, gamma=0.0, alpha_schedule="polynomial",
                       alpha_power=0.5)
    a.update(make_batch([0], [0], [1.0], [0], [True]))  # n=1: lr 0.8
    assert a.q[0, 0] == pytest.approx(0.8)
    a.update(make_batch([0], [0], [1.0], [0], [True]))  # n=2: lr 0.8 / sqrt(2)
    assert a.q[0, 0] == pytest.approx(0.8 + 0.8 / np.sqrt(2) * 0.2)
    a.update(make_batch([0, 0], [0, 0], [0.0, 0.0], [0, 0], [True, True]))  # k=2, n=4
    q = 0.8 + 0.8 / np.sqrt(2) * 0.2
    assert a.q[0, 0] == pytest.approx(q - 0.8 * np.sqrt(2 / 4) * q)


def test_visits_schedule_converges_on_noisy_rewards():
    rng = np.random.default_rng(3)
    a = QLearningAgent(1, 2, gamma=0.5)
    for _ in range(2000):
        actions = rng.integers(0, 2, 64)
        rewards = rng.normal(np.where(actions == 1, 1.0, 0.0), 1.0)
        a.update(make_batch(np.zeros(64), actions, rewards, np.zeros(64), np.ones(64)))
    np.testing.assert_allclose(a.q[0], [0.0, 1.0], atol=0.05)


def test_update_on_chain_converges_to_discounted_values():
    # 0 -> 1 -> 2 -> terminal with reward 1 at the end: Q*(s, 0) = gamma ** (2 - s).
    a = QLearningAgent(3, 1, gamma=0.9)
    batch = make_batch([0, 1, 2], [0, 0, 0], [0.0, 0.0, 1.0], [1, 2, 0], [False, False, True])
    for _ in range(3000):
        last = a.update(batch)
    np.testing.assert_allclose(a.q[:, 0], [0.81, 0.9, 1.0], atol=1e-3)
    assert last < 1e-3


def test_empty_batch_is_a_no_op(agent):
    before = agent.q.copy()
    assert agent.update(make_batch([], [], [], [], [])) == 0.0
    np.testing.assert_array_equal(agent.q, before)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("obs", [3], r"'obs' must be in \[0, 2\], got 3"),
        ("next_obs", [-1], r"'next_obs' must be in \[0, 2\], got -1"),
        ("action", [2], r"'action' must be in \[0, 1\], got 2"),
    ],
)
def test_out_of_range_indices_raise_schema_error(agent, field, value, message):
    batch = make_batch([0], [0], [1.0], [0], [False])
    batch[field] = np.asarray(value)
    before = agent.q.copy()
    with pytest.raises(SchemaError, match=message):
        agent.update(batch)
    np.testing.assert_array_equal(agent.q, before)


def test_bad_batches_raise_schema_error(agent):
    good = make_batch([0, 1], [0, 1], [1.0, 1.0], [1, 2], [False, True])
    missing = {k: v for k, v in good.items() if k != "reward"}
    with pytest.raises(SchemaError, match="missing field"):
        agent.update(missing)
    with pytest.raises(SchemaError, match="'action' has shape"):
        agent.update({**good, "action": np.array([0])})
    with pytest.raises(SchemaError, match="'terminated' must have dtype bool"):
        agent.update({**good, "terminated": np.array([0, 1])})
    with pytest.raises(SchemaError, match="'obs' must hold integers"):
        agent.update({**good, "obs": np.array([0.0, 1.0])})
    with pytest.raises(ValueError):  # SchemaError is a ValueError too
        agent.update({**good, "truncated": np.array([0.5, 1.0])})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"gamma": 1.01},
        {"alpha_schedule": "harmonic"},
        {"alpha_power": 0.0},
        {"q_init": float("nan")},
    ],
)
def test_bad_hyperparameters(kwargs):
    with pytest.raises(AgentConfigError):
        QLearningAgent(2, 2, **kwargs)
    assert issubclass(AgentConfigError, ReplayStoreError)


def test_bad_table_sizes():
    with pytest.raises(AgentConfigError, match="n_states"):
        QLearningAgent(0, 2)
    with pytest.raises(AgentConfigError, match="n_actions"):
        QLearningAgent(2, 2.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- spaces


@pytest.mark.parametrize(
    ("obs_space", "act_space", "role"),
    [
        (Box(0.0, 1.0, (2,)), Discrete(2), "observation space Box"),
        (Discrete(4), MultiDiscrete([2, 2]), "action space MultiDiscrete"),
    ],
)
def test_from_spaces_rejects_non_discrete(obs_space, act_space, role):
    with pytest.raises(SpaceError, match=f"{role}.*is not Discrete"):
        QLearningAgent.from_spaces(obs_space, act_space)


def test_from_spaces_offsets_start():
    a = QLearningAgent.from_spaces(Discrete(3, start=10), Discrete(2, start=-1), alpha=1.0,
                                   alpha_schedule="constant", gamma=0.5)
    assert a.q.shape == (3, 2)
    a.update(make_batch([12], [0], [4.0], [10], [True]))  # action 0 is column 1
    assert a.q[2, 1] == pytest.approx(4.0)
    assert a.act(12) == 0
    assert a.act(10) == -1
    assert a.greedy_policy().tolist() == [-1, -1, 0]
    with pytest.raises(SchemaError, match=r"\[10, 12\], got 13"):
        a.update(make_batch([13], [0], [0.0], [10], [True]))


# ---------------------------------------------------------------- acting


def test_greedy_ties_go_to_lowest_action():
    a = QLearningAgent(2, 4)
    a.q[0] = [1.0, 3.0, 3.0, 0.0]
    assert a.act(0) == 1
    assert a.act(1) == 0
    assert a.greedy_policy().tolist() == [1, 0]
    np.testing.assert_array_equal(a.act(np.array([[0, 1], [1, 0]])), [[1, 0], [0, 1]])


def test_epsilon_greedy_statistics():
    a = QLearningAgent(1, 4)
    a.q[0] = [0.0, 0.0, 5.0, 0.0]
    eps, n = 0.3, 40_000
    actions = a.act(np.zeros(n, dtype=np.int64), epsilon=eps, rng=np.random.default_rng(7))
    counts = np.bincount(actions, minlength=4)
    expected = np.full(4, eps / 4 * n)
    expected[2] += (1 - eps) * n
    _, p_value = stats.chisquare(counts, expected)
    assert p_value > 1e-3
    # one call at a time with the same seed gives a reproducible stream
    rng1, rng2 = np.random.default_rng(11), np.random.default_rng(11)
    s1 = [a.act(0, epsilon=eps, rng=rng1) for _ in range(200)]
    s2 = [a.act(0, epsilon=eps, rng=rng2) for _ in range(200)]
    assert s1 == s2 and set(s1) == {0, 1, 2, 3}


def test_epsilon_needs_generator():
    a = QLearningAgent(1, 2)
    with pytest.raises(AgentConfigError, match="Generator"):
        a.act(0, epsilon=0.1)
    with pytest.raises(AgentConfigError, match="epsilon"):
        a.act(0, epsilon=1.5, rng=np.random.default_rng(0))
    with pytest.raises(SchemaError):
        a.act(5)


# ---------------------------------------------------------------- state and files


def trained_agent() -> QLearningAgent:
    a = QLearningAgent.from_spaces(Discrete(5, start=2), Discrete(3), gamma=0.8, alpha=0.7,
                                   alpha_power=0.9, q_init=0.25)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a.update(make_batch(rng.integers(2, 7, 16), rng.integers(0, 3, 16), rng.normal(size=16),
                            rng.integers(2, 7, 16), rng.random(16) < 0.2))
    return a


def assert_same(a: QLearningAgent, b: QLearningAgent) -> None:
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.visits, b.visits)
    assert a.hyperparameters() == b.hyperparameters()
    assert b.q.dtype == np.float64


def test_state_dict_round_trip_is_a_copy():
    a = trained_agent()
    b = QLearningAgent(1, 1)
    state = a.state_dict()
    b.load_state_dict(state)
    assert_same(a, b)
    state["q"][0, 0] = 123.0
    assert b.q[0, 0] != 123.0
    with pytest.raises(FormatVersionError):
        b.load_state_dict({**state, "format_version": 99})
    with pytest.raises(SchemaError, match="'q' must be"):
        b.load_state_dict({**state, "q": np.zeros((2, 2))})


def test_save_load_round_trip(tmp_path):
    a = trained_agent()
    path = tmp_path / "q.npz"
    a.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.npz"]  # one file, no sidecars
    with np.load(path, allow_pickle=False) as z:
        table, visits, meta = z["q"], z["visits"], json.loads(str(z["meta"]))
    assert table.shape == (5, 3) and table.dtype == np.float64
    np.testing.assert_array_equal(table, a.q)
    np.testing.assert_array_equal(visits, a.visits)
    assert meta["format"] == "replaystore.QLearningAgent" and meta["format_version"] == 1
    assert meta["n_states"] == 5 and meta["n_actions"] == 3
    assert meta["alpha"] == 0.7 and meta["obs_start"] == 2
    b = QLearningAgent.load(str(path))
    assert_same(a, b)
    # a loaded agent keeps learning exactly like the original
    batch = make_batch([2, 6], [1, 2], [1.0, -1.0], [3, 4], [False, True])
    assert a.update(batch) == b.update(batch)
    assert_same(a, b)


def test_save_needs_an_agent_suffix(tmp_path):
    with pytest.raises(AgentConfigError, match=r"one \.npz file.*'Q\.npz'"):
        QLearningAgent(2, 2).save(tmp_path / "Q.json")
    assert not list(tmp_path.iterdir())


def test_load_missing_files_name_the_path(tmp_path):
    with pytest.raises(NotAStoreError, match="nothere.npz"):
        QLearningAgent.load(tmp_path / "nothere.npz")
    with pytest.raises(NotAStoreError, match="is a directory"):
        QLearningAgent.load(tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"garbage bytes", "q.npz.*not a saved agent"),
        (b"", "q.npz.*not a saved agent"),
        (b"PK\x03\x04 truncated zip", "q.npz.*not a readable saved agent"),
        (b"\x93NUMPY\x01\x00", "q.npz.*not a readable"),
    ],
)
def test_load_garbled_files(tmp_path, content, match):
    QLearningAgent(2, 2).save(tmp_path / "q.npz")
    (tmp_path / "q.npz").write_bytes(content)
    with pytest.raises(CorruptStoreError, match=match):
        QLearningAgent.load(tmp_path / "q.npz")


def _rewrite(path, **members):
    """Replace members of the saved agent at ``path`` (``meta`` as a dict)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in members.items():
        arrays[k] = np.array(json.dumps(v)) if k == "meta" else v
    np.savez(path, **arrays)


def test_load_wrong_shape_or_version(tmp_path):
    path = tmp_path / "q.npz"
    QLearningAgent(2, 2).save(path)
    _rewrite(path, q=np.zeros((3, 2)))
    with pytest.raises(CorruptStoreError, match="q.npz.*shape"):
        QLearningAgent.load(path)
    QLearningAgent(2, 2).save(path)
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
    _rewrite(path, meta={**meta, "format_version": 2})
    with pytest.raises(FormatVersionError, match="format_version 2"):
        QLearningAgent.load(path)
    _rewrite(path, meta={**meta, "format": "someone.Else"})
    with pytest.raises(CorruptStoreError, match="'someone.Else'"):
        QLearningAgent.load(path)
    QLearningAgent(2, 2).save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "visits"}
    np.savez(path, **arrays)
    with pytest.raises(CorruptStoreError, match=r"\['visits'\] missing"):
        QLearningAgent.load(path)


@pytest.mark.parametrize("schedule", ["visits", "polynomial", "constant"])
def test_small_batch_fast_path_matches_the_general_path(schedule):
    """update() of sampler-shaped batches (int64/bool/float arrays) takes a fast path; it
    must give exactly the general path's Q-table and visit counts, duplicates included."""
    rng = np.random.default_rng(1)
    fast = QLearningAgent(7, 3, alpha=0.7, gamma=0.9, alpha_schedule=schedule)
    slow = QLearningAgent(7, 3, alpha=0.7, gamma=0.9, alpha_schedule=schedule)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        b = {"obs": rng.integers(0, 7, n), "action": rng.integers(0, 3, n),
             "reward": rng.standard_normal(n).astype(np.float32), "next_obs": rng.integers(0, 7, n),
             "terminated": rng.random(n) < 0.3, "truncated": rng.random(n) < 0.1}
        general = {**b, "obs": b["obs"].astype(np.int32)}  # (int32: not the fast path)
        assert fast._update_small(general) is None
        d1, d2 = fast.update(b), slow.update(general)
        assert d1 == pytest.approx(d2, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(fast.q, slow.q, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(fast.visits, slow.visits)
    assert fast.visits.sum() > 0


@pytest.mark.parametrize("bad", [{"obs": np.array([7])}, {"obs": np.array([-1])},
                                 {"action": np.array([3])}, {"next_obs": np.array([-8])}])
def test_small_batch_out_of_range_is_refused(bad):
    agent = QLearningAgent(7, 3)
    b = {"obs": np.array([0]), "action": np.array([0]), "reward": np.array([1.0]),
         "next_obs": np.array([1]), "terminated": np.array([False]), **bad}
    with pytest.raises(SchemaError, match=f"field '{next(iter(bad))}' must be in"):
        agent.update(b)
    assert not agent.q.any() and not agent.visits.any()


def test_act_on_one_observation_matches_the_array_path():
    """act(int) takes a scalar path; actions and the RNG stream are those of act(array)."""
    agent = QLearningAgent(5, 4)
    agent.q[:] = np.random.default_rng(2).standard_normal((5, 4))
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    for k in range(400):
        obs, eps = k % 5, (0.0, 0.3, 1.0)[k % 3]
        one = agent.act(obs if k % 2 else np.int64(obs), epsilon=eps, rng=r1)
        arr = agent.act(np.array([obs]), epsilon=eps, rng=r2)
        assert type(one) is int and one == int(arr[0])
    assert r1.random() == r2.random()
