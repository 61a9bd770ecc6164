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
            partial = info.filename.endswith("/c/4") or "/c/4/" in info.filename
            if partial:  # 20,000 rows: chunk 4 holds 3,616 of 4,096 rows, the rest padding
                assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename
                assert info.compress_size < info.file_size // 2, info.filename
                continue
            assert info.compress_type == zipfile.ZIP_STORED, info.filename
            fh.seek(info.header_offset)
            head = fh.read(30)
            name_len, extra_len = struct.unpack("<2H", head[26:30])
            data_at = info.header_offset + 30 + name_len + extra_len
            if "/c/" in info.filename:
                chunk_members += 1
                assert data_at % ALIGN == 0, info.filename
    assert chunk_members == 8 * 4  # 8 fields, 20k rows in chunks of 4096: 4 full ones each
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
    assert rs.verify(z).ok  # verify reads a zip; repair needs the directory
    with pytest.raises(rs.StoreModeError, match="read-only.*unpack it"):
        rs.verify(z, repair=True)
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
                 ["verify", str(tmp_path / "s.zip"), "--repair"]):
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
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy")["q"], np.load(tmp_path / "b.npy")["q"])


# -- compact sharing: no chunk padding in the zip, none inflated on unpack -----------------
def _lake(path: Path, rows: int) -> Path:
    with rs.create(path, Discrete(16), Discrete(4), fsync=False) as s:  # default: 1,048,576-row chunks
        s.extend(lake_rows(rows))
    return path


def _disk(root: Path) -> tuple[int, int]:
    """(bytes allocated on disk, apparent bytes) of the files under ``root``."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files), sum(p.stat().st_size for p in files)


@pytest.mark.parametrize("rows", [100, 60_000])
def test_zip_holds_no_chunk_padding_and_round_trips(tmp_path, rows):
    src = _lake(tmp_path / "s.zarr", rows)
    z = rs.pack(src, tmp_path / "s.zip")
    with rs.open(src) as d:
        data = sum(f.row_bytes for f in d.schema) * rows
        want = read_all(d)
        info_data = sum(f[-2] for f in rs.inspect.summary(d).fields)
    assert info_data == data
    lines = CliRunner().invoke(main, ["info", str(src)]).output.splitlines()
    size = [ln for ln in lines if ln.startswith("size:")]
    assert len(size) == 1 and "data " in size[0] and "on disk" in size[0] and "apparent 46.0 MiB" in size[0]
    # the 8 fields' padded chunks are 8 x 1,048,576 rows (46 MiB) on the old pack
    assert z.stat().st_size < data + 256 * 1024, (z.stat().st_size, data)
    with zipfile.ZipFile(z) as zf:
        chunks = [i for i in zf.infolist() if "/c/" in i.filename]
        assert chunks and all(i.compress_type == zipfile.ZIP_DEFLATED for i in chunks)
    zline = [ln for ln in CliRunner().invoke(main, ["info", str(z)]).output.splitlines()
             if ln.startswith("size:")]
    assert zline == [f"size:           {size[0].split(',')[0].split(': ')[1].strip()}, zip file "
                     f"{rs.inspect.human_bytes(z.stat().st_size)}"]
    with rs.open(z) as p:  # read in place: the partial chunks are inflated into memory
        assert_batches_equal(read_all(p), want)
        idx = np.random.default_rng(0).integers(0, rows, 500)
        assert_batches_equal(p.read(idx), {k: v[idx] for k, v in want.items()})
    g = zarr.open_group(zarr.storage.ZipStore(z, mode="r"), mode="r")  # a plain Zarr zip store
    for name, arr in want.items():
        np.testing.assert_array_equal(g[name][:rows], arr, err_msg=name)
    out = rs.unpack(z, tmp_path / "u.zarr")
    assert store_files(out) == store_files(src)
    disk, apparent = _disk(out)
    assert apparent > 40 * 2**20 and disk < data + 2 * 2**20, (disk, apparent)  # sparse, as src
    assert rs.verify(out).ok
    with rs.open(out, mode="a") as u:
        u.extend(lake_rows(10))
        assert len(u) == rows + 10
    assert rs.verify(out).ok


def test_full_chunks_stay_mapped_and_the_partial_one_is_inflated(tmp_path):
    src = _store(tmp_path / "s.zarr", rows=10_000)  # chunks of 4,096: 2 full, 1 partial
    z = rs.pack(src, tmp_path / "s.zip")
    with rs.open(z) as p, rs.open(src) as d:
        for f in p.schema:
            if f.compressed:
                continue
            view = p._view(f)
            assert view.contiguous
        assert_batches_equal(read_all(p), read_all(d))
    with zipfile.ZipFile(z) as zf:
        kinds = {i.filename: i.compress_type for i in zf.infolist() if i.filename.startswith("obs/c/")}
    assert kinds == {"obs/c/0/0": zipfile.ZIP_STORED, "obs/c/1/0": zipfile.ZIP_STORED,
                     "obs/c/2/0": zipfile.ZIP_DEFLATED}


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    """Copy the zip ``src`` to ``dst`` with some members' data replaced (deflated)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info))
            zout.writestr(info, data, compress_type=info.compress_type)


def test_a_deflated_chunk_is_never_inflated_beyond_one_chunk(tmp_path):
    src = _store(tmp_path / "s.zarr", rows=10_000)
    z = rs.pack(src, tmp_path / "s.zip")
    with rs.open(src) as d:
        chunk = d.schema["obs"].chunk_bytes
    bomb = tmp_path / "bomb.zip"  # 256 MiB of zeros declared (and really there) for one chunk
    _rewrite(z, bomb, {"obs/c/2/0": bytes(256 << 20)})
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("obs/c/2/0").file_size == 256 << 20 > 100 * chunk
    with rs.open(bomb) as p, pytest.raises(rs.CorruptStoreError, match=r"obs/c/2/0.*declares"):
        p.read(np.arange(9_000, 9_010), fields=["obs"])
    short = tmp_path / "short.zip"
    _rewrite(z, short, {"obs/c/2/0": bytes(chunk - 8)})
    with rs.open(short) as p, pytest.raises(rs.CorruptStoreError, match=r"obs/c/2/0"):
        p.read(np.arange(9_000, 9_010), fields=["obs"])


def test_class_indexes_are_not_packed_and_are_rebuilt_from_the_zip(tmp_path):
    """A store a balanced sampler has used holds ``_index/`` (padded like chunks: 2 MiB
    per class here); the zip leaves those caches out, and a balanced sampler on the zip
    or on the unpacked store draws exactly the batches it draws on the original."""
    src = _lake(tmp_path / "s.zarr", 60_000)
    with rs.open(src, mode="a") as s:
        want = rs.BalancedSampler(s, by="action", batch_size=512, seed=3).sample()
    assert (src / "_index").is_dir()
    z = rs.pack(src, tmp_path / "s.zip")
    with rs.open(src) as d:
        data = sum(f.row_bytes for f in d.schema) * 60_000
    assert z.stat().st_size < data + 256 * 1024, (z.stat().st_size, data)  # was + 8 MiB of index
    with zipfile.ZipFile(z) as zf:
        assert not [n for n in zf.namelist() if n.startswith("_index/")]
    with rs.open(z) as p:
        assert_batches_equal(rs.BalancedSampler(p, by="action", batch_size=512, seed=3).sample(), want)
    out = rs.unpack(z, tmp_path / "u.zarr")
    assert rs.verify(out).ok
    with rs.open(out, mode="a") as u:
        assert_batches_equal(rs.BalancedSampler(u, by="action", batch_size=512, seed=3).sample(), want)
