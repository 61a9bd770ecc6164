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
        self._slow = 0.0

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Rows at logical ``indices`` (already in range), one new array per field."""
        store = self.store
        store._publish()
        phys = store.physical(indices)
        out = {f.name: np.empty((len(phys), *f.shape), f.dtype) for f in self._f}
        if self._cold:
            self._advise(phys)
        t0 = time.perf_counter() if self.readahead == "auto" else 0.0
        store.read_physical(phys, self.fields, out)
        if self.readahead == "auto" and len(phys):
            per_row = (time.perf_counter() - t0) / len(phys)
            # exponential average so one slow batch does not flip the mode
            self._slow = 0.8 * self._slow + 0.2 * per_row
            self._cold = self._slow > _COLD_SECONDS_PER_ROW
        return out

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
            if f.compressed:
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
