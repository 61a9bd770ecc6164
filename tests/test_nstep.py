"""n-step returns (every sampler but SequenceSampler): each batch checked row by row against
a brute-force walk over store.to_pandas(), on stores collected from real gymnasium envs
with terminations and time-limit truncations, with one env and with interleaved vector
envs, on rings that wrapped, while appending; n_step=1 against the plain samplers; resume,
prefetch, and every error.
"""

from __future__ import annotations

import numpy as np
import pytest

import replaystore as rs
from replaystore.collect import collect

GAMMA = 0.9


def collected(tmp_path, env, *, steps=None, episodes=None, num_envs=1, capacity=None, max_steps=6, seed=0):
    path = tmp_path / f"{env}-{num_envs}-{capacity}-{steps}-{episodes}.zarr"
    collect(env, path, steps=steps, episodes=episodes, num_envs=num_envs, capacity=capacity, seed=seed,
            env_kwargs={"max_episode_steps": max_steps})
    return path


def with_second_run(path, env, steps, num_envs, max_steps):
    """Append a second run: the first run's open episodes end there without a flag."""
    collect(env, path, steps=steps, num_envs=num_envs, seed=1, env_kwargs={"max_episode_steps": max_steps})
    return path


def brute(df, t, n, gamma):
    """The window of logical row ``t``, walking the rows one by one: its rows, n-step
    reward, discount."""
    ep, st = df["episode"].to_numpy(), df["step"].to_numpy()
    done = df["terminated"].to_numpy() | df["truncated"].to_numpy()
    rew = df["reward"].to_numpy()
    rows = [t]
    while len(rows) < n and not done[rows[-1]]:
        later = np.flatnonzero(ep[rows[-1] + 1 :] == ep[t])
        if not len(later) or st[rows[-1] + 1 + later[0]] != st[t] + len(rows):
            break
        rows.append(rows[-1] + 1 + int(later[0]))
    ret = 0.0
    for k, r in enumerate(rows):
        ret += gamma**k * float(rew[r])
    return rows, ret, gamma ** len(rows)


def check(store, batch, idx, n, gamma=GAMMA):
    """Every row of an n-step batch equal to the brute-force window of the drawn row."""
    df = store.to_pandas()
    next_cols = [c for c in df.columns if c.startswith("next_obs")]
    obs_cols = [c for c in df.columns if c.startswith("obs")]
    lens = []
    for b, t in enumerate(idx.tolist()):
        rows, ret, disc = brute(df, t, n, gamma)
        last = df.iloc[rows[-1]]
        lens.append(len(rows))
        assert batch["n_steps"][b] == len(rows), (t, rows)
        assert np.isclose(batch["reward"][b], ret, rtol=1e-6, atol=1e-6), (t, rows)
        assert np.isclose(batch["discount"][b], disc, rtol=1e-6), (t, rows)
        assert batch["terminated"][b] == last["terminated"] and batch["truncated"][b] == last["truncated"]
        nxt = np.asarray(batch["next_obs"][b]).reshape(-1)
        assert (nxt == last[next_cols].to_numpy(dtype=nxt.dtype)).all(), (t, rows)
        first = df.iloc[t]
        obs = np.asarray(batch["obs"][b]).reshape(-1)
        assert (obs == first[obs_cols].to_numpy(dtype=obs.dtype)).all()
        assert batch["episode"][b] == first["episode"] and batch["step"][b] == first["step"]
        assert batch["action"][b] == first["action"]
    assert batch["reward"].dtype == np.float32 and batch["discount"].dtype == np.float32
    assert batch["n_steps"].dtype == np.int64
    return lens


def samplers(store, n, gamma=GAMMA, seed=0, **kw):
    """(n-step sampler, the same plain sampler drawing the same rows) of each kind."""
    nk = dict(n_step=n, gamma=gamma) if gamma is not None else dict(n_step=n)
    yield (rs.UniformSampler(store, 64, seed=seed, **nk, **kw), rs.UniformSampler(store, 64, seed=seed, **kw))
    yield (rs.BalancedSampler(store, "terminated", 64, seed=seed, **nk, **kw),
           rs.BalancedSampler(store, "terminated", 64, seed=seed, **kw))
    yield (rs.WeightedSampler(store, "step", 64, seed=seed, **nk, **kw),
           rs.WeightedSampler(store, "step", 64, seed=seed, **kw))


STORES = {
    "frozenlake": lambda p: collected(p, "FrozenLake-v1", steps=300, max_steps=6),
    "cartpole": lambda p: with_second_run(collected(p, "CartPole-v1", steps=250, max_steps=15),
                                          "CartPole-v1", 120, 1, 15),
    "cartpole-vec3": lambda p: with_second_run(collected(p, "CartPole-v1", steps=300, num_envs=3, max_steps=15),
                                               "CartPole-v1", 90, 3, 15),
    "frozenlake-vec3-episodes": lambda p: collected(p, "FrozenLake-v1", episodes=60, num_envs=3, max_steps=6),
    "frozenlake-ring": lambda p: collected(p, "FrozenLake-v1", steps=700, num_envs=3, capacity=256, max_steps=6),
}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_every_sampler_against_brute_force(tmp_path, kind):
    store = rs.open(STORES[kind](tmp_path))
    df = store.to_pandas(fields=["terminated", "truncated"])
    assert df["terminated"].any() and df["truncated"].any()  # both ends of an episode occur
    if kind == "frozenlake-ring":
        assert store.id_range[0] > 0  # the ring wrapped
    seen = set()
    for n in (1, 2, 3, 5):
        for s, plain in samplers(store, n):
            for _ in range(2):
                idx = plain.sample_indices()  # the same draws as the n-step sampler's
                seen.update(check(store, s.sample(), idx, n))
    assert {1, 2, 3, 5} <= seen  # windows of every length, up to the full n, were checked


def test_n_step_1_is_the_plain_batch(tmp_path):
    store = rs.open(STORES["cartpole-vec3"](tmp_path))
    for (s, plain), (g, _) in zip(samplers(store, 1, gamma=None), samplers(store, 1, gamma=0.5), strict=True):
        for _ in range(5):
            a, b, c = s.sample(), plain.sample(), g.sample()
            assert list(a) == list(b)
            for f in b:
                assert a[f].dtype == b[f].dtype and (a[f] == b[f]).all(), f
                assert (c[f] == b[f]).all(), f  # gamma with n_step=1: the row itself ...
            assert (c["discount"] == np.float32(0.5)).all() and (c["n_steps"] == 1).all()  # ... plus these
        assert s.state_dict() == plain.state_dict()


def test_vector_env_windows_follow_their_episode(tmp_path):
    """Interleaved episodes: windows reach rows that are not adjacent to the drawn row."""
    store = rs.open(STORES["cartpole-vec3"](tmp_path))
    s = rs.UniformSampler(store, 256, n_step=3, gamma=GAMMA, seed=3)
    plain = rs.UniformSampler(store, 256, seed=3)
    idx = plain.sample_indices()
    lens = check(store, s.sample(), idx, 3)
    assert max(lens) == 3
    df = store.to_pandas(fields=["episode"])
    assert (df["episode"].to_numpy()[1:] != df["episode"].to_numpy()[:-1]).mean() > 0.5  # really interleaved


def test_appending_in_the_same_process(tmp_path):
    """Rows appended one vector step at a time to a ring (from a real collect), sampled
    in between: the newest row ends windows, buffered rows are seen, evictions are exact."""
    src = rs.open(collected(tmp_path, "CartPole-v1", steps=6000, num_envs=3, max_steps=15))
    rows = src.read_range(0, len(src))
    store = rs.create(tmp_path / "ring.zarr", src.observation_space, src.action_space, capacity=300)
    s = rs.UniformSampler(store, 32, n_step=3, gamma=GAMMA, seed=0)
    plain = rs.UniformSampler(store, 32, seed=0)
    cut = buffered = 0
    for i, a in enumerate(range(0, len(src), 3)):
        store.extend({k: v[a : a + 3] for k, v in rows.items()})
        if i % 40 == 0 or a > len(src) - 30:
            buffered += store.buffered > 0
            idx = plain.sample_indices()
            lens = check(store, s.sample(), idx, 3)
            # the newest row's window is cut there
            newest = len(store) - 1
            b = rs.UniformSampler(store, 1, n_step=3, gamma=GAMMA, seed=0).reader.read(np.array([newest]))
            assert b["n_steps"][0] == 1
            cut += sum(x < 3 for x in lens)
        else:
            s.sample()
            plain.sample_indices()
    assert store.id_range[0] > 5000  # the ring evicted (the links dropped evicted rows)
    assert s.reader.links is not None and s.reader.links.base > 0
    assert cut > 0 and buffered > 10  # windows cut by the newest row; checks with rows still buffered


def test_buffered_rows_are_window_rows(tmp_path):
    src = rs.open(collected(tmp_path, "CartPole-v1", steps=200, max_steps=15))
    rows = src.read_range(0, len(src))
    store = rs.create(tmp_path / "s.zarr", src.observation_space, src.action_space)
    store.extend({k: v[:100] for k, v in rows.items()})
    store.flush()
    store.extend({k: v[100:] for k, v in rows.items()})
    assert store.buffered == 100  # half the rows are still in the write buffer
    s = rs.UniformSampler(store, 200, n_step=5, gamma=GAMMA, seed=1, replacement=False)
    idx = np.arange(len(store))
    batch = s.reader.read(idx)
    check(store, batch, idx, 5)
    assert store.buffered == 100  # sampling never flushed


def test_state_dict_resumes_exactly(tmp_path):
    store = rs.open(STORES["cartpole-vec3"](tmp_path))
    for s, _ in samplers(store, 3, seed=7):
        for _ in range(3):
            s.sample()
        state = s.state_dict()
        want = [s.sample() for _ in range(4)]
        again = next(x for x, _ in samplers(store, 3, seed=99) if type(x) is type(s))
        again.load_state_dict(state)
        for a, b in zip(want, [again.sample() for _ in range(4)], strict=True):
            assert all((a[f] == b[f]).all() for f in a)
        other = rs.UniformSampler(store, 64, n_step=2, gamma=GAMMA) if type(s) is rs.UniformSampler else None
        if other is not None:
            with pytest.raises(rs.SamplerError, match="n_step, gamma"):
                other.load_state_dict(state)


def test_prefetch_gives_the_sampled_batches(tmp_path):
    store = rs.open(STORES["frozenlake-vec3-episodes"](tmp_path))
    for s, _ in samplers(store, 3, seed=5):
        ref = next(x for x, _ in samplers(store, 3, seed=5) if type(x) is type(s))
        got = list(s.iter(6, prefetch=2))
        for a in got:
            b = ref.sample()
            assert list(a) == list(b) and all((a[f] == b[f]).all() for f in a)
        assert s.state_dict() == ref.state_dict()


def test_errors(tmp_path):
    store = rs.open(STORES["frozenlake"](tmp_path))
    for bad in (0, -1, 2.0, "3", True, None):
        with pytest.raises(rs.SamplerError, match="n_step must be an int >= 1"):
            rs.UniformSampler(store, 8, n_step=bad, gamma=0.9)
    with pytest.raises(rs.SamplerError, match="n_step=3 needs gamma="):
        rs.BalancedSampler(store, "action", 8, n_step=3)
    for bad in (-0.1, 1.5, float("nan"), "0.9", True):
        with pytest.raises(rs.SamplerError, match=r"gamma must be a number in \[0, 1\]"):
            rs.WeightedSampler(store, "step", 8, n_step=2, gamma=bad)
    with pytest.raises(rs.SamplerError, match="SequenceSampler does not compute n-step returns"):
        rs.SequenceSampler(store, 8, length=4, n_step=3, gamma=0.9)
    with pytest.raises(rs.SamplerError, match="SequenceSampler does not compute n-step"):
        rs.SequenceSampler(store, 8, length=4, gamma=0.9)
    # a user field named like an added one
    import gymnasium as gym
    clash = rs.create(tmp_path / "clash.zarr", gym.spaces.Discrete(3), gym.spaces.Discrete(2),
                      extra_fields=[("discount", "float32")])
    with pytest.raises(rs.SamplerError, match="'discount' clashes"):
        rs.UniformSampler(clash, 8, n_step=2, gamma=0.9)
    rs.UniformSampler(clash, 8, n_step=2, gamma=0.9, fields=["obs", "reward"])  # left out: fine
    # a plain sampler's state does not resume an n-step one
    plain = rs.UniformSampler(store, 8, seed=0)
    with pytest.raises(rs.SamplerError, match="n_step, gamma"):
        rs.UniformSampler(store, 8, n_step=3, gamma=0.9).load_state_dict(plain.state_dict())
    empty = rs.create(tmp_path / "empty.zarr", gym.spaces.Discrete(3), gym.spaces.Discrete(2))
    with pytest.raises(rs.EmptyStoreError):
        rs.UniformSampler(empty, 8, n_step=3, gamma=0.9).sample()


def test_gamma_edges_and_fields(tmp_path):
    store = rs.open(STORES["cartpole"](tmp_path))
    plain = rs.UniformSampler(store, 128, seed=2)
    idx = plain.sample_indices()
    b0 = rs.UniformSampler(store, 128, n_step=4, gamma=0.0, seed=2).sample()
    assert (b0["reward"] == store.read(idx, ["reward"])["reward"]).all()  # gamma 0: the row's own reward
    check(store, rs.UniformSampler(store, 128, n_step=4, gamma=1, seed=2).sample(), idx, 4, gamma=1.0)
    few = rs.UniformSampler(store, 128, n_step=3, gamma=GAMMA, seed=2, fields=["obs", "action"]).sample()
    assert list(few) == ["obs", "action", "reward", "terminated", "truncated", "discount", "n_steps"]


def relabelled(rows, episode, step, order=None):
    """A store of real rows with the given ``episode``/``step`` (rows in ``order``)."""
    src = dict(rows, episode=np.asarray(episode, np.int64), step=np.asarray(step, np.int64))
    if order is not None:
        src = {k: v[order] for k, v in src.items()}
    return src


@pytest.mark.parametrize("layout", ["adjacent", "interleaved"])
def test_flags_and_step_gaps_end_windows_whatever_the_ids(tmp_path, layout):
    """Windows stop after a terminated/truncated row and where steps do not go on, even when
    the rows after carry the same episode id (so the ids alone would not stop them)."""
    src = rs.open(collected(tmp_path, "CartPole-v1", steps=300, max_steps=15))
    rows = src.read_range(0, len(src))
    n = len(src)
    if layout == "adjacent":
        step = np.arange(n) + np.where(np.arange(n) >= 100, 5, 0)  # steps jump after row 99
        data = relabelled(rows, np.zeros(n), step)
    else:  # two long "episodes", rows alternating: every window follows its episode's links
        half = n // 2
        ep = np.where(np.arange(n) < half, 7, 8)
        step = np.where(np.arange(n) < half, np.arange(n), np.arange(n) - half)
        step[60:half] += 3  # and episode 7's steps jump after its row 59
        order = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)
        data = relabelled(rows, ep, step, order)
    store = rs.create(tmp_path / f"{layout}.zarr", src.observation_space, src.action_space)
    store.extend(data)
    store.flush()
    done = data["terminated"] | data["truncated"]
    assert done[:-1].sum() > 5  # flags inside a run of one id
    for n_step in (2, 5):
        s = rs.UniformSampler(store, len(store), n_step=n_step, gamma=GAMMA, seed=0)
        idx = np.arange(len(store))
        lens = check(store, s.reader.read(idx), idx, n_step)
        assert max(lens) == n_step and min(lens) == 1
        plain = rs.UniformSampler(store, 64, seed=4)
        s = rs.UniformSampler(store, 64, n_step=n_step, gamma=GAMMA, seed=4)
        check(store, s.sample(), plain.sample_indices(), n_step)
