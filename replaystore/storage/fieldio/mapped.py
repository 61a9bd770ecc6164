"""Uncompressed fields read through memory maps of their chunk files.

On a local store the rows are written in place (``pwrite``, see :class:`RowArray`); in a
``.zip`` the full chunk members are mapped straight out of the zip file (a deflated
member, a partial last chunk, is inflated into memory, at most one chunk's bytes). A local chunk file is
checked with ``lstat`` before it is mapped or read: a symlink, directory, FIFO or device
in its place, or a file of the wrong size, is damage (``CorruptStoreError``), never opened.
"""

from __future__ import annotations

import os
import stat

import numpy as np

from ...errors import CorruptStoreError
from .. import layout
from ..array import RowArray
from ..backends import Backend
from ..mapping import ChunkedView
from ..schema import Field
from .base import FieldIO

__all__ = ["MappedField"]

_HAVE_FADVISE = hasattr(os, "posix_fadvise")


def _alloc(rows: int, chunk_rows: int) -> int:
    """Rows rounded up to whole chunks."""
    return -(-rows // chunk_rows) * chunk_rows


class MappedField(FieldIO):
    """Rows of an uncompressed field: mapped for reading, written in place when the
    backend allows it (``in_place_writes``)."""

    mapped = True

    def __init__(self, backend: Backend, field: Field, *, capacity: int | None, extent: int,
                 advice: int, hugepages: bool, private: bool = False) -> None:
        super().__init__(field)
        self.backend = backend
        self.capacity = capacity
        self._fds: dict[int, tuple[int, int]] = {}  # chunk -> (fd, offset in file)
        self._checked = 0  # chunks [0, _checked) were checked before they were mapped
        ndim = len(field.shape)
        self.rows: RowArray | None = None
        if backend.in_place_writes:
            self.rows = RowArray(backend.local / field.name, dtype=field.dtype, shape=field.shape,
                                 chunk_rows=field.chunk_rows, max_rows=capacity, name=field.name,
                                 advice=advice, hugepages=hugepages and backend.hugepage_mappable,
                                 private=private)
            self._view = self.rows.view
        else:
            n_chunks = -(-extent // field.chunk_rows)
            keys = [layout.chunk_key(field.name, k, ndim) for k in range(n_chunks)]
            self._view = ChunkedView(
                lambda k: f"{backend}:{layout.chunk_key(field.name, k, ndim)}", dtype=field.dtype,
                shape=field.shape, chunk_rows=field.chunk_rows, max_rows=capacity, name=field.name,
                advice=advice, locate=self._locate, contiguous=backend.aligned(keys),
            )

    def _locate(self, k: int):
        key = layout.chunk_key(self.field.name, k, len(self.field.shape))
        found = self.backend.locate(key)
        if found is None:
            return None
        path, offset, size, stored = found
        if not stored:
            inflate = getattr(self.backend, "inflate", None)
            if inflate is None:
                raise CorruptStoreError(f"{self.backend}: member {key!r} is compressed; it cannot "
                                        "be read here")
            return inflate(key, self.field.chunk_bytes)
        return path, offset, size

    @property
    def view(self) -> ChunkedView:
        return self._view

    # -- reading --------------------------------------------------------------------------
    def check_chunk_file(self, k: int) -> None:
        """Chunk ``k`` of a local store is a regular file of exactly one chunk
        (``OSError`` naming it otherwise; ``CorruptStoreError`` for what is not a file)."""
        f = self.field
        if self.backend.local is None:
            return  # (a zip's members are checked against its central directory)
        key = layout.chunk_key(f.name, k, len(f.shape))
        where = f"{self.backend}/{key}"
        try:
            st = os.lstat(self.backend.local / key)
        except (FileNotFoundError, NotADirectoryError):
            raise CorruptStoreError(
                f"{where}: chunk {k} of field {f.name!r} is missing; expected a file of "
                f"{f.chunk_bytes} bytes") from None
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                    "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file")
            raise CorruptStoreError(f"{where}: chunk {k} of field {f.name!r} is {kind}; expected a "
                                    f"regular file of {f.chunk_bytes} bytes")
        if st.st_size != f.chunk_bytes:
            raise CorruptStoreError(f"{where}: chunk {k} of field {f.name!r} has {st.st_size} bytes; "
                                    f"expected {f.chunk_bytes}")

    def ensure(self, rows: int) -> None:
        need = -(-rows // self.field.chunk_rows)
        for k in range(self._checked, need):  # new chunks only: once each
            self.check_chunk_file(k)
            self._checked = k + 1
        self._view.ensure(rows)

    def gather(self, phys: np.ndarray, out: np.ndarray) -> np.ndarray:
        return self._view.take(phys, out)

    def slice(self, start: int, stop: int) -> np.ndarray:
        return np.array(self._view.slice(start, stop))

    def read_bytes(self, start: int, stop: int) -> bytes:
        if stop > start:
            for k in range(start // self.field.chunk_rows, (stop - 1) // self.field.chunk_rows + 1):
                self.check_chunk_file(k)  # (every time: verify reads files that may change)
        if self.rows is not None:
            return self.rows.read_bytes(start, stop)  # from the files, not the mapping
        data = self._view.slice(start, stop)
        return np.ascontiguousarray(data, dtype=self.field.dtype.newbyteorder("<")).tobytes()

    def advise(self, advice: int) -> None:
        self._view.advise(advice)

    def will_need(self, phys: np.ndarray) -> None:
        if not _HAVE_FADVISE or not len(phys):
            return
        f = self.field
        cr, rb = f.chunk_rows, f.row_bytes
        phys = np.sort(phys)
        ck = phys // cr
        offs = (phys - ck * cr) * rb
        for k, off in zip(ck.tolist(), offs.tolist(), strict=True):
            entry = self._fds.get(k)
            if entry is None:
                found = self.backend.locate(layout.chunk_key(f.name, k, len(f.shape)))
                if found is None or not found[3]:
                    continue  # (a deflated member is in memory once mapped)
                try:
                    entry = self._fds[k] = (os.open(found[0], os.O_RDONLY), found[1])
                except OSError:
                    continue
            os.posix_fadvise(entry[0], entry[1] + off, rb, os.POSIX_FADV_WILLNEED)

    # -- writing --------------------------------------------------------------------------
    def _writer(self) -> RowArray:
        if self.rows is None:
            raise CorruptStoreError(f"{self.backend}: field {self.field.name!r} is read-only here")
        return self.rows

    def write(self, dst: int, rows: np.ndarray) -> None:
        self._writer().write(dst, rows)

    def reserve(self, rows: int, *, fsync: bool = False) -> None:
        if self.capacity is None:
            self._writer().set_rows(_alloc(rows, self.field.chunk_rows), fsync=fsync)

    def trim(self, rows: int, *, fsync: bool) -> None:
        self._writer().set_rows(rows, fsync=fsync)

    def sync(self) -> None:
        if self.rows is not None:
            self.rows.sync()

    def close(self) -> None:
        for fd, _ in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self.rows is not None:
            self.rows.close()
        else:
            self._view.close()
