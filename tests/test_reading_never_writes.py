"""Reading never writes: in the writer's own process, sampling and reading see every row
appended so far (buffered ones too) without flushing, committing or fsyncing."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest

import replaystore as rs

OBS = gym.spaces.Discrete(10**9)
ACT = gym.spaces.Discrete(4)


def _row(i: int) -> dict:
    return {"obs": i, "action": i % 4, "reward": float(i % 3), "next_obs": i + 1,
            "terminated": i % 50 == 49, "truncated": False}


@pytest.fixture
def syncs(monkeypatch):
    """Counts fsync/fdatasync calls (the real ones still run)."""
    count = {"n": 0}
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def counting(fd, real=real):
            count["n"] += 1
            return real(fd)

        monkeypatch.setattr(os, name, counting)
    return count


def test_online_loop_on_a_ring_commits_only_when_the_buffer_fills(tmp_path, syncs):
    cap = 32
    store = rs.create(tmp_path / "ring.zarr", OBS, ACT, capacity=cap)
    assert store._writer.buffer.capacity == cap  # the buffer is the ring's size
    for i in range(cap):  # fill the ring once (the buffer fills: one commit)
        store.append(**_row(i))
    assert store.generation == 1
    s = rs.UniformSampler(store, batch_size=cap, seed=0, replacement=False)
    fills = 1
    for i in range(cap, cap + 10_000):
        gen, fsyncs = store.generation, syncs["n"]
        store.append(**_row(i))
        if (i + 1) % cap == 0:
            fills += 1  # the buffer filled: an eviction commit, then the commit of the rows
            assert store.generation == gen + 2
        else:
            assert store.generation == gen and syncs["n"] == fsyncs
        gen, fsyncs, buffered = store.generation, syncs["n"], store.buffered
        batch = s.sample()["obs"]
        # an epoch over the 32 rows of the ring: exactly the newest 32, the one just appended
        # included, whether they are committed or still buffered
        assert sorted(batch.tolist()) == list(range(i + 1 - cap, i + 1))
        # ... and sampling wrote nothing
        assert (store.generation, syncs["n"], store.buffered) == (gen, fsyncs, buffered)
    assert store.generation == 1 + 2 * ((cap + 10_000) // cap - 1)
    store.close()


def test_online_loop_commits_as_buffer_rows_and_commit_every_say(tmp_path, syncs):
    buffer_rows, every = 1000, 2500
    store = rs.create(tmp_path / "u.zarr", OBS, ACT, buffer_rows=buffer_rows, commit_every=every)
    s = rs.UniformSampler(store, batch_size=32, seed=1)
    expected, nbuf, since = 0, 0, 0  # the commit rule, simulated
    from_buffer = want_from_buffer = 0.0
    for i in range(10_000):
        store.append(**_row(i))
        nbuf, since = nbuf + 1, since + 1
        if nbuf == buffer_rows:
            expected, nbuf = expected + 1, 0
        if since >= every:
            expected, since = expected + (1 if nbuf else 0), 0
            nbuf = 0
        assert store.generation == expected, i
        gen, fsyncs = store.generation, syncs["n"]
        assert len(store) == i + 1 and store.buffered == nbuf
        obs = s.sample()["obs"]
        assert obs.max() <= i and obs.min() >= 0
        from_buffer += int((obs >= store.total).sum())  # rows not committed yet
        want_from_buffer += 32 * nbuf / (i + 1)
        assert (store.generation, syncs["n"]) == (gen, fsyncs)
        assert store.read([-1], fields=["obs"])["obs"][0] == i  # the newest row reads back
    # buffered rows are drawn as often as committed ones (Poisson-ish count, ~2,900)
    assert abs(from_buffer - want_from_buffer) < 5 * np.sqrt(want_from_buffer)
    store.close()


def test_other_processes_see_committed_rows_only(tmp_path):
    path = tmp_path / "s.zarr"
    w = rs.create(path, OBS, ACT)
    for i in range(10):
        w.append(**_row(i))
    w.flush()
    for i in range(10, 15):
        w.append(**_row(i))
    assert len(w) == 15 and rs.UniformSampler(w, batch_size=500, seed=0).sample()["obs"].max() == 14
    r = rs.open(path)
    assert len(r) == 10 and r.version == (10, 10) and w.version == (15, 15)
    w.flush()
    assert w.version == (15, 15)  # a commit changes no readable rows
    assert len(r.refresh()) == 15
    w.close()
