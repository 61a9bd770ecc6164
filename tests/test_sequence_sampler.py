"""SequenceSampler: windows checked row by row against store.to_pandas(), chi-squared
against the exact distribution over valid windows, rings, resume, appending, errors.

Stores are collected from real gymnasium envs: CartPole-v1 with a small time limit
(truncations, and terminations before it) and FrozenLake-v1 (terminations in holes and
at the goal, truncation after 100 steps), with one env and with interleaved vector envs.
"""

from __future__ import annotations

import json
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from conformance import RING, UNBOUNDED, LocalDir, MemoryFS, PackedZip
from scipy import stats

import replaystore as rs
from replaystore.collect import collect

P_MIN = 1e-4  # a correct sampler fails a test at this level 1 time in 10,000


def collected(tmp_path, env="CartPole-v1", steps=1500, num_envs=1, capacity=None, max_steps=15, seed=0):
    path = tmp_path / f"{env}-{num_envs}-{capacity}.zarr"
    kw = {"max_episode_steps": max_steps} if max_steps else None
    collect(env, path, steps=steps, num_envs=num_envs, capacity=capacity, seed=seed, env_kwargs=kw)
    return rs.open(path)


def valid_windows(store, length, stride=1, pad=True):
    """Every valid window as a tuple of global row ids (-1 where padded), from pandas."""
    df = store.to_pandas(fields=["episode", "step"])
    lo = store.id_range[0]
    out = []
    for _, g in df.groupby("episode", sort=False):
        rows = (g.index.to_numpy() + lo).tolist()
        base = int(g["step"].iloc[0])
        n = len(rows)
        if base + n >= length:
            out += [tuple(rows[k : k + length]) for k in range(n - length + 1) if (base + k) % stride == 0]
        elif pad and base == 0:
            out.append(tuple(rows) + (-1,) * (length - n))
    return out


def windows_of(batch):
    return [tuple(w) for w in batch["index"].tolist()]


def check_batch(store, batch, length, valid):
    """Shapes, mask, and every row's content equal to the store's rows (via pandas)."""
    b = batch["index"].shape[0]
    df = store.to_pandas()
    lo = store.id_range[0]
    for name in store.schema.names:
        assert batch[name].shape[:2] == (b, length), name
    for w in range(b):
        ids = batch["index"][w]
        m = batch["mask"][w]
        real = int(m.sum())
        assert m[:real].all() and not m[real:].any()  # True then False
        assert np.array_equal(ids[real:], np.full(length - real, -1))
        assert tuple(ids.tolist()) in valid
        rows = df.loc[ids[:real] - lo]
        assert rows["episode"].nunique() == 1
        assert np.array_equal(np.diff(rows["step"].to_numpy()), np.ones(real - 1))
        for name in ("reward", "terminated", "truncated", "episode", "step", "action"):
            want = rows[name].to_numpy()
            assert np.array_equal(batch[name][w, :real], want), name
            assert (batch[name][w, real:] == want[-1]).all(), name  # padded: the last real row
        if "obs_0" in df:
            assert np.array_equal(batch["obs"][w, :real, 0], rows["obs_0"].to_numpy())


def chi2_windows(sampler, valid, draws_per_window=40):
    counts = Counter()
    need = draws_per_window * len(valid)
    got = 0
    while got < need:
        ws = windows_of(sampler.sample())
        counts.update(ws)
        got += len(ws)
    assert set(counts) <= set(valid)
    obs = np.array([counts[w] for w in valid], float)
    return stats.chisquare(obs).pvalue, obs


# -- content against pandas ----------------------------------------------------------------
@pytest.mark.parametrize("env,num_envs,length,max_steps", [
    ("CartPole-v1", 1, 12, 15), ("CartPole-v1", 3, 12, 15), ("FrozenLake-v1", 1, 4, 6),
    ("FrozenLake-v1", 4, 4, 6)])
def test_windows_are_the_episodes_rows(tmp_path, env, num_envs, length, max_steps):
    store = collected(tmp_path, env, steps=800, num_envs=num_envs, max_steps=max_steps)
    eps = store.episodes()
    assert eps["terminated"].any() and eps["truncated"].any()  # both ways of ending occur
    valid = set(valid_windows(store, length))
    assert any(-1 in w for w in valid) and any(-1 not in w for w in valid)  # padded and full
    s = rs.SequenceSampler(store, batch_size=64, length=length, seed=1)
    for _ in range(5):
        check_batch(store, s.sample(), length, valid)


def test_ring_that_wrapped_never_gives_evicted_rows(tmp_path):
    store = collected(tmp_path, steps=1000, capacity=302)
    assert store.id_range[0] > 0 and len(store) == 302
    assert store[0]["step"] % 3 != 0  # the oldest episode lost rows, and its grid is not theirs
    valid = set(valid_windows(store, 4, stride=3))
    assert any(w[0] - store.id_range[0] < 8 for w in valid)  # it still has a window
    s = rs.SequenceSampler(store, batch_size=256, length=4, stride=3, seed=2)
    for _ in range(3):
        check_batch(store, s.sample(), 4, valid)


# -- the exact distribution ------------------------------------------------------------------
@pytest.mark.parametrize("pad,stride", [(True, 1), (False, 1), (True, 2), (False, 3)])
def test_chi_squared_uniform_over_valid_windows(tmp_path, pad, stride):
    store = collected(tmp_path, steps=600)
    valid = valid_windows(store, 12, stride, pad)
    s = rs.SequenceSampler(store, batch_size=500, length=12, stride=stride, pad=pad, seed=3)
    p, obs = chi2_windows(s, valid)
    assert p > P_MIN
    # the test has power: these counts are far from "pick an episode, then a start in it"
    ep_of = {w: store.to_pandas(fields=["episode"]).loc[w[0] - store.id_range[0], "episode"] for w in valid}
    per_ep = Counter(ep_of.values())
    alt = np.array([1.0 / per_ep[ep_of[w]] for w in valid])
    if len(set(per_ep.values())) > 1:
        assert stats.chisquare(obs, alt / alt.sum() * obs.sum()).pvalue < P_MIN


def test_chi_squared_on_wrapped_ring_and_vector_envs(tmp_path):
    ring = collected(tmp_path, steps=1000, capacity=302, num_envs=1)
    vec = collected(tmp_path, steps=900, num_envs=3)
    for store, length, stride in ((ring, 4, 3), (vec, 8, 1)):
        valid = valid_windows(store, length, stride)
        s = rs.SequenceSampler(store, batch_size=400, length=length, stride=stride, seed=4)
        assert chi2_windows(s, valid)[0] > P_MIN


@pytest.mark.parametrize("num_envs,stride", [(1, 2), (3, 1)])
def test_chi_squared_after_the_sampler_watched_a_ring_wrap(tmp_path, num_envs, stride):
    """The sampler indexed the rows before the ring evicted the oldest ones: its counts of
    the partly evicted episodes must follow (the exact distribution of a fresh sampler)."""
    path = tmp_path / "ring.zarr"
    kw = dict(num_envs=num_envs, capacity=200, env_kwargs={"max_episode_steps": 15})
    collect("CartPole-v1", path, steps=150, seed=1, **kw)
    store = rs.open(path)
    s = rs.SequenceSampler(store, batch_size=400, length=8, stride=stride, seed=6)
    s.sample()
    for k in range(3):  # wrap a little at a time: episodes lose their first rows
        collect("CartPole-v1", path, steps=37, seed=2 + k, **kw)
        store.refresh()
        s.sample()
    assert store.id_range[0] > 0
    valid = valid_windows(store, 8, stride)
    p, _ = chi2_windows(s, valid)
    assert p > P_MIN
    fresh = rs.SequenceSampler(store, batch_size=400, length=8, stride=stride, seed=6)
    fresh.load_state_dict(s.state_dict())
    assert np.array_equal(fresh.sample()["index"], s.sample()["index"])  # same windows, same order


# -- determinism and resume ------------------------------------------------------------------
def test_same_seed_same_batches_and_state_dict_resumes(tmp_path):
    store = collected(tmp_path, steps=700, capacity=400)
    kw = dict(batch_size=16, length=12, stride=2, seed=7)
    a, b = rs.SequenceSampler(store, **kw), rs.SequenceSampler(store, **kw)
    for _ in range(4):
        x, y = a.sample(), b.sample()
        assert all(np.array_equal(x[k], y[k]) for k in x)
    state = a.state_dict()
    after = [a.sample()["index"] for _ in range(5)]
    c = rs.SequenceSampler(store, **{**kw, "seed": 99})
    c.load_state_dict(state)
    assert all(np.array_equal(u, c.sample()["index"]) for u in after)
    # prefetching gives the same batches as sample(), and leaves the state after the last
    d = rs.SequenceSampler(store, **{**kw, "seed": 99})
    d.load_state_dict(state)
    got = [x["index"] for x in d.iter(5, prefetch=2)]
    assert all(np.array_equal(u, v) for u, v in zip(after, got, strict=True))
    assert np.array_equal(a.sample()["index"], d.sample()["index"])
    other = rs.SequenceSampler(store, batch_size=16, length=11, seed=7)
    with pytest.raises(rs.SamplerError, match="length"):
        other.load_state_dict(state)


def test_a_sampler_that_watched_a_ring_evict_interleaved_episodes_resumes_in_a_fresh_one(tmp_path):
    """Two envs' episodes interleave row by row; the older one (id 0) starts first, so once
    the ring evicts, the newer one's first stored row comes first: a fresh sampler must
    still order them as the one that saw them begin (by episode id)."""
    store = rs.create(tmp_path / "i.zarr", gym.spaces.Discrete(10**6), gym.spaces.Discrete(2), capacity=100)

    def add(a, b):
        g = np.arange(a, b)
        ep = np.where(g % 2 == 0, 0, 1)
        store.extend({"obs": g, "next_obs": g + 1, "action": g % 2, "reward": np.zeros(len(g)),
                      "terminated": np.zeros(len(g), bool), "truncated": np.zeros(len(g), bool),
                      "episode": ep, "step": np.where(ep == 0, g // 2, (g - 1) // 2)})
        store.flush()

    add(0, 81)
    s = rs.SequenceSampler(store, batch_size=50, length=5, seed=0)
    s.sample()
    add(81, 121)  # evicts rows 0..20: episode 1's first stored row (21) precedes episode 0's (22)
    s.sample()
    valid = valid_windows(store, 5)
    fresh = rs.SequenceSampler(store, batch_size=50, length=5, seed=0)
    fresh.load_state_dict(s.state_dict())
    x, y = s.sample(), fresh.sample()
    assert set(windows_of(x)) <= set(valid)
    assert np.array_equal(x["index"], y["index"])
    assert chi2_windows(s, valid)[0] > P_MIN


# -- appending while sampling ----------------------------------------------------------------
@pytest.mark.parametrize("capacity", [None, 97])
def test_sampling_while_appending_sees_new_rows_and_never_crosses_episodes(tmp_path, capacity):
    env = gym.make("FrozenLake-v1")
    store = rs.create(tmp_path / "online.zarr", env.observation_space, env.action_space, capacity=capacity)
    s = rs.SequenceSampler(store, batch_size=32, length=5, stride=1, seed=5)
    truth = {}  # global id -> (episode, step)
    ep, step = 0, 0
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    newest_seen = 0
    for t in range(400):
        a = int(rng.integers(4))
        nxt, r, term, trunc, _ = env.step(a)
        store.append(obs=obs, action=a, reward=r, next_obs=nxt, terminated=term, truncated=trunc)
        truth[t] = (ep, step)
        step += 1
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
            ep, step = ep + 1, 0
        if t % 50 == 49:
            store.flush()
        batch = s.sample()
        lo, hi = store.id_range
        for ids, m in zip(batch["index"], batch["mask"], strict=True):
            real = ids[m]
            assert (real >= lo).all() and (real < hi).all()
            assert len({truth[int(g)][0] for g in real}) == 1
            steps = [truth[int(g)][1] for g in real]
            assert steps == list(range(steps[0], steps[0] + len(real)))
        assert np.array_equal(batch["episode"][batch["mask"]],
                              [truth[int(g)][0] for g in batch["index"][batch["mask"]]])
        newest_seen += int((batch["index"] == hi - 1).any())
    assert newest_seen > 40  # rows appended a moment ago are drawn
    store.close()


def test_prefetching_while_appending_to_a_ring(tmp_path):
    store = rs.create(tmp_path / "p.zarr", gym.spaces.Discrete(10**6), gym.spaces.Discrete(2), capacity=150)
    truth = {}
    ep = step = 0
    it = None
    for t in range(600):
        done = t % 23 == 22 or t % 31 == 30
        store.append(obs=t, action=t % 2, reward=0.0, next_obs=t + 1, terminated=done, truncated=False)
        truth[t] = (ep, step)
        ep, step = (ep + 1, 0) if done else (ep, step + 1)
        if t % 40 == 39:
            store.flush()
        if t == 20:
            it = rs.SequenceSampler(store, batch_size=8, length=6, seed=0).iter(None, prefetch=2)
        if it is not None:
            batch = next(it)
            lo = store.id_range[0]
            for ids, m, obs in zip(batch["index"], batch["mask"], batch["obs"], strict=True):
                real = ids[m]
                assert (real >= lo).all() and np.array_equal(obs[m], real)  # (obs == global id)
                assert len({truth[int(g)][0] for g in real}) == 1
                steps = [truth[int(g)][1] for g in real]
                assert steps == list(range(steps[0], steps[0] + len(real)))
    it.close()
    store.close()


# -- errors ------------------------------------------------------------------------------------
def test_every_error_path(tmp_path):
    env = gym.make("FrozenLake-v1")
    empty = rs.create(tmp_path / "empty.zarr", env.observation_space, env.action_space)
    for kw, word in ((dict(length=0), "length"), (dict(length=2.5), "length"), (dict(stride=0), "stride"),
                     (dict(batch_size=0), "batch_size"), (dict(pad="yes"), "pad")):
        with pytest.raises(rs.SamplerError, match=word):
            rs.SequenceSampler(empty, **{"batch_size": 4, "length": 3, **kw})
    s = rs.SequenceSampler(empty, batch_size=4, length=3)
    with pytest.raises(rs.EmptyStoreError, match="empty store"):
        s.sample()
    store = collected(tmp_path, "FrozenLake-v1", steps=60, max_steps=None)
    longest = int(store.episodes()["length"].max())
    with pytest.raises(rs.SamplerError, match=f"longest stored episode has {longest} rows; pad=False"):
        rs.SequenceSampler(store, batch_size=4, length=longest + 1, pad=False).sample()
    assert rs.SequenceSampler(store, batch_size=4, length=longest + 1).sample()["mask"].shape == (4, longest + 1)
    clash = rs.create(tmp_path / "clash.zarr", env.observation_space, env.action_space,
                      extra_fields=[("mask", "bool")])
    with pytest.raises(rs.SamplerError, match="'mask' clashes"):
        rs.SequenceSampler(clash, batch_size=4, length=3)
    assert "mask" not in rs.SequenceSampler(clash, batch_size=4, length=3, fields=["obs"]).fields
    with pytest.raises(rs.SamplerError, match="UniformSampler"):
        rs.SequenceSampler(store, batch_size=4, length=3).load_state_dict(
            rs.UniformSampler(store, batch_size=4).state_dict())


# -- every backend -----------------------------------------------------------------------------
@pytest.mark.parametrize("where", [LocalDir, PackedZip, MemoryFS], ids=lambda c: c.__name__)
@pytest.mark.parametrize("recipe", [UNBOUNDED, RING], ids=["unbounded", "ring"])
def test_backends_give_the_local_batches_of_whole_stored_rows(tmp_path, request, where, recipe):
    """The conformance stores (self-identifying rows, a ring that wrapped twice) on a zip
    and an in-memory fsspec store give the local directory's batches, row for row."""
    loc, local = where(tmp_path / "w", request), LocalDir(tmp_path / "l", request)
    try:
        store, ref = loc.reader(recipe), local.reader(recipe)
        want = recipe.expected()
        lo = store.id_range[0]
        a = rs.SequenceSampler(store, batch_size=8, length=20, stride=2, seed=3)
        b = rs.SequenceSampler(ref, batch_size=8, length=20, stride=2, seed=3)
        for _ in range(3):
            x, y = a.sample(), b.sample()
            assert all(np.array_equal(x[k], y[k]) for k in x)
            ids = x["obs"][..., 0].astype(np.int64)  # (row g has obs[0] == g)
            assert np.array_equal(ids[x["mask"]], x["index"][x["mask"]])
            for name, col in want.items():
                assert np.array_equal(x[name][x["mask"]], col[x["index"][x["mask"]] - lo]), name
        state = json.loads(json.dumps(a.state_dict()))  # survives JSON
        after = a.sample()["index"]
        c = rs.SequenceSampler(store, batch_size=8, length=20, stride=2, seed=0)
        c.load_state_dict(state)
        assert np.array_equal(c.sample()["index"], after)
    finally:
        loc.close()
        local.close()
