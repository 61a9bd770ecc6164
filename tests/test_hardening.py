"""Issue 12, first cases: repair never empties a healthy compressed store, and a crafted
index name cannot make the store delete itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import STD_ACT, STD_OBS, std_batch, store_files

import replaystore as rs
from replaystore.collect import collect

DATA = Path(__file__).resolve().parents[1] / "data" / "frozenlake-4x4-slippery.zarr"


def test_the_bundled_dataset_verifies(tmp_path):
    copy = tmp_path / "fl.zarr"
    shutil.copytree(DATA, copy)
    report = rs.verify(copy)
    assert report.ok, report.lines()
    before = rs.open(copy).read_range(0, 200_000)
    report = rs.verify(copy, repair=True)  # nothing to repair: nothing dropped
    assert report.ok and report.repaired is None
    after = rs.open(copy).read_range(0, 200_000)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_compressed_collection_verifies_and_writes_every_chunk(tmp_path):
    path = tmp_path / "cp.zarr"
    collect("CartPole-v1", path, steps=300, seed=0, codecs="zstd:3")
    assert rs.verify(path).ok
    # truncated is all False (the fill value): its chunk is written all the same
    assert (path / "truncated" / "c" / "0").is_file()


def _make_legacy(path: Path, field: str) -> None:
    """Strip the marker new stores carry ("every chunk written"): a store as older versions
    wrote it, where zarr left out chunks holding only the fill value."""
    am = path / field / "zarr.json"
    doc = json.loads(am.read_text())
    doc["attributes"].pop("replaystore_array")
    am.write_text(json.dumps(doc))


def test_a_legacy_store_missing_fill_value_chunks_verifies(tmp_path):
    path = tmp_path / "s.zarr"
    with rs.create(path, STD_OBS, STD_ACT, codecs="zstd:3", chunk_rows=4096) as s:
        s.extend(std_batch(0, 5000, term_every=0))
    _make_legacy(path, "truncated")
    (path / "truncated" / "c" / "1").unlink()  # what zarr's default would have left out
    (path / "truncated" / "c" / "0").unlink()
    assert rs.verify(path).ok
    assert not rs.verify(path).damage
    with rs.open(path) as s:  # and reads keep reading them as the fill value
        assert not s.read_range(0, 5000, fields=["truncated"])["truncated"].any()


def test_a_new_store_missing_a_fill_value_chunk_is_reported_and_rewritten(tmp_path):
    """Issue 12, case 7: in a store whose writers write every chunk, a missing chunk is
    damage for readers; verify finds its rows intact (they are the fill value) and repair
    writes the chunk again, dropping nothing."""
    path = tmp_path / "s.zarr"
    with rs.create(path, STD_OBS, STD_ACT, codecs="zstd:3", chunk_rows=4096) as s:
        s.extend(std_batch(0, 5000, term_every=0))
    (path / "truncated" / "c" / "1").unlink()
    with rs.open(path) as s, pytest.raises(rs.CorruptStoreError, match="truncated.*missing"):
        s.read_range(0, 5000, fields=["truncated"])
    report = rs.verify(path)
    assert not report.ok and not report.damage
    assert [x.action for x in report.side] == ["chunk"]
    report = rs.verify(path, repair=True)
    assert "no rows dropped" in report.repaired
    assert rs.verify(path).ok
    with rs.open(path) as s:
        assert len(s) == 5000 and not s.read_range(0, 5000, fields=["truncated"])["truncated"].any()


def test_a_missing_compressed_chunk_that_held_data_is_damage(tmp_path):
    path = tmp_path / "s.zarr"
    with rs.create(path, STD_OBS, STD_ACT, codecs="zstd:3", chunk_rows=4096) as s:
        s.extend(std_batch(0, 5000))
    (path / "obs" / "c" / "1" / "0").unlink()
    report = rs.verify(path)
    assert not report.ok
    [d] = report.damage
    assert d.field == "obs" and "missing" in d.reason and d.start <= 4096 < d.stop


def _craft_index_entry(path: Path, name: str) -> None:
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["replaystore"]["indexes"] = [{"kind": "field", "name": name, "field": "action"}]
    (path / "zarr.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("name", ["..", ".", "../x", ".hidden", "", 7])
def test_a_crafted_index_name_is_refused_before_any_file_is_touched(tmp_path, name):
    path = tmp_path / "s.zarr"
    with rs.create(path, STD_OBS, STD_ACT) as s:
        s.extend(std_batch(0, 100))
    _craft_index_entry(path, name)
    files = store_files(path)
    for mode in ("a", "r"):
        with pytest.raises(rs.CorruptStoreError, match=r"zarr.json: indexes\[0\]"):
            rs.open(path, mode)
    assert store_files(path) == files


@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_balance_key_named_dotdot_deletes_nothing(tmp_path, mode):
    path = tmp_path / "s.zarr"
    with rs.create(path, STD_OBS, STD_ACT) as s:
        s.extend(std_batch(0, 100))
    files = store_files(path)
    with rs.open(path, mode) as s:
        for _ in range(2):
            with pytest.raises(rs.SamplerError, match="not allowed"):
                rs.BalancedSampler(s, by=lambda rows: rows["action"], key_name="..", batch_size=4)
    assert store_files(path) == files
    assert len(rs.open(path)) == 100


@pytest.mark.parametrize("capacity", [None, 2000])
def test_prefetching_while_appending_never_changes_what_the_store_holds(tmp_path, capacity):
    """Issue 12, case 3: the prefetch thread used to flush the write buffer while the same
    process appended, losing rows from the store itself. Reading no longer writes."""
    path = tmp_path / "s.zarr"
    store = rs.create(path, STD_OBS, STD_ACT, capacity=capacity, buffer_rows=512)
    store.extend(std_batch(0, 1000))
    it = rs.UniformSampler(store, batch_size=64, seed=0).iter(None, prefetch=3)
    n = 1000
    for _ in range(300):
        store.extend(std_batch(n, 100))
        n += 100
        next(it)
    it.close()
    store.close()
    with rs.open(path) as s:
        assert s.total == n
        want = np.arange(n - len(s), n, dtype=np.float32)  # reward == global row id
        np.testing.assert_array_equal(s.read_range(0, len(s), fields=["reward"])["reward"], want)
    assert rs.verify(path).ok
