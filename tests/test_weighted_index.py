"""WeightedSampler's block tree: exact draws, incremental updates, every place a weight lives.

The tree is checked against the exact inverse of the cdf of the weights (the row whose
cumulative weight first exceeds ``u * total``); an index kept up to date as rows arrive
or are evicted against one built afresh on the same rows (same values, same batches);
and drawing from the write buffer, from a ring whose buffered rows hide its oldest rows
and from a compressed field (no memory map) against drawing from plain committed rows.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

import replaystore as rs
from replaystore.sampling.blocktree import BLOCK, NODE_SLOTS, BlockTree

P_MIN = 1e-4


def _store(path, n=0, *, capacity=None, codecs=None, weights=None, dtype="float32", mode_a=False):
    store = rs.create(path, gym.spaces.Discrete(10**9), gym.spaces.Discrete(2), capacity=capacity,
                      extra_fields=[("w", dtype)], codecs=codecs, chunk_rows=256)
    if n:
        _append(store, np.arange(n), weights)
    return store


def _append(store, ids, weights=None):
    ids = np.asarray(ids)
    w = _weight(ids) if weights is None else weights
    store.extend({"obs": ids, "next_obs": ids + 1, "action": ids % 2, "reward": np.zeros(len(ids)),
                  "terminated": np.zeros(len(ids), bool), "truncated": np.zeros(len(ids), bool),
                  "w": w})


def _weight(ids):
    """Zeros in every pattern: single rows, whole blocks (ids 64..95), a whole node."""
    w = (ids % 7).astype(np.float64)
    w[(ids >= 64) & (ids < 96)] = 0
    w[(ids >= 1024) & (ids < 1024 + NODE_SLOTS)] = 0
    return w


def _chi2(counts, w):
    expected = w / w.sum() * counts.sum()
    return stats.chisquare(counts, expected).pvalue


# -- the tree against the exact cdf --------------------------------------------------------
@pytest.mark.parametrize("n", [1, 31, 32, 33, NODE_SLOTS - 1, NODE_SLOTS + 1, 5000, 100_003])
def test_draws_are_the_exact_inverse_cdf(n):
    rng = np.random.default_rng(n)
    w = rng.random(n) * (rng.random(n) < 0.6)
    w[: min(n, 40)] = 0  # a leading run of zeros: the first block (and more) weightless
    w[-1] = 1.0
    tree = BlockTree.build(w)
    u = rng.random(50_000)
    got = tree.draw_array(w, u)
    cdf = np.cumsum(w)
    exact = np.searchsorted(cdf, u * cdf[-1], side="right")
    assert np.array_equal(got, exact)
    assert (w[got] > 0).all()
    assert tree.total == pytest.approx(w.sum(), rel=1e-12)


def test_zero_weights_never_drawn_at_the_edges():
    # u at 0 and just below 1 (rounding past the end of the top node, a block, a row)
    w = np.zeros(3 * NODE_SLOTS)
    w[[5, NODE_SLOTS + 7, 2 * NODE_SLOTS - 1]] = [1e-300, 1.0, 2.0]
    tree = BlockTree.build(w)
    u = np.array([0.0, np.nextafter(1.0, 0.0), 0.5, 1e-310])
    got = tree.draw_array(w, u)
    assert (w[got] > 0).all(), got


# -- a stored field ------------------------------------------------------------------------
def test_stored_field_chi_squared_with_zero_rows_blocks_and_nodes(tmp_path):
    n = 3000
    store = _store(tmp_path / "s", n)
    w = _weight(np.arange(n))
    s = rs.WeightedSampler(store, "w", batch_size=4096, seed=3)
    obs = np.concatenate([s.sample()["obs"] for _ in range(40)])
    counts = np.bincount(obs, minlength=n)
    assert counts[w == 0].sum() == 0
    assert _chi2(counts[w > 0], w[w > 0]) > P_MIN
    biased = counts[w > 0].copy()
    biased[:30] += 150
    assert _chi2(biased, w[w > 0]) < P_MIN  # (the test can fail)


def _same_index(a: rs.WeightedSampler, b: rs.WeightedSampler) -> None:
    """Two samplers on one store state: the same tree, bit for bit, and the same batches."""
    assert np.array_equal(a._tree.offs, b._tree.offs)
    assert np.array_equal(a._tree.tree, b._tree.tree)
    a.load_state_dict(b.state_dict())
    assert np.array_equal(a.sample_indices(), b.sample_indices())


def test_ring_updates_only_what_changed_and_matches_a_fresh_index(tmp_path):
    cap = 4 * NODE_SLOTS + 100  # (not a multiple of a block or a node)
    store = _store(tmp_path / "r", cap - 10, capacity=cap)
    store.flush()
    s = rs.WeightedSampler(store, "w", batch_size=64, seed=1)
    read_at_start = s.rows_read
    assert read_at_start == cap - 10
    rng = np.random.default_rng(0)
    nxt = cap - 10
    for step in range(40):  # wraps the ring several times
        k = int(rng.integers(1, 200))
        before = s.rows_read
        _append(store, np.arange(nxt, nxt + k))
        nxt += k
        if step % 3:
            store.flush()
        s.sample()
        assert s.rows_read - before <= 2 * NODE_SLOTS + 2 * k, "a few appended rows re-read the whole ring"
        _same_index(s, rs.WeightedSampler(store, "w", batch_size=64, seed=9))
    obs = np.concatenate([s.sample()["obs"] for _ in range(60)])
    held = np.arange(nxt - cap, nxt)
    w = _weight(held)
    assert set(obs.tolist()) <= set(held[w > 0].tolist())
    counts = np.array([np.sum(obs == i) for i in held[w > 0]])
    assert _chi2(counts, w[w > 0]) > P_MIN


def test_unbounded_growth_adds_blocks_at_the_end(tmp_path):
    store = _store(tmp_path / "u", 10)
    s = rs.WeightedSampler(store, "w", batch_size=32, seed=2)
    nxt = 10
    for k in (1, 30, 300, 2000, 7, 5000, 3):  # the tree reshapes several times
        before = s.rows_read
        _append(store, np.arange(nxt, nxt + k))
        small = 2 * k < nxt  # (more than half the rows new: built afresh)
        nxt += k
        s.sample()
        assert s.rows_read - before <= (NODE_SLOTS + k if small else nxt)
        _same_index(s, rs.WeightedSampler(store, "w", batch_size=32, seed=5))


def test_buffered_rows_are_drawn_from_the_write_buffer(tmp_path):
    _store(tmp_path / "b", 600).close()
    store = rs.open(tmp_path / "b", mode="a", buffer_rows=4096)
    _append(store, np.arange(600, 900))
    assert store.buffered == 300
    s = rs.WeightedSampler(store, "w", batch_size=8192, seed=4)
    obs = np.concatenate([s.sample()["obs"] for _ in range(6)])
    w = _weight(np.arange(900))
    counts = np.bincount(obs, minlength=900)
    assert counts[w == 0].sum() == 0 and counts[600:].sum() > 0
    assert _chi2(counts[w > 0], w[w > 0]) > P_MIN
    state = s.state_dict()
    expected = s.sample_indices()
    store.flush()  # the same rows, now committed: the same draws
    assert store.buffered == 0
    s.load_state_dict(state)
    assert np.array_equal(s.sample_indices(), expected)


def test_ring_whose_buffered_rows_hide_its_oldest_rows(tmp_path):
    cap = 1000
    _store(tmp_path / "rb", 1300, capacity=cap).close()  # wrapped
    store = rs.open(tmp_path / "rb", mode="a", buffer_rows=4096)
    s = rs.WeightedSampler(store, "w", batch_size=4096, seed=6)
    _append(store, np.arange(1300, 1450))  # buffered; they hide ids 300..449
    assert store.buffered == 150
    got = np.concatenate([s.sample()["obs"] for _ in range(20)])
    held = np.arange(450, 1450)
    w = _weight(held)
    assert got.min() >= 450 and got.max() < 1450
    counts = np.bincount(got - 450, minlength=cap)
    assert counts[w == 0].sum() == 0
    assert _chi2(counts[w > 0], w[w > 0]) > P_MIN
    state = s.state_dict()
    expected = s.sample()["obs"]
    store.flush()
    s.load_state_dict(state)
    assert np.array_equal(s.sample()["obs"], expected)
    _same_index(s, rs.WeightedSampler(store, "w", batch_size=4096, seed=0))


@pytest.mark.parametrize("capacity", [None, 700])
def test_compressed_field_draws_what_a_mapped_one_draws(tmp_path, capacity):
    plain = _store(tmp_path / "p", 1500, capacity=capacity)
    packed = _store(tmp_path / "z", 1500, capacity=capacity, codecs="zstd:3")
    plain.flush()
    packed.flush()
    assert plain.mapped_view("w") is not None and packed.mapped_view("w") is None
    a = rs.WeightedSampler(plain, "w", batch_size=512, seed=8)
    b = rs.WeightedSampler(packed, "w", batch_size=512, seed=8)
    for _ in range(5):
        assert np.array_equal(a.sample()["obs"], b.sample()["obs"])


def test_integer_and_bool_weight_fields(tmp_path):
    for dtype, w in (("int16", np.arange(64) % 3), ("bool", np.arange(64) % 5 == 0)):
        store = _store(tmp_path / dtype, 64, dtype=dtype, weights=w)
        obs = rs.WeightedSampler(store, "w", batch_size=2000, seed=0).sample()["obs"]
        assert set(obs.tolist()) == set(np.flatnonzero(w).tolist())


def test_a_bad_weight_appended_later_names_its_row_and_field(tmp_path):
    store = _store(tmp_path / "e", 100)
    s = rs.WeightedSampler(store, "w", batch_size=4, seed=0)
    w = np.ones(5)
    w[2] = -1.0
    _append(store, np.arange(100, 105), weights=w)
    with pytest.raises(rs.SamplerError, match=r"weights field 'w': row 102 has weight -1.0"):
        s.sample()
    with pytest.raises(rs.SamplerError, match="all weights are zero"):
        rs.WeightedSampler(_store(tmp_path / "z", 40, weights=np.zeros(40)), "w", batch_size=4)


def test_memory_is_a_few_bytes_per_block(tmp_path):
    tree = BlockTree(-(-10_000_000 // BLOCK))
    assert tree.tree.nbytes < 10_000_000 * 0.6  # (8 bytes per 32 rows, blocks rounded to 2**k)
