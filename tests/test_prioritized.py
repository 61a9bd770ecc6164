"""Prioritized replay: the exact distribution and weights, priority updates on rings,
priorities kept with the store (plain zarr, checksums, a SIGKILL), and every error path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import gymnasium as gym
import numpy as np
import pytest
import zarr
from scipy import stats

import replaystore as rs
from replaystore.errors import CorruptStoreError, RowIndexError, SamplerError, StoreModeError
from replaystore.sampling.sumtree import SumTree

OBS, ACT = gym.spaces.Discrete(10_000), gym.spaces.Discrete(3)


def rows(start: int, n: int) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + n)
    return {"obs": ids, "next_obs": ids + 1, "action": ids % 3, "reward": (ids % 7).astype(float),
            "terminated": ids % 25 == 24, "truncated": np.zeros(n, bool)}


def make(path, n: int, capacity=None) -> rs.ReplayStore:
    store = rs.create(path, OBS, ACT, capacity=capacity)
    store.extend(rows(0, n))
    return store


def counts_of(sampler, lo: int, n: int, batches: int) -> np.ndarray:
    c = np.zeros(n)
    for _ in range(batches):
        b = sampler.sample()
        assert (b["obs"] == b["index"]).all()  # (obs holds the row id: the row read is the row named)
        np.add.at(c, b["index"] - lo, 1)
    return c


def chi2(counts: np.ndarray, p: np.ndarray) -> float:
    keep = p > 0
    assert counts[~keep].sum() == 0, "a row of priority 0 was drawn"
    return stats.chisquare(counts[keep], p[keep] / p[keep].sum() * counts.sum()).pvalue


# -- the distribution ----------------------------------------------------------------------
def test_draws_follow_priority_to_the_alpha_after_rounds_of_updates(tmp_path):
    store = make(tmp_path / "s", 60)
    s = rs.PrioritizedSampler(store, batch_size=500, alpha=0.7, seed=1)
    rng = np.random.default_rng(0)
    p = np.ones(60)
    for _ in range(5):  # rounds of updates of drawn rows, zeros and repeats included
        b = s.sample()
        new = rng.exponential(1.0, len(b["index"]))
        new[:20] = 0.0
        s.update_priorities(b["index"], new)
        for i, v in zip(b["index"], new, strict=True):
            p[i] = v  # (the last of repeated ids wins)
    np.testing.assert_allclose(s.priority(np.arange(60)), p, rtol=1e-5)
    assert chi2(counts_of(s, 0, 60, 200), p ** 0.7) > 1e-3


def test_on_a_ring_that_wrapped_evicted_ids_are_ignored_and_new_rows_start_at_the_max(tmp_path):
    store = make(tmp_path / "s", 40, capacity=50)
    s = rs.PrioritizedSampler(store, batch_size=400, alpha=1.0, seed=2)
    s.update_priorities(np.arange(40), np.arange(40) % 5 + 0.5)  # max 4.5
    store.extend(rows(40, 30))  # ids 20..69 held; 0..19 evicted
    assert store.id_range == (20, 70)
    s.update_priorities(np.arange(0, 25), np.full(25, 100.0))  # 0..19 ignored, 20..24 set
    # the new rows start at the largest priority when they arrived (4.5), before the update
    want = np.concatenate([np.full(5, 100.0), np.arange(25, 40) % 5 + 0.5, np.full(30, 4.5)])
    np.testing.assert_allclose(s.priority(np.arange(20, 70)), want, rtol=1e-6)
    store.extend(rows(70, 2))  # ... and later ones at the largest now, 100
    np.testing.assert_allclose(s.priority(np.arange(70, 72)), 100.0, rtol=1e-6)
    want = np.r_[want[2:], 100.0, 100.0]
    assert chi2(counts_of(s, 22, 50, 150), want) > 1e-3


def test_importance_weights_are_the_schaul_definition(tmp_path):
    store = make(tmp_path / "s", 30)
    s = rs.PrioritizedSampler(store, batch_size=64, alpha=0.6, beta=0.4, seed=3)
    p = np.linspace(0.1, 3.0, 30)
    s.update_priorities(np.arange(30), p)
    b = s.sample()
    P = p ** 0.6 / (p ** 0.6).sum()
    w = (30 * P[b["index"]]) ** -0.4
    np.testing.assert_allclose(b["weight"], w / w.max(), rtol=1e-5)
    assert b["weight"].dtype == np.float32 and b["weight"].max() == 1.0
    # beta from a schedule of the batch count
    s2 = rs.PrioritizedSampler(store, batch_size=64, alpha=0.6, beta=lambda k: 0.0 if k == 0 else 1.0, seed=3)
    assert (s2.sample()["weight"] == 1.0).all()
    b = s2.sample()
    w = 1 / (30 * P[b["index"]])
    np.testing.assert_allclose(b["weight"], w / w.max(), rtol=1e-5)


def test_the_tree_matches_a_brute_force_search():
    rng = np.random.default_rng(4)
    leaves = rng.exponential(1.0, 1000).astype(np.float32)
    leaves[rng.random(1000) < 0.4] = 0
    t = SumTree(leaves.copy())
    cum = np.cumsum(leaves.astype(np.float64))
    u = rng.random(5000) * cum[-1]
    np.testing.assert_array_equal(t.draw(u), np.searchsorted(cum, u, side="right"))
    # edges: u at every block's boundary never picks a zero leaf
    assert (leaves[t.draw(np.minimum(cum, np.nextafter(cum[-1], 0)))] > 0).all()
    slots = rng.integers(0, 1000, 300)
    vals = rng.random(300).astype(np.float32)
    t.update(slots, vals)
    leaves[slots] = vals
    np.testing.assert_allclose(t.total, leaves.astype(np.float64).sum(), rtol=1e-12)
    assert t.max_leaf == leaves.max()
    top = int(np.argmax(leaves))  # lowering the largest leaf lowers the maximum
    t.update(np.array([top]), np.array([0.0], np.float32))
    leaves[top] = 0
    assert t.max_leaf == leaves.max()
    t.update(np.array([7]), np.array([50.0], np.float32))  # ... raising one raises it
    assert t.max_leaf == 50.0
    leaves[7] = 50.0  # every sum is recomputed from below: the same tree as one built afresh
    np.testing.assert_array_equal(t._bt.tree, SumTree(leaves.copy())._bt.tree)
    np.testing.assert_array_equal(t.draw(u), SumTree(leaves.copy()).draw(u))


def test_same_seed_same_batches_and_state_dict_resumes(tmp_path):
    store = make(tmp_path / "s", 100)
    a = rs.PrioritizedSampler(store, batch_size=16, seed=5)
    a.update_priorities(np.arange(100), np.arange(100) + 1.0)
    a.sample()
    state = json.loads(json.dumps(a.state_dict()))
    want = [a.sample()["index"] for _ in range(3)]
    b = rs.PrioritizedSampler(store, batch_size=16, seed=99)
    b.load_state_dict(state)
    for w in want:
        np.testing.assert_array_equal(b.sample()["index"], w)


def test_n_step_works_with_priorities(tmp_path):
    store = make(tmp_path / "s", 50)
    s = rs.PrioritizedSampler(store, batch_size=32, seed=6, n_step=3, gamma=0.5)
    b = s.sample()
    assert {"index", "weight", "discount", "n_steps"} <= set(b)
    np.testing.assert_array_equal(b["obs"], b["index"])


# -- kept with the store --------------------------------------------------------------------
def test_priorities_persist_and_plain_zarr_reads_them(tmp_path):
    path = tmp_path / "s"
    store = make(path, 80, capacity=64)  # ids 16..79 held
    s = rs.PrioritizedSampler(store, batch_size=8, alpha=0.5, seed=0)
    p = np.arange(16, 80) * 0.25
    s.update_priorities(np.arange(16, 80), p)
    store.close()
    arr = zarr.open_array(str(path / "_priority"), mode="r")
    np.testing.assert_allclose(arr[:][np.arange(16, 80) % 64], p ** 0.5, rtol=1e-6)
    assert arr.attrs["replaystore"]["priorities"]["rows"] == 80
    store = rs.open(path, "a")
    s = rs.PrioritizedSampler(store, batch_size=8, alpha=0.5, seed=0)
    np.testing.assert_allclose(s.priority(np.arange(16, 80)), p, rtol=1e-5)
    store.close()
    # another alpha converts them
    store = rs.open(path, "a")
    s = rs.PrioritizedSampler(store, batch_size=8, alpha=1.0, seed=0)
    np.testing.assert_allclose(s.priority(np.arange(16, 80)), p, rtol=1e-5)
    store.close()
    assert rs.verify(path).ok
    from replaystore.inspect import summary

    with rs.open(path) as st:
        line = next(x for x in summary(st).lines() if x.startswith("priorities:"))
    assert "priority**1 of rows with ids below 80" in line and "saved cleanly" in line


def test_rows_appended_after_the_last_save_start_at_the_max(tmp_path):
    path = tmp_path / "s"
    store = make(path, 10)
    s = rs.PrioritizedSampler(store, batch_size=8, seed=0)
    s.update_priorities(np.arange(10), np.arange(10) + 1.0)
    s.flush()
    store.extend(rows(10, 5))
    store.flush()
    # the priorities' save does not cover rows 10..14: a new sampler gives them the max
    pr = store._priorities
    pr.leaves[10:15] = 0.5  # (what a crash could leave)
    pr.tree = None
    s = rs.PrioritizedSampler(store, batch_size=8, seed=0)
    np.testing.assert_allclose(s.priority(np.arange(15)), np.r_[np.arange(10) + 1.0, np.full(5, 10.0)], rtol=1e-5)
    store.close()


def test_sigkill_after_updates_keeps_them_and_the_store_opens(tmp_path):
    path = tmp_path / "s"
    make(path, 200, capacity=256).close()
    code = textwrap.dedent(f"""
        import os, signal, numpy as np, replaystore as rs
        store = rs.open({str(path)!r}, "a")
        s = rs.PrioritizedSampler(store, batch_size=8, alpha=1.0, seed=0)
        s.update_priorities(np.arange(200), np.arange(200) + 1.0)
        s.flush()
        s.update_priorities(np.arange(100), np.full(100, 7.0))   # after the save: not clean
        store.extend({{k: v for k, v in __import__("test_prioritized").rows(200, 20).items()}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    store = rs.open(path, "a")
    assert len(store) == 200  # the 20 buffered rows were never committed
    s = rs.PrioritizedSampler(store, batch_size=8, alpha=1.0, seed=0)
    np.testing.assert_allclose(s.priority(np.arange(200)), np.r_[np.full(100, 7.0), np.arange(100, 200) + 1.0])
    store.extend(rows(200, 3))
    np.testing.assert_allclose(s.priority(np.arange(200, 203)), 200.0)
    store.close()
    assert rs.verify(path).ok


@pytest.mark.damages_store
def test_damaged_priorities_are_found_by_their_checksums(tmp_path):
    path = tmp_path / "s"
    store = make(path, 100)
    rs.PrioritizedSampler(store, batch_size=8, seed=0).update_priorities(np.arange(100), 2.0)
    store.close()
    raw = bytearray((path / "_priority" / "c" / "0").read_bytes())
    raw[40:44] = np.float32(3.0).tobytes()  # a valid value, silently changed
    (path / "_priority" / "c" / "0").write_bytes(bytes(raw))
    store = rs.open(path, "a")
    with pytest.raises(CorruptStoreError, match=r"_priority: priorities of slots 0\.\.65535"):
        rs.PrioritizedSampler(store, batch_size=8, seed=0)
    store.close()


@pytest.mark.damages_store
def test_verify_finds_damaged_priorities_and_repair_keeps_every_row(tmp_path):
    path = tmp_path / "s"
    store = make(path, 100)
    rs.PrioritizedSampler(store, batch_size=8, seed=0).update_priorities(np.arange(100), 2.0)
    store.close()
    assert rs.verify(path).ok
    chunk = path / "_priority" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[8:12] = np.float32(5.0).tobytes()
    chunk.write_bytes(bytes(raw))
    report = rs.verify(path)
    assert not report.ok and "priorities" in str(report.side[0]) and "slots 0..65535" in str(report.side[0])
    report = rs.verify(path, repair=True)
    assert rs.verify(path).ok and len(rs.open(path)) == 100
    store = rs.open(path, "a")
    np.testing.assert_allclose(rs.PrioritizedSampler(store, batch_size=8).priority(np.arange(100)), 1.0)
    store.close()
    # a crash leaves them not clean: values are checked instead, and a NaN is damage
    store = rs.open(path, "a")
    s = rs.PrioritizedSampler(store, batch_size=8)
    s.update_priorities([3], [4.0])
    store._priorities.leaves[5] = np.nan  # (what a torn write could leave)
    store._priorities._map.flush()
    import shutil
    shutil.copytree(path, tmp_path / "crashed")  # (as a SIGKILL would leave it: not flushed)
    store.close()
    assert "not finite" in str(rs.verify(tmp_path / "crashed").side[0])


@pytest.mark.damages_store
def test_a_crafted_priority_array_is_refused_before_anything_is_allocated(tmp_path):
    path = tmp_path / "s"
    store = make(path, 100, capacity=128)
    rs.PrioritizedSampler(store, batch_size=8, seed=0)
    store.close()
    meta_path = path / "_priority" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = meta["chunk_grid"]["configuration"]["chunk_shape"] = [2 ** 40]
    meta_path.write_text(json.dumps(meta))
    store = rs.open(path, "a")
    with pytest.raises(CorruptStoreError, match="not a priority array of this store"):
        rs.PrioritizedSampler(store, batch_size=8, seed=0)
    store.close()


def test_a_zip_keeps_priorities_in_memory_and_says_so(tmp_path):
    path = tmp_path / "s"
    store = make(path, 100)
    rs.PrioritizedSampler(store, batch_size=8, alpha=1.0, seed=0).update_priorities(np.arange(100), np.arange(100) + 1.0)
    store.close()
    rs.pack(path, tmp_path / "s.zip")
    z = rs.open(tmp_path / "s.zip")
    with pytest.warns(RuntimeWarning, match="priorities live in memory"):
        s = rs.PrioritizedSampler(z, batch_size=8, alpha=1.0, seed=0)
    np.testing.assert_allclose(s.priority(np.arange(100)), np.arange(100) + 1.0)
    s.update_priorities(np.arange(10), 0.0)
    assert not np.isin(np.concatenate([s.sample()["index"] for _ in range(50)]), np.arange(10)).any()
    z.close()


def test_samplers_of_one_store_share_its_priorities(tmp_path):
    store = make(tmp_path / "s", 20)
    a = rs.PrioritizedSampler(store, batch_size=8, seed=0)
    b = rs.PrioritizedSampler(store, batch_size=8, seed=1)
    a.update_priorities(np.arange(20), np.r_[np.zeros(19), 1.0])
    assert (b.sample()["index"] == 19).all()
    with pytest.raises(StoreModeError, match="in use with alpha=0.6"):
        rs.PrioritizedSampler(store, batch_size=8, alpha=0.9)


# -- errors --------------------------------------------------------------------------------
def test_bad_priorities_name_the_offending_ids(tmp_path):
    store = make(tmp_path / "s", 20)
    s = rs.PrioritizedSampler(store, batch_size=8, seed=0)
    before = s.priority(np.arange(20))
    with pytest.raises(SamplerError, match=r"row ids 3: -1.0, 5: nan"):
        s.update_priorities(np.arange(8), [1, 1, 1, -1, 1, np.nan, 1, 1])
    with pytest.raises(SamplerError, match="7: inf"):
        s.update_priorities([7], [np.inf])
    with pytest.raises(SamplerError, match=r"row ids \[25\] were never stored"):
        s.update_priorities([1, 25], [1.0, 1.0])
    with pytest.raises(SamplerError, match="must be integers"):
        s.update_priorities([1.5], [1.0])
    with pytest.raises(SamplerError, match="one priority per id"):
        s.update_priorities([1, 2], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(s.priority(np.arange(20)), before)  # nothing was changed
    s.update_priorities(np.arange(20), 0.0)
    with pytest.raises(SamplerError, match="every stored row has priority 0"):
        s.sample()
    for kw, msg in (({"alpha": -1}, "alpha must be"), ({"beta": float("nan")}, "beta must be"),
                    ({"alpha": True}, "alpha must be")):
        with pytest.raises(SamplerError, match=msg):
            rs.PrioritizedSampler(rs.open(tmp_path / "s"), batch_size=8, **kw)
    with pytest.raises(SamplerError, match="cannot prefetch"):
        next(iter(s.iter(prefetch=2)))


def test_a_stored_field_named_weight_or_index_is_a_clear_error(tmp_path):
    store = rs.create(tmp_path / "s", OBS, ACT, extra_fields=[("weight", "float32")])
    store.extend({**rows(0, 5), "weight": np.ones(5, np.float32)})
    with pytest.raises(SamplerError, match="has a field 'weight'.*fields="):
        rs.PrioritizedSampler(store, batch_size=4)
    s = rs.PrioritizedSampler(store, batch_size=4, fields=["obs", "reward"], seed=0)
    assert set(s.sample()) == {"obs", "reward", "index", "weight"}
    store.close()


def test_empty_store_is_a_clear_error(tmp_path):
    store = rs.create(tmp_path / "s", OBS, ACT)
    s = rs.PrioritizedSampler(store, batch_size=4, seed=0)
    with pytest.raises(rs.EmptyStoreError if hasattr(rs, "EmptyStoreError") else Exception, match="empty"):
        s.sample()
    store.extend(rows(0, 3))
    assert set(s.sample()["index"].tolist()) <= {0, 1, 2}


# -- row ids -------------------------------------------------------------------------------
def test_read_ids_reads_rows_by_global_id(tmp_path):
    store = make(tmp_path / "s", 30, capacity=20)  # ids 10..29
    store.flush()
    store.extend(rows(30, 3))  # buffered: ids 13..32 held
    got = store.read_ids(np.array([32, 13, 20, 20]), fields=["obs"])
    np.testing.assert_array_equal(got["obs"], [32, 13, 20, 20])
    with pytest.raises(RowIndexError, match=r"rows with ids \[12\] are not held.*13\.\.32"):
        store.read_ids(np.array([12, 14]))
    with pytest.raises(RowIndexError, match=r"\[33\]"):
        store.read_ids([33])
    np.testing.assert_array_equal(store.read_ids(14, 17, fields=["obs"])["obs"], [14, 15, 16])
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rs.open(tmp_path / "s").read_ids([13])["obs"].tolist() == [13]
