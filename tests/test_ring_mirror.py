"""A full ring's writer holds buffered rows at their own places in private (copy-on-write)
maps, so its reads gather them like committed rows. Those rows must never reach the files
before their commit, never be seen by any other reader, and every read of the writer --
batches, ranges, ids, rows its buffered rows hide -- must still give exactly the model's rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

import replaystore as rs

CAP = 8192  # (in chunks of 4096 rows: page-aligned for every field, so they map side by side)


def rows(start, n):
    ids = np.arange(start, start + n)
    return {"obs": np.stack([ids, -ids], axis=1).astype(np.float32), "action": ids % 4,
            "reward": (ids % 7).astype(np.float32), "next_obs": np.stack([ids + 1, -ids], axis=1).astype(np.float32),
            "terminated": ids % 11 == 10, "truncated": np.zeros(n, bool)}


def make(path, prefill=CAP, **kw):
    store = rs.create(path, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), gym.spaces.Discrete(4),
                      capacity=CAP, chunk_rows=4096, **kw)
    store.extend(rows(0, prefill))
    store.flush()
    return store


@pytest.mark.parametrize("prefill", [CAP, 100])  # a full ring, one that has not wrapped yet
def test_the_writer_reads_buffered_rows_in_place_and_files_never_see_them(tmp_path, prefill):
    store = make(tmp_path / "s", prefill, buffer_rows=64)
    w = store._writer
    other = rs.open(tmp_path / "s")  # a reader: shared maps of the files
    rng = np.random.default_rng(0)
    s = rs.UniformSampler(store, 40, seed=1)
    mirrored = 0
    for _ in range(400):
        n = int(rng.integers(1, 9))
        if rng.random() < 0.5:
            for _ in range(n):
                g = store.total + store.buffered
                store.append(**{k: v[0] for k, v in rows(g, 1).items()})
        else:
            store.extend(rows(store.total + store.buffered, n))
        mirrored += store._reader.mirror and store.buffered > 0
        lo, hi = store.id_range
        assert hi - lo == min(CAP, hi)
        # batches: whole rows of the rows held now
        b = s.sample()
        ids = b["obs"][:, 0].astype(np.int64)
        assert ids.min() >= lo and ids.max() < hi
        np.testing.assert_array_equal(b["obs"][:, 1], -ids)
        np.testing.assert_array_equal(b["action"], ids % 4)
        # every row, by logical position, and a slice
        np.testing.assert_array_equal(store.read(np.arange(hi - lo), fields=["obs"])["obs"][:, 0],
                                      np.arange(lo, hi))
        a = int(rng.integers(0, hi - lo - 10))
        assert len(store) == hi - lo
        np.testing.assert_array_equal(store[a:a + 10]["action"], np.arange(lo + a, lo + a + 10) % 4)
        # the committed rows the buffered ones hide, by id, are still the committed ones
        clo = store.total - store.size
        got = store.read_ids(clo, clo + 5, fields=["obs"])["obs"][:, 0]
        np.testing.assert_array_equal(got, np.arange(clo, clo + 5))
        # another reader sees only committed rows: none of the buffered ones
        other.refresh()
        olo, ohi = other.id_range
        assert ohi == store.total
        np.testing.assert_array_equal(other.read(np.arange(len(other)), fields=["obs"])["obs"][:, 0],
                                      np.arange(olo, ohi))
        if rng.random() < 0.05:
            store.flush()
    assert mirrored > 100  # (the in-place path was the one exercised)
    assert (w.buffer.arrays is not w.buffer.own) == store._reader.mirror
    store.close()
    other.close()
    assert rs.verify(tmp_path / "s").ok
    final = rs.open(tmp_path / "s")
    lo, hi = final.id_range
    np.testing.assert_array_equal(final.read_range(0, len(final), fields=["obs"])["obs"][:, 0],
                                  np.arange(lo, hi))


def test_a_killed_writer_leaves_only_committed_rows(tmp_path):
    """SIGKILL a writer with buffered rows in its private maps: the files hold the
    committed rows, whole, and verify finds nothing wrong."""
    make(tmp_path / "s", buffer_rows=64).close()
    code = textwrap.dedent(f"""
        import sys, numpy as np, replaystore as rs
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_ring_mirror import rows
        s = rs.open({str(tmp_path / "s")!r}, "a", buffer_rows=64)
        s.extend(rows(s.total, 10)); s.flush()
        s.extend(rows(s.total, 50))     # buffered, in place in the private maps
        assert s._reader.mirror and s.buffered == 50
        print("ready", flush=True)
        sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    store = rs.open(tmp_path / "s")
    assert store.total == CAP + 10
    lo, hi = store.id_range
    np.testing.assert_array_equal(store.read_range(0, len(store), fields=["obs"])["obs"][:, 0], np.arange(lo, hi))
    assert rs.verify(tmp_path / "s").ok


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_failed_write_out_keeps_every_row(tmp_path, fail_at):
    """A write-out of in-place buffered rows that fails (disk full): nothing is lost, the
    next appends queue behind, and a later flush writes all of them in order."""
    store = make(tmp_path / "s", buffer_rows=16)
    w = store._writer
    real, calls = w._write_rows, {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise OSError(28, "No space left on device")
        real()

    w._write_rows = flaky
    start = store.total
    with pytest.raises(rs.StoreWriteError):
        for k in range(40):
            g = start + k
            store.append(**{key: v[0] for key, v in rows(g, 1).items()})
    k += 1
    for j in range(k, 60):
        store.append(**{key: v[0] for key, v in rows(start + j, 1).items()})
    lo, hi = store.id_range
    np.testing.assert_array_equal(store.read(np.arange(CAP), fields=["obs"])["obs"][:, 0], np.arange(lo, hi))
    store.close()
    final = rs.open(tmp_path / "s")
    assert final.total == start + 60
    lo, hi = final.id_range
    np.testing.assert_array_equal(final.read_range(0, CAP, fields=["obs"])["obs"][:, 0], np.arange(lo, hi))


def test_buffered_rows_that_reach_the_ring_end_move_to_the_buffer(tmp_path):
    """A buffer larger than what is left before the ring's end: rows fill the private maps
    up to the end, then move to the buffer's own arrays (no commit in between), and every
    read stays exact; the next write-out writes them all in order."""
    store = make(tmp_path / "s", buffer_rows=4096)
    store.extend(rows(store.total, CAP - 2000))  # (committed: the cursor is 2,000 rows before the end)
    store.flush()
    gen = store.generation
    assert store._reader.mirror and store._writer.buffer.limit == 2000
    for k in range(3000):
        g = store.total + store.buffered
        store.append(**{key: v[0] for key, v in rows(g, 1).items()})
        if k in (1998, 1999, 2000, 2999):
            lo, hi = store.id_range
            got = store.read(np.arange(CAP), fields=["obs"])["obs"][:, 0]
            np.testing.assert_array_equal(got, np.arange(lo, hi))
            b = rs.UniformSampler(store, 64, seed=k).sample()
            np.testing.assert_array_equal(b["action"], b["obs"][:, 0].astype(np.int64) % 4)
    assert not store._reader.mirror and store.generation == gen  # moved, not committed
    store.close()
    final = rs.open(tmp_path / "s")
    lo, hi = final.id_range
    np.testing.assert_array_equal(final.read_range(0, CAP, fields=["obs"])["obs"][:, 0], np.arange(lo, hi))
    assert rs.verify(tmp_path / "s").ok
