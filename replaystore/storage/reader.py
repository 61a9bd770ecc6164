"""Reading a store: the logical rows, the committed state, torn-read checks, readahead.

Logical row 0 is the oldest readable row. A reader sees the *committed* rows; in the
writer's own process it also sees the rows still in the write buffer (the writer attaches
its :class:`~replaystore.storage.buffer.WriteBuffer` as ``tail``), so reading never
flushes, commits or fsyncs. Every read, sampler and cache watches one signal, the store's
:attr:`StoreReader.version` ``(rows ever appended, rows readable)``: it changes when, and
only when, the readable rows change.

A reader of a ring being written by another process checks the writer's ``.live`` floor
after copying rows: a row older than the floor may have been overwritten while it was
copied (torn), and is read again (:data:`TORN_RETRIES` times at most). Every read works
out where its rows are from one committed state and checks that same state against the
floor (one floor read per call), under :attr:`StoreReader.lock`, so a ``refresh()`` from
another thread (a prefetching sampler's, the user's) never lands in the middle of a read.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import CorruptStoreError, EmptyStoreError, RowIndexError
from . import ring
from .backends import Backend
from .buffer import WriteBuffer
from .fieldio import FieldIO
from .mapping import ChunkedView
from .metadata import load_meta
from .schema import Schema

__all__ = ["StoreReader", "BatchReader", "TORN_RETRIES"]

#: consecutive torn reads after which reading gives up (a ring overwritten faster than read)
TORN_RETRIES = 1000
#: how long a re-read waits for the writer's next commit when the rows asked for are beyond
#: the newest committed state (a ring commits the eviction of the rows it overwrites before
#: it writes them, so for a moment it holds fewer rows)
REGROW_SECONDS = 1.0
#: gather cost per row (all fields) above which ``readahead="auto"`` assumes reads hit the disk
_COLD_SECONDS_PER_ROW = 4e-6


class StoreReader:
    """The read side of one open store."""

    def __init__(self, backend: Backend, schema: Schema, capacity: int | None, state: dict,
                 fields: dict[str, FieldIO], *, live: Any = None, follow: bool = False) -> None:
        self.backend = backend
        self.schema = schema
        self.capacity = capacity
        self.state = state  #: the committed state (the writer replaces it on each commit)
        self.fields = fields
        self.live = live  # the writer's .live floor, read by readers of a ring
        self.follow = follow  # refresh() re-reads the committed state (readers only)
        self.tail: WriteBuffer | None = None  # the write buffer, in the writer's process
        #: the tail's rows already sit in the fields' (private) maps at their places: the
        #: writer bound its buffer there (``StoreWriter._bind``)
        self.mirror = False
        self._extents: dict[str, int] = {}  # physical rows each field has made readable
        #: held by every read and by refresh(): reads and state changes never interleave
        self.lock = threading.RLock()

    # -- counters -------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return int(self.state["total"])

    @property
    def size(self) -> int:
        return int(self.state["size"])

    def _tail_count(self) -> int:
        return self.tail.count if self.tail is not None else 0

    def __len__(self) -> int:
        b = self._tail_count()
        n = self.size + b
        return min(n, self.capacity) if self.capacity is not None and b else n

    @property
    def id_range(self) -> tuple[int, int]:
        """Global ids ``[lo, hi)`` of the readable rows (row ``g`` is the ``g``-th ever appended)."""
        hi = self.total + self._tail_count()
        return hi - len(self), hi

    @property
    def version(self) -> tuple[int, int]:
        """``(rows ever appended, rows readable)``: changes exactly when the readable rows do."""
        st, tail = self.state, self.tail
        b = tail.count if tail is not None else 0
        if not b:  # (the samplers ask once or twice a batch: keep it cheap)
            return int(st["total"]), int(st["size"])
        return int(st["total"]) + b, len(self)

    def _split(self) -> tuple[int, int]:
        """``(committed rows visible, tail rows skipped)``: buffered rows of a ring hide the
        oldest committed rows they will overwrite (and any buffered rows beyond capacity)."""
        b = self._tail_count()
        if not b:
            return self.size, 0
        visible_tail = min(b, self.capacity) if self.capacity is not None else b
        return len(self) - visible_tail, b - visible_tail

    def extent(self, state: dict | None = None) -> int:
        """Physical rows written and committed (the mapped extent) as of ``state`` (default:
        the current committed state)."""
        total = int((self.state if state is None else state)["total"])
        return total if self.capacity is None else min(total, self.capacity)

    def ready(self, name: str, extent: int | None = None) -> FieldIO:
        """Field ``name``'s FieldIO, with the chunks commits since its last read mapped
        (each field is mapped when first read, so one damaged field spoils no other)."""
        fio = self.fields[name]
        ext = self.extent() if extent is None else extent
        if self._extents.get(name, -1) < ext:
            with self.lock:
                fio.ensure(ext)
                self._extents[name] = ext
        return fio

    def view(self, name: str) -> ChunkedView | None:
        """The memory-mapped view of an uncompressed field (``None`` otherwise)."""
        return self.ready(name).view

    # -- following another process's commits ----------------------------------------------
    def refresh(self) -> bool:
        """Re-read the committed state (readers only); True when it changed. Waits for a
        read in progress in another thread (it finishes against the state it started with)."""
        if not self.follow:
            return False
        with self.lock:  # (loaded under the lock too: two threads never put an older state back)
            _, state = load_meta(self.backend)
            if self.capacity is not None and self.live is None and self.backend.has_live_floor:
                self.live = self.backend.live_floor(create=False)
            if state.get("generation", 0) == self.state.get("generation", 0):
                return False
            self.state = dict(state)
            for fio in self.fields.values():
                fio.invalidate()
        return True

    def torn(self, logical: np.ndarray, state: dict | None = None) -> bool:
        """After a read: may a ring writer in another process have overwritten any of these
        rows (logical rows of ``state``, default the current state) while they were copied?
        (Always False in the writer and for unbounded stores.)"""
        if self.live is None or not len(logical):
            return False
        st = self.state if state is None else state
        return self.live.floor > int(st["total"]) - int(st["size"]) + int(np.min(logical))

    def _torn_from(self, state: dict, first: int) -> bool:
        """Did the writer overwrite rows from logical row ``first`` of ``state`` on (one floor read)?"""
        live = self.live
        return live is not None and live.floor > int(state["total"]) - int(state["size"]) + first

    def _state_holding(self, rows: int) -> dict | None:
        """After a torn read: the newest committed state, once it holds at least ``rows``
        rows (``None`` if the writer commits none within :data:`REGROW_SECONDS`)."""
        deadline = None
        while True:
            self.refresh()
            st = self.state
            if int(st["size"]) >= rows:
                return st
            now = time.monotonic()
            if deadline is None:
                deadline = now + REGROW_SECONDS
            elif now > deadline:
                return None
            time.sleep(0.0005)

    # -- indices --------------------------------------------------------------------------
    def normalize(self, indices: Any, n: int | None = None) -> np.ndarray:
        """Logical row numbers as int64, negatives counted from the end, bounds-checked
        (against ``n`` rows, default ``len(self)``)."""
        idx = np.asarray(indices)
        where = self.backend
        if idx.dtype.kind == "b":
            raise RowIndexError(f"{where}: boolean masks are not row indices; use np.flatnonzero(mask)")
        if idx.size and idx.dtype.kind not in "iu":
            raise RowIndexError(f"{where}: row indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        if n is None:
            n = len(self)
        if idx.size:
            if n == 0:
                raise EmptyStoreError(f"{where}: the store holds no rows")
            lo, hi = idx.min(), idx.max()
            if lo < -n or hi >= n:
                bad = int(lo) if lo < -n else int(hi)
                raise RowIndexError(f"{where}: row {bad} is out of range for a store of {n} rows")
            if lo < 0:
                idx = np.where(idx < 0, idx + n, idx)
        return idx

    def physical(self, logical: np.ndarray, state: dict | None = None) -> np.ndarray:
        """Physical rows of logical rows that are committed (``0 <= i <`` committed visible)
        as of ``state`` (default: the current committed state)."""
        st = self.state if state is None else state
        total, size = int(st["total"]), int(st["size"])
        if self.tail is not None and self.tail.count:
            nc, _ = self._split()
            shift = self.size - nc
            if shift:
                logical = np.asarray(logical, dtype=np.int64) + shift
        return ring.physical_rows(logical, total=total, size=size, capacity=self.capacity)

    # -- reading --------------------------------------------------------------------------
    def gather(self, name: str, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Rows of one field at validated logical ``idx`` into ``out`` (no torn check)."""
        with self.lock:
            st = self.state
            fio = self.ready(name, self.extent(st))
            nc, skip = self._split()
            if not len(idx) or int(idx.max()) < nc:
                return fio.gather(self.physical(idx, st), out)
            old = idx < nc
            if old.any():
                sel = np.flatnonzero(old)
                out[sel] = fio.gather(self.physical(idx[sel], st),
                                      np.empty((len(sel), *fio.field.shape), fio.field.dtype))
            new = np.flatnonzero(~old)
            out[new] = self.tail.gather(name, idx[new] - nc + skip)
            return out

    def read(self, indices: Any, names: Sequence[str], out: dict[str, np.ndarray] | None = None) -> dict:
        """Rows at logical ``indices`` (any order, duplicates allowed), one array per field.

        All rows are read against one committed state. In a reader of a ring another
        process writes, a read some of whose rows the writer overwrote while they were
        copied is done again against the writer's newest state (the store is refreshed):
        the same logical positions, which then name newer rows. Every row returned is
        whole either way (all its fields from one row), and ``ids[k] - indices[k]`` is the
        same for every ``k``. Raises :class:`RowIndexError` if that newest state does not
        hold ``max(indices) + 1`` rows within :data:`REGROW_SECONDS`.
        """
        if self.live is None or self.tail is not None:  # no writer in another process
            with self.lock:
                return self._read_at(self.state, self.normalize(indices), names, out)
        with self.lock:
            st = self.state
            idx = self.normalize(indices, int(st["size"]))
            for _ in range(TORN_RETRIES):
                result = self._read_at(st, idx, names, out)
                if not len(idx) or not self._torn_from(st, int(idx.min())):
                    return result
                need = int(idx.max()) + 1
                st = self._state_holding(need)  # a writer overwrote rows we read: read them as of now
                if st is None:
                    raise RowIndexError(
                        f"{self.backend}: row {need - 1} was asked for, but a writer in another process "
                        f"overwrote rows while they were read and the store now holds {self.size} rows")
        raise CorruptStoreError(f"{self.backend}: rows kept changing under {TORN_RETRIES} consecutive reads")

    def _read_at(self, st: dict, idx: np.ndarray, names: Sequence[str],
                 out: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """Every field's rows at logical ``idx`` of committed state ``st`` (buffered rows
        too in the writer's process)."""
        tail = self.tail is not None and self.tail.count
        phys = None if tail else self.physical(idx, st)
        ext = self.extent(st)
        result = {}
        for name in names:
            f = self.schema[name]
            dst = out.get(name) if out is not None else None
            if dst is None or dst.shape[0] != len(idx):
                dst = np.empty((len(idx), *f.shape), f.dtype)
            result[name] = self.gather(name, idx, dst) if tail else self.ready(name, ext).gather(phys, dst)
        return result

    def read_range(self, start: int, stop: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Logical rows ``[start, stop)`` as a dict of arrays (copies), read sequentially:
        consecutive rows of one committed state. In a reader of a ring another process
        writes, a range the writer overwrote while it was copied is read again against
        the writer's newest state (the store is refreshed): the same logical positions, so
        newer rows, still consecutive and whole; fewer of them (the range clipped like a
        slice) if that state does not hold ``stop`` rows within :data:`REGROW_SECONDS`."""
        with self.lock:
            st = self.state
            for _ in range(TORN_RETRIES):
                n = len(self) if self.tail is not None else int(st["size"])
                a, b, _ = slice(start, stop).indices(n)
                b = max(a, b)
                result = self._range_at(st, a, b, names)
                if b <= a or self.tail is not None or not self._torn_from(st, a):
                    return result
                st = self._state_holding(b) or self.state
        raise CorruptStoreError(f"{self.backend}: rows kept changing under {TORN_RETRIES} consecutive reads")

    def _range_at(self, st: dict, start: int, stop: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        total, size = int(st["total"]), int(st["size"])
        nc, skip = self._split() if self.tail is not None else (size, 0)
        shift = size - nc
        a, b = min(start, nc), min(stop, nc)
        ranges = ring.physical_ranges(a + shift, b + shift, total=total, size=size, capacity=self.capacity)
        ta, tb = max(start, nc) - nc + skip, max(stop, nc) - nc + skip
        ext = self.extent(st)
        result = {}
        for name in names:
            fio = self.ready(name, ext)
            parts = [fio.slice(x, y) for x, y in ranges]
            if tb > ta:
                parts.append(np.array(self.tail.rows(name)[ta:tb]))
            f = fio.field
            result[name] = (parts[0] if len(parts) == 1 else np.concatenate(parts) if parts
                            else np.empty((0, *f.shape), f.dtype))
        return result

    def read_ids(self, a: int, b: int, names: Sequence[str], *, check: bool = False) -> dict[str, np.ndarray]:
        """Committed rows with global ids ``[a, b)`` (still on disk), e.g. to build an index.

        With ``check=True`` the rows are exactly those and whole, or :class:`RowIndexError`
        says they are not all held (evicted before, or overwritten by a ring writer in
        another process while they were read)."""
        with self.lock:
            st = self.state
            total, size = int(st["total"]), int(st["size"])
            lo = total - size
            if check and b > a and (a < lo or b > total):
                raise RowIndexError(f"{self.backend}: rows with ids {a}..{b - 1} are not all held: the "
                                    f"store holds ids {lo}..{total - 1}")
            ranges = ring.physical_ranges(a - lo, b - lo, total=total, size=size, capacity=self.capacity)
            ext = self.extent(st)
            # in a writer whose buffered rows sit in its private maps, the oldest committed
            # rows' places already show buffered rows: read those from the files
            from_files = (self.mirror and self.tail is not None
                          and a < lo + size + self.tail.count - self.capacity)
            out = {}
            for name in names:
                fio = self.ready(name, ext)
                if from_files:
                    f = self.schema[name]
                    parts = [np.frombuffer(fio.read_bytes(x, y), f.dtype.newbyteorder("<"))
                             .reshape(y - x, *f.shape).astype(f.dtype) for x, y in ranges]
                else:
                    parts = [fio.slice(x, y) for x, y in ranges]
                f = self.schema[name]
                out[name] = (parts[0] if len(parts) == 1 else np.concatenate(parts) if parts
                             else np.empty((0, *f.shape), f.dtype))
            if check and b > a and self._torn_from(st, a - lo):
                raise RowIndexError(f"{self.backend}: rows with ids {a}..{b - 1} were overwritten by a "
                                    f"writer in another process while they were read (floor {self.live.floor})")
            return out

    def buffered_rows(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Rows appended in this process and not yet committed, oldest first (views)."""
        if self.tail is None:
            return {n: np.empty((0, *self.schema[n].shape), self.schema[n].dtype) for n in names}
        return self.tail.take_all(names)

    def advise(self, advice: int) -> None:
        for fio in self.fields.values():
            fio.advise(advice)


class BatchReader:
    """Reads batches of logical rows of ``fields`` (the samplers' hot path).

    Uncompressed fields are gathered straight from their memory-mapped view. When the page
    cache cannot hold the store, each row is a random disk read: ``readahead`` (``True``,
    or ``"auto"``, which turns it on when gathers get slow) then asks the kernel for the
    pages of a batch at once (:meth:`will_need`), so many reads are in flight.
    """

    def __init__(self, reader: StoreReader, fields: Sequence[str], *, readahead: bool | str = "auto") -> None:
        if readahead not in (True, False, "auto"):
            raise ValueError(f"readahead must be True, False or 'auto', got {readahead!r}")
        self.reader = reader
        self.fields = tuple(fields)
        self._fio = [reader.fields[n] for n in self.fields]
        self._row_bytes = sum(fio.field.row_bytes for fio in self._fio)
        self.readahead = readahead
        self._cold = readahead is True
        self._advise_seconds = 0.0  # spent in _advise since the last timed read
        self._recent: list[float] = []
        self._plan: list = []
        self._plan_extent = -1

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray] | None:
        """Rows at logical ``indices`` (already in range), one new array per field; ``None``
        when a ring writer in another process overwrote some of them while they were copied
        (the reader has then caught up with its commits: draw new indices)."""
        reader = self.reader
        n = len(indices)
        t0 = time.perf_counter() if self.readahead == "auto" else 0.0
        out = {}
        with reader.lock:  # (a refresh() in another thread waits: one state for the batch)
            st = reader.state
            live = reader.live
            if live is not None and n and int(indices.max()) >= int(st["size"]):
                return None  # drawn against a state since replaced by a smaller one: draw again
            ext = reader.extent(st)
            if ext != self._plan_extent:
                self._make_plan(ext)
            tail = reader.tail
            buffered = tail.count if tail is not None else 0
            mirrored = bool(buffered) and reader.mirror and not tail.pending
            if buffered and not mirrored:
                self._read_with_tail(indices, out)
            else:
                total, size, cap = int(st["total"]), int(st["size"]), reader.capacity
                if mirrored:  # a ring whose buffered rows are in place
                    total += tail.n
                    size = min(size + tail.n, cap)
                start = ring.oldest_physical(total, size, cap)
                if not start:
                    phys = indices
                elif cap is None:
                    phys = indices + start
                else:
                    phys = (indices + start) % cap  # (one call fewer than a masked subtract)
                if self._cold:
                    self._advise(phys)
                for name, get in self._plan:
                    out[name] = get(phys)
            if live is not None and reader.torn(indices, st):
                reader.refresh()
                return None
        if self.readahead == "auto" and n:
            # median of the last batches, so one slow batch (first touch of a mapping, a
            # scheduler hiccup) does not flip the mode; copying wide rows is not slow
            # (the time spent asking for pages is not the gather's: it would keep the mode on)
            spent = time.perf_counter() - t0 - self._advise_seconds
            self._advise_seconds = 0.0
            recent = self._recent
            recent.append(spent / n - self._row_bytes * 1e-9)
            if len(recent) == 8:  # (decided once per 8 batches)
                self._cold = sorted(recent)[4] > _COLD_SECONDS_PER_ROW
                recent.clear()
        return out

    def _read_with_tail(self, indices: np.ndarray, out: dict[str, np.ndarray]) -> None:
        """A batch of committed and buffered rows: where each row is, worked out once for
        every field (one view of the state: fields never mix rows of two states)."""
        reader = self.reader
        tail = reader.tail
        st = reader.state
        total, size, cap = int(st["total"]), int(st["size"]), reader.capacity
        b = tail.count
        if cap is None:
            nc, skip = size, 0
        else:  # (StoreReader._split, inline)
            visible = min(b, cap)
            nc, skip = min(size + b, cap) - visible, b - visible
        start = ring.oldest_physical(total, size, cap) + (size - nc)
        if cap is not None and start >= cap:
            start -= cap
        if nc == 0:  # every row is buffered
            src = tail.arrays if not tail.pending else None
            pos = indices + skip
            for name, _ in self._plan:
                out[name] = src[name].take(pos, axis=0) if src is not None else tail.gather(name, pos)
            return
        phys = indices + start
        if cap is not None:
            phys[phys >= cap] -= cap
        ext = reader.extent(st)
        if ext < (cap or 0) or cap is None:
            np.minimum(phys, ext - 1, out=phys)  # (buffered rows land on a committed row: patched below)
        sel_new = None
        if int(indices.max()) >= nc:  # (else, the common case: no buffered row drawn)
            sel_new = np.flatnonzero(indices >= nc)
            pos = indices[sel_new] - (nc - skip)
        if self._cold:
            self._advise(phys if sel_new is None else phys[indices < nc])
        src = tail.arrays if not tail.pending else None
        for name, get in self._plan:
            dst = get(phys)
            if sel_new is not None:
                dst[sel_new] = (src[name].take(pos, axis=0) if src is not None
                                else tail.gather(name, pos))
            out[name] = dst

    def _make_plan(self, extent: int) -> None:
        """Per field, the cheapest gather of committed rows into a new array: indexing
        (1-D fields: numpy's fastest path, ~0.1 µs for 32 rows) or ``take`` on the mapped
        array when there is one (rebuilt when commits map more chunks)."""
        plan = []
        for fio in self._fio:
            f = fio.field
            self.reader.ready(f.name, extent)
            view = fio.view
            arr = view.array if view is not None and view.contiguous else None
            if arr is not None and arr.dtype == f.dtype and arr.shape[1:] == f.shape:
                get = arr.__getitem__ if arr.ndim == 1 else functools.partial(arr.take, axis=0)
            else:
                def get(phys, fio=fio, f=f):
                    return fio.gather(phys, np.empty((len(phys), *f.shape), f.dtype))
            plan.append((f.name, get))
        self._plan = plan
        self._plan_extent = extent

    def will_need(self, indices: np.ndarray) -> None:
        """Hint the kernel to start reading the pages of these rows (cold-cache mode only)."""
        if not self._cold or not len(indices):
            return
        nc, _ = self.reader._split()
        committed = indices[indices < nc]
        if len(committed):
            self._advise(self.reader.physical(committed))

    def _advise(self, phys: np.ndarray) -> None:
        t = time.perf_counter()
        self._advise_now(phys)
        self._advise_seconds += time.perf_counter() - t

    def _advise_now(self, phys: np.ndarray) -> None:
        for fio in self._fio:
            fio.will_need(phys)

    def close(self) -> None:
        """Nothing to release: files belong to the store's fields."""
