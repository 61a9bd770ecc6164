"""Model-based tests: a store against ``collections.deque(maxlen=N)`` (ring) or a list.

Rows are self-identifying (``reward`` is a global counter, the other fields are functions
of it), so the model only keeps the counters of the rows it expects, plus the expected
``episode``/``step`` auto-fill of each row.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import deque
from pathlib import Path

import numpy as np
from conftest import STD_ACT, STD_OBS, rows_of, std_batch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import replaystore as rs

TERM_EVERY, TRUNC_EVERY = 5, 7
COMPARED = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


class StoreModel(RuleBasedStateMachine):
    """Drives a store and a reference model with the same operations."""

    codecs: str | None = None
    bounded: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="rs-model-"))
        self.path = self.dir / "s.zarr"
        self.store = None

    # -- setup ------------------------------------------------------------------------
    # small values are drawn often so the ring wraps exactly at chunk/ring boundaries
    @initialize(capacity=st.integers(1, 6) | st.integers(1, 50))
    def setup(self, capacity):
        self.capacity = capacity if self.bounded else None
        self.store = rs.create(
            self.path,
            STD_OBS,
            STD_ACT,
            capacity=self.capacity,
            chunk_rows=4096,
            codecs=self.codecs,
        )
        self.rows: deque[int] | list[int] = (
            deque(maxlen=self.capacity) if self.bounded else []
        )
        self.counter = 0
        # episode auto-fill model: current episode, step, next free id; per counter
        self.ep, self.step, self.next_ep = 0, 0, 1
        self.episode_of: dict[int, tuple[int, int]] = {}

    def _model_add(self, n: int) -> dict[str, np.ndarray]:
        batch = std_batch(self.counter, n, term_every=TERM_EVERY, trunc_every=TRUNC_EVERY)
        for i in range(n):
            c = self.counter + i
            self.episode_of[c] = (self.ep, self.step)
            if batch["terminated"][i] or batch["truncated"][i]:
                self.ep, self.next_ep, self.step = self.next_ep, self.next_ep + 1, 0
            else:
                self.step += 1
            self.rows.append(c)
        self.counter += n
        return batch

    def _expected(self) -> dict[str, np.ndarray]:
        counters = np.array(list(self.rows), dtype=np.int64)
        every = std_batch(0, self.counter, term_every=TERM_EVERY, trunc_every=TRUNC_EVERY)
        want = {k: every[k][counters] for k in COMPARED}
        want["episode"] = np.array([self.episode_of[c][0] for c in counters], dtype=np.int64)
        want["step"] = np.array([self.episode_of[c][1] for c in counters], dtype=np.int64)
        return want

    def _compare(self, store, want) -> None:
        assert len(store) == len(want["reward"])
        got = store.read_range(0, len(store))
        for k, v in want.items():
            assert got[k].dtype == v.dtype, k
            np.testing.assert_array_equal(got[k], v, err_msg=f"read_range {k}")
        if len(store):
            sliced = store[:]
            np.testing.assert_array_equal(sliced["reward"], want["reward"])
            n = len(store)
            idx = np.array([n - 1, 0, n // 2, -1, 0])
            picked = store.read(idx)
            for k, v in want.items():
                np.testing.assert_array_equal(picked[k], v[idx], err_msg=f"read {k}")

    # -- operations -------------------------------------------------------------------
    @rule()
    def append(self):
        row = rows_of(self._model_add(1))[0]
        self.store.append(**row)

    @rule(n=st.integers(0, 8) | st.integers(0, 120))
    def extend(self, n):
        self.store.extend(self._model_add(n))

    @precondition(lambda self: self.bounded)
    @rule(then_reopen=st.booleans())
    def fill_to_wrap(self, then_reopen):
        """Extend exactly up to the end of the ring, so the next write starts at row 0."""
        n = self.capacity - self.counter % self.capacity
        self.store.extend(self._model_add(n))
        if then_reopen:
            self.reopen(then_append=1)

    @rule()
    def flush(self):
        self.store.flush()
        # a reader opened now sees exactly the committed rows
        with rs.open(self.path) as reader:
            self._compare(reader, self._expected())

    @rule(then_append=st.integers(0, 3))
    def reopen(self, then_append):
        """Close, reopen for appending, and continue with a few single rows."""
        self.store.close()
        self.store = rs.open(self.path, "a")
        assert self.store.next_episode == self.next_ep
        for row in rows_of(self._model_add(then_append)):
            self.store.append(**row)

    @rule(k=st.integers(0, 3))
    def reserve_episode_ids(self, k):
        ids = self.store.new_episode_ids(k)
        np.testing.assert_array_equal(ids, np.arange(self.next_ep, self.next_ep + k))
        self.next_ep += k

    @rule()
    def check(self):
        self._compare(self.store, self._expected())

    @precondition(lambda self: self.store is not None)
    @invariant()
    def length(self):
        assert len(self.store) == len(self.rows)
        if self.bounded:
            assert len(self.store) <= self.capacity

    def teardown(self):
        try:
            if self.store is not None:
                self.store.close()
                with rs.open(self.path) as store:
                    assert store.total == self.counter
                    self._compare(store, self._expected())
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=12,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


class RingModel(StoreModel):
    bounded = True


class UnboundedModel(StoreModel):
    bounded = False


class CompressedRingModel(StoreModel):
    bounded = True
    codecs = "zstd:3"


TestRingModel = RingModel.TestCase
TestRingModel.settings = SETTINGS
TestUnboundedModel = UnboundedModel.TestCase
TestUnboundedModel.settings = settings(SETTINGS, max_examples=20)
TestCompressedRingModel = CompressedRingModel.TestCase
# Steps on a compressed store are slow: a failure is reported without shrinking.
TestCompressedRingModel.settings = settings(
    SETTINGS, max_examples=30, phases=[Phase.explicit, Phase.generate]
)


def test_ring_batch_larger_than_capacity_example(tmp_store_path):
    """A fixed example of the model: one batch of 3x the capacity keeps its last rows."""
    with rs.create(tmp_store_path, STD_OBS, STD_ACT, capacity=7, chunk_rows=4096) as store:
        store.extend(std_batch(0, 3))
        store.extend(std_batch(3, 21))
        assert len(store) == 7
        np.testing.assert_array_equal(store[:]["reward"], np.arange(17, 24, dtype=np.float32))
    with rs.open(tmp_store_path) as store:
        assert (store.size, store.total) == (7, 24)
        np.testing.assert_array_equal(store[:]["reward"], np.arange(17, 24, dtype=np.float32))
