"""Memory maps of uncompressed chunk files, stitched into one contiguous array per field.

An uncompressed Zarr v3 array (``bytes`` codec, little endian) stores every chunk as a
plain C-order block, padded to the full chunk shape. When a chunk's byte size is a
multiple of the page size, the chunk files of one field can be mapped side by side into
one reserved range of virtual memory, so the whole field reads as a single numpy array:
a random gather then costs exactly what it costs on one ``np.memmap``. Pages are
file-backed, so they count against the page cache, not the process's anonymous memory.

On platforms without ``mmap(MAP_FIXED)`` (or for chunks that are not page-aligned) the
field falls back to one ``np.memmap`` per chunk and batches are gathered chunk by chunk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys

import numpy as np

from ..errors import CorruptStoreError

__all__ = ["ChunkedView", "contiguous_supported", "memory_budget"]

_PAGE = mmap.PAGESIZE
_libc = None
if sys.platform.startswith("linux") or sys.platform == "darwin":
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long,
        ]
        _libc.munmap.restype = ctypes.c_int
        _libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc.madvise.restype = ctypes.c_int
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _libc = None

_MAP_FIXED = 0x10
_MAP_NORESERVE = 0x4000 if sys.platform.startswith("linux") else 0x40
_MAP_FAILED = ctypes.c_void_p(-1).value
MADV_NORMAL, MADV_RANDOM = 0, 1
_MADV_HUGEPAGE, _MADV_NOHUGEPAGE = 14, 15
_MADV_DONTNEED = 4
#: PMD size: a chunk that is a multiple of it can be mapped with 2 MiB pages
HUGE = 2 << 20
_HUGE_OK = sys.platform.startswith("linux") and mmap.PAGESIZE == 4096


def memory_budget() -> int | None:
    """Bytes of memory available to this process: ``MemAvailable``, capped by the memory
    cgroup's limit when there is one (``None`` when unknown)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        return None
    for path in _cgroup_limit_files():
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and avail is not None:
            avail = min(avail, int(text))
    return avail


def _cgroup_limit_files() -> list[str]:
    out = []
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            out.append(f"/sys/fs/cgroup{path}/memory.max")
        elif "memory" in controllers.split(","):
            out.append(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
    return out


def contiguous_supported(chunk_bytes: int) -> bool:
    """Whether chunk files of this size can be stitched into one contiguous view here."""
    return _libc is not None and chunk_bytes > 0 and chunk_bytes % _PAGE == 0


class ChunkedView:
    """Read-only access to the rows of one uncompressed field, chunk files mapped lazily.

    ``chunk_path(k)`` gives the file of chunk ``k``. Or ``locate(k)`` gives ``(file, offset,
    size)`` of chunk ``k`` inside a larger file (a packed ``.zip``), or ``None`` when it is
    missing; ``contiguous=False`` then forces one map per chunk (offsets not page-aligned).
    Call :meth:`ensure` when more rows became readable (new chunk files).
    """

    def __init__(self, chunk_path, *, dtype: np.dtype, shape: tuple[int, ...], chunk_rows: int,
                 max_rows: int | None, name: str, advice: int = MADV_NORMAL, locate=None,
                 contiguous: bool | None = None, hugepages: bool = False, private: bool = False) -> None:
        self._chunk_path = chunk_path
        #: private (copy-on-write) maps: the writer's own process may put rows into them that
        #: the files get later (:meth:`rows_for_writing`, :meth:`discard`); never seen elsewhere
        self.private = bool(private) and _libc is not None
        self._locate = locate
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.chunk_rows = int(chunk_rows)
        self.name = name
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))
        self.chunk_bytes = self.row_bytes * self.chunk_rows
        self.contiguous = contiguous_supported(self.chunk_bytes) and contiguous is not False
        self.advice = advice
        self.hugepages = (bool(hugepages) and self.chunk_bytes % HUGE == 0 and _HUGE_OK
                          and not self.private)
        self._raw: dict[int, tuple[int, int]] = {}  # aligned base -> (raw base, raw bytes)
        self._mapped = 0  # chunks mapped so far
        self._base = None
        self._reserved = 0  # chunks the reservation can hold
        self._max_chunks = None if max_rows is None else -(-max_rows // self.chunk_rows)
        self._chunks: list[np.ndarray] = []
        self._bufs: list = []
        self._retired: list[tuple[int, int]] = []  # reservations replaced by a larger one  # (ctypes buffer, base, reserved bytes) of every array handed out
        self.array: np.ndarray | None = None

    # -- mapping -----------------------------------------------------------------------
    def _check_file(self, k: int) -> tuple[str, int] | bytes:
        """File and byte offset of chunk ``k``, checked to hold exactly one chunk (or the
        chunk's bytes, when ``locate`` gives them: an inflated zip member)."""
        offset = 0
        try:
            if self._locate is not None:
                found = self._locate(k)
                if found is None:
                    raise FileNotFoundError
                if isinstance(found, bytes):
                    if len(found) != self.chunk_bytes:
                        raise CorruptStoreError(
                            f"{self._chunk_path(k)}: chunk {k} of field {self.name!r} has "
                            f"{len(found)} bytes; expected {self.chunk_bytes}")
                    return found
                path, offset, size = found
            else:
                path = self._chunk_path(k)
                size = os.path.getsize(path)
        except FileNotFoundError:
            where = self._chunk_path(k)
            raise CorruptStoreError(
                f"{where}: chunk {k} of field {self.name!r} is missing; expected a file of "
                f"{self.chunk_bytes} bytes (rows {k * self.chunk_rows}..{(k + 1) * self.chunk_rows - 1})"
            ) from None
        if size != self.chunk_bytes:
            raise CorruptStoreError(
                f"{self._chunk_path(k)}: chunk {k} of field {self.name!r} has {size} bytes; expected "
                f"{self.chunk_bytes} (uncompressed, {self.chunk_rows} rows of {self.row_bytes} bytes)"
            )
        return path, offset

    def ensure(self, rows: int) -> None:
        """Make physical rows ``[0, rows)`` readable."""
        need = -(-rows // self.chunk_rows)
        if need <= self._mapped:
            return
        if not self.contiguous:
            for k in range(self._mapped, need):
                found = self._check_file(k)
                if isinstance(found, bytes):
                    chunk = np.frombuffer(found, self.dtype).reshape(self.chunk_rows, *self.shape)
                else:
                    chunk = np.memmap(found[0], dtype=self.dtype, mode="r", offset=found[1],
                                      shape=(self.chunk_rows, *self.shape))
                self._chunks.append(chunk)
            self._mapped = need
            return
        if need > self._reserved:
            self._reserve(need)
        for k in range(self._mapped, need):
            found = self._check_file(k)
            if isinstance(found, bytes):
                self._place(k, found)
                continue
            path, offset = found
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as e:
                raise CorruptStoreError(f"{path}: cannot open chunk {k} of {self.name!r}: {e.strerror}") from None
            try:
                addr = self._base + k * self.chunk_bytes
                prot, flags = mmap.PROT_READ, mmap.MAP_SHARED
                if self.private:
                    prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE
                got = _libc.mmap(addr, self.chunk_bytes, prot, flags | _MAP_FIXED, fd, offset)
                if got in (None, _MAP_FAILED) or got != addr:
                    err = ctypes.get_errno()
                    raise CorruptStoreError(f"{path}: cannot map chunk {k} of {self.name!r}: {os.strerror(err)}")
                if self.advice != MADV_NORMAL:
                    _libc.madvise(addr, self.chunk_bytes, self.advice)
                elif self.hugepages:
                    _libc.madvise(addr, self.chunk_bytes, _MADV_HUGEPAGE)
            finally:
                os.close(fd)
        self._mapped = need
        self._make_array()

    def _place(self, k: int, data: bytes) -> None:
        """Put chunk ``k``, given as bytes, at its place in the reservation (anonymous memory)."""
        addr = self._base + k * self.chunk_bytes
        got = _libc.mmap(addr, self.chunk_bytes, mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED, -1, 0)
        if got in (None, _MAP_FAILED) or got != addr:
            raise MemoryError(f"cannot place chunk {k} of {self.name!r} in memory: "
                              f"{os.strerror(ctypes.get_errno())}")
        ctypes.memmove(addr, data, self.chunk_bytes)

    def _reserve(self, need: int) -> None:
        # Reserve address space for (at least) twice what is needed, or the whole ring.
        chunks = max(need, 2 * self._reserved, 8)
        if self._max_chunks is not None:
            chunks = max(need, min(chunks, self._max_chunks))
        extra = HUGE if self.hugepages else 0
        raw = _libc.mmap(None, chunks * self.chunk_bytes + extra, 0,
                         mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        if raw in (None, _MAP_FAILED):
            raise MemoryError(f"cannot reserve address space for field {self.name!r}")
        base = -(-raw // HUGE) * HUGE if extra else raw  # 2 MiB aligned, for PMD mappings
        self._raw[base] = (raw, chunks * self.chunk_bytes + extra)
        if self._base is not None:
            self._retired.append((self._base, self._reserved * self.chunk_bytes))
        self._base, self._reserved, self._mapped = base, chunks, 0
        self.array = None

    def _make_array(self) -> None:
        nbytes = self._mapped * self.chunk_bytes
        buf = (ctypes.c_char * nbytes).from_address(self._base)
        self._bufs.append((buf, self._base, self._reserved * self.chunk_bytes))
        arr = np.frombuffer(buf, dtype=self.dtype).reshape(self._mapped * self.chunk_rows, *self.shape)
        arr.flags.writeable = False
        self.array = arr

    def rows_for_writing(self, start: int, stop: int) -> np.ndarray | None:
        """A writable view of physical rows ``[start, stop)`` of a private map (``None`` if
        this view is not private, not contiguous, or those rows are not mapped). What is
        written there is seen by this process's reads until :meth:`discard`; the files and
        every other process never see it (the writer writes the same rows to the files)."""
        if not (self.private and self.contiguous) or stop > self._mapped * self.chunk_rows:
            return None
        nbytes = (stop - start) * self.row_bytes
        buf = (ctypes.c_char * nbytes).from_address(self._base + start * self.row_bytes)
        self._bufs.append((buf, self._base, self._reserved * self.chunk_bytes))
        return np.frombuffer(buf, dtype=self.dtype).reshape(stop - start, *self.shape)

    def discard(self, start: int, stop: int) -> None:
        """Drop the private copies of the pages holding physical rows ``[start, stop)``: they
        show the files again (call once those rows were written to the files)."""
        if not self.private or stop <= start or not self._mapped:
            return
        a = (self._base + start * self.row_bytes) // _PAGE * _PAGE
        b = self._base + min(stop, self._mapped * self.chunk_rows) * self.row_bytes
        _libc.madvise(a, b - a, _MADV_DONTNEED)

    def advise(self, advice: int) -> None:
        """Apply ``madvise`` to every mapped chunk (e.g. ``MADV_RANDOM`` for stores far larger than RAM)."""
        self.advice = advice
        if self.contiguous and self._mapped:
            _libc.madvise(self._base, self._mapped * self.chunk_bytes, advice)
            if self.hugepages:
                huge = _MADV_HUGEPAGE if advice == MADV_NORMAL else _MADV_NOHUGEPAGE
                _libc.madvise(self._base, self._mapped * self.chunk_bytes, huge)

    # -- reading -----------------------------------------------------------------------
    def take(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Gather physical ``rows`` into ``out`` (shape ``(len(rows), *shape)``)."""
        if self.contiguous:
            return np.take(self.array, rows, axis=0, out=out)
        cr = self.chunk_rows
        if not len(rows):
            return out
        ck = rows // cr
        if ck.min() == ck.max():
            return np.take(self._chunks[int(ck[0])], rows - ck[0] * cr, axis=0, out=out)
        order = np.argsort(ck, kind="stable")
        sck = ck[order]
        bounds = np.flatnonzero(np.diff(sck)) + 1
        starts = np.concatenate(([0], bounds))
        stops = np.concatenate((bounds, [len(sck)]))
        for a, b in zip(starts, stops, strict=True):
            k = int(sck[a])
            sel = order[a:b]
            out[sel] = self._chunks[k][rows[sel] - k * cr]
        return out

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Physical rows ``[start, stop)`` (a view when possible, else a copy)."""
        if self.contiguous:
            return self.array[start:stop]
        out = np.empty((stop - start, *self.shape), self.dtype)
        return self.take(np.arange(start, stop, dtype=np.int64), out)

    def _bufs_in_use(self):
        for entry in self._bufs:
            # references to the ctypes buffer: the tuple, getrefcount's argument, and one
            # per numpy array built on it that is still alive somewhere
            yield entry[1], sys.getrefcount(entry[0]) > 2

    def close(self) -> None:
        """Unmap everything no numpy array still points into (those ranges stay mapped)."""
        self.array = None
        self._chunks = []
        if self._base is not None:
            self._retired.append((self._base, self._reserved * self.chunk_bytes))
        busy = {base for base, in_use in self._bufs_in_use() if in_use}
        self._bufs = []
        for base, nbytes in self._retired:
            if base not in busy:
                raw, raw_bytes = self._raw.pop(base, (base, nbytes))
                _libc.munmap(raw, raw_bytes)
        self._retired = []
        self._base = None
        self._mapped = 0
        self._reserved = 0
