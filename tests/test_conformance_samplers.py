"""Sampler conformance: every sampler on every backend.

For each sampler of :data:`SAMPLERS` and each backend (the ``Test*`` classes at the bottom):
the same seed gives the same batches as on a local directory holding the same rows;
batches hold only stored rows, whole (on a ring that wrapped: only the newest
``capacity``); ``state_dict()`` survives JSON and a fresh sampler continues with the very
same batches; and in the writer's own process a sampler sees the rows still in the write
buffer without committing them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from conformance import (
    RING,
    UNBOUNDED,
    BackendSuite,
    LocalDir,
    Location,
    MemoryFS,
    PackedZip,
    Recipe,
    S3Location,
    expected_rows,
    ids_of,
    requires,
    rows,
    shared_location,
    take,
)
from conftest import assert_batches_equal

import replaystore as rs

BATCH = 50  # divides both stores' row counts (2000, 1000): epochs end on a batch boundary

SAMPLERS = {
    "uniform": lambda store, seed: rs.UniformSampler(store, batch_size=BATCH, seed=seed),
    "uniform-epochs": lambda store, seed: rs.UniformSampler(store, batch_size=BATCH, seed=seed,
                                                            replacement=False),
    "balanced-action": lambda store, seed: rs.BalancedSampler(store, by="action", batch_size=BATCH,
                                                              seed=seed),
    "weighted-field": lambda store, seed: rs.WeightedSampler(store, weights="w", batch_size=BATCH,
                                                             seed=seed),
    "prioritized": lambda store, seed: _prioritized(store, seed),
}


def _prioritized(store, seed):
    """A PrioritizedSampler (its in-memory warning on read-only backends is expected)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*the store is not open for appending", RuntimeWarning)
        return rs.PrioritizedSampler(store, batch_size=BATCH, seed=seed)
RECIPES = {"unbounded": UNBOUNDED, "ring": RING}

by_sampler = pytest.mark.parametrize("sampler", SAMPLERS)
by_recipe = pytest.mark.parametrize("kind", RECIPES)


def assert_stored_rows(batch: dict, want: dict, lo: int, what: str) -> np.ndarray:
    """Every row of ``batch`` is a whole stored row (``want`` holds global rows ``lo ..``)."""
    ids = ids_of(batch)
    n = len(want["reward"])
    assert len(ids) == BATCH, what
    assert ids.min() >= lo and ids.max() < lo + n, f"{what}: rows {ids.min()}..{ids.max()} not in [{lo}, {lo + n})"
    assert_batches_equal(batch, take(want, ids - lo))
    return ids


@dataclass
class Live:
    """A writer of the backend under test and one of a local directory, each with 1200
    committed rows and 300 more still in its write buffer."""

    capacity: int | None
    location: Location
    url: object
    writer: rs.ReplayStore
    reference: rs.ReplayStore


class SamplerConformance(BackendSuite):
    """Behaviour of every sampler on every backend. Subclasses set ``location``."""

    @pytest.fixture(scope="class")
    def reference(self, request):
        """Local directory stores of the same recipes: what every backend must sample alike."""
        return shared_location(LocalDir, request)

    @by_recipe
    @by_sampler
    def test_the_same_seed_gives_the_same_batches_as_a_local_directory(self, shared, reference, kind, sampler):
        recipe, make = RECIPES[kind], SAMPLERS[sampler]
        here, there = make(shared.reader(recipe), 7), make(reference.reader(recipe), 7)
        for _ in range(6):
            got, want = here.sample(), there.sample()
            assert list(got) == list(want)
            assert_batches_equal(got, want)

    @by_recipe
    @by_sampler
    def test_batches_hold_only_whole_stored_rows(self, shared, kind, sampler):
        recipe, make = RECIPES[kind], SAMPLERS[sampler]
        store = shared.reader(recipe)
        lo, hi = store.id_range
        assert hi - lo == len(store)
        want = recipe.expected()
        s = make(store, 3)
        seen = np.concatenate([assert_stored_rows(s.sample(), want, lo, sampler) for _ in range(30)])
        if recipe.capacity is not None:  # a ring that wrapped: only the newest rows
            assert lo == recipe.total - recipe.capacity and seen.min() >= lo

    @by_recipe
    @by_sampler
    def test_state_dict_survives_json_and_a_fresh_sampler_continues_alike(self, shared, kind, sampler):
        recipe, make = RECIPES[kind], SAMPLERS[sampler]
        store = shared.reader(recipe)
        s = make(store, 11)
        for _ in range(37):  # mid draw-ahead block, and (epochs) past an epoch's end, or near it
            s.sample()
        state = json.loads(json.dumps(s.state_dict()))
        want = [s.sample() for _ in range(8)]
        fresh = make(store, 12345)
        fresh.load_state_dict(state)
        for k, w in enumerate(want):
            got = fresh.sample()
            assert_batches_equal(got, w)
            assert np.array_equal(ids_of(got), ids_of(w)), k

    @by_recipe
    def test_an_epoch_returns_every_stored_row_once(self, shared, kind):
        recipe = RECIPES[kind]
        store = shared.reader(recipe)
        lo, hi = store.id_range
        s = rs.UniformSampler(store, batch_size=BATCH, seed=4, replacement=False)
        epochs = [np.concatenate([ids_of(s.sample()) for _ in range((hi - lo) // BATCH)]) for _ in range(2)]
        for ids in epochs:
            np.testing.assert_array_equal(np.sort(ids), np.arange(lo, hi))
        assert not np.array_equal(epochs[0], epochs[1])

    # -- in the writer's process ----------------------------------------------------------
    @pytest.fixture(scope="class", params=[None, 1000], ids=["unbounded", "ring"])
    def live(self, tmp_path_factory, request):
        cap = request.param
        locs = [self.location(tmp_path_factory.mktemp("live"), request),
                LocalDir(tmp_path_factory.mktemp("live-reference"), request)]
        requires(locs[0], "writable")
        made = []
        try:
            for loc in locs:
                url = loc.url("live")
                w = loc.create(url, Recipe(capacity=cap), buffer_rows=4096, fsync=False)  # no automatic commit
                made.append((url, w))
                w.extend(rows(0, 1200))
                w.flush()
                w.extend(rows(1200, 300))
            yield Live(cap, locs[0], made[0][0], made[0][1], made[1][1])
        finally:
            for _, w in made:
                w.close()
            for loc in locs:
                loc.close()

    @by_sampler
    def test_the_writer_samples_its_buffered_rows_without_committing(self, live, sampler):
        make = SAMPLERS[sampler]
        w = live.writer
        want = expected_rows(1500, live.capacity)
        lo = 1500 - len(want["reward"])
        committed = min(1200, live.capacity or 1200)

        def counters():
            return w.generation, w.buffered, w.version, w.size, w.total, len(w)

        before = counters()
        assert before[1:] == (300, (1500, 1500 - lo), committed, 1200, 1500 - lo)
        s = make(w, 5)
        made = counters()
        reference = make(live.reference, 5)
        seen = []
        for _ in range(10):
            batch = s.sample()
            seen.append(assert_stored_rows(batch, want, lo, sampler))
            assert_batches_equal(batch, reference.sample())  # the same batches as a local writer
        assert (np.concatenate(seen) >= 1200).any(), "no buffered row was ever sampled"
        assert counters() == made, "sampling committed or changed the store"
        assert made == before, "making the sampler committed or changed the store"
        with live.location.open(live.url) as other:  # another open sees the committed rows only
            assert (other.total, len(other)) == (1200, committed)


class TestLocalDirSamplers(SamplerConformance):
    location = LocalDir


class TestPackedZipSamplers(SamplerConformance):
    location = PackedZip


class TestMemorySamplers(SamplerConformance):
    location = MemoryFS


class TestS3Samplers(SamplerConformance):
    location = S3Location
