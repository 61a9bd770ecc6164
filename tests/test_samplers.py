"""Samplers: statistics (chi-squared), epochs, determinism, resume, rings and errors."""

from __future__ import annotations

import json
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

import replaystore as rs
from replaystore.sampling.permutation import FeistelPermutation

P_MIN = 1e-4  # a correct sampler fails a test at this level 1 time in 10,000


def make_store(path, n, *, capacity=None, actions=None, label=None, chunk_rows=None, start=0):
    extra = [("label", "int64"), ("weight", "float32")]
    store = rs.create(path, gym.spaces.Discrete(10**9), gym.spaces.Discrete(4), capacity=capacity,
                      extra_fields=extra, chunk_rows=chunk_rows)
    append(store, n, actions=actions, label=label, start=start)
    return store


def append(store, n, *, actions=None, label=None, start=None):
    start = store.total + store.buffered if start is None else start
    ids = np.arange(start, start + n)
    store.extend({
        "obs": ids, "next_obs": ids + 1,
        "action": ids % 4 if actions is None else actions,
        "reward": np.where(ids % 3 == 0, -1.0, np.where(ids % 3 == 1, 0.0, 1.0)),
        "terminated": ids % 50 == 49, "truncated": np.zeros(n, bool),
        "label": np.zeros(n, int) if label is None else label,
        "weight": np.ones(n, np.float32),
    })


def chi2_p(counts, expected):
    counts = np.asarray(counts, float)
    expected = np.asarray(expected, float)
    expected = expected / expected.sum() * counts.sum()
    return stats.chisquare(counts, expected).pvalue


# -- statistics ----------------------------------------------------------------------------
def test_uniform_chi_squared_over_rows(tmp_path):
    store = make_store(tmp_path / "s", 200)
    s = rs.UniformSampler(store, batch_size=500, seed=1)
    obs = np.concatenate([s.sample()["obs"] for _ in range(200)])
    counts = np.bincount(obs, minlength=200)
    assert chi2_p(counts, np.ones(200)) > P_MIN
    # and it is not trivially passing: a biased draw is rejected
    biased = counts.copy()
    biased[:20] += 200
    assert chi2_p(biased, np.ones(200)) < P_MIN


def test_uniform_rows_belong_together(tmp_path):
    store = make_store(tmp_path / "s", 1000)
    b = rs.UniformSampler(store, batch_size=256, seed=3).sample()
    assert np.array_equal(b["next_obs"], b["obs"] + 1)
    assert np.array_equal(b["action"], b["obs"] % 4)
    assert list(b) == list(store.schema.names)


def test_balanced_1000_10_1_imbalance(tmp_path):
    label = np.repeat([0, 1, 2], [10000, 100, 10])
    rng = np.random.default_rng(0)
    label = rng.permutation(label)
    store = make_store(tmp_path / "s", len(label), label=label)
    s = rs.BalancedSampler(store, by="label", batch_size=999, seed=2)
    got = np.concatenate([s.sample()["label"] for _ in range(30)])
    counts = np.bincount(got, minlength=3)
    assert chi2_p(counts, [1, 1, 1]) > P_MIN
    # within the rarest class, rows are uniform
    b = np.concatenate([s.sample()["obs"] for _ in range(30)])
    rare = np.sort(np.flatnonzero(label == 2))
    within = b[np.isin(b, rare)]
    assert chi2_p([np.sum(within == r) for r in rare], np.ones(len(rare))) > P_MIN


def test_balanced_class_weights(tmp_path):
    store = make_store(tmp_path / "s", 4000)
    s = rs.BalancedSampler(store, by="action", batch_size=1000, seed=0,
                           class_weights={0: 1, 1: 2, 2: 3, 3: 4})
    counts = np.bincount(np.concatenate([s.sample()["action"] for _ in range(20)]), minlength=4)
    assert chi2_p(counts, [1, 2, 3, 4]) > P_MIN
    assert chi2_p(counts, [1, 1, 1, 1]) < P_MIN


def test_balanced_by_reward_sign_and_function(tmp_path):
    store = make_store(tmp_path / "s", 3000)
    s = rs.BalancedSampler(store, by="reward_sign", batch_size=900, seed=0)
    r = np.concatenate([s.sample()["reward"] for _ in range(10)])
    assert chi2_p([np.sum(r < 0), np.sum(r == 0), np.sum(r > 0)], [1, 1, 1]) > P_MIN

    def parity(rows):
        return rows["obs"] % 2

    s = rs.BalancedSampler(store, by=parity, batch_size=1000, seed=0, key_fields=["obs"])
    o = np.concatenate([s.sample()["obs"] for _ in range(10)])
    assert chi2_p(np.bincount(o % 2), [1, 1]) > P_MIN


def test_weighted_chi_squared(tmp_path):
    store = make_store(tmp_path / "s", 50)
    w = np.arange(50, dtype=float) % 7  # includes zeros
    s = rs.WeightedSampler(store, weights=w, batch_size=1000, seed=5)
    obs = np.concatenate([s.sample()["obs"] for _ in range(50)])
    counts = np.bincount(obs, minlength=50)
    assert counts[w == 0].sum() == 0
    assert chi2_p(counts[w > 0], w[w > 0]) > P_MIN


def test_weighted_by_stored_field(tmp_path):
    store = rs.create(tmp_path / "s", gym.spaces.Discrete(100), gym.spaces.Discrete(2),
                      extra_fields=[("p", "float32")])
    store.extend({"obs": np.arange(4), "next_obs": np.arange(4), "action": np.zeros(4, int),
                  "reward": np.zeros(4), "terminated": np.zeros(4, bool),
                  "truncated": np.zeros(4, bool), "p": [0.0, 1.0, 3.0, 0.0]})
    s = rs.WeightedSampler(store, weights="p", batch_size=4000, seed=0)
    obs = s.sample()["obs"]
    assert set(obs.tolist()) == {1, 2}
    assert chi2_p(np.bincount(obs, minlength=3)[1:], [1, 3]) > P_MIN


# -- epochs --------------------------------------------------------------------------------
@pytest.mark.parametrize("exact_max", [10**9, 0])  # exact shuffle, and the Feistel permutation
def test_without_replacement_each_row_once_per_epoch(tmp_path, exact_max):
    store = make_store(tmp_path / "s", 1000)
    s = rs.UniformSampler(store, batch_size=100, seed=0, replacement=False,
                          exact_shuffle_max_rows=exact_max)
    for epoch in range(3):
        obs = np.concatenate([s.sample()["obs"] for _ in range(10)])
        assert np.array_equal(np.sort(obs), np.arange(1000)), epoch
        assert not np.array_equal(obs, np.arange(1000))
    assert s.epoch == 2


def test_epoch_batches_span_epoch_boundary(tmp_path):
    store = make_store(tmp_path / "s", 10)
    s = rs.UniformSampler(store, batch_size=4, seed=0, replacement=False)
    obs = np.concatenate([s.sample()["obs"] for _ in range(5)])  # 20 rows = 2 epochs
    assert np.array_equal(np.sort(obs[:10]), np.arange(10))
    assert np.array_equal(np.sort(obs[10:]), np.arange(10))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 1000, 4097])
def test_feistel_is_a_permutation(n):
    p = FeistelPermutation(n, np.random.default_rng(n))
    assert np.array_equal(np.sort(p(np.arange(n))), np.arange(n))


def test_feistel_positions_are_uniform():
    # over many keys, where position 0 lands is uniform over [0, n)
    n = 37
    first = [FeistelPermutation(n, np.random.default_rng(k))(np.array([0]))[0] for k in range(3700)]
    assert chi2_p(np.bincount(first, minlength=n), np.ones(n)) > P_MIN


# -- determinism and state -----------------------------------------------------------------
def _samplers(store, seed):
    return [
        rs.UniformSampler(store, batch_size=32, seed=seed),
        rs.UniformSampler(store, batch_size=32, seed=seed, replacement=False),
        rs.UniformSampler(store, batch_size=32, seed=seed, replacement=False, exact_shuffle_max_rows=0),
        rs.BalancedSampler(store, by="action", batch_size=32, seed=seed),
        rs.WeightedSampler(store, weights="weight", batch_size=32, seed=seed),
    ]


def test_same_seed_same_batches_across_reopen(tmp_path):
    store = make_store(tmp_path / "s", 500)
    first = [[s.sample()["obs"] for _ in range(5)] for s in _samplers(store, 7)]
    store.close()
    store = rs.open(tmp_path / "s")
    again = [[s.sample()["obs"] for _ in range(5)] for s in _samplers(store, 7)]
    other = [[s.sample()["obs"] for _ in range(5)] for s in _samplers(store, 8)]
    for a, b, c in zip(first, again, other, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("which", range(5))
def test_state_dict_resumes_exactly(tmp_path, which):
    store = make_store(tmp_path / "s", 100)
    s = _samplers(store, 3)[which]
    for _ in range(7):  # into the third epoch for the epoch samplers
        s.sample()
    state = s.state_dict()
    expected = [s.sample()["obs"] for _ in range(6)]
    fresh = _samplers(store, 999)[which]
    fresh.load_state_dict(state)
    assert all(np.array_equal(a, fresh.sample()["obs"]) for a in expected)


def _independent(store, seed, batch_size=32):
    """The samplers whose batches are independent draws (drawn several batches ahead)."""
    return [_one_independent(store, seed, which, batch_size) for which in range(3)]


def _one_independent(store, seed, which, batch_size=32):
    kw = dict(batch_size=batch_size, seed=seed)
    if which == 0:
        return rs.UniformSampler(store, **kw)
    if which == 1:
        return rs.BalancedSampler(store, by="action", **kw)
    return rs.WeightedSampler(store, weights="weight", **kw)


@pytest.mark.parametrize("which", range(3))
def test_state_dict_resumes_at_every_position_of_a_draw_ahead_block(tmp_path, which):
    store = make_store(tmp_path / "s", 300)
    s = _independent(store, 5)[which]
    states, batches = [], []
    for _ in range(70):  # blocks of 1, 2, 4, ..., 32 batches and into the next one
        states.append(json.loads(json.dumps(s.state_dict())))  # and it survives JSON
        batches.append(s.sample()["obs"])
    store.close()
    store = rs.open(tmp_path / "s")  # resume after reopening the store
    for k in range(0, 70, 3):
        fresh = _independent(store, 999)[which]
        fresh.load_state_dict(states[k])
        for j in range(k, min(k + 5, 70)):
            assert np.array_equal(fresh.sample()["obs"], batches[j]), (k, j)


@pytest.mark.parametrize("which", range(3))
def test_resume_mid_block_across_closing_and_reopening_a_writer(tmp_path, which):
    make_store(tmp_path / "s", 300).close()
    store = rs.open(tmp_path / "s", mode="a")
    s = _one_independent(store, 6, which)  # (a balanced sampler commits its new class index)
    generation = store.generation
    for _ in range(5):
        s.sample()
    state = s.state_dict()
    expected = [s.sample()["obs"] for _ in range(8)]
    store.close()  # changed nothing since: commits nothing
    store = rs.open(tmp_path / "s", mode="a")
    assert store.generation == generation
    fresh = _one_independent(store, 0, which)
    fresh.load_state_dict(state)
    assert all(np.array_equal(e, fresh.sample()["obs"]) for e in expected)


@pytest.mark.parametrize("which", range(3))
def test_resume_with_a_generator_shared_with_other_code(tmp_path, which):
    store = make_store(tmp_path / "s", 300)

    def run(stop_at=None):
        rng = np.random.default_rng(9)
        s = _independent(store, rng)[which]
        out, state = [], None
        for i in range(12):
            if i == stop_at:
                state = s.state_dict()
                s = _independent(store, np.random.default_rng(0))[which]
                s.load_state_dict(state)
                rng = s.rng
            out.append(s.sample()["obs"])
            rng.random(3)  # other code draws from the same generator between batches
        return out

    expected = run()
    got = run(stop_at=6)
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


@pytest.mark.parametrize("which", range(3))
def test_changing_batch_size_mid_block(tmp_path, which):
    store = make_store(tmp_path / "s", 300)
    s = _independent(store, 2, batch_size=16)[which]
    for _ in range(6):  # inside a block of 4 batches
        s.sample()
    s.batch_size = 40
    assert [len(s.sample()["obs"]) for _ in range(5)] == [40] * 5
    state = json.loads(json.dumps(s.state_dict()))
    expected = [s.sample()["obs"] for _ in range(4)]
    fresh = _independent(store, 0, batch_size=16)[which]
    fresh.load_state_dict(state)
    assert all(np.array_equal(e, fresh.sample()["obs"]) for e in expected)


@pytest.mark.parametrize("which", range(3))
def test_draw_ahead_never_serves_rows_of_an_older_store_state(tmp_path, which):
    store = make_store(tmp_path / "s", 100, capacity=100)
    s = _independent(store, 0, batch_size=64)[which]
    for _ in range(40):  # a block of many batches is now drawn ahead
        s.sample()
    assert s.state_dict()["ahead"]["batches"] > 1
    append(store, 100, actions=np.arange(100) % 4)  # evicts every row drawn ahead
    for _ in range(10):
        obs = s.sample()["obs"]
        assert obs.min() >= 100, type(s).__name__
    # appending between every batch (online use): balanced and weighted draw one batch at
    # a time; uniform draws u in [0, 1) ahead, which stay good (row floor(u * n) of now)
    for _ in range(5):
        append(store, 10)
        batch = s.sample()["obs"]
        assert batch.min() >= store.total - 100
        if which:
            assert s.state_dict()["ahead"]["batches"] == 1


def test_uniform_stays_exactly_uniform_over_the_rows_of_now_while_appending(tmp_path):
    """Online use: one row appended (and never flushed) before every batch, in a ring that
    evicts; each batch must be uniform over the rows held at that moment (chi-squared on
    the position of each drawn row among them), and the draw-ahead block is kept."""
    store = make_store(tmp_path / "s", 50, capacity=80)
    s = rs.UniformSampler(store, batch_size=16, seed=3)
    pos_counts = np.zeros(80)
    for _ in range(6000):
        append(store, 1)
        lo, hi = store.id_range
        ids = s.sample()["obs"].astype(np.int64)  # obs = the row's global id (make_store)
        assert ids.min() >= lo and ids.max() < hi
        if hi - lo == 80:
            np.add.at(pos_counts, ids - lo, 1)
    assert s.state_dict()["ahead"]["batches"] > 1
    assert chi2_p(pos_counts, np.full(80, pos_counts.sum() / 80)) > 1e-3


def test_draw_ahead_batches_are_independent(tmp_path):
    """Pairs (row in batch k, same slot in batch k+1) are uniform over all pairs."""
    store = make_store(tmp_path / "s", 6)
    s = rs.UniformSampler(store, batch_size=1, seed=4)
    obs = np.concatenate([s.sample()["obs"] for _ in range(20000)])
    pairs = obs[:-1] * 6 + obs[1:]
    assert chi2_p(np.bincount(pairs, minlength=36), np.ones(36)) > P_MIN


@pytest.mark.parametrize("which", range(5))
def test_prefetch_gives_the_same_batches_and_state(tmp_path, which):
    store = make_store(tmp_path / "s", 300)
    plain = _samplers(store, 11)[which]
    expected = [plain.sample()["obs"] for _ in range(8)]
    after = plain.state_dict()
    pre = _samplers(store, 11)[which]
    got = [b["obs"] for b in pre.iter(5, prefetch=3)]
    assert all(np.array_equal(a, b) for a, b in zip(expected[:5], got, strict=True))
    # stopping early rewinds the read-ahead: the next batches are the 6th, 7th, 8th
    assert all(np.array_equal(expected[5 + i], pre.sample()["obs"]) for i in range(3))
    assert pre.state_dict()["rng"] == after["rng"]


def test_prefetch_break_out_early(tmp_path):
    store = make_store(tmp_path / "s", 300)
    a = rs.UniformSampler(store, batch_size=8, seed=0)
    expected = [a.sample()["obs"] for _ in range(4)]
    b = rs.UniformSampler(store, batch_size=8, seed=0)
    for i, batch in enumerate(b.iter(None, prefetch=2)):
        assert np.array_equal(batch["obs"], expected[i])
        if i == 1:
            break
    assert np.array_equal(b.sample()["obs"], expected[2])


def test_fields_subset(tmp_path):
    store = make_store(tmp_path / "s", 100)
    b = rs.UniformSampler(store, batch_size=8, seed=0, fields=["reward", "obs"]).sample()
    assert list(b) == ["reward", "obs"]


# -- rings and growth ----------------------------------------------------------------------
def test_ring_samples_only_stored_rows(tmp_path):
    store = make_store(tmp_path / "s", 250, capacity=100)
    for s in _samplers(store, 0):
        obs = np.concatenate([s.sample()["obs"] for _ in range(20)])
        assert obs.min() >= 150 and obs.max() < 250, type(s).__name__


def test_balanced_index_follows_appends_and_eviction(tmp_path):
    store = make_store(tmp_path / "s", 100, capacity=100, actions=np.zeros(100, int))
    s = rs.BalancedSampler(store, by="action", batch_size=64, seed=0)
    assert set(s.sample()["action"].tolist()) == {0}
    append(store, 60, actions=np.ones(60, int))  # evicts 60 rows of action 0
    obs = np.concatenate([s.sample()["obs"] for _ in range(20)])
    assert obs.min() >= 60
    acts = np.concatenate([s.sample()["action"] for _ in range(20)])
    assert chi2_p(np.bincount(acts, minlength=2), [1, 1]) > P_MIN
    append(store, 100, actions=np.full(100, 2))  # all of 0 and 1 evicted
    with pytest.warns(UserWarning, match="no stored rows"):
        s = rs.BalancedSampler(store, by="action", batch_size=64, seed=0)
    assert set(s.sample()["action"].tolist()) == {2}


def test_balanced_index_is_stored_and_not_rebuilt(tmp_path):
    store = make_store(tmp_path / "s", 1000)
    rs.BalancedSampler(store, by="action", batch_size=8, seed=0).sample()
    append(store, 500)
    store.close()
    meta = tmp_path / "s" / "_index" / "action" / "zarr.json"
    assert meta.exists()
    mtime = os.stat(meta).st_mtime_ns
    store = rs.open(tmp_path / "s")
    s = rs.BalancedSampler(store, by="action", batch_size=4000, seed=0)
    assert os.stat(meta).st_mtime_ns == mtime  # the writer kept it current; nothing rebuilt
    obs = s.sample()["obs"]
    assert obs.max() >= 1000  # rows appended after the index was built are sampled


def test_sampler_sees_rows_appended_by_the_same_writer(tmp_path):
    store = make_store(tmp_path / "s", 10)
    s = rs.UniformSampler(store, batch_size=500, seed=0)
    append(store, 10)  # buffered, not flushed
    assert s.sample()["obs"].max() >= 10


def test_reader_refresh_sees_new_rows(tmp_path):
    writer = make_store(tmp_path / "s", 10)
    writer.flush()
    reader = rs.open(tmp_path / "s")
    s = rs.UniformSampler(reader, batch_size=200, seed=0)
    append(writer, 10)
    writer.flush()
    assert s.sample()["obs"].max() < 10
    reader.refresh()
    assert s.sample()["obs"].max() >= 10


# -- errors --------------------------------------------------------------------------------
def test_errors(tmp_path):
    empty = rs.create(tmp_path / "e", gym.spaces.Discrete(3), gym.spaces.Discrete(2))
    with pytest.raises(rs.EmptyStoreError, match="empty"):
        rs.UniformSampler(empty, batch_size=4, seed=0).sample()
    store = make_store(tmp_path / "s", 100)
    with pytest.raises(rs.SamplerError, match="continuous") as e:
        rs.BalancedSampler(store, by="reward", batch_size=4)
    assert isinstance(e.value, ValueError)
    with pytest.raises(rs.SchemaError, match="nope"):
        rs.BalancedSampler(store, by="nope", batch_size=4)
    with pytest.raises(rs.SamplerError, match="batch_size"):
        rs.UniformSampler(store, batch_size=0)
    with pytest.raises(rs.SamplerError, match="seed"):
        rs.UniformSampler(store, batch_size=4, seed="x")
    with pytest.raises(rs.SamplerError, match="all weights are zero"):
        rs.WeightedSampler(store, weights=np.zeros(100), batch_size=4)
    with pytest.raises(rs.SamplerError, match="row 3 has weight -1"):
        rs.WeightedSampler(store, weights=np.r_[np.ones(3), -1.0, np.ones(96)], batch_size=4)
    with pytest.raises(rs.SamplerError, match="nan"):
        rs.WeightedSampler(store, weights=np.r_[np.nan, np.ones(99)], batch_size=4)
    with pytest.raises(rs.SamplerError, match="100 rows"):
        rs.WeightedSampler(store, weights=np.ones(5), batch_size=4)
    with pytest.raises(rs.SamplerError, match="class_weights"):
        rs.BalancedSampler(store, by="action", batch_size=4, class_weights={0: -1})
    with pytest.raises(rs.SamplerError, match="key_name"):
        rs.BalancedSampler(store, by=lambda rows: rows["obs"] % 2, batch_size=4)
    s = rs.UniformSampler(store, batch_size=4, seed=0)
    with pytest.raises(rs.SamplerError, match="state_dict"):
        s.load_state_dict(rs.WeightedSampler(store, weights="weight", batch_size=4).state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rs.BalancedSampler(store, by="action", batch_size=4, seed=0).sample()


def test_state_dict_is_a_copy(tmp_path):
    store = make_store(tmp_path / "s", 300)
    s = rs.UniformSampler(store, batch_size=16, seed=1)
    for _ in range(4):
        s.sample()
    state = s.state_dict()
    before = json.loads(json.dumps(state))
    state["ahead"]["start"]["state"]["state"] = "edited by the caller"
    assert json.loads(json.dumps(s.state_dict()))["ahead"]["start"] == before["ahead"]["start"]
    expected = [s.sample()["obs"] for _ in range(6)]
    fresh = rs.UniformSampler(store, batch_size=16, seed=0)
    fresh.load_state_dict(before)
    before["ahead"]["start"]["state"]["state"] = "edited after loading"
    assert all(np.array_equal(e, fresh.sample()["obs"]) for e in expected)


def test_balanced_keeps_buffered_ids_per_class_incrementally(tmp_path):
    """The online loop appends one row before every batch: the per-class ids of buffered
    rows are extended, not recomputed; they must always equal a recomputation."""
    store = make_store(tmp_path / "s", 40, capacity=300)
    s = rs.BalancedSampler(store, by="reward_sign", batch_size=8, seed=0)
    rng = np.random.default_rng(5)
    for k in range(400):
        append(store, int(rng.integers(1, 4)))
        if k % 37 == 0:
            store.flush()
        s.sample()
        lo, _ = store.id_range
        classes, ids = list(s.index.classes), [s.index.ids_view(j) for j in range(len(s.index.classes))]
        got = s._tail_ids(lo, list(classes), list(ids))
        want = s._tail_ids_all(lo, list(classes), list(ids))
        assert [g.tolist() for g in got] == [w.tolist() for w in want]
        assert sum(len(g) for g in got) == store.buffered
