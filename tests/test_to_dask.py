"""Dask views of stores (``to_dask``, ``to_dask_dataframe``): the committed rows in logical
order, equal to what ``read_range`` / ``to_pandas`` give, and reading writes nothing."""

from __future__ import annotations

import os
import pickle
import sys
import uuid
import warnings

import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import STD_ACT, STD_OBS, read_all, std_batch
from gymnasium.spaces import Box

import replaystore as rs
from replaystore.storage import daskarrays

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")

CHUNK = 64
EXTRA = [("grid", "int16", (2, 3)), ("img", "uint8", (9, 9))]  # 6 columns; 81 (> 64) columns


def _batch(start: int, n: int) -> dict[str, np.ndarray]:
    b = std_batch(start, n, term_every=7, trunc_every=23)
    i = np.arange(start, start + n)
    b["grid"] = ((i[:, None, None] * 6 + np.arange(6).reshape(2, 3)) % 30000 - 15000).astype(np.int16)
    b["img"] = ((i[:, None, None] + np.arange(81).reshape(9, 9)) % 256).astype(np.uint8)
    return b


def _store(path, parts, *, capacity=None, codecs=None, first_episode=0, **kw):
    """A store (left open in mode 'a') with one commit per ``(start, n)`` of ``parts``."""
    s = rs.create(path, STD_OBS, STD_ACT, capacity=capacity, chunk_rows=CHUNK, codecs=codecs,
                  extra_fields=EXTRA, fsync=False, first_episode=first_episode, **kw)
    for a, n in parts:
        s.extend(_batch(a, n))
        s.flush()
    return s


def _files(root) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (or the one file ``root``) -> (size, mtime_ns)."""
    root = str(root)
    if os.path.isfile(root):
        st = os.stat(root)
        return {root: (st.st_size, st.st_mtime_ns)}
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def _assert_arrays_match(arrays: dict, want: dict) -> None:
    """Every dask array computes to ``want``'s rows; sums and means equal numpy's."""
    assert sorted(arrays) == sorted(want)
    for name, w in want.items():
        a = arrays[name]
        assert isinstance(a, da.Array)
        assert a.shape == w.shape and a.dtype == w.dtype, name
        np.testing.assert_array_equal(a.compute(), w, err_msg=name)
        if len(w):
            acc = np.float64 if w.dtype.kind == "f" else None
            assert a.sum(dtype=acc).compute() == w.sum(dtype=acc), name
            np.testing.assert_allclose(a.mean().compute(), w.mean(), rtol=1e-12, err_msg=name)


def _zarr_chunks(ranges, chunk=CHUNK) -> tuple[int, ...]:
    """Row chunks of physical ``ranges`` read in order, split at Zarr chunk boundaries."""
    out = []
    for a, b in ranges:
        p = a
        while p < b:
            q = min(b, (p // chunk + 1) * chunk)
            out.append(q - p)
            p = q
    return tuple(out)


def test_unbounded_store_equals_numpy_chunks_follow_zarr_and_nothing_is_written(tmp_path):
    path = tmp_path / "u.zarr"
    s = _store(path, [(0, 300), (300, 401)], codecs={"obs": "zstd:3", "grid": "zstd:3"})
    s.close()
    s = rs.open(path)
    before = _files(path)
    arrays = s.to_dask()
    _assert_arrays_match(arrays, read_all(s))
    for name, a in arrays.items():
        assert a.chunks[0] == _zarr_chunks([(0, 701)]), name
        assert a.chunks[1:] == tuple((d,) for d in s.schema[name].shape)
    assert arrays["reward"].compute().tolist() == list(range(701))  # reward == row number
    assert sorted(s.to_dask(["reward", "obs"])) == ["obs", "reward"]
    assert _files(path) == before
    s.close()


def _ring(path, capacity, rows, step=97):
    s = _store(path, [(a, min(step, rows - a)) for a in range(0, rows, step)], capacity=capacity)
    s.close()
    return rs.open(path)


def test_wrapped_ring_in_logical_order(tmp_path):
    path = tmp_path / "ring.zarr"
    s = _ring(path, capacity=300, rows=1000)
    cap, cur = s.capacity, s.cursor
    assert s.total == 1000 and s.size == cap and 0 < cur < cap  # wrapped, mid-array
    before = _files(path)
    arrays = s.to_dask()
    want = read_all(s)
    _assert_arrays_match(arrays, want)
    # physical [cursor:capacity] then [0:cursor], straight from the zarr arrays
    for name in s.schema.names:
        z = zarr.open_array(str(path / name), mode="r")
        np.testing.assert_array_equal(arrays[name].compute(), np.concatenate([z[cur:], z[:cur]]))
        assert arrays[name].chunks[0] == _zarr_chunks([(cur, cap), (0, cur)]), name
    got = arrays["reward"].compute()
    for i in range(len(s)):  # row by row against the store's own reads
        assert got[i] == s.read_range(i, i + 1, fields=["reward"])["reward"][0] == 700 + i
    assert _files(path) == before
    s.close()


def test_ring_not_yet_wrapped(tmp_path):
    path = tmp_path / "ring.zarr"
    s = _ring(path, capacity=300, rows=200)
    assert (s.total, s.size, s.cursor) == (200, 200, 200)
    assert zarr.open_array(str(path / "reward"), mode="r").shape[0] == 300  # 100 unwritten rows
    arrays = s.to_dask()
    _assert_arrays_match(arrays, read_all(s))
    assert arrays["reward"].compute().tolist() == list(range(200))
    assert arrays["obs"].chunks[0] == _zarr_chunks([(0, 200)])
    s.close()


def test_ring_wrapped_exactly_at_the_end(tmp_path):
    s = _ring(tmp_path / "ring.zarr", capacity=300, rows=600, step=100)
    assert s.cursor == 0 and s.size == 300
    _assert_arrays_match(s.to_dask(["reward", "grid"]), read_all(s, ["reward", "grid"]))
    assert s.to_dask(["reward"])["reward"].compute().tolist() == list(range(300, 600))
    s.close()


@pytest.mark.parametrize("capacity", [None, 250])
def test_buffered_rows_of_an_open_writer_do_not_appear(tmp_path, capacity):
    path = tmp_path / "w.zarr"
    s = _store(path, [(0, 400)], capacity=capacity, buffer_rows=1000, codecs={"obs": "zstd:3"})
    s.extend(_batch(400, 37))  # buffered, not committed
    assert s.buffered == 37 and len(s) == min(s.size + 37, capacity or 10**9)
    # the open writer's compressed array holds whole chunks: more rows than committed
    if capacity is None:
        assert zarr.open_array(str(path / "obs"), mode="r").shape[0] == 448 > s.size
    before = _files(path)
    arrays = s.to_dask()
    frame = s.to_dask_dataframe(fields=["reward", "obs", "episode"])
    lo = 400 - s.size
    assert arrays["reward"].compute().tolist() == list(range(lo, 400))
    _assert_arrays_match(arrays, s.read_ids(lo, 400))  # the committed rows, by id
    reader = rs.open(path)  # another view of the committed rows only
    assert len(reader) == s.size
    pd.testing.assert_frame_equal(frame.compute(), reader.to_pandas(fields=["reward", "obs", "episode"]))
    reader.close()
    assert s.buffered == 37 and _files(path) == before  # nothing committed, nothing written
    s.close()


def test_packed_zip_store(tmp_path):
    src = tmp_path / "src.zarr"
    _store(src, [(0, 150), (150, 500)], capacity=400, codecs={"grid": "zstd:3"}).close()
    zpath = rs.pack(src, tmp_path / "packed.zip")
    s = rs.open(zpath)
    before = _files(zpath)
    arrays = s.to_dask()
    _assert_arrays_match(arrays, read_all(s))
    assert arrays["reward"].compute().tolist() == list(range(250, 650))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (img is left out)
        pd.testing.assert_frame_equal(s.to_dask_dataframe().compute(), s.to_pandas())
    assert _files(zpath) == before
    s.close()


def test_store_at_an_fsspec_url(tmp_path):
    url = f"memory://to-dask-{uuid.uuid4().hex[:8]}/buf.zarr"
    try:
        _store(url, [(0, 200), (200, 130)], capacity=256, codecs={"obs": "zstd:3"}).close()
        s = rs.open(url)
        _assert_arrays_match(s.to_dask(), read_all(s))
        pd.testing.assert_frame_equal(s.to_dask_dataframe(fields=["obs", "reward"]).compute(),
                                      s.to_pandas(fields=["obs", "reward"]))
        s.close()
    finally:
        import fsspec

        fs = fsspec.filesystem("memory")
        if fs.exists(url):
            fs.rm(url, recursive=True)


def test_store_on_s3(tmp_path, s3_endpoint):
    """s3:// against a real S3 API server on loopback (moto's), credentials from the env."""
    url = "s3://replays/to-dask/ring.zarr"
    with rs.create(url, STD_OBS, STD_ACT, capacity=256, chunk_rows=128, codecs={"obs": "zstd:3"}) as w:
        w.extend(std_batch(0, 330, term_every=7))  # one commit that wraps the ring
    s = rs.open(url)
    assert s.cursor == 74
    arrays = s.to_dask()
    _assert_arrays_match(arrays, read_all(s))
    assert arrays["reward"].compute().tolist() == list(range(74, 330))
    frame = s.to_dask_dataframe(fields=["episode", "reward"])
    pd.testing.assert_frame_equal(frame.compute(), s.to_pandas(fields=["episode", "reward"]))
    s.close()


class _Sharded:
    """A dataset of shards, as the sharded dataset presents them: ``.shards`` in row order."""

    def __init__(self, shards):
        self.shards = shards
        self.path = "two-shards"


def _two_shards(tmp_path):
    a = _store(tmp_path / "a.zarr", [(0, 333)], first_episode=0)
    b = _store(tmp_path / "b.zarr", [(0, 150), (150, 120)], first_episode=1 << 32)
    a.close()
    b.close()
    return rs.open(tmp_path / "a.zarr"), rs.open(tmp_path / "b.zarr")


def test_two_shards_concatenate_in_order(tmp_path):
    a, b = _two_shards(tmp_path)
    before = _files(tmp_path)
    ds = _Sharded([a, b])
    arrays = daskarrays.to_dask(ds)
    want = {k: np.concatenate([read_all(a)[k], read_all(b)[k]]) for k in a.schema.names}
    _assert_arrays_match(arrays, want)
    assert arrays["obs"].chunks[0] == _zarr_chunks([(0, 333)]) + _zarr_chunks([(0, 270)])
    frame = daskarrays.to_dask_dataframe(ds, fields=["obs", "grid", "reward", "episode"])
    assert frame.known_divisions and frame.divisions[0] == 0 and frame.divisions[-1] == 602
    got = frame.compute()
    ref = pd.concat([a.to_pandas(fields=["obs", "grid", "reward", "episode"]),
                     b.to_pandas(fields=["obs", "grid", "reward", "episode"])])
    ref.index = pd.RangeIndex(0, len(ref), name="row")
    pd.testing.assert_frame_equal(got, ref)
    # per-episode returns over both shards (their episode ids are disjoint)
    returns = frame.groupby("episode").reward.sum().compute().sort_index()
    pd.testing.assert_series_equal(returns, ref.groupby("episode").reward.sum())
    assert _files(tmp_path) == before
    a.close()
    b.close()


def test_a_sharded_dataset_reads_as_its_shards_in_order(tmp_path):
    path = tmp_path / "ds.zarr"
    ds = rs.create_dataset(path, STD_OBS, STD_ACT, chunk_rows=CHUNK)
    for i, (a, n) in enumerate([(0, 210), (210, 130)]):
        with ds.open_shard(i) as shard:
            shard.extend(std_batch(a, n, term_every=7))
    ds = rs.open(path)
    before = _files(path)
    _assert_arrays_match(ds.to_dask(), read_all(ds))
    assert ds.to_dask(["reward"])["reward"].compute().tolist() == list(range(340))
    pd.testing.assert_frame_equal(ds.to_dask_dataframe().compute(), ds.to_pandas())
    got = ds.to_dask_dataframe().groupby("episode").reward.sum().compute().sort_index()
    pd.testing.assert_series_equal(got, ds.to_pandas().groupby("episode").reward.sum())
    assert _files(path) == before
    empty = rs.create_dataset(tmp_path / "empty.zarr", STD_OBS, STD_ACT)  # no shards yet
    assert empty.to_dask()["obs"].shape == (0, 3)
    assert empty.to_dask_dataframe().compute().columns.tolist() == empty.to_pandas().columns.tolist()


def test_shards_with_different_fields_are_refused(tmp_path):
    a, _ = _two_shards(tmp_path)
    other = rs.create(tmp_path / "c.zarr", Box(-1, 1, (5,)), STD_ACT)
    with pytest.raises(rs.SchemaError, match=r"c\.zarr.*'obs'.*float32 rows of \[3\]"):
        daskarrays.to_dask(_Sharded([a, other]))
    other.close()
    a.close()


def test_dataframe_has_the_columns_dtypes_index_and_values_of_to_pandas(tmp_path):
    s = _ring(tmp_path / "ring.zarr", capacity=500, rows=1200)
    with pytest.warns(UserWarning, match=r"to_dask_dataframe: left out wide field\(s\) \['img'\]"):
        frame = s.to_dask_dataframe()
    with pytest.warns(UserWarning, match="left out wide"):
        ref = s.to_pandas()
    assert list(frame.columns) == list(ref.columns)
    assert "grid_0_0" in ref.columns and "grid_1_2" in ref.columns and "obs_2" in ref.columns
    assert dict(frame.dtypes) == dict(ref.dtypes)
    assert frame.index.name == "row" and frame.known_divisions and frame.npartitions > 2
    pd.testing.assert_frame_equal(frame.compute(), ref)
    pd.testing.assert_frame_equal(frame[["reward", "grid_1_0"]].compute(), ref[["reward", "grid_1_0"]])
    assert frame.reward.sum().compute() == ref.reward.sum()
    # a partition is one zarr chunk at most, so none straddles the ring's wrap or a chunk
    sizes = frame.map_partitions(len).compute().tolist()
    assert sum(sizes) == 500 and max(sizes) <= CHUNK
    wide = s.to_dask_dataframe(fields=["img", "reward"])  # asked for by name: no warning
    pd.testing.assert_frame_equal(wide.compute(), s.to_pandas(fields=["img", "reward"]))
    assert len(wide.columns) == 82
    s.close()


def test_per_episode_returns_equal_pandas_groupby(tmp_path):
    s = _ring(tmp_path / "ring.zarr", capacity=700, rows=2000)  # its oldest episode is cut
    frame = s.to_dask_dataframe(fields=["episode", "reward"])
    got = frame.groupby("episode").reward.sum().compute().sort_index()
    want = s.to_pandas(fields=["episode", "reward"]).groupby("episode").reward.sum()
    pd.testing.assert_series_equal(got, want)
    arrays = s.to_dask(["episode", "reward"])
    lo, hi = (int(x) for x in da.compute(arrays["episode"].min(), arrays["episode"].max()))
    sums = da.bincount(arrays["episode"] - lo, weights=arrays["reward"], minlength=hi - lo + 1)
    np.testing.assert_allclose(sums.compute()[want.index - lo], want.to_numpy(), rtol=1e-6)
    s.close()


def test_empty_store(tmp_path):
    s = _store(tmp_path / "e.zarr", [])
    arrays = s.to_dask()
    assert arrays["obs"].shape == (0, 3) and arrays["grid"].shape == (0, 2, 3)
    assert arrays["reward"].sum().compute() == 0
    frame = s.to_dask_dataframe(fields=["obs", "reward"])
    pd.testing.assert_frame_equal(frame.compute(), s.to_pandas(fields=["obs", "reward"]))
    s.close()


def test_graphs_pickle_for_other_processes(tmp_path):
    s = _ring(tmp_path / "ring.zarr", capacity=300, rows=700)
    want = read_all(s, ["obs", "reward"])
    arrays = pickle.loads(pickle.dumps(s.to_dask(["obs", "reward"])))
    frame = pickle.loads(pickle.dumps(s.to_dask_dataframe(fields=["obs", "reward"])))
    s.close()  # (the graphs read the files themselves)
    _assert_arrays_match(arrays, want)
    assert frame.reward.sum().compute() == want["reward"].sum()


def test_a_closed_store_is_refused(tmp_path):
    s = _store(tmp_path / "c.zarr", [(0, 10)])
    s.close()
    with pytest.raises(rs.StoreModeError, match="closed"):
        s.to_dask()


def test_unknown_field_names_the_store(tmp_path):
    s = _store(tmp_path / "f.zarr", [(0, 10)])
    with pytest.raises(rs.SchemaError, match=r"f\.zarr.*unknown field 'nope'"):
        s.to_dask_dataframe(fields=["reward", "nope"])
    s.close()


@pytest.mark.damages_store
def test_a_missing_chunk_file_is_damage_not_zeros(tmp_path):
    path = tmp_path / "m.zarr"
    _store(path, [(0, 300)], codecs={"grid": "zstd:3"}).close()
    os.remove(path / "grid" / "c" / "2" / "0" / "0")
    s = rs.open(path)
    with pytest.raises(rs.CorruptStoreError, match=r"grid/c/2/0/0.*chunk 2 of field 'grid' is missing"):
        s.to_dask(["grid"])
    assert s.to_dask(["reward"])["reward"].shape == (300,)
    s.close()


def test_missing_dask_names_the_extra(tmp_path, monkeypatch):
    s = _store(tmp_path / "x.zarr", [(0, 10)])
    for mod in ("dask", "dask.array", "dask.dataframe"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import dask...` raises ImportError
    with pytest.raises(rs.MissingExtraError, match=r'pip install "replaystore\[dask\]"'):
        s.to_dask()
    with pytest.raises(rs.MissingExtraError, match=r'x\.zarr: to_dask_dataframe needs dask'):
        s.to_dask_dataframe()
    s.close()
