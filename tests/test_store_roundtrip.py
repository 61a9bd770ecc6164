"""Round trips through a store: every space type and dtype, layouts, close + reopen, indexing."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from conftest import (
    SPACE_CASES,
    STD_ACT,
    STD_OBS,
    assert_batches_equal,
    expected_episodes,
    make_batch,
    read_all,
    rows_of,
    std_batch,
)
from gymnasium.spaces import Box, Dict, Discrete, MultiDiscrete, Tuple

import replaystore as rs
from replaystore.spaces import flatten_space, space_equal
from replaystore.storage.mapping import contiguous_supported

ACTION_CASES = {
    "discrete": Discrete(4),
    "box": Box(-1.0, 1.0, (2,), np.float32),
    "multidiscrete_start": MultiDiscrete([2, 3], start=[5, -1]),
    "tuple": Tuple([Discrete(3, start=1), Box(-2.0, 2.0, (1,), np.float64)]),
}


def _layout(name: str, obs_space) -> dict:
    """create() keyword arguments for a named storage layout."""
    if name == "default":
        return {}
    if name == "zstd":
        return {"codecs": "zstd:3"}
    if name == "per_field":
        first_obs = flatten_space("obs", obs_space)[0][0]
        return {"codecs": {first_obs: "zstd:3", "reward": "gzip:1", "next_" + first_obs: "lz4"}}
    if name == "chunk4096":
        return {"chunk_rows": 4096}
    if name == "chunk100":
        return {"chunk_rows": 100}
    if name == "chunk100_zstd":
        return {"chunk_rows": 100, "codecs": "zstd:3"}
    raise AssertionError(name)


def _expected(obs_space, act_space, n, capacity, term_every=7, trunc_every=11):
    want = make_batch(obs_space, act_space, 0, n, term_every=term_every, trunc_every=trunc_every)
    ep, step, _ = expected_episodes(want["terminated"], want["truncated"])
    want["episode"], want["step"] = ep, step
    if capacity is not None:
        want = {k: v[max(0, n - capacity) :] for k, v in want.items()}
    return want


def _write(store, obs_space, act_space, start, stop, term_every=7, trunc_every=11):
    """Write rows [start, stop) as a mix of extend batches of odd sizes and single appends."""
    batch = make_batch(
        obs_space, act_space, start, stop - start, term_every=term_every, trunc_every=trunc_every
    )
    n = stop - start
    # extend 3 rows, append 7, extend about half of the rest, append 5, extend the rest
    cuts = sorted({0, n, *(min(n, c) for c in (3, 10, 10 + (n - 10) // 2, 15 + (n - 10) // 2))})
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        part = {k: v[a:b] for k, v in batch.items()}
        if i % 2 == 1:
            for row in rows_of(part):
                store.append(**row)
        else:
            store.extend(part)


def _check_store(store, obs_space, act_space, want, capacity, layout_kw):
    assert len(store) == len(want["reward"])
    assert store.capacity == capacity
    assert space_equal(store.observation_space, obs_space)
    assert space_equal(store.action_space, act_space)
    leaves = dict(flatten_space("obs", obs_space))
    expected_names = [
        *leaves,
        *dict(flatten_space("action", act_space)),
        "reward",
        *("next_" + n for n in leaves),
        "terminated",
        "truncated",
        "episode",
        "step",
    ]
    assert list(store.schema.names) == expected_names
    codecs = layout_kw.get("codecs")
    for f in store.schema:
        assert f.dtype == want[f.name].dtype
        assert f.shape == want[f.name].shape[1:]
        want_codec = codecs.get(f.name) if isinstance(codecs, dict) else codecs
        assert f.codec == want_codec, f.name
        if "chunk_rows" in layout_kw:
            cr = layout_kw["chunk_rows"]
            if capacity is not None and cr > capacity:
                assert f.chunk_rows >= capacity
            else:
                assert f.chunk_rows == cr
    assert_batches_equal(read_all(store), want)


SPACE_IDS = list(SPACE_CASES)


# compressed unbounded stores are covered by test_roundtrip_layouts and the plain-zarr test
@pytest.mark.parametrize(
    ("layout", "capacity"),
    [("default", None), ("default", 200), ("zstd", 200)],
    ids=["unbounded", "ring", "zstd-ring"],
)
@pytest.mark.parametrize("case", SPACE_IDS)
def test_roundtrip_every_space(tmp_store_path, case, layout, capacity):
    obs_space = SPACE_CASES[case]
    act_space = ACTION_CASES[["discrete", "box", "multidiscrete_start", "tuple"][SPACE_IDS.index(case) % 4]]
    kw = _layout(layout, obs_space)
    n = 300
    store = rs.create(tmp_store_path, obs_space, act_space, capacity=capacity, **kw)
    _write(store, obs_space, act_space, 0, n)
    want = _expected(obs_space, act_space, n, capacity)
    _check_store(store, obs_space, act_space, want, capacity, kw)  # reads buffered rows too
    store.close()

    with rs.open(tmp_store_path) as store:
        assert store.mode == "r"
        _check_store(store, obs_space, act_space, want, capacity, kw)

    # continue writing after a reopen, then read everything back once more
    with rs.open(tmp_store_path, "a") as store:
        _write(store, obs_space, act_space, n, n + 123)
    want = _expected(obs_space, act_space, n + 123, capacity)
    with rs.open(tmp_store_path) as store:
        _check_store(store, obs_space, act_space, want, capacity, kw)


@pytest.mark.parametrize("capacity", [None, 3000], ids=["unbounded", "ring"])
@pytest.mark.parametrize(
    "layout", ["per_field", "chunk4096", "chunk100", "chunk100_zstd"]
)
@pytest.mark.parametrize("case", ["box_f32", "box_u8_image", "dict"])
def test_roundtrip_layouts(tmp_store_path, case, layout, capacity):
    obs_space = SPACE_CASES[case]
    act_space = ACTION_CASES["box"]
    kw = _layout(layout, obs_space)
    n = 4096 + 700 if layout == "chunk4096" else 350
    cap = None if capacity is None else (capacity if n > capacity else 245)
    store = rs.create(tmp_store_path, obs_space, act_space, capacity=cap, **kw)
    _write(store, obs_space, act_space, 0, n)
    want = _expected(obs_space, act_space, n, cap)
    _check_store(store, obs_space, act_space, want, cap, kw)
    store.close()
    with rs.open(tmp_store_path) as store:
        _check_store(store, obs_space, act_space, want, cap, kw)
    with rs.open(tmp_store_path, "a") as store:
        _write(store, obs_space, act_space, n, n + 157)
    want = _expected(obs_space, act_space, n + 157, cap)
    with rs.open(tmp_store_path) as store:
        _check_store(store, obs_space, act_space, want, cap, kw)


def test_chunk100_float32x3_uses_fallback_path(tmp_store_path):
    """chunk_rows=100 of float32[3] is 1200 bytes: not page-aligned, the per-chunk path."""
    assert not contiguous_supported(100 * 12)
    obs = Box(-1e6, 1e6, (3,), np.float32)
    with rs.create(tmp_store_path, obs, STD_ACT, chunk_rows=100) as store:
        store.extend(make_batch(obs, STD_ACT, 0, 1000))
    with rs.open(tmp_store_path) as store:
        assert store.schema["obs"].chunk_rows == 100
        got = store.read(np.array([999, 0, 100, 99, 100, 555]), fields=["obs", "reward"])
        want = make_batch(obs, STD_ACT, 0, 1000)
        np.testing.assert_array_equal(got["reward"], [999, 0, 100, 99, 100, 555])
        np.testing.assert_array_equal(got["obs"], want["obs"][[999, 0, 100, 99, 100, 555]])
        assert store._view(store.schema["obs"]).contiguous is False
        np.testing.assert_array_equal(store[150:450]["obs"], want["obs"][150:450])


# --------------------------------------------------------------------------------------
# compressed rings: rows must survive writes to other rows of the same chunk
# --------------------------------------------------------------------------------------


def test_compressed_ring_wrap_across_chunks_keeps_rows(tmp_store_path):
    """Wrapping onto chunk 0 of a compressed multi-chunk ring must not zero its other rows."""
    with rs.create(
        tmp_store_path, STD_OBS, STD_ACT, capacity=10000, chunk_rows=4096, codecs="zstd:3"
    ) as store:
        store.extend(std_batch(0, 10000))
        store.flush()
        store.append(**rows_of(std_batch(10000, 1))[0])
        store.flush()
        rewards = read_all(store, ["reward"])["reward"]
        np.testing.assert_array_equal(rewards, np.arange(1, 10001, dtype=np.float32))


def test_compressed_ring_reopen_then_wrap_keeps_rows(tmp_store_path):
    """After a reopen, writing row 0 of a compressed ring chunk must keep the chunk's other rows."""
    with rs.create(tmp_store_path, STD_OBS, STD_ACT, capacity=10, codecs="zstd:3") as store:
        store.extend(std_batch(0, 10))
    with rs.open(tmp_store_path, "a") as store:
        store.append(**rows_of(std_batch(10, 1))[0])
    with rs.open(tmp_store_path) as store:
        np.testing.assert_array_equal(
            read_all(store, ["reward"])["reward"], np.arange(1, 11, dtype=np.float32)
        )


# --------------------------------------------------------------------------------------
# spaces and metadata come back identical
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SPACE_IDS)
def test_spaces_restored_identical(tmp_store_path, case):
    obs_space = SPACE_CASES[case]
    act_space = MultiDiscrete(np.array([3, 4]), start=np.array([1, -2]), dtype=np.int32)
    rs.create(tmp_store_path, obs_space, act_space, env_id="Env-v1", info={"k": [1, 2]}).close()
    with rs.open(tmp_store_path) as store:
        back_obs, back_act = store.observation_space, store.action_space
        assert space_equal(back_obs, obs_space)
        assert space_equal(back_act, act_space)
        assert back_act.dtype == np.int32
        assert store.env_info == {"id": "Env-v1"}
        assert store.info == {"k": [1, 2]}
        assert store.format_version == rs.FORMAT_VERSION
        for name, leaf in flatten_space("obs", obs_space):
            f = store.schema[name]
            if isinstance(leaf, Box):
                assert f.dtype == leaf.dtype
                assert f.shape == leaf.shape


def test_discrete_start_and_bounds_exact(tmp_store_path):
    obs = Dict({"a": Discrete(3, start=-2), "b": Box(np.array([0.1, -np.inf], np.float32), np.array([0.3, 1e-9], np.float32))})
    rs.create(tmp_store_path, obs, Discrete(2, start=7)).close()
    with rs.open(tmp_store_path) as store:
        o = store.observation_space
        assert int(o["a"].start) == -2 and int(o["a"].n) == 3
        assert o["b"].dtype == np.float32
        np.testing.assert_array_equal(o["b"].low, np.array([0.1, -np.inf], np.float32))
        np.testing.assert_array_equal(o["b"].high, np.array([0.3, 1e-9], np.float32))
        assert int(store.action_space.start) == 7
        assert list(o.spaces) == ["a", "b"]


def test_update_info_persists(tmp_store_path):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT, info={"a": 1}) as store:
        store.extend(std_batch(0, 5))
        store.update_info({"b": 2}, env={"id": "X-v0"})
    with rs.open(tmp_store_path) as store:
        assert store.info == {"a": 1, "b": 2}
        assert store.env_info == {"id": "X-v0"}
        assert len(store) == 5


# --------------------------------------------------------------------------------------
# indexing
# --------------------------------------------------------------------------------------


@pytest.fixture(params=[None, 17], ids=["unbounded", "ring"])
def indexed_store(request, tmp_store_path):
    """A closed store of rows 0..39 (ring: the last 17) and the expected data."""
    cap = request.param
    with rs.create(tmp_store_path, STD_OBS, STD_ACT, capacity=cap) as store:
        store.extend(std_batch(0, 25, term_every=5))
        for row in rows_of(std_batch(25, 15, term_every=5)):
            store.append(**row)
    want = std_batch(0, 40, term_every=5)
    ep, step, _ = expected_episodes(want["terminated"], want["truncated"])
    want["episode"], want["step"] = ep, step
    if cap is not None:
        want = {k: v[-cap:] for k, v in want.items()}
    store = rs.open(tmp_store_path)
    yield store, want
    store.close()


def test_getitem_int_and_negative(indexed_store):
    store, want = indexed_store
    n = len(store)
    for i in [0, 1, n - 1, -1, -n, n // 2, -(n // 3)]:
        row = store[i]
        assert set(row) == set(store.schema.names)
        for k in want:
            np.testing.assert_array_equal(row[k], want[k][i], err_msg=f"{k}[{i}]")
    row = store[np.int64(3)]
    assert float(row["reward"]) == float(want["reward"][3])


@pytest.mark.parametrize(
    "key",
    [
        slice(None),
        slice(2, 9),
        slice(-5, None),
        slice(None, -3),
        slice(3, 3),
        slice(9, 2),
        slice(0, 1000),
        slice(None, None, 3),
        slice(1, 15, 4),
        slice(None, None, -1),
        slice(-2, 3, -2),
    ],
    ids=str,
)
def test_getitem_slices(indexed_store, key):
    store, want = indexed_store
    got = store[key]
    assert set(got) == set(store.schema.names)
    assert_batches_equal(got, {k: v[key] for k, v in want.items()})


def test_read_indices_duplicates_any_order_and_fields(indexed_store):
    store, want = indexed_store
    n = len(store)
    idx = np.array([5, 0, 5, n - 1, -1, 3, 3, -n, 2])
    got = store.read(idx)
    assert_batches_equal(got, {k: v[idx] for k, v in want.items()})
    sub = store.read(list(idx), fields=["reward", "obs"])
    assert set(sub) == {"reward", "obs"}
    np.testing.assert_array_equal(sub["reward"], want["reward"][idx])
    one = store.read(idx, fields="episode")
    assert set(one) == {"episode"}
    np.testing.assert_array_equal(one["episode"], want["episode"][idx])
    assert_batches_equal(store[[4, 1]], {k: v[[4, 1]] for k, v in want.items()})


def test_read_no_indices(indexed_store):
    """An empty index list gives empty arrays (also on the per-chunk, non-page-aligned path)."""
    store, _ = indexed_store
    empty = store.read([], fields=["obs", "reward"])
    assert empty["obs"].shape == (0, 3) and empty["obs"].dtype == np.float32
    assert empty["reward"].shape == (0,)
    assert store.read(np.array([], dtype=np.int64))["action"].shape == (0,)


def test_read_range(indexed_store):
    store, want = indexed_store
    n = len(store)
    for a, b in [(0, n), (3, 8), (n - 2, n + 10), (5, 5), (-4, n)]:
        got = store.read_range(a, b, fields=["reward", "obs"])
        sl = slice(a, b)
        np.testing.assert_array_equal(got["reward"], want["reward"][sl])
        np.testing.assert_array_equal(got["obs"], want["obs"][sl])


def test_read_in_append_mode_sees_buffered_rows(tmp_store_path):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        store.extend(std_batch(0, 4))
        assert len(store) == 4
        np.testing.assert_array_equal(store[-1]["reward"], 3.0)
        store.append(**rows_of(std_batch(4, 1))[0])
        assert len(store) == 5
        np.testing.assert_array_equal(store[:]["reward"], np.arange(5, dtype=np.float32))


@pytest.mark.parametrize("layout", ["default", "chunk100", "zstd", "chunk100_zstd"])
def test_plain_zarr_reads_unbounded_store(tmp_store_path, layout):
    obs = SPACE_CASES["dict"]
    kw = _layout(layout, obs)
    with rs.create(tmp_store_path, obs, STD_ACT, **kw) as store:
        _write(store, obs, STD_ACT, 0, 333)
    want = _expected(obs, STD_ACT, 333, None)
    group = zarr.open_group(str(tmp_store_path), mode="r")
    for name, values in want.items():
        got = group[name][:]
        assert got.dtype == values.dtype, name
        np.testing.assert_array_equal(got, values, err_msg=name)


def test_reader_refresh_sees_new_rows(tmp_store_path):
    writer = rs.create(tmp_store_path, STD_OBS, STD_ACT, chunk_rows=4096)
    writer.extend(std_batch(0, 10))
    writer.flush()
    reader = rs.open(tmp_store_path)
    assert len(reader) == 10
    writer.extend(std_batch(10, 5000))
    writer.flush()
    assert len(reader) == 10  # committed state is read on refresh only
    reader.refresh()
    assert len(reader) == 5010
    np.testing.assert_array_equal(
        read_all(reader, ["reward"])["reward"], np.arange(5010, dtype=np.float32)
    )
    writer.close()
    reader.close()
