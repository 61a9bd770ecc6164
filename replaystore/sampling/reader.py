"""Chunk-aware batched reads for samplers.

Uncompressed fields are gathered from memory maps of their chunk files (stitched into
one contiguous view per field, see :mod:`replaystore.storage.mapping`); compressed
fields through a bounded cache of decoded chunks. When the page cache cannot hold the
store, each sampled row is a random disk read; the reader then asks the kernel for the
pages of the *next* batches ahead of time (``posix_fadvise(WILLNEED)``), so many reads
are in flight at once instead of one page fault at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from ..storage.files import chunk_path
from ..storage.store import ReplayStore

__all__ = ["BatchReader"]

_HAVE_FADVISE = hasattr(os, "posix_fadvise")
#: gather cost per row (all fields) above which the auto mode assumes reads hit the disk
_COLD_SECONDS_PER_ROW = 4e-6


class BatchReader:
    """Reads batches of logical rows of ``fields`` from ``store``."""

    def __init__(self, store: ReplayStore, fields: Sequence[str], *, readahead: bool | str = "auto") -> None:
        if readahead not in (True, False, "auto"):
            raise ValueError(f"readahead must be True, False or 'auto', got {readahead!r}")
        self.store = store
        self.fields = tuple(fields)
        self._f = [store.schema[n] for n in self.fields]
        self.readahead = readahead
        self._cold = readahead is True
        self._fds: dict[tuple[str, int], int] = {}
        self._recent: list[float] = []
        self._plan_key = None
        self._plan: list = []

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray] | None:
        """Rows at logical ``indices`` (already in range), one new array per field.

        Returns None when a concurrent ring writer overwrote some of the rows while they
        were copied (the store has then been refreshed; draw new indices)."""
        store = self.store
        if store.mode == "a":
            store._publish()
        phys = store.physical(indices)
        key = (store.generation, store.total)
        if key != self._plan_key:
            self._make_plan()
            self._plan_key = key
        n = len(phys)
        out = {}
        if self._cold:
            self._advise(phys)
        t0 = time.perf_counter() if self.readahead == "auto" else 0.0
        for name, shape, dtype, gather in self._plan:
            out[name] = gather(phys, axis=0, out=np.empty((n, *shape), dtype))
        if store._live_reader is not None and store.torn(indices):
            # a concurrent ring writer overwrote some of these rows while we copied them:
            # catch up with its committed state; the sampler draws the batch again
            store.refresh()
            return None
        if self.readahead == "auto" and n:
            # median of the last batches, so one slow batch (first touch of a mapping,
            # a scheduler hiccup) does not flip the mode; copying wide rows is not slow
            self._recent.append((time.perf_counter() - t0) / n - self._row_bytes * 1e-9)
            if len(self._recent) > 8:
                del self._recent[0]
                self._cold = sorted(self._recent)[4] > _COLD_SECONDS_PER_ROW
        return out

    def _make_plan(self) -> None:
        """Per field, the cheapest gather: ``take`` on the mapped array when there is one."""
        store = self.store
        plan = []
        for f in self._f:
            gather = None
            if store._mapped(f):
                view = store._view(f)
                if view.contiguous:
                    gather = view.array.take
            if gather is None:
                def gather(phys, axis=0, out=None, f=f):
                    return store._gather(f, phys, out)
            plan.append((f.name, f.shape, f.dtype, gather))
        self._plan = plan
        self._row_bytes = sum(f.row_bytes for f in self._f)

    def will_need(self, indices: np.ndarray) -> None:
        """Hint the kernel to start reading the pages of these rows (cold-cache mode only)."""
        if not (self._cold and _HAVE_FADVISE) or not len(indices):
            return
        store = self.store
        store._publish()
        self._advise(self.store.physical(indices))

    def _advise(self, phys: np.ndarray) -> None:
        if not _HAVE_FADVISE:
            return
        store = self.store
        phys = np.sort(phys)
        for f in self._f:
            if not store._direct(f):  # compressed, or not a local chunk file
                continue
            cr, rb = f.chunk_rows, f.row_bytes
            ck = phys // cr
            offs = (phys - ck * cr) * rb
            for k, off in zip(ck.tolist(), offs.tolist(), strict=True):
                fd = self._fds.get((f.name, k))
                if fd is None:
                    try:
                        fd = os.open(chunk_path(store.path, f.name, k, len(f.shape)), os.O_RDONLY)
                    except OSError:
                        continue
                    self._fds[(f.name, k)] = fd
                os.posix_fadvise(fd, off, rb, os.POSIX_FADV_WILLNEED)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
