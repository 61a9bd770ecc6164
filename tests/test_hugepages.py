"""2 MiB pages for stores that fit in memory: same data either way, and the choice is right."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import STD_ACT, STD_OBS, assert_batches_equal, read_all, std_batch

import replaystore as rs
from replaystore.storage.mapping import _HUGE_OK, HUGE, memory_budget


def _store(path, rows=300_000):
    # obs float32[3] in chunks of 2**18 rows: 3 MiB chunks are not a multiple of 2 MiB;
    # reward float32: 1 MiB chunks; episode int64 in 2**18-row chunks: exactly 2 MiB
    with rs.create(path, STD_OBS, STD_ACT, chunk_rows=1 << 18, fsync=False) as s:
        s.extend(std_batch(0, rows, term_every=13))
    return path


def test_same_rows_with_and_without_2mib_pages(tmp_path):
    path = _store(tmp_path / "s.zarr")
    idx = np.random.default_rng(0).integers(0, 300_000, 5000)
    with rs.open(path, hugepages=True) as h, rs.open(path, hugepages=False) as n:
        assert_batches_equal(read_all(h), read_all(n))
        assert_batches_equal(h.read(idx), n.read(idx))
        a = rs.UniformSampler(h, batch_size=128, seed=2)
        b = rs.UniformSampler(n, batch_size=128, seed=2)
        for _ in range(5):
            assert_batches_equal(a.sample(), b.sample())
        for f in h.schema:
            want = _HUGE_OK and (f.row_bytes * f.chunk_rows) % HUGE == 0
            assert h._view(f).hugepages == want, f.name
            assert not n._view(f).hugepages
            if want:  # the reservation is 2 MiB aligned, so PMD mappings are possible
                assert h._view(f).array.ctypes.data % HUGE == 0


def test_auto_uses_2mib_pages_only_when_the_store_fits_in_memory(tmp_path):
    budget = memory_budget()
    assert budget is None or budget > 0
    path = _store(tmp_path / "s.zarr")
    with rs.open(path) as s:
        s.read([0])
        assert s._use_hugepages() == (budget is not None)  # 10 MB store: fits anywhere


def test_bad_hugepages_option(tmp_path):
    path = _store(tmp_path / "s.zarr", rows=10)
    with pytest.raises(rs.SchemaError, match="hugepages"):
        rs.open(path, hugepages="yes")
