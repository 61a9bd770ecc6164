"""One-file stores: ``pack`` into a zip, use it in place, ``unpack`` back, byte for byte."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import (
    STD_ACT,
    STD_OBS,
    assert_batches_equal,
    assert_same_samples_and_training,
    lake_rows,
    read_all,
    std_batch,
    store_files,
)
from gymnasium.spaces import Discrete

import replaystore as rs
from replaystore.cli import main
from replaystore.storage.pack import ALIGN


def _store(path: Path, *, codecs=None, capacity=None, rows=20_000, chunk_rows=4096):
    with rs.create(path, STD_OBS, STD_ACT, codecs=codecs, capacity=capacity,
                   chunk_rows=chunk_rows, fsync=False) as s:
        s.extend(std_batch(0, rows, term_every=7, trunc_every=50))
    return path


@pytest.mark.parametrize("codecs,capacity", [(None, None), ("zstd:3", None), (None, 15_000),
                                             ({"obs": "lz4", "next_obs": "lz4"}, 9_000)])
def test_pack_open_in_place_and_unpack_byte_identical(tmp_path, codecs, capacity):
    src = _store(tmp_path / "s.zarr", codecs=codecs, capacity=capacity)
    z = rs.pack(src, tmp_path / "s.zip")
    with rs.open(src) as d, rs.open(z) as p:
        assert len(p) == len(d) and p.capacity == d.capacity
        assert p.metadata == d.metadata
        assert_batches_equal(read_all(p), read_all(d))
        idx = np.random.default_rng(1).integers(0, len(d), 1000)
        assert_batches_equal(p.read(idx), d.read(idx))
        assert p.observation_space == d.observation_space
    out = rs.unpack(z, tmp_path / "u.zarr")
    assert store_files(out) == store_files(src)
    with rs.open(out, mode="a") as u:  # an unpacked store is a normal, writable store
        u.extend(std_batch(20_000, 10))
    assert rs.verify(out).ok


def test_uncompressed_chunks_are_aligned_and_mapped_from_the_zip(tmp_path):
    z = rs.pack(_store(tmp_path / "s.zarr"), tmp_path / "s.zip")
    chunk_members = 0
    with open(z, "rb") as fh, zipfile.ZipFile(z) as zf:
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, info.filename
            fh.seek(info.header_offset)
            head = fh.read(30)
            name_len, extra_len = struct.unpack("<2H", head[26:30])
            data_at = info.header_offset + 30 + name_len + extra_len
            if "/c/" in info.filename:
                chunk_members += 1
                assert data_at % ALIGN == 0, info.filename
    assert chunk_members == 8 * 5  # 8 fields, 20k rows in chunks of 4096
    with rs.open(z) as p:
        for f in p.schema:
            view = p._view(f)
            assert view.contiguous and view.array is not None
            # the mapped array's pages come from the zip file itself
            assert view.array.shape[0] >= len(p)


def test_zip_is_a_plain_zarr_zip_store(tmp_path):
    src = _store(tmp_path / "s.zarr", codecs={"obs": "zstd"})
    z = rs.pack(src, tmp_path / "s.zip")
    g = zarr.open_group(zarr.storage.ZipStore(z, mode="r"), mode="r")
    with rs.open(src) as d:
        want = read_all(d)
    for name, arr in want.items():
        np.testing.assert_array_equal(g[name][: len(arr)], arr, err_msg=name)


def test_pack_is_deterministic(tmp_path):
    src = _store(tmp_path / "s.zarr", rows=5000)
    a = rs.pack(src, tmp_path / "a.zip")
    b = rs.pack(src, tmp_path / "b.zip")
    assert a.read_bytes() == b.read_bytes()


def test_samplers_and_trainer_give_the_same_results_from_a_zip(tmp_path):
    src = tmp_path / "lake.zarr"
    with rs.create(src, Discrete(16), Discrete(4), fsync=False) as s:
        s.extend(lake_rows(30_000))
    z = rs.pack(src, tmp_path / "lake.zip")
    with rs.open(src) as d, rs.open(z) as p:
        assert_same_samples_and_training(d, p, (
            lambda st: rs.UniformSampler(st, batch_size=64, seed=3),
            lambda st: rs.UniformSampler(st, batch_size=64, seed=3, replacement=False),
            lambda st: rs.BalancedSampler(st, by="action", batch_size=64, seed=3),
        ), batches=5)


def test_zip_is_read_only_and_errors_are_clear(tmp_path):
    src = _store(tmp_path / "s.zarr", rows=100)
    z = rs.pack(src, tmp_path / "s.zip")
    with pytest.raises(rs.StoreModeError, match=r"s\.zip.*read-only.*unpack"):
        rs.open(z, mode="a")
    with pytest.raises(rs.StoreModeError, match="read-only"):
        rs.create(tmp_path / "new.zip", STD_OBS, STD_ACT)
    with pytest.raises(rs.StoreExistsError, match="s.zip"):
        rs.pack(src, z)
    rs.pack(src, z, overwrite=True)
    with pytest.raises(rs.NotAStoreError, match="not a replaystore store"):
        rs.pack(tmp_path, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
    with pytest.raises(rs.NotAStoreError, match="already a packed"):
        rs.pack(z, tmp_path / "y.zip")
    with pytest.raises(rs.StoreExistsError, match="s.zarr"):
        rs.unpack(z, src)
    with pytest.raises(rs.NotAStoreError, match="not a .zip"):
        rs.unpack(src, tmp_path / "v.zarr")
    with pytest.raises(rs.StoreModeError, match="verify checks local directory stores"):
        rs.verify(z)
    # a damaged zip: a clear error, not a traceback from zipfile
    bad = tmp_path / "bad.zip"
    bad.write_bytes(z.read_bytes()[:-100])
    with pytest.raises(rs.ReplayStoreError, match="bad.zip"):
        rs.open(bad)


def test_pack_refuses_a_store_being_written(tmp_path):
    src = _store(tmp_path / "s.zarr", rows=100)
    with rs.open(src, mode="a"):
        with pytest.raises(rs.StoreLockedError):
            rs.pack(src, tmp_path / "s.zip")
    assert not (tmp_path / "s.zip").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_pack_use_in_place_unpack(tmp_path):
    src = _store(tmp_path / "s.zarr", rows=500)
    r = CliRunner()
    res = r.invoke(main, ["pack", str(src), str(tmp_path / "s.zip"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "packed" in res.output
    for args in (["info"], ["head", "-n", "3"], ["episodes", "-n", "2"], ["sample", "--batch-size", "4"]):
        res = r.invoke(main, [*args, str(tmp_path / "s.zip")])
        assert res.exit_code == 0, (args, res.output)
    info = r.invoke(main, ["info", str(tmp_path / "s.zip")]).output
    assert "500" in info
    res = r.invoke(main, ["unpack", str(tmp_path / "s.zip"), str(tmp_path / "u.zarr")])
    assert res.exit_code == 0, res.output
    assert store_files(tmp_path / "u.zarr") == store_files(src)
    for args in (["pack", str(src), str(tmp_path / "s.zip")],
                 ["unpack", str(tmp_path / "s.zip"), str(tmp_path / "u.zarr")],
                 ["pack", str(tmp_path / "nothing"), str(tmp_path / "n.zip")],
                 ["verify", str(tmp_path / "s.zip")]):
        res = r.invoke(main, args)
        assert res.exit_code != 0 and isinstance(res.exception, SystemExit), (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:"), res.output


def test_cli_train_from_a_zip_equals_train_from_the_directory(tmp_path):
    r = CliRunner()
    src = tmp_path / "lake.zarr"
    res = r.invoke(main, ["collect", "FrozenLake-v1", "--out", str(src), "--steps", "5000",
                          "--seed", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert r.invoke(main, ["pack", str(src), str(tmp_path / "lake.zip"), "--no-progress"]).exit_code == 0
    for path, q in ((src, "a.npy"), (tmp_path / "lake.zip", "b.npy")):
        res = r.invoke(main, ["train", str(path), "--out", str(tmp_path / q), "--gamma", "0.9",
                              "--no-progress"])
        assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
