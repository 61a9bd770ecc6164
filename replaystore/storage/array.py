"""RowArray: one uncompressed Zarr v3 array of rows on local disk.

Rows are written in place into chunk files (``pwrite`` at the row's byte offset; a new
chunk file is created at its full, padded size) and read through a
:class:`~replaystore.storage.mapping.ChunkedView`. The files stay a valid Zarr v3 array:
the ``bytes`` codec stores each chunk as a plain little-endian C-order block.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .files import atomic_write_json, read_json
from .layout import array_doc, chunk_key, chunk_path
from .mapping import MADV_NORMAL, ChunkedView

__all__ = ["RowArray", "create_row_array"]

_MAX_OPEN_FILES = 256


def create_row_array(path: Path, dtype, shape: tuple[int, ...], chunk_rows: int, rows: int = 0) -> None:
    """Create the Zarr v3 array metadata for an uncompressed row array (no chunk files yet).

    Written directly (not through zarr-python), so that a writer closed by the garbage
    collector in the middle of another zarr call never waits on zarr's event loop."""
    Path(path).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(path) / "zarr.json", array_doc(dtype, shape, chunk_rows, rows))


class RowArray:
    """In-place writer and mapped reader of one uncompressed row array."""

    def __init__(
        self,
        path: Path,
        *,
        dtype,
        shape: tuple[int, ...],
        chunk_rows: int,
        max_rows: int | None,
        name: str,
        advice: int = MADV_NORMAL,
        hugepages: bool = False,
        private: bool = False,
    ) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.chunk_rows = int(chunk_rows)
        self.name = name
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))
        self.chunk_bytes = self.row_bytes * self.chunk_rows
        self._le = self.dtype.newbyteorder("<")
        self._fds: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._meta: dict | None = None
        self.view = ChunkedView(
            lambda k: chunk_path(self.path.parent, self.path.name, k, len(self.shape)),
            dtype=self.dtype,
            shape=self.shape,
            chunk_rows=self.chunk_rows,
            max_rows=max_rows,
            name=name,
            advice=advice,
            hugepages=hugepages,
            private=private,
        )

    # -- writing --------------------------------------------------------------------------
    def _fd(self, k: int) -> int:
        fd = self._fds.get(k)
        if fd is None:
            path = chunk_path(self.path.parent, self.path.name, k, len(self.shape))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(fd).st_size != self.chunk_bytes:
                os.ftruncate(fd, self.chunk_bytes)
            if len(self._fds) >= _MAX_OPEN_FILES:
                for key in [k for k in self._fds if k not in self._dirty][: _MAX_OPEN_FILES // 2]:
                    os.close(self._fds.pop(key))
            self._fds[k] = fd
        return fd

    def write(self, dst: int, rows: np.ndarray) -> None:
        """Write ``rows`` at physical row ``dst`` onwards (may span chunks)."""
        cr = self.chunk_rows
        data = np.ascontiguousarray(rows, dtype=self._le)
        flat = memoryview(data.reshape(len(data), -1) if data.ndim > 1 else data).cast("B")
        pos, src, n, rb = dst, 0, len(data), self.row_bytes
        while src < n:
            k, off = divmod(pos, cr)
            m = min(n - src, cr - off)
            os.pwrite(self._fd(k), flat[src * rb : (src + m) * rb], off * rb)
            self._dirty.add(k)
            pos += m
            src += m

    def read_bytes(self, a: int, b: int) -> bytes:
        """Raw little-endian bytes of physical rows ``[a, b)``, read from the chunk files
        (``OSError`` naming the chunk file when one is missing or not a whole chunk)."""
        cr, rb = self.chunk_rows, self.row_bytes
        parts = []
        pos = a
        while pos < b:
            k, off = divmod(pos, cr)
            m = min(b - pos, cr - off)
            rel = chunk_key(self.path.name, k, len(self.shape))
            fd = self._fds.get(k)
            if fd is None:
                try:
                    with open(self.path.parent / rel, "rb") as fh:
                        size = os.fstat(fh.fileno()).st_size
                        fh.seek(off * rb)
                        data = fh.read(m * rb)
                except FileNotFoundError:
                    raise OSError(f"chunk file {rel} is missing") from None
                if size != self.chunk_bytes:
                    raise OSError(f"chunk file {rel} has {size} bytes, expected {self.chunk_bytes}")
            else:
                data = os.pread(fd, m * rb, off * rb)
            if len(data) != m * rb:
                raise OSError(f"chunk file {rel} is shorter than {(off + m) * rb} bytes")
            parts.append(data)
            pos += m
        return b"".join(parts)

    def sync(self) -> None:
        """fdatasync the chunk files written since the last sync."""
        for k in self._dirty:
            fd = self._fds.get(k)
            if fd is not None:
                os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
        self._dirty.clear()

    def set_rows(self, rows: int, *, fsync: bool = False) -> None:
        """Set the array's row count in its ``zarr.json`` (for growing arrays)."""
        if self._meta is None:
            self._meta = read_json(self.path / "zarr.json", what=f"array metadata of {self.name!r}")
        if self._meta["shape"][0] != rows:
            self._meta["shape"][0] = int(rows)
            atomic_write_json(self.path / "zarr.json", self._meta, fsync=fsync)

    # -- reading --------------------------------------------------------------------------
    def readable(self, rows: int) -> ChunkedView:
        """The mapped view with physical rows ``[0, rows)`` readable."""
        self.view.ensure(rows)
        return self.view

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self.view.close()
