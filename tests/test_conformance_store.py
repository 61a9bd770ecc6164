"""Store conformance: what every backend must do, run on every backend.

:class:`StoreConformance` holds the tests; each ``Test*`` class at the bottom only names
the :class:`~conformance.Location` of one backend. Tests that need a capability skip by the
backend's flag (:func:`conformance.requires`), so a read-only backend (a packed ``.zip``)
runs every reading test on a store written locally and packed, and skips the writing ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from conformance import (
    ACT,
    ENV_ID,
    FLAGS,
    INFO,
    OBS,
    RING,
    RING_ZSTD,
    UNBOUNDED,
    BackendSuite,
    LocalDir,
    MemoryFS,
    PackedZip,
    Recipe,
    S3Location,
    expected_rows,
    final_episode,
    ids_of,
    requires,
    rows,
    take,
)
from conftest import assert_batches_equal, rows_of

import replaystore as rs
from replaystore.storage.fieldio import ChunkedField, MappedField

RECIPES = {"unbounded": UNBOUNDED, "ring": RING}


def assert_row_equal(row: dict, want: dict, i: int) -> None:
    assert list(row) == list(want)
    for k, v in want.items():
        np.testing.assert_array_equal(np.asarray(row[k]), v[i], err_msg=f"row {i}, field {k!r}")
        assert np.asarray(row[k]).dtype == v.dtype, k


class StoreConformance(BackendSuite):
    """Behaviour every backend shows. Subclasses set ``location``."""

    # -- the backend itself ---------------------------------------------------------------
    def test_backend_flags_are_booleans_and_stores_open_on_that_backend(self, shared):
        flags = {f: getattr(type(shared.backend), f) for f in FLAGS}
        assert all(type(v) is bool for v in flags.values()), flags
        assert type(shared.reader(UNBOUNDED)._backend) is type(shared.backend)

    # -- round trip -----------------------------------------------------------------------
    @pytest.mark.parametrize("kind", RECIPES)
    def test_every_field_round_trips_through_every_read(self, shared, kind):
        recipe = RECIPES[kind]
        want = recipe.expected()
        n = len(want["reward"])
        s = shared.reader(recipe)
        assert s.schema.names == tuple(want)
        assert [s.schema[k].dtype for k in want] == [v.dtype for v in want.values()]
        assert_batches_equal(s.read_range(0, n), want)
        assert_batches_equal(s.read_range(n // 3, n // 3 + 211), take(want, slice(n // 3, n // 3 + 211)))
        idx = np.random.default_rng(0).integers(-n, n, 400)  # negatives, duplicates, any order
        assert_batches_equal(s.read(idx), take(want, idx))
        sub = s.read(idx[:50], fields=["reward", "obs"])
        assert set(sub) == {"reward", "obs"}
        assert_batches_equal(sub, take(want, idx[:50]), fields=["reward", "obs"])
        for i in (0, 1, 511, 512, 1023, 1024, n // 2, n - 1, -1, -n):
            if -n <= i < n:
                assert_row_equal(s[i], want, i)
        assert_batches_equal(s[100:357], take(want, slice(100, 357)))
        assert_batches_equal(s[3::97], take(want, slice(3, None, 97)))
        assert_batches_equal(s[n - 10:], take(want, slice(n - 10, None)))

    @pytest.mark.parametrize("kind", RECIPES)
    def test_to_pandas(self, shared, kind):
        recipe = RECIPES[kind]
        want = recipe.expected()
        n = len(want["reward"])
        s = shared.reader(recipe)
        df = s.to_pandas()
        assert len(df) == n
        np.testing.assert_array_equal(df.index.to_numpy(), np.arange(n))
        for name, v in want.items():
            if v.ndim == 1:
                np.testing.assert_array_equal(df[name].to_numpy(), v, err_msg=name)
            else:
                for j in range(v.shape[1]):
                    np.testing.assert_array_equal(df[f"{name}_{j}"].to_numpy(), v[:, j], err_msg=name)
        part = s.to_pandas(fields=["reward", "tag"], start=10, stop=30)
        assert list(part.columns) == ["reward", "tag_0", "tag_1"]
        np.testing.assert_array_equal(part.index.to_numpy(), np.arange(10, 30))
        np.testing.assert_array_equal(part["tag_1"].to_numpy(), want["tag"][10:30, 1])

    def test_counters_of_an_unbounded_store(self, shared):
        s = shared.reader(UNBOUNDED)
        assert (len(s), s.size, s.total, s.buffered) == (2000, 2000, 2000, 0)
        assert s.capacity is None
        assert s.next_episode == final_episode(2000)[2]
        assert s.version == (2000, 2000)
        assert s.id_range == (0, 2000)

    def test_a_ring_keeps_exactly_the_newest_rows_in_order(self, shared):
        want = RING.expected()
        s = shared.reader(RING)
        assert s.capacity == 1000
        assert (len(s), s.size, s.total, s.buffered) == (1000, 1000, 2600, 0)
        assert s.version == (2600, 1000) and s.id_range == (1600, 2600)
        assert s.next_episode == final_episode(2600)[2]
        got = s.read_range(0, len(s))
        np.testing.assert_array_equal(ids_of(got), np.arange(1600, 2600))
        assert_batches_equal(got, want)
        assert ids_of(s[0:1])[0] == 1600 and ids_of(s[-1:])[0] == 2599
        # rows either side of the ring's end (logical 399/400: physical 999/0) and of
        # its chunk boundary (logical 911/912: physical 511/512)
        idx = np.array([399, 400, 401, 0, 999, 911, 912])
        assert_batches_equal(s.read(idx), take(want, idx))

    def test_appending_after_reopening_continues_ids_episodes_and_metadata(self, where):
        requires(where, "writable")
        path = where.build(Recipe((700,)))
        for start, n in ((700, 500), (1200, 333)):
            with where.open(path, "a", fsync=False) as s:
                assert (s.total, s.buffered, s.next_episode) == (start, 0, final_episode(start)[2])
                s.extend(rows(start, n - 1))
                s.append(**rows_of(rows(start + n - 1, 1))[0])
                assert len(s) == start + n and s.next_episode == final_episode(start + n)[2]
                assert_batches_equal(s.read_range(start, start + n), take(expected_rows(start + n), slice(start, None)))
                if start == 700:  # update_info is committed at once: readers see it before close
                    s.update_info({"seed": 8, "new": [1.5]}, env={"kwargs": {"slippery": True}})
                    with where.open(path) as r:
                        assert r.info == {**INFO, "seed": 8, "new": [1.5]}
                        assert r.env_info == {"id": ENV_ID, "kwargs": {"slippery": True}}
                        assert r.total == 700  # and it committed no buffered row
                    with pytest.raises(rs.SchemaError, match="JSON"):
                        s.update_info({"bad": object()})
        with where.open(path) as s:
            assert s.total == 1533 and s.next_episode == final_episode(1533)[2]
            assert_batches_equal(s.read_range(0, len(s)), expected_rows(1533))
            assert s.info == {**INFO, "seed": 8, "new": [1.5]}

    # -- metadata -------------------------------------------------------------------------
    def test_metadata_and_spaces_round_trip(self, shared):
        s = shared.reader(UNBOUNDED)  # its second session called update_info
        assert s.info == {**INFO, "session": 2}
        assert s.env_info == {"id": ENV_ID, "kwargs": {"map": "4x4"}}
        assert s.observation_space == OBS and s.action_space == ACT
        assert s.format_version == rs.FORMAT_VERSION
        assert s.metadata["capacity"] is None
        info = s.info
        info["nested"]["a"].append(3)  # a copy
        assert s.info["nested"] == INFO["nested"]
        s = shared.reader(RING)
        assert s.metadata["capacity"] == 1000 and s.capacity == 1000
        assert s.info == {**INFO, "session": 2} and s.observation_space == OBS

    # -- errors ---------------------------------------------------------------------------
    def test_errors(self, shared):
        path = shared.store(UNBOUNDED)
        s = shared.open(path)  # its own reader: this test closes it
        n = len(s)
        for bad in ([n], [0, n + 5], [-n - 1]):
            with pytest.raises(rs.RowIndexError, match="out of range"):
                s.read(bad)
        with pytest.raises(rs.RowIndexError):
            s[n]
        with pytest.raises(rs.StoreModeError, match="read-only"):
            s.extend(rows(n, 3))
        with pytest.raises(rs.StoreModeError):
            s.append(**rows_of(rows(n, 1))[0])
        with pytest.raises(rs.StoreModeError):
            s.update_info({"x": 1})
        with pytest.raises(rs.StoreModeError):
            s.flush()
        assert len(s) == n and s.info == {**INFO, "session": 2}
        s.close()
        with pytest.raises(rs.StoreModeError, match="closed"):
            s.read([0])
        with pytest.raises(rs.NotAStoreError):
            shared.open(shared.url("missing"))
        with pytest.raises(rs.NotAStoreError):
            shared.open(shared.url("missing"), "a")
        # mode "a" works exactly where the backend says it is writable
        if shared.backend.writable:
            shared.open(path, "a").close()
        else:
            with pytest.raises(rs.StoreModeError, match="read-only"):
                shared.open(path, "a")
            with pytest.raises(rs.StoreModeError, match="read-only"):
                shared.create(shared.url("new"))
        with shared.open(path) as s:
            assert s.total == 2000

    # -- compression, files ---------------------------------------------------------------
    def test_compressed_fields_read_back_the_same(self, shared):
        want = RING_ZSTD.expected()  # a ring: chunks rewritten as it wraps
        s = shared.reader(RING_ZSTD)
        assert all(f.codec == "zstd:3" and f.compressed for f in s.schema)
        assert all(isinstance(s.field_io(f.name), ChunkedField) for f in s.schema)
        assert_batches_equal(s.read_range(0, len(s)), want)
        idx = np.random.default_rng(1).integers(0, len(s), 300)
        assert_batches_equal(s.read(idx), take(want, idx))
        batch = rs.UniformSampler(s, batch_size=64, seed=2).sample()
        lo = s.id_range[0]
        assert_batches_equal(batch, take(want, ids_of(batch) - lo))

    def test_uncompressed_fields_are_memory_mapped_exactly_where_the_backend_can(self, shared):
        s = shared.reader(UNBOUNDED)
        kind = MappedField if s._backend.memory_mappable else ChunkedField
        assert all(isinstance(s.field_io(f.name), kind) for f in s.schema)

    def test_hugepages_can_be_asked_for_on_any_backend(self, shared):
        want = RING.expected()
        for opt in (True, False):
            with shared.open(shared.store(RING), hugepages=opt) as s:
                assert_batches_equal(s.read_range(0, len(s)), want)

    @pytest.mark.parametrize("recipe", [UNBOUNDED, RING_ZSTD], ids=["plain", "zstd"])
    def test_nbytes_on_disk_has_one_positive_entry_per_field(self, shared, recipe):
        s = shared.reader(recipe)
        used = s.nbytes_on_disk()
        assert list(used) == list(s.schema.names)
        assert all(isinstance(v, int) and v > 0 for v in used.values()), used

    # -- one writer -----------------------------------------------------------------------
    def test_a_second_writer_is_refused(self, where):
        requires(where, "has_lock")
        path = where.build(Recipe((100,)))
        w = where.open(path, "a")
        try:
            with pytest.raises(rs.StoreLockedError):
                where.open(path, "a")
            with where.open(path) as r:  # readers are welcome
                assert len(r) == 100
        finally:
            w.close()
        with where.open(path, "a") as w2:  # released on close
            w2.extend(rows(100, 5))
        with where.open(path) as r:
            assert r.total == 105

    def test_verify_passes_on_a_store_written_by_sessions(self, shared):
        requires(shared, "has_checksums")
        for recipe in (UNBOUNDED, RING, RING_ZSTD):
            report = rs.verify(shared.store(recipe))
            assert report.ok, report.lines()

    # -- class indexes --------------------------------------------------------------------
    @pytest.mark.parametrize("kind", RECIPES)
    def test_class_index_and_balanced_sampling(self, shared, kind):
        recipe = RECIPES[kind]
        want = recipe.expected()
        s = shared.reader(recipe)
        lo, hi = s.id_range
        idx = s.class_index("action")
        assert idx.in_memory is (not s._backend.persistent_indexes)
        assert sorted(idx.classes) == [0, 1, 2, 3] and idx.covered == s.total
        starts, counts = idx.live_ranges(lo, hi)
        for j, c in enumerate(idx.classes):
            ids = idx.gather(j, np.arange(starts[j], starts[j] + counts[j]))
            np.testing.assert_array_equal(ids, lo + np.flatnonzero(want["action"] == c), err_msg=f"class {c}")
        sampler = rs.BalancedSampler(s, by="action", batch_size=400, seed=0)
        batches = [sampler.sample() for _ in range(10)]
        got = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        g = ids_of(got)
        assert g.min() >= lo and g.max() < hi
        assert_batches_equal(got, take(want, g - lo))  # whole stored rows
        share = np.bincount(got["action"], minlength=4) / len(g)
        assert np.all(np.abs(share - 0.25) < 0.04), share  # balanced: the data hold 60% of class 0
        with shared.open(shared.store(recipe)) as s:  # and again after reopening
            idx = s.class_index("action")
            assert sorted(idx.classes) == [0, 1, 2, 3] and idx.covered == s.total

    # -- reading never writes -------------------------------------------------------------
    @pytest.mark.parametrize("capacity", [None, 1000])
    def test_the_writer_reads_its_buffered_rows_without_committing(self, where, capacity):
        """Also: ``version`` follows appends and evictions, not commits."""
        requires(where, "writable")

        def readable(appended: int) -> int:
            return appended if capacity is None else min(appended, capacity)

        url = where.url("live")
        w = where.create(url, Recipe(capacity=capacity), buffer_rows=4096)  # no automatic commit
        try:
            assert w.version == (0, 0) and len(w) == 0
            w.extend(rows(0, 600))
            assert w.version == (600, 600) and (len(w), w.size, w.total, w.buffered) == (600, 0, 0, 600)
            w.flush()
            assert w.version == (600, 600) and (len(w), w.size, w.total, w.buffered) == (600, 600, 600, 0)
            w.extend(rows(600, 600))  # a ring evicts 200 rows
            assert w.version == (1200, readable(1200)) and len(w) == readable(1200)
            w.flush()
            assert w.version == (1200, readable(1200)) and (w.size, w.total) == (readable(1200), 1200)
            w.extend(rows(1200, 300))  # these stay in the write buffer
            want = expected_rows(1500, capacity)
            committed = expected_rows(1200, capacity)
            n = len(want["reward"])
            before = (w.generation, w.buffered, w.version, w.size, w.total, w.next_episode)
            assert before[1:] == (300, (1500, n), readable(1200), 1200, final_episode(1500)[2])
            # every way of reading sees the buffered rows...
            assert len(w) == n and w.id_range == (1500 - n, 1500)
            assert_batches_equal(w.read_range(0, n), want)
            idx = np.random.default_rng(3).integers(-n, n, 500)
            assert_batches_equal(w.read(idx), take(want, idx))
            assert_row_equal(w[-1], want, n - 1)
            assert_batches_equal(w[n - 400:], take(want, slice(n - 400, None)))
            np.testing.assert_array_equal(w.to_pandas(fields=["obs"])["obs_0"].to_numpy(), want["obs"][:, 0])
            sampled = np.concatenate([ids_of(rs.UniformSampler(w, batch_size=256, seed=k).sample())
                                      for k in range(4)])
            assert sampled.min() >= 1500 - n and sampled.max() < 1500
            assert (sampled >= 1200).any()
            # ...and commits nothing
            assert (w.generation, w.buffered, w.version, w.size, w.total, w.next_episode) == before
            with where.open(url) as other:  # another open sees committed rows only
                assert len(other) == readable(1200) and other.total == 1200
                assert_batches_equal(other.read_range(0, len(other)), committed)
            w.flush()
            assert w.generation > before[0] and w.buffered == 0
            assert w.version == before[2]  # a flush changes no readable rows
            with where.open(url) as other:
                assert other.total == 1500
                assert_batches_equal(other.read_range(0, len(other)), want)
            w.append(**rows_of(rows(1500, 1))[0])  # a full ring: the same length, a new version
            assert w.version == (1501, readable(1501)) and len(w) == readable(1501)
            g = w.generation
            w.update_info({"k": 1})  # a commit that changes no rows
            assert w.generation == g + 1 and w.version == (1501, readable(1501))
        finally:
            w.close()
        with where.open(url) as r:
            assert r.version == (1501, readable(1501)) and r.id_range == (1501 - readable(1501), 1501)
            assert_batches_equal(r.read_range(0, len(r)), expected_rows(1501, capacity))


class TestLocalDirStore(StoreConformance):
    location = LocalDir


class TestPackedZipStore(StoreConformance):
    location = PackedZip


class TestMemoryStore(StoreConformance):
    location = MemoryFS


class TestS3Store(StoreConformance):
    location = S3Location
