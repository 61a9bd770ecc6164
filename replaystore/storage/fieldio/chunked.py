"""Fields stored as zarr chunks: compressed fields, and every field of an fsspec store.

A compressed chunk must be decoded whole, so reads go through a bounded cache of decoded
chunks shared by the store's fields (:class:`ChunkCache`). Writes rebuild the chunk being
filled in memory and write it whole.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import zarr

from ...errors import CorruptStoreError
from .. import layout
from ..backends import Backend, remote_errors
from ..schema import Field
from .base import FieldIO

__all__ = ["ChunkedField", "ChunkCache", "ZarrArrays"]


def _alloc(rows: int, chunk_rows: int) -> int:
    return -(-rows // chunk_rows) * chunk_rows


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
                arr = zarr.open_array(store=self._store, path=name, mode="r+" if self.writable else "r",
                                      zarr_format=3)
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

    def _array(self) -> zarr.Array:
        return self.arrays.get(self.field.name)

    # -- reading --------------------------------------------------------------------------
    def chunk(self, k: int) -> np.ndarray:
        """Decoded chunk ``k`` (cached)."""
        key = (self.field.name, k)
        chunk = self.cache.get(key)
        if chunk is not None:
            return chunk
        arr = self._array()
        lo = k * self.field.chunk_rows
        with remote_errors(self.backend):
            chunk = arr[lo : min(lo + self.field.chunk_rows, arr.shape[0])]
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
        """Rows as stored; a chunk zarr left out reads as the fill value, as zarr defines
        (:meth:`absent_chunks` says which; only the checksums can tell whether rows that
        were not the fill value went missing)."""
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
                try:
                    rows = self.chunk(k)[off : off + m]
                except Exception as e:  # any decode failure is damage
                    raise CorruptStoreError(
                        f"chunk {k} cannot be decoded ({type(e).__name__}: {e})") from None
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
        keys = [layout.chunk_key(f.name, k, ndim) for k in range(start // cr, (stop - 1) // cr + 1)]
        return [k for k in keys if self.backend.locate(k) is None]

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
