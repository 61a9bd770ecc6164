"""Writing a store: validation, episodes, the write buffer, eviction-first commits,
checksums, index upkeep and the writer lock.

A commit writes the buffered rows' chunks first, fsyncs them (``fsync=True``), then
replaces the committed state atomically. A ring first commits the eviction of the rows it
is about to overwrite (they leave the committed range before a byte of them changes) and
raises the ``.live`` floor for readers in other processes. Commits happen on ``flush()``,
when the buffer fills, every ``commit_every`` rows or ``commit_seconds`` seconds, and on
``close()`` — never because somebody read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ReplayStoreError, SchemaError, StoreWriteError
from . import ring
from .backends import Backend, remote_errors
from .buffer import WriteBuffer
from .episodes import fill_episodes, track_episodes
from .fieldio import FieldIO
from .indexes import IndexSet
from .integrity import BlockChecksums, changed_blocks
from .metadata import write_backup, write_group
from .reader import StoreReader
from .schema import Schema
from .validate import RowValidator

__all__ = ["StoreWriter", "MAX_BUFFER_ROWS"]

#: the write buffer never holds more rows than this (nor more than a ring's capacity) ...
MAX_BUFFER_ROWS = 1 << 18
#: ... nor, by default, more bytes than this: a commit costs a few milliseconds of fsyncs
#: and checksums, so large blocks make bulk appends fast (a crash loses the rows since the
#: last commit: ``commit_every`` / ``commit_seconds`` / ``flush()`` bound that)
BUFFER_BYTES = 16 << 20


class StoreWriter:
    """The write side of a store opened with ``mode="a"`` (holds the writer lock)."""

    def __init__(self, backend: Backend, meta: dict, schema: Schema, capacity: int | None,
                 reader: StoreReader, fields: dict[str, FieldIO], validator: RowValidator, *,
                 buffer_rows: int | None = None, commit_every: int | None = None,
                 commit_seconds: float | None = None, fsync: bool = True) -> None:
        self.backend = backend
        self.meta = meta
        self.schema = schema
        self.capacity = capacity
        self.reader = reader
        self.fields = fields
        self.validator = validator
        self.fsync = fsync
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self._timed = commit_every is not None or commit_seconds is not None
        self.indexes: IndexSet | None = None  # set by the store
        self.state = dict(reader.state)  # committed counters + the running episode's
        self._opened = dict(reader.state)
        self._last_committed: dict | None = None
        self._written: list[tuple[int, int]] = []  # physical rows written since the last commit
        self._writing: str | None = None
        self.lock = backend.lock()
        self._crc: dict[str, BlockChecksums] = {}
        self.live = None
        try:
            self._recover()
        except BaseException:
            self.release()
            raise
        min_chunk = min(f.chunk_rows for f in schema)
        row_bytes = sum(f.row_bytes for f in schema)
        rows = int(buffer_rows or min(max(min_chunk, 1), MAX_BUFFER_ROWS,
                                      max(1024, BUFFER_BYTES // max(row_bytes, 1))))
        if capacity is not None:
            rows = min(rows, capacity)
        self.buffer = WriteBuffer(schema, rows)
        reader.tail = self.buffer
        self._deferred = bool(validator.deferred)
        self._private: list[tuple[int, int]] = []  # physical rows written into private maps
        self.buffer.on_demote = self._demoted
        self._bind()
        self._last_commit = time.monotonic()
        self._since_commit = 0

    def _recover(self) -> None:
        """A writer killed mid-commit leaves temp files and checksums of a commit it never
        published; the committed state is intact."""
        self.backend.remove_stray_temps()
        if self.backend.has_checksums:
            for f in self.schema:
                crc = self._crc[f.name] = BlockChecksums(self.backend.local, f, writable=True)
                crc.forget_after(int(self.state.get("generation", 0)))
        if self.capacity is not None and self.backend.has_live_floor:
            self.live = self.backend.live_floor(create=True)
            self.live.raise_floor(self.reader.total - self.reader.size)

    # -- where buffered rows are held ------------------------------------------------------
    #: bind the buffer to the private maps only for at least this many rows
    MIN_BOUND_ROWS = 1024

    def _bind(self) -> None:
        """Point the (empty) write buffer at the rows' own places in the fields' private maps,
        from the ring's cursor to at most its end, in chunks already mapped (a ring that is
        full, or has not wrapped yet): reads in this process then find buffered rows where
        committed ones are (one gather per field, see ``BatchReader``), and a write-out
        writes them from there. When those places fill up before the buffer does (the
        ring's end), the rows move to the buffer's own arrays (``WriteBuffer.demote``)."""
        buf, cap = self.buffer, self.capacity
        if buf.n or buf.pending:
            return
        views = None
        if cap is not None and self.reader.size in (cap, self.reader.total):  # (full, or not yet wrapped)
            start = int(self.reader.state["cursor"])
            stop = min(start + buf.capacity, cap)
            if stop - start >= min(self.MIN_BOUND_ROWS, buf.capacity):
                views = {}
                for name, fio in self.fields.items():
                    view = self.reader.ready(name).view if fio.mapped else None
                    v = view.rows_for_writing(start, stop) if view is not None else None
                    if v is None:
                        views = None
                        break
                    views[name] = v
                if views is not None:
                    self._private.append((start, stop))
        buf.bind(views)
        self.reader.mirror = views is not None
        self._compile()

    def _compile(self) -> None:
        buf = self.buffer
        self._put_one = self.validator.compile_put(buf.arrays)
        self._episode_col = buf.arrays["episode"]
        self._step_col = buf.arrays["step"]

    def _demoted(self) -> None:
        self.reader.mirror = False
        self._compile()

    # -- counters -------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        return self.buffer.count

    def _committed(self) -> dict:
        # what is on disk: the last commit, or the state as opened (so closing a store that
        # changed nothing writes nothing)
        return self._last_committed or self._opened

    # -- appending ------------------------------------------------------------------------
    def append(self, row: Mapping[str, Any]) -> None:
        buf = self.buffer
        i = buf.n
        put = self._put_one
        if put is not None and i < buf.limit and not buf.pending and put(row, i):
            # the fast path: the row is checked and already in the buffer (validate.py)
            st = self.state
            step = st["step"]
            self._episode_col[i] = st["episode"]
            self._step_col[i] = step
            if row["terminated"] or row["truncated"]:
                nxt = st["next_episode"]
                st["episode"], st["step"], st["next_episode"] = nxt, 0, nxt + 1
            else:
                st["step"] = step + 1
            i += 1
            buf.n = i
            self._since_commit += 1
            if i == buf.limit:
                if i < buf.capacity:
                    buf.demote()
                else:
                    self._write_buffer()
            if self._timed:
                self._commit_if_due()
            return
        self._put(self.validator.rows(row, batched=False), 1)

    def extend(self, batch: Mapping[str, Any]) -> None:
        if not isinstance(batch, Mapping):
            raise SchemaError(f"{self.backend}: extend() takes a dict of arrays, got {type(batch).__name__}")
        arrays = self.validator.rows(batch, batched=True)
        n = len(next(iter(arrays.values())))
        if n:
            self._put(arrays, n)

    def _put(self, arrays: dict[str, np.ndarray], n: int) -> None:
        if "episode" not in arrays:
            fill_episodes(arrays, n, self.state)
        else:
            track_episodes(arrays, n, self.state)
        self._since_commit += n
        if self.buffer.pending:
            # an earlier write failed: keep the order, queue behind it, and try again
            self.buffer.queue(arrays, n)
            self.flush()
        else:
            self.buffer.add(arrays, n, write=self._write_buffer)
        if self._timed:
            self._commit_if_due()

    def _commit_if_due(self) -> None:
        if self.commit_every is not None and self._since_commit >= self.commit_every:
            self.flush()
        elif self.commit_seconds is not None and time.monotonic() - self._last_commit >= self.commit_seconds:
            self.flush()

    def new_episode_ids(self, k: int) -> np.ndarray:
        start = int(self.state["next_episode"])
        self.state["next_episode"] = start + int(k)
        return np.arange(start, start + int(k), dtype=np.int64)

    def end_episode(self) -> None:
        """The running episode ends here without a done row: the next row starts a new one."""
        st = self.state
        if int(st["step"]) > 0:
            nxt = int(st["next_episode"])
            st.update(episode=nxt, step=0, next_episode=nxt + 1)

    def update_info(self, info: Mapping[str, Any] | None, env: Mapping | None, *, commit: bool = True) -> None:
        for target, new in (("info", info), ("env", env)):
            if new:
                merged = {**self.meta.get(target, {}), **dict(new)}
                try:
                    # a deep copy: later changes to the caller's objects cannot reach us
                    self.meta[target] = json.loads(json.dumps(merged, allow_nan=False))
                except (TypeError, ValueError) as e:
                    raise SchemaError(f"{self.backend}: {target} must be JSON-serializable: {e}") from None
        if commit:
            self.commit_state(self.state)

    # -- committing -----------------------------------------------------------------------
    def flush(self) -> None:
        with self.reader.lock:  # (a prefetching sampler's read never sees half a flush)
            self._flush()

    def _flush(self) -> None:
        buf = self.buffer
        if buf.n:
            self._write_buffer()
        while buf.pending:
            rows = buf.pending.pop(0)
            queued = len(buf.pending)
            try:
                buf.add(rows, len(rows["reward"]), write=self._write_buffer)
            except StoreWriteError:
                if len(buf.pending) > queued:  # the rest of these rows: back to the front
                    buf.pending.insert(0, buf.pending.pop())
                raise
            if buf.n:
                self._write_buffer()
        if buf.n:
            self._write_buffer()
        elif self.state != self._committed():
            self.commit_state(self.state)
        self._since_commit = 0
        self._last_commit = time.monotonic()

    def _write_buffer(self) -> None:
        try:
            with self.reader.lock, remote_errors(self.backend):
                self._write_rows()
        except OSError as e:
            if isinstance(e, ReplayStoreError):
                raise
            what = f"writing field {self._writing!r}" if self._writing else "committing"
            raise StoreWriteError(
                f"{self.backend}: {what} failed: {e.strerror or e}; the {self.reader.size:,} committed "
                f"rows are intact and the {self.buffer.n:,} rows not yet committed are still "
                "buffered: fix the cause (e.g. free disk space) and call flush() again"
            ) from e
        finally:
            self._writing = None

    def _write_rows(self) -> None:
        n = self.buffer.n
        if not n:
            return
        if self._deferred:
            self.validator.check_deferred(self.buffer.arrays, n)
        total, size, cap = self.reader.total, self.reader.size, self.capacity
        segments = ring.write_segments(total=total, n=n, capacity=cap)
        new_total = total + n
        if cap is not None and size + n > cap:
            # Commit the eviction first: the rows about to be overwritten leave the
            # committed range before any byte of them changes.
            written = sum(b - a for a, b, _ in segments)
            keep = max(0, min(size, cap - written))
            self.commit_state({**self.state, "size": keep, "total": total, "cursor": self.state["cursor"]})
            if self.live is not None:
                # readers that still hold an older state learn here which rows may tear
                self.live.raise_floor(total - keep)
        bufs = self.buffer.arrays
        for name, fio in self.fields.items():
            self._writing = name
            if not fio.mapped:
                fio.reserve(new_total)  # zarr arrays grow before their chunks are written
            for a, b, dst in segments:
                fio.write(dst, bufs[name][a:b])
        self._written.extend((dst, dst + (b - a)) for a, b, dst in segments)
        if cap is None:
            # While a writer has the store open, arrays grow a whole chunk at a time (one
            # metadata write per chunk, not per commit); close() trims them to the rows.
            for fio in self.fields.values():
                if fio.mapped:
                    fio.reserve(new_total, fsync=self.fsync)
        self._writing = None
        if self.fsync:
            for fio in self.fields.values():
                fio.sync()
        if self.indexes is not None and self.meta.get("indexes"):
            skip = segments[0][0] if segments else n
            self.indexes.on_write({k: v[skip:n] for k, v in bufs.items()}, total + skip, total, new_total)
        self.buffer.n = 0
        new_size = new_total if cap is None else min(cap, size + n)
        self.commit_state({**self.state, "size": new_size, "total": new_total,
                           "cursor": new_total % cap if cap is not None else new_total})
        if self._private:  # (the files hold those rows now: drop the private copies)
            for fio in self.fields.values():
                for a, b in self._private:
                    fio.view.discard(a, b)
            self._private = []
        self._bind()

    def commit_state(self, state: dict) -> None:
        """Publish ``state`` (with the next generation number) after its checksums."""
        state = dict(state)
        state["generation"] = int(self.state.get("generation", 0)) + 1
        self._record_checksums(state)
        write_group(self.backend, self.meta, state, fsync=self.fsync)
        write_backup(self.backend, self.meta, state)
        self.state = state
        self._last_committed = dict(state)
        self.reader.state = state

    def _record_checksums(self, state: dict) -> None:
        """CRC32 of the committed rows of every block this commit changes (integrity.py)."""
        if not self.backend.has_checksums:  # object stores keep their own
            self._written = []
            return
        prev, cap = self._committed(), self.capacity
        before = ring.committed_intervals(int(prev["total"]), int(prev["size"]), cap)
        after = ring.committed_intervals(int(state["total"]), int(state["size"]), cap)
        if before == after and not self._written:
            return
        for f in self.schema:
            crc = self._crc.get(f.name)
            if crc is None:
                crc = self._crc[f.name] = BlockChecksums(self.backend.local, f, writable=True)
            blocks = changed_blocks(crc.block_rows, before, after, self._written)
            fio = self.fields[f.name]
            rows = getattr(fio, "rows", None)  # (our own chunk files, through the fds we write with)
            crc.update(blocks, after, int(state["generation"]), rows.read_bytes if rows is not None
                       else fio.read_bytes)
            if self.fsync:
                crc.sync()
        self._written = []

    def trim(self) -> None:
        """Make every field array's shape exactly the stored rows (unbounded stores)."""
        if self.capacity is not None:
            return
        total = self.reader.total
        for fio in self.fields.values():
            fio.trim(total, fsync=self.fsync)

    def close(self) -> None:
        """Flush, trim and release; the lock is released even when the flush fails."""
        try:
            self.flush()
            self.trim()
        finally:
            self.release()

    def release(self) -> None:
        self.reader.mirror = False
        self.buffer.arrays, self.buffer.limit = self.buffer.own, self.buffer.capacity  # (no views stay alive)
        self._episode_col = self._step_col = self._put_one = None
        for crc in self._crc.values():
            crc.close()
        if self.live is not None:
            self.live.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
