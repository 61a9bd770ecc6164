"""Fields stored as zarr chunks: compressed fields, and every field of an fsspec store.

A compressed chunk must be decoded whole, so reads go through a bounded cache of decoded
chunks shared by the store's fields (:class:`ChunkCache`). Writes rebuild the chunk being
filled in memory and write it whole.

Before zarr reads a chunk of a local or zipped store, its file is checked: a regular file
(``lstat``: a symlink, directory, FIFO or device in its place is damage, never opened) no
larger than a compressed chunk can be. A chunk file that is missing reads as the fill
value only in stores written before every chunk was written (their field arrays carry no
``replaystore_array.every_chunk_written`` attribute); elsewhere it is damage. A chunk that
fails to decode (or fails its ``crc32c`` codec) is damage: ``CorruptStoreError``, never
rows of zeros.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from typing import Any

import numpy as np
import zarr

from ...errors import CorruptStoreError, ReplayStoreError
from .. import layout
from ..backends import Backend, remote_errors
from ..schema import Field
from .base import FieldIO

__all__ = ["ChunkedField", "ChunkCache", "ZarrArrays", "every_chunk_written", "max_chunk_file_bytes"]


def _alloc(rows: int, chunk_rows: int) -> int:
    return -(-rows // chunk_rows) * chunk_rows


def max_chunk_file_bytes(f: Field) -> int:
    """The largest chunk file a field's codec can produce (zstd, blosc and gzip add at
    most a small fraction to incompressible data): anything larger is damage."""
    return f.chunk_bytes + f.chunk_bytes // 64 + 4096


def every_chunk_written(arr: zarr.Array) -> bool:
    """Whether the array's writers wrote every chunk (so a missing one is damage)."""
    attrs = arr.attrs.get(layout.ARRAY_ATTR)
    return isinstance(attrs, dict) and attrs.get("every_chunk_written") is True


class ChunkCache:
    """Decoded chunks, least recently used dropped first, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._chunks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        chunk = self._chunks.get(key)
        if chunk is not None:
            self._chunks.move_to_end(key)
        return chunk

    def put(self, key: tuple[str, int], chunk: np.ndarray) -> None:
        self._chunks[key] = chunk
        self._bytes += chunk.nbytes
        while self._bytes > self.max_bytes and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self._bytes -= old.nbytes

    def drop(self, key: tuple[str, int]) -> None:
        old = self._chunks.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes

    def drop_field(self, name: str) -> None:
        for key in [k for k in self._chunks if k[0] == name]:
            self.drop(key)

    def clear(self) -> None:
        self._chunks.clear()
        self._bytes = 0


class ZarrArrays:
    """zarr-python arrays of one store, opened on demand through one zarr ``Store``."""

    def __init__(self, backend: Backend, *, writable: bool) -> None:
        self.backend = backend
        self.writable = writable
        self._store: Any = None
        self._arrays: dict[str, zarr.Array] = {}

    def get(self, name: str) -> zarr.Array:
        arr = self._arrays.get(name)
        if arr is None:
            with remote_errors(self.backend):
                if self._store is None:
                    self._store = self.backend.zarr_store(read_only=not self.writable)
                try:
                    arr = zarr.open_array(store=self._store, path=name,
                                          mode="r+" if self.writable else "r", zarr_format=3)
                except (ValueError, KeyError, TypeError, AttributeError, IndexError, LookupError) as e:
                    raise CorruptStoreError(
                        f"{self.backend}/{name}/zarr.json: array metadata of field {name!r} is not a "
                        f"readable zarr v3 array ({type(e).__name__}: {e})") from None
                if self.writable:
                    # zarr's default leaves out chunks that hold only the fill value, and the
                    # setting is not stored with the array: every writer asks for it again,
                    # so that a missing chunk file always means damage
                    arr = arr.with_config({"write_empty_chunks": True})
            self._arrays[name] = arr
        return arr

    def forget(self, name: str) -> None:
        self._arrays.pop(name, None)

    def clear(self) -> None:
        self._arrays.clear()


class ChunkedField(FieldIO):
    """Rows of a field read and written whole chunks at a time through zarr-python."""

    def __init__(self, backend: Backend, field: Field, *, capacity: int | None, arrays: ZarrArrays,
                 cache: ChunkCache) -> None:
        super().__init__(field)
        self.backend = backend
        self.capacity = capacity
        self.arrays = arrays
        self.cache = cache
        self._open: tuple[int, np.ndarray] | None = None  # the chunk being filled
        self._dirty: set[int] = set()
        #: read chunks that are missing as the fill value (legacy stores, and verify)
        self.absent_is_fill: bool | None = None

    def _array(self) -> zarr.Array:
        return self.arrays.get(self.field.name)

    # -- reading --------------------------------------------------------------------------
    def check_chunk_file(self, k: int) -> bool:
        """Whether chunk ``k``'s file exists (``CorruptStoreError`` if something other than a
        plausible chunk file is in its place). Backends without files: assumed present."""
        f = self.field
        key = layout.chunk_key(f.name, k, len(f.shape))
        where = f"{self.backend}/{key}"
        limit = max_chunk_file_bytes(f)
        if self.backend.local is not None:
            try:
                st = os.lstat(self.backend.local / key)
            except (FileNotFoundError, NotADirectoryError):
                return False
            if not stat.S_ISREG(st.st_mode):
                kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                        "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file")
                raise CorruptStoreError(
                    f"{where}: chunk {k} of field {f.name!r} is {kind}; expected a regular file "
                    f"(rows {k * f.chunk_rows}..{(k + 1) * f.chunk_rows - 1})")
            size = st.st_size
        elif self.backend.memory_mappable:  # a zip: its member, as the central directory says
            found = self.backend.locate(key)
            if found is None:
                return False
            size = found[2]
        else:
            return True
        if size > limit:
            raise CorruptStoreError(
                f"{where}: chunk {k} of field {f.name!r} is {size:,} bytes; a chunk of "
                f"{f.chunk_rows} rows of {f.row_bytes} bytes is at most {limit:,}")
        return True

    def chunk(self, k: int) -> np.ndarray:
        """Decoded chunk ``k`` (cached)."""
        key = (self.field.name, k)
        chunk = self.cache.get(key)
        if chunk is not None:
            return chunk
        arr = self._array()
        f = self.field
        if self.absent_is_fill is None:
            self.absent_is_fill = not every_chunk_written(arr)
        if not self.check_chunk_file(k) and not self.absent_is_fill:
            raise CorruptStoreError(
                f"{self.backend}/{layout.chunk_key(f.name, k, len(f.shape))}: chunk {k} of field "
                f"{f.name!r} is missing; expected a chunk file holding rows "
                f"{k * f.chunk_rows}..{(k + 1) * f.chunk_rows - 1}")
        lo = k * f.chunk_rows
        try:
            with remote_errors(self.backend):
                chunk = arr[lo : min(lo + f.chunk_rows, arr.shape[0])]
        except (ReplayStoreError, MemoryError):
            raise
        except Exception as e:  # any decode failure is damage
            raise CorruptStoreError(
                f"{self.backend}/{layout.chunk_key(f.name, k, len(f.shape))}: chunk {k} of field "
                f"{f.name!r} cannot be decoded ({type(e).__name__}: {e})") from None
        self.cache.put(key, chunk)
        return chunk

    def gather(self, phys: np.ndarray, out: np.ndarray) -> np.ndarray:
        cr = self.field.chunk_rows
        if not len(phys):
            return out
        ck = phys // cr
        lo_k, hi_k = int(ck.min()), int(ck.max())
        if lo_k == hi_k:  # one chunk (small stores, sequential reads)
            return np.take(self.chunk(lo_k), phys - lo_k * cr, axis=0, out=out)
        order = np.argsort(ck, kind="stable")
        sck = ck[order]
        bounds = np.flatnonzero(np.diff(sck)) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(sck)], strict=True):
            if a == b:
                continue
            k = int(sck[a])
            sel = order[a:b]
            out[sel] = self.chunk(k)[phys[sel] - k * cr]
        return out

    def slice(self, start: int, stop: int) -> np.ndarray:
        f = self.field
        return self.gather(np.arange(start, stop, dtype=np.int64), np.empty((stop - start, *f.shape), f.dtype))

    def read_bytes(self, start: int, stop: int) -> bytes:
        """Rows as stored. A missing chunk reads as the fill value where
        :attr:`absent_is_fill` allows it (:meth:`absent_chunks` says which are missing;
        only the checksums can tell whether rows that were not the fill value went missing)."""
        f = self.field
        cr = f.chunk_rows
        le = f.dtype.newbyteorder("<")
        parts, pos = [], start
        while pos < stop:
            k, off = divmod(pos, cr)
            m = min(stop - pos, cr - off)
            if self._open is not None and self._open[0] == k:
                rows = self._open[1][off : off + m]
            else:
                rows = self.chunk(k)[off : off + m]
                if len(rows) != m:
                    raise OSError(f"chunk {k} holds fewer rows than expected")
            parts.append(np.ascontiguousarray(rows, dtype=le).tobytes())
            pos += m
        return b"".join(parts)

    def absent_chunks(self, start: int, stop: int) -> list[str]:
        f = self.field
        if not self.backend.memory_mappable or stop <= start:
            return []  # (object stores: absent and empty cannot be told apart by listing here)
        cr, ndim = f.chunk_rows, len(f.shape)
        return [layout.chunk_key(f.name, k, ndim) for k in range(start // cr, (stop - 1) // cr + 1)
                if not self.check_chunk_file(k)]

    def invalidate(self) -> None:
        self.arrays.forget(self.field.name)
        self.cache.drop_field(self.field.name)

    # -- writing --------------------------------------------------------------------------
    def write(self, dst: int, rows: np.ndarray) -> None:
        cr = self.field.chunk_rows
        pos, src, n = dst, 0, len(rows)
        while src < n:
            k, off = divmod(pos, cr)
            m = min(n - src, cr - off)
            self._write_part(k, off, rows[src : src + m])
            pos += m
            src += m

    def _write_part(self, k: int, off: int, part: np.ndarray) -> None:
        f = self.field
        cr = f.chunk_rows
        arr = self._array()
        lo = k * cr
        hi = min(lo + cr, arr.shape[0])
        if self._open is None or self._open[0] != k:
            chunk = np.zeros((cr, *f.shape), f.dtype)
            if hi > lo and not (off == 0 and len(part) >= hi - lo):
                chunk[: hi - lo] = arr[lo:hi]  # keep the rows this write does not cover
            self._open = (k, chunk)
        chunk = self._open[1]
        chunk[off : off + len(part)] = part
        arr[lo:hi] = chunk[: hi - lo]
        self.cache.drop((f.name, k))
        self._dirty.add(k)

    def reserve(self, rows: int, *, fsync: bool = False) -> None:
        if self.capacity is None:
            arr = self._array()
            want = _alloc(rows, self.field.chunk_rows)
            if arr.shape[0] < want:
                arr.resize((want, *self.field.shape))

    def trim(self, rows: int, *, fsync: bool) -> None:
        arr = self._array()
        if arr.shape[0] != rows:
            arr.resize((rows, *self.field.shape))

    def sync(self) -> None:
        ndim = len(self.field.shape)
        for k in self._dirty:
            self.backend.fsync(layout.chunk_key(self.field.name, k, ndim))
        self._dirty.clear()

    def close(self) -> None:
        self.cache.drop_field(self.field.name)
        self._open = None
