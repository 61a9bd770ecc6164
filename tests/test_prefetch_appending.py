"""iter(prefetch=) while the same process appends (the online loop): a batch handed out
never holds rows evicted or changed since it was drawn, and a balanced sampler never
hands out rows of another class -- also across the writer's commits and write-outs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import replaystore as rs


def rows(start, n):
    ids = np.arange(start, start + n)
    return {"obs": ids, "next_obs": ids + 1, "action": ids % 4, "reward": (ids % 3 - 1).astype(float),
            "terminated": ids % 50 == 49, "truncated": np.zeros(n, bool)}


def make(path, capacity, n, **kw):
    store = rs.create(path, gym.spaces.Discrete(10**9), gym.spaces.Discrete(4), capacity=capacity, **kw)
    store.extend(rows(0, n))
    return store


def check_batch(store, batch):
    obs = batch["obs"]
    lo, hi = store.id_range
    assert obs.min() >= lo, "a row evicted before the batch was handed out"
    assert obs.max() < hi
    # every row whole: all its fields from the same row
    np.testing.assert_array_equal(batch["next_obs"], obs + 1)
    np.testing.assert_array_equal(batch["action"], obs % 4)
    np.testing.assert_array_equal(batch["reward"], (obs % 3 - 1).astype(np.float32))


def sampler(kind, store):
    if kind == "uniform":
        return rs.UniformSampler(store, 24, seed=1)
    if kind == "epochs":
        return rs.UniformSampler(store, 24, seed=1, replacement=False)
    # only classes 0 and 2 of the action: a row of class 1 or 3 would be a row shifted
    # between the draw and the read
    return rs.BalancedSampler(store, by="action", batch_size=24, seed=1,
                              class_weights={0: 1.0, 1: 0.0, 2: 3.0, 3: 0.0})


@pytest.mark.parametrize("kind", ["uniform", "epochs", "balanced"])
@pytest.mark.parametrize("buffer_rows", [None, 7])  # (7: write-outs and commits every few appends)
def test_prefetch_while_appending_to_a_ring(tmp_path, kind, buffer_rows):
    store = make(tmp_path / "s", 120, 120, buffer_rows=buffer_rows)
    s = sampler(kind, store)
    rng = np.random.default_rng(0)
    seen = 0
    for k, batch in enumerate(s.iter(num_batches=1500, prefetch=3)):
        check_batch(store, batch)
        if kind == "balanced":
            assert set(np.unique(batch["action"]).tolist()) <= {0, 2}
        # the caller appends between batches, and sometimes commits
        n = int(rng.integers(0, 4))
        if n:
            store.extend(rows(store.total + store.buffered, n))
        if k % 97 == 0:
            store.flush()
        seen += 1
    assert seen == 1500
    assert store.total + store.buffered > 1500
    store.close()


def test_prefetch_while_appending_one_row_at_a_time(tmp_path):
    """The online loop's own pattern: append() one row, take one prefetched batch."""
    store = make(tmp_path / "s", 64, 64)
    s = rs.BalancedSampler(store, by="action", batch_size=16, seed=3, class_weights={0: 0.0, 1: 1.0, 2: 0.0, 3: 1.0})
    it = s.iter(prefetch=2)
    for _ in range(2000):
        i = store.total + store.buffered
        store.append(obs=i, next_obs=i + 1, action=i % 4, reward=float(i % 3 - 1),
                     terminated=i % 50 == 49, truncated=False)
        batch = next(it)
        check_batch(store, batch)
        assert set(np.unique(batch["action"]).tolist()) <= {1, 3}
    it.close()
    store.close()


def test_prefetch_without_appends_is_still_the_plain_sequence(tmp_path):
    store = make(tmp_path / "s", None, 500)
    a, b = rs.UniformSampler(store, 32, seed=5), rs.UniformSampler(store, 32, seed=5)
    got = [x["obs"] for x in a.iter(num_batches=50, prefetch=4)]
    want = [b.sample()["obs"] for _ in range(50)]
    assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))
    assert a.state_dict()["rng"] == b.state_dict()["rng"]
    store.close()
