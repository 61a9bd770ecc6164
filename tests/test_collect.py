"""Tests of the collector: real gymnasium envs, real stores on disk.

Every recorded transition is checked against the environment (FrozenLake's transition
table ``env.unwrapped.P``), episodes are checked to chain (``next_obs`` of a row is the
``obs`` of the next row of its episode, steps count from 0) and to start from a reset
observation, and no row may cross an autoreset.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box, Dict, Discrete

import replaystore as rs
from replaystore.agents import QLearningAgent
from replaystore.collect import (
    Collector,
    CollectorConfigError,
    CollectStats,
    EnvError,
    collect,
)
from replaystore.spaces import space_equal

LAKE = "FrozenLake-v1"
POLE = "CartPole-v1"


def read_all(path) -> dict[str, np.ndarray]:
    with rs.open(path) as store:
        return store.read_range(0, len(store))


def by_episode(rows: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Row numbers of each episode, sorted by step."""
    out = {}
    ep, st = rows["episode"], rows["step"]
    for e in np.unique(ep):
        idx = np.flatnonzero(ep == e)
        out[int(e)] = idx[np.argsort(st[idx], kind="stable")]
    return out


def check_chains(rows, obs_keys=("obs",), *, complete=False) -> dict[int, np.ndarray]:
    """Each episode: steps 0..L-1 with no gap or duplicate, next_obs[t] == obs[t+1], only
    the last row may end the episode (and must, when ``complete``)."""
    done = rows["terminated"] | rows["truncated"]
    eps = by_episode(rows)
    for e, idx in eps.items():
        np.testing.assert_array_equal(rows["step"][idx], np.arange(len(idx)), err_msg=f"episode {e}")
        assert not done[idx[:-1]].any(), f"episode {e} continues after a done row"
        if complete:
            assert done[idx[-1]], f"episode {e} is not complete"
        for key in obs_keys:
            np.testing.assert_array_equal(
                rows["next_" + key][idx[:-1]], rows[key][idx[1:]], err_msg=f"episode {e} {key}"
            )
    return eps


# ---------------------------------------------------------------------------------------
# FrozenLake: every transition against the transition table
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_envs", [1, 3])
def test_frozenlake_deterministic_transitions_follow_P(tmp_path, num_envs):
    path = tmp_path / "lake.zarr"
    stats = collect(
        LAKE, path, steps=600, num_envs=num_envs, seed=3,
        env_kwargs={"is_slippery": False, "max_episode_steps": 6},
    )
    assert isinstance(stats, CollectStats) and stats.steps == 600
    rows = read_all(path)
    assert len(rows["obs"]) == 600
    env = gym.make(LAKE, is_slippery=False)
    P = env.unwrapped.P
    terminal = {s for s in P for a in P[s] for (_, s2, _, t) in P[s][a] if t and s2 == s}
    terminal |= {s2 for s in P for a in P[s] for (_, s2, _, t) in P[s][a] if t}
    for o, a, r, n, te, tr, st in zip(
        rows["obs"], rows["action"], rows["reward"], rows["next_obs"],
        rows["terminated"], rows["truncated"], rows["step"], strict=True,
    ):
        (prob, succ, rew, term), = P[int(o)][int(a)]
        assert prob == 1.0
        assert (n, r, te) == (succ, rew, term)
        # a terminal state (hole/goal) is never the start of a transition: no autoreset leak
        assert int(o) not in terminal
        # the time limit of 6 steps: truncated exactly on the 6th step
        assert tr == (st == 5)
    eps = check_chains(rows)
    for idx in eps.values():
        assert rows["obs"][idx[0]] == 0  # FrozenLake always resets to state 0
    assert rows["terminated"].any() and rows["truncated"].any()
    # terminated and truncated are separate flags: some truncations are not terminal
    assert (rows["truncated"] & ~rows["terminated"]).any()
    assert (rows["terminated"] & ~rows["truncated"]).any()
    env.close()


def test_frozenlake_slippery_transitions_are_possible(tmp_path):
    path = tmp_path / "slip.zarr"
    collect(LAKE, path, steps=800, num_envs=2, seed=0, env_kwargs={"is_slippery": True})
    rows = read_all(path)
    P = gym.make(LAKE, is_slippery=True).unwrapped.P
    outcomes_seen = set()
    for o, a, r, n, te in zip(
        rows["obs"], rows["action"], rows["reward"], rows["next_obs"], rows["terminated"], strict=True
    ):
        possible = {(s2, rew, t) for (p, s2, rew, t) in P[int(o)][int(a)] if p > 0}
        assert (int(n), float(r), bool(te)) in possible
        outcomes_seen.add((int(o), int(a), int(n)))
    # slipping really happens: some (obs, action) pair led to two different states
    pairs = {}
    for o, a, n in outcomes_seen:
        pairs.setdefault((o, a), set()).add(n)
    assert any(len(v) > 1 for v in pairs.values())
    check_chains(rows)


# ---------------------------------------------------------------------------------------
# CartPole: Box observations, vector envs, autoreset
# ---------------------------------------------------------------------------------------
def test_vector_cartpole_chains_resets_and_flags(tmp_path):
    path = tmp_path / "pole.zarr"
    stats = collect(
        POLE, path, steps=1000, num_envs=3, seed=7, env_kwargs={"max_episode_steps": 25}
    )
    rows = read_all(path)
    assert stats.steps == 1000 == len(rows["reward"])
    assert rows["obs"].dtype == np.float32 and rows["obs"].shape == (1000, 4)
    eps = check_chains(rows)
    done = rows["terminated"] | rows["truncated"]
    for e, idx in eps.items():
        first = rows["obs"][idx[0]]
        # CartPole resets uniformly in [-0.05, 0.05]^4: a first row is a reset observation
        assert np.all(np.abs(first) <= 0.05), (e, first)
        assert len(idx) <= 25
    # truncation only at the time limit, termination only when the pole fell / cart left
    assert np.all(rows["step"][rows["truncated"]] == 24)
    x, theta = rows["next_obs"][:, 0], rows["next_obs"][:, 2]
    fell = (np.abs(x) > 2.4) | (np.abs(theta) > 12 * 2 * np.pi / 360)
    np.testing.assert_array_equal(rows["terminated"], fell)
    assert rows["truncated"].any() and rows["terminated"].any()
    # every completed episode is counted once; at most 3 are still running at the end
    n_done = int(done.sum())
    assert stats.episodes == n_done
    assert len(eps) - n_done <= 3
    # no transition jumps from a terminal state: the pole's next state is close to obs
    assert np.abs(rows["next_obs"][:, 0] - rows["obs"][:, 0]).max() < 0.1
    assert rows["reward"].tolist() == [1.0] * 1000
    returns = [len(idx) for idx in eps.values() if done[idx[-1]]]
    assert stats.mean_return == pytest.approx(np.mean(returns))


def test_steps_not_a_multiple_of_num_envs(tmp_path):
    stats = collect(POLE, tmp_path / "s", steps=11, num_envs=3, seed=0)
    assert stats.steps == 11
    assert len(read_all(tmp_path / "s")["reward"]) == 11


def test_episode_ids_unique_across_sub_envs_and_runs(tmp_path):
    path = tmp_path / "pole.zarr"
    collect(POLE, path, steps=300, num_envs=3, seed=1, env_kwargs={"max_episode_steps": 10})
    first = read_all(path)
    first_ids = set(np.unique(first["episode"]).tolist())
    collect(POLE, path, steps=300, num_envs=3, seed=1, env_kwargs={"max_episode_steps": 10})
    rows = read_all(path)
    assert len(rows["reward"]) == 600
    second_ids = set(np.unique(rows["episode"][300:]).tolist())
    assert first_ids.isdisjoint(second_ids)
    # each id is one chain of steps 0..L-1: two sub-envs sharing an id would break it
    check_chains(rows)
    with rs.open(path) as store:
        runs = store.info["collections"]
    assert [r["status"] for r in runs] == ["complete", "complete"]
    assert [r["rows"] for r in runs] == [[0, 300], [300, 600]]


def test_same_call_twice_gives_identical_arrays(tmp_path):
    agent = QLearningAgent(16, 4)
    agent.q[:] = np.random.default_rng(5).random((16, 4))
    kw = dict(steps=700, num_envs=3, seed=11, env_kwargs={"is_slippery": True})
    for policy, eps in (("random", 0.0), (agent, 0.3)):
        a, b = tmp_path / f"a{eps}", tmp_path / f"b{eps}"
        collect(LAKE, a, policy=policy, epsilon=eps, **kw)
        collect(LAKE, b, policy=policy, epsilon=eps, **kw)
        ra, rb = read_all(a), read_all(b)
        assert ra.keys() == rb.keys()
        for name in ra:
            assert ra[name].dtype == rb[name].dtype
            assert ra[name].tobytes() == rb[name].tobytes(), name
    # and CartPole, with episodes mode and a vector env
    a, b = tmp_path / "pa", tmp_path / "pb"
    collect(POLE, a, episodes=9, num_envs=3, seed=2)
    collect(POLE, b, episodes=9, num_envs=3, seed=2)
    ra, rb = read_all(a), read_all(b)
    for name in ra:
        assert ra[name].tobytes() == rb[name].tobytes(), name
    # a different seed gives different data
    collect(POLE, tmp_path / "pc", episodes=9, num_envs=3, seed=3)
    assert read_all(tmp_path / "pc")["obs"].tobytes() != ra["obs"].tobytes()


def test_episodes_mode_records_exactly_n_complete_episodes(tmp_path):
    path = tmp_path / "ep.zarr"
    stats = collect(POLE, path, episodes=7, num_envs=3, seed=4, env_kwargs={"max_episode_steps": 30})
    rows = read_all(path)
    eps = check_chains(rows, complete=True)
    assert len(eps) == 7 == stats.episodes
    assert stats.steps == len(rows["reward"])
    for idx in eps.values():
        assert np.all(np.abs(rows["obs"][idx[0]]) <= 0.05)
    assert stats.mean_return == pytest.approx(np.mean([len(i) for i in eps.values()]))
    # single env, block boundary crossed while episodes are held back
    path2 = tmp_path / "ep2.zarr"
    with Collector(POLE, seed=0, num_envs=2, block_steps=4) as c:
        store = c.create_store(path2)
        stats = c.run(store, episodes=5)
        store.close()
    eps = check_chains(read_all(path2), complete=True)
    assert len(eps) == 5 == stats.episodes


def test_episodes_mode_drops_episodes_beyond_n(tmp_path):
    # a balancing policy never lets the pole fall in 5 steps: all 3 envs end together on
    # every 5th recorded step, so the second wave ends 3 episodes where only 1 is wanted
    path = tmp_path / "over.zarr"

    def lean(obs):
        return int(obs[2] > 0)

    stats = collect(POLE, path, episodes=4, num_envs=3, policy=lean,
                    env_kwargs={"max_episode_steps": 5})
    rows = read_all(path)
    eps = check_chains(rows, complete=True)
    assert len(eps) == 4 == stats.episodes
    assert stats.steps == 20 == len(rows["reward"])
    assert rows["truncated"].sum() == 4 and not rows["terminated"].any()


def test_collector_runs_twice_into_one_store(tmp_path):
    with Collector(LAKE, seed=0, num_envs=2, env_kwargs={"is_slippery": False}) as c:
        with c.create_store(tmp_path / "s") as store:
            c.run(store, steps=50)
            c.run(store, episodes=4)
    rows = read_all(tmp_path / "s")
    eps = check_chains(rows)
    for idx in eps.values():
        assert rows["obs"][idx[0]] == 0


# ---------------------------------------------------------------------------------------
# stores: creation, metadata, refusal, capacity
# ---------------------------------------------------------------------------------------
def test_metadata_records_env_and_each_run(tmp_path):
    path = tmp_path / "m"
    collect(LAKE, path, steps=20, seed=5, num_envs=2, env_kwargs='{"is_slippery": false}')
    collect(LAKE, path, episodes=2, seed=6, env_kwargs={"is_slippery": False})
    with rs.open(path) as store:
        assert store.env_info == {"id": LAKE, "kwargs": {"is_slippery": False}}
        runs = store.info["collections"]
        assert space_equal(store.observation_space, Discrete(16))
    assert len(runs) == 2
    r0, r1 = runs
    assert (r0["seed"], r0["num_envs"], r0["requested"], r0["steps"]) == (5, 2, {"steps": 20}, 20)
    assert r0["env_kwargs"] == {"is_slippery": False} and r0["env_id"] == LAKE
    assert r0["policy"] == {"kind": "random"}
    assert r0["replaystore_version"] == rs.__version__
    assert (r1["seed"], r1["requested"], r1["episodes"]) == (6, {"episodes": 2}, 2)
    assert "started" in r1 and "finished" in r1
    json.dumps(runs)


def test_incompatible_store_is_refused(tmp_path):
    path = tmp_path / "pole.zarr"
    collect(POLE, path, steps=10)
    with pytest.raises(rs.SchemaError) as ei:
        collect(LAKE, path, steps=10)
    msg = str(ei.value)
    assert str(path) in msg and "Discrete(16)" in msg and "Box(" in msg
    assert len(read_all(path)["reward"]) == 10
    # same env, other spaces (a different map size) are refused as well
    lake = tmp_path / "lake.zarr"
    collect(LAKE, lake, steps=10)
    with pytest.raises(rs.SchemaError, match="Discrete\\(64\\)"):
        collect(LAKE, lake, steps=10, env_kwargs={"map_name": "8x8"})
    # a store made by hand with the same spaces is accepted
    env = gym.make(LAKE)
    hand = tmp_path / "hand.zarr"
    rs.create(hand, env.observation_space, env.action_space).close()
    assert collect(LAKE, hand, steps=5).steps == 5
    with pytest.raises(rs.SchemaError, match="capacity"):
        collect(LAKE, hand, steps=5, capacity=10)


def test_ring_capacity(tmp_path):
    path = tmp_path / "ring"
    stats = collect(POLE, path, steps=120, capacity=50, num_envs=2)
    assert stats.steps == 120
    with rs.open(path) as store:
        assert len(store) == 50 and store.total == 120 and store.capacity == 50


# ---------------------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------------------
def test_qtable_policy_greedy(tmp_path):
    agent = QLearningAgent(16, 4)
    agent.q[:] = np.random.default_rng(0).random((16, 4))
    greedy = agent.greedy_policy()
    saved = tmp_path / "Q.npy"
    agent.save(saved)
    bare = tmp_path / "bare" / "Q.npy"
    bare.parent.mkdir()
    np.save(bare, agent.q)
    for i, policy in enumerate((agent, saved, str(bare))):
        path = tmp_path / f"q{i}"
        collect(LAKE, path, steps=200, num_envs=2, policy=policy, epsilon=0.0,
                env_kwargs={"is_slippery": True})
        rows = read_all(path)
        np.testing.assert_array_equal(rows["action"], greedy[rows["obs"]])
    with rs.open(tmp_path / "q1") as store:
        assert store.info["collections"][0]["policy"]["source"] == str(saved)
    # epsilon > 0 explores
    collect(LAKE, tmp_path / "qe", steps=300, policy=agent, epsilon=0.5,
            env_kwargs={"is_slippery": True})
    rows = read_all(tmp_path / "qe")
    frac = np.mean(rows["action"] != greedy[rows["obs"]])
    assert 0.2 < frac < 0.55  # 0.5 * 3/4 expected


def test_qtable_shape_mismatch(tmp_path):
    small = QLearningAgent(4, 4)
    q = tmp_path / "Q.npy"
    small.save(q)
    with pytest.raises(rs.SpaceError) as ei:
        collect(LAKE, tmp_path / "s", steps=5, policy=q)
    msg = str(ei.value)
    assert str(q) in msg and "(4, 4)" in msg and "(16, 4)" in msg
    assert not (tmp_path / "s").exists()
    with pytest.raises(rs.SpaceError, match="Discrete"):
        collect(POLE, tmp_path / "s", steps=5, policy=QLearningAgent(4, 2))


def test_callable_policies_single_and_batched(tmp_path):
    def lean(obs):
        assert obs.shape == (4,)
        return int(obs[2] > 0)

    def lean_batch(obs):
        assert obs.shape == (2, 4)
        return (obs[:, 2] > 0).astype(np.int64)

    for i, (fn, batched) in enumerate(((lean, False), (lean_batch, True))):
        path = tmp_path / f"c{i}"
        collect(POLE, path, steps=100, num_envs=2, policy=fn, batched_policy=batched)
        rows = read_all(path)
        np.testing.assert_array_equal(rows["action"], (rows["obs"][:, 2] > 0).astype(np.int64))
        with rs.open(path) as store:
            pol = store.info["collections"][0]["policy"]
        assert pol["kind"] == "callable" and pol["batched"] is batched
        assert pol["name"].endswith(fn.__name__)


class _DictEnv(gym.Env):
    """A walk on a line with a Dict observation: {pos: Box(2,), goal: Discrete(3)}."""

    observation_space = Dict({"pos": Box(-10.0, 10.0, (2,), np.float32), "goal": Discrete(3)})
    action_space = Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = np.zeros(2, np.float32)
        self.goal = int(self.np_random.integers(3))
        return self._obs(), {}

    def _obs(self):
        return {"pos": self.pos.copy(), "goal": self.goal}

    def step(self, action):
        self.pos[0] += 1.0 if action else -1.0
        self.pos[1] += 0.5
        terminated = abs(self.pos[0]) >= 3
        return self._obs(), float(self.goal), terminated, False, {}


gym.register("replaystore-test/DictWalk-v0", entry_point=_DictEnv, max_episode_steps=8)


def test_dict_and_tuple_observations(tmp_path):
    path = tmp_path / "dict"
    collect("replaystore-test/DictWalk-v0", path, steps=150, num_envs=2, seed=0)
    rows = read_all(path)
    assert {"obs.pos", "obs.goal", "next_obs.pos", "next_obs.goal"} <= rows.keys()
    eps = check_chains(rows, obs_keys=("obs.pos", "obs.goal"))
    for idx in eps.values():
        np.testing.assert_array_equal(rows["obs.pos"][idx[0]], [0.0, 0.0])
        assert len(set(rows["obs.goal"][idx].tolist())) == 1
    dx = np.where(rows["action"] == 1, 1.0, -1.0)
    np.testing.assert_array_equal(rows["next_obs.pos"][:, 0], rows["obs.pos"][:, 0] + dx)
    np.testing.assert_array_equal(rows["reward"], rows["obs.goal"].astype(np.float32))
    assert rows["truncated"].any() and rows["terminated"].any()

    bj = tmp_path / "bj"
    collect("Blackjack-v1", bj, episodes=20, num_envs=2, seed=0)
    rows = read_all(bj)
    assert {"obs.0", "obs.1", "obs.2", "next_obs.0"} <= rows.keys()
    check_chains(rows, obs_keys=("obs.0", "obs.1", "obs.2"), complete=True)


# ---------------------------------------------------------------------------------------
# errors and progress
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "env_id, kwargs, match",
    [
        ("NoSuchEnv-v0", None, "NoSuchEnv"),
        ("CartPole-v99", None, "v99"),
        (POLE, {"no_such_kwarg": 1}, "no_such_kwarg"),
        (LAKE, {"map_name": "9x9"}, "9x9"),
        (POLE, "{not json", "JSON"),
        (POLE, "[1, 2]", "dict"),
        (POLE, {"x": object()}, "JSON-serializable"),
    ],
)
def test_env_errors(tmp_path, env_id, kwargs, match):
    with pytest.raises(EnvError, match=match) as ei:
        collect(env_id, tmp_path / "s", steps=5, env_kwargs=kwargs)
    assert isinstance(ei.value, rs.ReplayStoreError) and isinstance(ei.value, ValueError)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"steps": 5, "episodes": 1},
        {"steps": 0},
        {"episodes": -1},
        {"steps": 5, "num_envs": 0},
        {"steps": 5, "epsilon": 1.5},
        {"steps": 5, "seed": -1},
        {"steps": 5, "policy": 42},
        {"steps": 5, "policy": "greedy"},
    ],
)
def test_argument_errors(tmp_path, kw):
    with pytest.raises(CollectorConfigError):
        collect(POLE, tmp_path / "s", **kw)
    assert not (tmp_path / "s").exists()


def test_failing_policy_keeps_recorded_rows(tmp_path):
    calls = []

    def flaky(obs):
        calls.append(1)
        if len(calls) > 30:
            raise RuntimeError("policy broke")
        return int(obs[2] > 0)

    path = tmp_path / "f"
    with pytest.raises(RuntimeError, match="policy broke"):
        collect(POLE, path, steps=100, num_envs=2, policy=flaky,
                env_kwargs={"max_episode_steps": 7})
    rows = read_all(path)
    # the policy is asked only at decision points, never on an env's reset step: its
    # 30 good answers are exactly the 30 recorded transitions
    assert len(rows["reward"]) == 30
    assert rows["truncated"].sum() == 4
    check_chains(rows)
    with rs.open(path) as store:
        assert store.info["collections"][0]["status"] == "interrupted"


def test_progress_bar(tmp_path, capsys):
    collect(POLE, tmp_path / "p", steps=50, progress=True)
    err = capsys.readouterr().err
    assert "collect CartPole-v1" in err
