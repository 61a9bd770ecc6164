"""Stores at fsspec URLs: ``memory://`` and ``s3://`` against a real S3 API server (moto's
``ThreadedMotoServer``) on loopback. Every test compares with the same store on local disk."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import (
    STD_ACT,
    STD_OBS,
    assert_batches_equal,
    assert_same_samples_and_training,
    lake_rows,
    read_all,
    std_batch,
)
from gymnasium.spaces import Discrete

import replaystore as rs
from replaystore.cli import main

s3fs = pytest.importorskip("s3fs", reason="s3:// needs s3fs: pip install 'replaystore[s3]'")
moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server]")


@pytest.fixture
def s3_url(s3_endpoint):
    return f"s3://replays/{uuid.uuid4().hex[:8]}/buf.zarr"


@pytest.fixture
def memory_url():
    url = f"memory://replays-{uuid.uuid4().hex[:8]}/buf.zarr"
    yield url
    import fsspec

    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


def _fill(path, *, capacity=None, codecs=None, parts=((0, 3000), (3000, 2500)), **open_kw):
    """Create, append, close; reopen in mode 'a' and append more: the remote life cycle."""
    (a, n), *rest = parts
    with rs.create(path, STD_OBS, STD_ACT, capacity=capacity, codecs=codecs, chunk_rows=4096,
                   fsync=False, **open_kw) as s:
        s.extend(std_batch(a, n, term_every=9, trunc_every=40))
    for a, n in rest:
        with rs.open(path, mode="a", **open_kw) as s:
            s.extend(std_batch(a, n, term_every=9, trunc_every=40))


@pytest.mark.parametrize("capacity,codecs", [(None, None), (None, "zstd"), (4000, None)])
def test_memory_url_matches_local(tmp_path, memory_url, capacity, codecs):
    _fill(tmp_path / "local.zarr", capacity=capacity, codecs=codecs)
    _fill(memory_url, capacity=capacity, codecs=codecs)
    with rs.open(tmp_path / "local.zarr") as d, rs.open(memory_url) as m:
        assert (len(m), m.total, m.next_episode) == (len(d), d.total, d.next_episode)
        assert_batches_equal(read_all(m), read_all(d))
        idx = np.random.default_rng(0).integers(0, len(d), 500)
        assert_batches_equal(m.read(idx), d.read(idx))
        a = rs.UniformSampler(d, batch_size=32, seed=1)
        b = rs.UniformSampler(m, batch_size=32, seed=1)
        for _ in range(3):
            assert_batches_equal(b.sample(), a.sample())


def test_s3_create_append_reopen_sample_train(tmp_path, s3_url):
    """The whole life cycle on a real S3 API: create, append, reopen, sample, train."""
    local = tmp_path / "lake.zarr"
    n = 20_000
    rows = lake_rows(n)
    for path in (local, s3_url):
        with rs.create(path, Discrete(16), Discrete(4), fsync=False, chunk_rows=8192) as s:
            s.extend({k: v[:12_000] for k, v in rows.items()})
        with rs.open(path, mode="a") as s:
            s.extend({k: v[12_000:] for k, v in rows.items()})
    with rs.open(local) as d, rs.open(s3_url) as r:
        assert len(r) == n and r.observation_space == Discrete(16)
        assert_batches_equal(read_all(r), read_all(d))
        assert_same_samples_and_training(d, r, (
            lambda st: rs.UniformSampler(st, batch_size=64, seed=5),
            lambda st: rs.BalancedSampler(st, by="action", batch_size=64, seed=5),
            lambda st: rs.WeightedSampler(st, weights="reward", batch_size=64, seed=5),
        ))


def test_s3_ring_buffer_wraps_like_local(tmp_path, s3_url):
    parts = ((0, 3000), (3000, 2000), (5000, 4100))
    _fill(tmp_path / "ring.zarr", capacity=5000, parts=parts)
    _fill(s3_url, capacity=5000, parts=parts)
    with rs.open(tmp_path / "ring.zarr") as d, rs.open(s3_url) as r:
        assert len(r) == 5000 and r.total == 9100
        assert_batches_equal(read_all(r), read_all(d))
        np.testing.assert_array_equal(read_all(r)["reward"], np.arange(4100, 9100, dtype="f4"))


def test_s3_storage_options_and_errors(s3_endpoint, s3_url, tmp_path):
    # explicit storage_options work as well as the environment
    opts = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    with rs.create(s3_url, STD_OBS, STD_ACT, storage_options=opts) as s:
        s.extend(std_batch(0, 10))
    with rs.open(s3_url, storage_options=opts) as s:
        assert len(s) == 10
    with pytest.raises(rs.StoreExistsError, match="already exists"):
        rs.create(s3_url, STD_OBS, STD_ACT)
    rs.create(s3_url, STD_OBS, STD_ACT, overwrite=True).close()
    assert len(rs.open(s3_url)) == 0
    with pytest.raises(rs.NotAStoreError, match="no such store"):
        rs.open(s3_url.replace("buf.zarr", "nothing.zarr"))
    with pytest.raises(rs.StoreModeError, match="verify checks local"):
        rs.verify(s3_url)
    # a remote store packs into a zip like a local one
    rs.pack(s3_url, tmp_path / "r.zip")
    assert len(rs.open(tmp_path / "r.zip")) == 0


def test_cli_collect_info_sample_train_on_s3(s3_url, tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["collect", "FrozenLake-v1", "--out", s3_url, "--steps", "3000",
                          "--num-envs", "2", "--seed", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    local = tmp_path / "lake.zarr"
    res = r.invoke(main, ["collect", "FrozenLake-v1", "--out", str(local), "--steps", "3000",
                          "--num-envs", "2", "--seed", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    with rs.open(local) as d, rs.open(s3_url) as s:
        assert_batches_equal(read_all(s), read_all(d))
    for args in (["info", s3_url], ["head", s3_url, "-n", "3"], ["episodes", s3_url, "-n", "3"],
                 ["sample", s3_url, "--batch-size", "4"]):
        res = r.invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    res = r.invoke(main, ["train", s3_url, "--out", str(tmp_path / "q.npy"), "--gamma", "0.9",
                          "--no-progress"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["train", str(local), "--out", str(tmp_path / "q2.npy"), "--gamma", "0.9",
                          "--no-progress"])
    np.testing.assert_array_equal(np.load(tmp_path / "q.npy")["q"], np.load(tmp_path / "q2.npy")["q"])
    res = r.invoke(main, ["info", s3_url.replace("buf.zarr", "missing.zarr")])
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit)
    assert len(res.output.strip().splitlines()) == 1 and "no such store" in res.output


def test_unreachable_endpoint_and_storage_options_from_the_environment(s3_url, monkeypatch):
    dead = {"endpoint_url": "http://127.0.0.1:1", "key": "k", "secret": "s",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    with pytest.raises(rs.RemoteStoreError, match=r"s3://.*object store request failed"):
        rs.open(s3_url, storage_options=dead)
    # the command line takes storage options from REPLAYSTORE_STORAGE_OPTIONS
    monkeypatch.setenv("REPLAYSTORE_STORAGE_OPTIONS", json.dumps(dead))
    res = CliRunner().invoke(main, ["info", s3_url])
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "object store request failed" in lines[0], res.output
    monkeypatch.setenv("REPLAYSTORE_STORAGE_OPTIONS", "{not json")
    res = CliRunner().invoke(main, ["info", s3_url])
    assert res.exit_code != 0 and "REPLAYSTORE_STORAGE_OPTIONS is not valid JSON" in res.output
    monkeypatch.delenv("REPLAYSTORE_STORAGE_OPTIONS")
    with pytest.raises(rs.NotAStoreError, match="no such store"):
        rs.open("s3://no-such-bucket/buf.zarr")


def test_a_url_scheme_without_its_backend_names_what_to_install():
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(rs.MissingExtraError, match="gcsfs"):
            rs.open("gcs://bucket/buf.zarr")
    else:  # pragma: no cover - gcsfs installed: nothing to check
        pass
