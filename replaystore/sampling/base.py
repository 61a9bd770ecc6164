"""Sampler base class: which rows to read. Reading them is the store's job.

A sampler owns its ``np.random.Generator``; ``state_dict()`` captures the generator
and any epoch position so a run can stop and resume with the very same batches.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import EmptyStoreError, SamplerError
from ..storage.store import ReplayStore
from .reader import BatchReader

__all__ = ["Sampler", "as_generator"]


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """``seed`` as a Generator: an int seeds a new PCG64, a Generator is used as is."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (not isinstance(seed, int | np.integer) or isinstance(seed, bool)):
        raise SamplerError(f"seed must be an int, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)


class Sampler(ABC):
    """Draws batches of rows from a store.

    Subclasses implement :meth:`sample_indices` (logical row numbers of the next batch).
    Everything else—reading, prefetching, state—lives here.
    """

    def __init__(
        self,
        store: ReplayStore,
        batch_size: int,
        *,
        seed: int | np.random.Generator | None = None,
        fields: Sequence[str] | None = None,
        readahead: bool | str = "auto",
    ) -> None:
        if not isinstance(store, ReplayStore):
            raise SamplerError(f"expected a ReplayStore, got {type(store).__name__}")
        if not isinstance(batch_size, int | np.integer) or isinstance(batch_size, bool) or batch_size <= 0:
            raise SamplerError(f"batch_size must be a positive int, got {batch_size!r}")
        self.store = store
        store._publish()  # rows appended but not yet flushed become readable
        self.batch_size = int(batch_size)
        self.rng = as_generator(seed)
        self.fields = store.schema.select(fields)
        self.reader = BatchReader(store, self.fields, readahead=readahead)

    # -- what subclasses provide ----------------------------------------------------------
    @abstractmethod
    def sample_indices(self) -> np.ndarray:
        """Logical row numbers (``0 <= i < len(store)``) of the next batch."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`_extra_state` saved (nothing by default)."""

    # -- helpers for subclasses -----------------------------------------------------------
    def _size(self) -> int:
        store = self.store
        if store.mode == "a":
            store._publish()
        n = store.size
        if n == 0:
            raise EmptyStoreError(f"{store.path}: cannot sample from an empty store")
        return n

    # -- sampling -------------------------------------------------------------------------
    def sample(self) -> dict[str, np.ndarray]:
        """The next batch: a dict field -> array, rows aligned, fields in a fixed order."""
        return self._read_batch(self.sample_indices())

    def _read_batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        for _ in range(1000):
            batch = self.reader.read(idx)
            if batch is not None:
                return batch
            idx = self.sample_indices()  # rows were overwritten under us: draw again
        raise SamplerError(f"{self.store.path}: rows kept being overwritten while read")

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.iter()

    def iter(self, num_batches: int | None = None, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``num_batches`` batches (forever if ``None``).

        With ``prefetch > 0`` a background thread draws and reads the next ``prefetch``
        batches while the caller works on the current one; the batches and the sampler's
        state after each batch are exactly those of calling :meth:`sample` in a loop.
        """
        if prefetch <= 0:
            count = 0
            while num_batches is None or count < num_batches:
                yield self.sample()
                count += 1
            return
        yield from self._prefetching(num_batches, prefetch)

    def _prefetching(self, num_batches: int | None, prefetch: int) -> Iterator[dict[str, np.ndarray]]:
        q: queue.Queue = queue.Queue(maxsize=prefetch)
        stop = threading.Event()
        start_state = self.state_dict()
        # Draw indices for upcoming batches ahead of the reads so the reader can ask the
        # kernel for their pages early (cold cache); the reads happen in order.
        ahead = max(1, prefetch)

        def produce() -> None:
            pending: list[tuple[np.ndarray, dict]] = []
            made = 0
            try:
                while not stop.is_set() and (num_batches is None or made < num_batches):
                    while len(pending) < ahead and (num_batches is None or made + len(pending) < num_batches):
                        idx = self.sample_indices()
                        pending.append((idx, self.state_dict()))
                        self.reader.will_need(idx)
                    idx, state = pending.pop(0)
                    batch = self.reader.read(idx)
                    if batch is None:  # overwritten while read: redraw, and re-plan ahead
                        pending.clear()
                        batch = self._read_batch(self.sample_indices())
                        state = self.state_dict()
                    made += 1
                    while not stop.is_set():
                        try:
                            q.put((batch, state, None), timeout=0.1)
                            break
                        except queue.Full:
                            continue
            except BaseException as e:  # hand the error to the consumer
                q.put((None, None, e))
                return
            q.put((None, None, StopIteration()))

        t = threading.Thread(target=produce, name="replaystore-prefetch", daemon=True)
        last_state = start_state
        t.start()
        try:
            while True:
                batch, state, err = q.get()
                if err is not None:
                    if isinstance(err, StopIteration):
                        break
                    raise err
                last_state = state
                yield batch
        finally:
            stop.set()
            while t.is_alive():
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            t.join()
            # the producer ran ahead: rewind to just after the last batch handed out
            self.load_state_dict(last_state)

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue with the same batches: RNG state and position."""
        return {
            "type": type(self).__name__,
            "batch_size": self.batch_size,
            "rng": self.rng.bit_generator.state,
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("type") != type(self).__name__:
            raise SamplerError(
                f"state_dict is from a {state.get('type')!r}, not a {type(self).__name__!r}"
            )
        bg = state["rng"]
        if bg.get("bit_generator") != type(self.rng.bit_generator).__name__:
            self.rng = np.random.Generator(getattr(np.random, bg["bit_generator"])())
        self.rng.bit_generator.state = bg
        self.batch_size = int(state["batch_size"])
        self._load_extra_state(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={str(self.store.path)!r}, batch_size={self.batch_size})"
