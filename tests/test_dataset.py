"""Sharded datasets (replaystore.storage.dataset): many stores read as one.

Rows are self-identifying (conftest.make_batch: row ``i`` of a shard has ``reward == i``
and every other field a function of ``i``), so a row read through the dataset can be
checked against what its shard's writer wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import STD_ACT, STD_OBS, std_batch
from scipy import stats

import replaystore as rs
from replaystore.cli import main
from replaystore.storage.dataset import (
    ShardedDataset,
    ShardMismatchError,
    create_dataset,
    is_dataset,
)

SIZES = (100, 50, 0, 300)


def _rows(start, n, **kw):
    """Self-identifying rows without episode ids: the shard numbers the episodes."""
    return std_batch(start, n, term_every=7, **kw)


def _dataset(root, sizes=SIZES, **kw):
    ds = create_dataset(root, STD_OBS, STD_ACT, env={"id": "Test-v0", "kwargs": {}}, **kw)
    for i, n in enumerate(sizes):
        with ds.open_shard(i) as shard:
            if n:
                shard.extend(_rows(0, n))
    return ds.refresh()


def test_a_dataset_reads_as_its_shards_one_after_another(tmp_path):
    ds = _dataset(tmp_path / "ds.zarr")
    assert isinstance(rs.open(tmp_path / "ds.zarr"), ShardedDataset)
    assert len(ds) == sum(SIZES) and ds.shard_rows.tolist() == list(SIZES)
    assert ds.shard_numbers == (0, 1, 2, 3)
    whole = ds.read_range(0, len(ds))
    want = {k: np.concatenate([_rows(0, n)[k] for n in SIZES if n])
            for k in ("obs", "reward", "next_obs", "terminated")}
    for k, v in want.items():
        np.testing.assert_array_equal(whole[k], v)
    # random access agrees with the sequential read; slices of read_range clip like a slice
    idx = np.random.default_rng(0).integers(0, len(ds), 200)
    got = ds.read(idx)
    for k in whole:
        np.testing.assert_array_equal(got[k], whole[k][idx])
    np.testing.assert_array_equal(ds.read_range(90, 160)["reward"], whole["reward"][90:160])
    np.testing.assert_array_equal(ds[440:]["reward"], whole["reward"][440:])
    with pytest.raises(rs.RowIndexError, match="out of range"):
        ds.read([len(ds)])
    # episode ids never collide across shards: shard i's start at i << 32
    eps = ds.episodes()
    assert eps["episode"].is_unique and len(eps) == sum(-(-n // 7) for n in SIZES)
    assert sorted({int(e) >> 32 for e in eps["episode"]}) == [0, 1, 3]
    frame = ds.to_pandas()
    assert len(frame) == len(ds) and frame["reward"].tolist() == whole["reward"].tolist()
    assert ds.env_info == {"id": "Test-v0", "kwargs": {}} and ds.observation_space == STD_OBS
    ds.close()


def test_a_plain_store_still_opens_as_a_store_and_a_dataset_refuses_mode_a(tmp_path):
    s = rs.create(tmp_path / "plain.zarr", STD_OBS, STD_ACT)
    s.extend(std_batch(0, 5))
    s.close()
    with rs.open(tmp_path / "plain.zarr") as s:
        assert type(s) is rs.ReplayStore and len(s) == 5
    assert not is_dataset(tmp_path / "plain.zarr")
    _dataset(tmp_path / "ds.zarr").close()
    assert is_dataset(tmp_path / "ds.zarr")
    with pytest.raises(rs.StoreModeError, match="shard by shard"):
        rs.open(tmp_path / "ds.zarr", "a")
    with pytest.raises(rs.StoreExistsError):
        create_dataset(tmp_path / "ds.zarr", STD_OBS, STD_ACT)
    with pytest.raises(rs.NotAStoreError):
        rs.open(tmp_path / "nothing.zarr")


def test_a_shard_that_does_not_match_the_dataset_is_refused_naming_shard_and_field(tmp_path):
    root = tmp_path / "ds.zarr"
    _dataset(root, sizes=(10,)).close()
    import gymnasium as gym

    other = rs.create(root / "shards" / "shard-00001", gym.spaces.Box(-1, 1, (5,)), STD_ACT)
    other.close()
    with pytest.raises(ShardMismatchError, match=r"shard 1 .*field 'obs' is dtype float32 shape \(5,\)") as e:
        rs.open(root)
    assert isinstance(e.value, rs.SchemaError)
    with pytest.raises(rs.ReplayStoreError):
        rs.open(root).close()


def test_a_shard_appears_only_once_its_metadata_lands_and_a_cut_off_creation_is_made_again(tmp_path):
    root = tmp_path / "ds.zarr"
    ds = _dataset(root, sizes=(10,))
    # a creation killed after its arrays and before its zarr.json: no rows, not a shard
    half = root / "shards" / "shard-00002"
    (half / "obs").mkdir(parents=True)
    (half / "obs" / "zarr.json").write_text("{}")
    (root / "shards" / ".shard-00003.123.tmp").mkdir()
    (root / "shards" / "not-a-shard").mkdir()
    assert ds.refresh().shard_numbers == (0,)
    report = rs.verify(root)
    assert report.ok and any("shard-00002" in n and "cut off" in n for n in report.notes)
    with ds.open_shard(2) as shard:
        assert shard.total == 0
        shard.extend(_rows(0, 4))
    assert ds.refresh().shard_numbers == (0, 2) and len(ds) == 14
    assert ds.read([13], "episode")["episode"][0] >> 32 == 2
    with pytest.raises(rs.SchemaError, match="shard number"):
        ds.open_shard(-1)
    ds.close()


def test_uniform_sampling_over_shards_is_uniform_over_every_row(tmp_path):
    ds = _dataset(tmp_path / "ds.zarr")
    sampler = rs.UniformSampler(ds, 256, seed=1, fields=["reward", "episode", "step"])
    n = len(ds)
    counts = np.zeros(n, np.int64)
    whole = ds.read_range(0, n, ["reward", "episode", "step"])
    key = {(int(e), int(s)): i for i, (e, s) in enumerate(zip(whole["episode"], whole["step"], strict=True))}
    assert len(key) == n  # (episode, step) names one row of the dataset
    for batch in sampler.iter(num_batches=n * 40 // 256):
        for e, s in zip(batch["episode"], batch["step"], strict=True):
            counts[key[(int(e), int(s))]] += 1
    res = stats.chisquare(counts)
    assert res.pvalue > 1e-3, res
    # each shard gets its share of the draws
    per_shard = np.add.reduceat(counts, [0, 100, 150])
    assert stats.chisquare(per_shard, np.array([100, 50, 300]) / 450 * counts.sum()).pvalue > 1e-3


def test_balanced_and_weighted_sampling_work_across_shards(tmp_path):
    ds = _dataset(tmp_path / "ds.zarr")
    whole = ds.read_range(0, len(ds))
    bal = rs.BalancedSampler(ds, "action", 128, seed=0)
    got = np.concatenate([bal.sample()["action"] for _ in range(200)])
    classes = np.unique(whole["action"])
    counts = np.array([(got == c).sum() for c in classes])
    assert stats.chisquare(counts).pvalue > 1e-3  # an equal share for each class
    # within a class, rows of every shard are drawn (ids come from every shard's index)
    sampled_eps = np.concatenate([bal.sample()["episode"] for _ in range(50)])
    assert {int(e) >> 32 for e in sampled_eps} == {0, 1, 3}

    w = rs.WeightedSampler(ds, "reward", 256, seed=0, fields=["reward", "episode", "step"])
    key = {(int(e), int(s)): i for i, (e, s) in enumerate(zip(whole["episode"], whole["step"], strict=True))}
    counts = np.zeros(len(ds), np.int64)
    for _ in range(600):
        b = w.sample()
        for e, s in zip(b["episode"], b["step"], strict=True):
            counts[key[(int(e), int(s))]] += 1
    p = whole["reward"].astype(float) / whole["reward"].sum()
    keep = p > 0
    assert counts[~keep].sum() == 0  # weight 0: never drawn
    assert stats.chisquare(counts[keep], p[keep] / p[keep].sum() * counts.sum()).pvalue > 1e-3


def test_samplers_that_read_episodes_or_priorities_refuse_a_dataset_clearly(tmp_path):
    ds = _dataset(tmp_path / "ds.zarr")
    with pytest.raises(rs.SamplerError, match="n_step.*sharded dataset"):
        rs.UniformSampler(ds, 8, n_step=3, gamma=0.9)
    with pytest.raises(rs.SamplerError, match="priorities"):
        rs.PrioritizedSampler(ds, 8)
    ds.close()
    empty = create_dataset(tmp_path / "empty.zarr", STD_OBS, STD_ACT)
    with pytest.raises(rs.EmptyStoreError):
        rs.UniformSampler(empty, 8).sample()


_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import std_batch
    from replaystore.storage.dataset import open_dataset
    shard = open_dataset({root!r}).open_shard({i}, commit_every=37)
    n = 0
    while n < {rows}:
        shard.extend(std_batch(n, 11, term_every=9))
        n += 11
    shard.close()
""")


def test_readers_see_every_shard_grow_while_two_processes_write_and_never_a_torn_row(tmp_path):
    root = tmp_path / "ds.zarr"
    create_dataset(root, STD_OBS, STD_ACT).close()
    tests = os.path.dirname(__file__)
    rows = 6000
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER.format(tests=tests, root=str(root), i=i, rows=rows)])
             for i in (0, 1)]
    ds = rs.open(root)
    sampler = rs.UniformSampler(ds, 64, seed=0)
    seen, checked, lengths = set(), 0, []
    deadline = time.time() + 120
    while time.time() < deadline:
        alive = any(p.poll() is None for p in procs)
        ds.refresh()
        lengths.append(len(ds))
        if len(ds):
            batch = sampler.sample()
            # a whole row: every field is the function of reward the writer used
            for j, r in enumerate(batch["reward"].astype(np.int64)):
                row = std_batch(int(r), 1, term_every=9)
                for k in ("obs", "action", "next_obs", "terminated", "truncated"):
                    np.testing.assert_array_equal(batch[k][j], row[k][0])
                checked += 1
            seen.update(int(e) >> 32 for e in batch["episode"])
        if not alive:
            break
    assert all(p.wait(10) == 0 for p in procs)
    ds.refresh()
    assert len(ds) == 2 * (-(-rows // 11) * 11) and seen == {0, 1}
    assert checked > 0 and lengths == sorted(lengths) and len(set(lengths)) > 3  # it grew while read
    ds.close()


def test_verify_merge_export_and_info_take_a_dataset_and_pack_says_what_to_do(tmp_path):
    root = tmp_path / "ds.zarr"
    _dataset(root).close()
    report = rs.verify(root)
    assert report.ok and report.rows == sum(SIZES) and "4 shards" in report.notes[0]
    stats_ = rs.merge(tmp_path / "one.zarr", [root])
    with rs.open(tmp_path / "one.zarr") as one, rs.open(root) as ds:
        assert len(one) == len(ds) == stats_.rows
        np.testing.assert_array_equal(one.read_range(0, len(one), "reward")["reward"],
                                      ds.read_range(0, len(ds), "reward")["reward"])
    runner = CliRunner()
    res = runner.invoke(main, ["info", str(root)])
    assert res.exit_code == 0 and "shards:         4 (sharded dataset" in res.output
    res = runner.invoke(main, ["pack", str(root), str(tmp_path / "ds.zip")])
    assert res.exit_code == 1 and "merge" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["export", str(root), str(tmp_path / "ds.csv"), "--to", "csv"])
    assert res.exit_code == 0, res.output
    assert sum(1 for _ in open(tmp_path / "ds.csv")) == sum(SIZES) + 1


@pytest.mark.damages_store
def test_verify_of_a_dataset_names_the_damaged_shard(tmp_path):
    root = tmp_path / "ds.zarr"
    _dataset(root).close()
    chunk = next(p for p in (root / "shards" / "shard-00003" / "reward").rglob("*")
                 if p.is_file() and p.name != "zarr.json")
    data = bytearray(chunk.read_bytes())
    data[5] ^= 0xFF
    chunk.write_bytes(bytes(data))
    report = rs.verify(root)
    assert not report.ok
    assert any("shard-00003" in str(d) for d in report.damage)


def test_the_dataset_root_is_a_zarr_group_a_plain_zarr_reader_understands(tmp_path):
    import zarr

    root = tmp_path / "ds.zarr"
    _dataset(root).close()
    g = zarr.open_group(root, mode="r")
    assert "replaystore_dataset" in g.attrs
    assert g["shards/shard-00000/reward"].shape[0] >= 100
    assert json.loads((root / "shards" / "zarr.json").read_text())["node_type"] == "group"
