"""Small file-level helpers for local stores: atomic JSON, the writer lock, the live floor."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import CorruptStoreError, StoreLockedError, StoreModeError
from . import layout

__all__ = ["fsync_dir", "atomic_write_json", "read_json", "parse_json", "check_json_depth", "MAX_JSON_BYTES",
           "MAX_JSON_DEPTH", "WriterLock", "LiveFloor", "remove_stray_temps"]

#: the largest JSON document (``zarr.json`` and the like) a store may hold: a larger one is
#: refused as damaged before it is read
MAX_JSON_BYTES = 64 << 20
#: the deepest nesting of arrays and objects a store's JSON documents may have
MAX_JSON_DEPTH = 100


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, so the names created or renamed in it reach the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: dict, *, fsync: bool = False) -> None:
    """Write ``obj`` to ``path`` so readers see either the old or the new file, never half."""
    tmp = path.with_name(layout.temp_name(path.name))
    data = json.dumps(obj, indent=2, allow_nan=False).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def read_json(path: Path, *, what: str = "metadata") -> Any:
    """The JSON document at ``path``: a regular file of at most :data:`MAX_JSON_BYTES`,
    nested at most :data:`MAX_JSON_DEPTH` deep (``CorruptStoreError`` naming it otherwise).
    A FIFO or device in its place is refused, not read (that could block forever or never end)."""
    try:  # (O_NOFOLLOW: a symbolic link in its place is not followed out of the store)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise CorruptStoreError(f"{path}: {what} is a symbolic link; it is not followed") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise CorruptStoreError(f"{path}: {what} is {kind}")
        if st.st_size > MAX_JSON_BYTES:
            raise CorruptStoreError(
                f"{path}: {what} is {st.st_size:,} bytes; at most {MAX_JSON_BYTES:,} are accepted"
            )
        data = read_at_most(fd, MAX_JSON_BYTES + 1)  # (bounded even if the file grows meanwhile)
    finally:
        os.close(fd)
    return parse_json(data, where=path, what=what)


def read_at_most(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes from ``fd``'s position (fewer at the end of the file)."""
    parts, left = [], n
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def parse_json(data: bytes, *, where: Any, what: str) -> Any:
    """Decode one JSON document of a store, within :data:`MAX_JSON_BYTES` and
    :data:`MAX_JSON_DEPTH` (``CorruptStoreError`` naming ``where`` otherwise)."""
    if len(data) > MAX_JSON_BYTES:
        raise CorruptStoreError(f"{where}: {what} is over {MAX_JSON_BYTES:,} bytes; it is not read")
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as e:
        raise CorruptStoreError(f"{where}: {what} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise CorruptStoreError(f"{where}: {what} is not valid JSON (not UTF-8 text)") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise CorruptStoreError(f"{where}: {what} is not acceptable JSON ({e})") from None
    except RecursionError:
        raise CorruptStoreError(
            f"{where}: {what} is nested deeper than {MAX_JSON_DEPTH} levels; it is not read"
        ) from None
    check_json_depth(doc, where=where, what=what)
    return doc


def check_json_depth(doc: Any, *, where: Any, what: str, error: type[Exception] = CorruptStoreError) -> None:
    """Raise ``error`` if ``doc`` nests arrays/objects deeper than :data:`MAX_JSON_DEPTH`
    (iteratively: a deep document cannot exhaust the stack here)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise error(f"{where}: {what} is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


class WriterLock:
    """One writer per store: an exclusive ``flock`` on ``.writer.lock``, which holds the pid.

    The kernel drops the lock when the holding process dies, however it dies, so a lock
    left by a killed writer is taken over without any guessing about stale pids. The
    file itself stays (removing it would let two processes lock two different files).
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / layout.LOCK
        self.held = False
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            where = f"{self.path.parent}: cannot open for writing ({e.strerror}); the directory is not writable"
            raise StoreModeError(f"{where}: open the store with mode='r'",
                                 cli=f"{where}; read-only commands (info, sample, train...) still work") from None
        try:
            _lock(fd)
        except BlockingIOError:
            try:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            where = f"{self.path.parent}: store is open for writing by process {pid}"
            raise StoreLockedError(
                f"{where}; open it with mode='r' to read, or close that writer first",
                cli=f"{where}; wait for it to finish (read-only commands such as info and sample work meanwhile)",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        self.held = True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        self.held = False


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: fall back to msvcrt
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise BlockingIOError from None
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stray_temps(root: Path) -> list[Path]:
    """Delete temporary files a killed writer left behind (our ``.*.tmp``, zarr's ``*.partial``).

    Only call this while holding the writer lock: then no live process is writing them.
    """
    removed = []
    for pattern in (".*.tmp", "*.partial"):
        for p in Path(root).rglob(pattern):
            if p.is_file():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


class LiveFloor:
    """A tiny shared-memory file (``.live``) holding the oldest row a ring has not evicted.

    The writer raises the floor *before* it overwrites rows; a reader checks the floor
    *after* it copied rows: any row older than the floor may be torn and is read again.
    The 8-byte slot is written in place (aligned, so the store is atomic).
    """

    def __init__(self, root: Path, *, create: bool) -> None:
        import mmap

        self.path = Path(root) / layout.LIVE
        self._mm = None
        self.array = None
        # Only the writer (create=True) opens it for writing: a reader opens and maps it
        # read-only, so a ring on a read-only mount (or a read-only .live) can be read.
        # O_NONBLOCK: a FIFO in its place must not block the reader.
        if create:
            flags = os.O_RDWR | os.O_CREAT
        else:
            flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except (FileNotFoundError, PermissionError):
            return
        except OSError:
            if create:
                raise
            return  # (e.g. a directory in its place: no floor, as if it were missing)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            if st.st_size < 16:
                if not create:
                    return
                os.ftruncate(fd, 16)
            self._mm = mmap.mmap(fd, 16, access=mmap.ACCESS_WRITE if create else mmap.ACCESS_READ)
        finally:
            os.close(fd)
        import numpy as np

        self.array = np.frombuffer(self._mm, dtype=np.int64, count=2)

    @property
    def floor(self) -> int:
        return int(self.array[0]) if self.array is not None else 0

    def raise_floor(self, value: int) -> None:
        if self.array is not None and value > self.array[0]:
            self.array[0] = value

    def close(self) -> None:
        self.array = None
        if self._mm is not None:
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``); False when the system or file system cannot (then nothing moved)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (ours always does; one we may not signal
    counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # (PermissionError: someone else's process)
        return True
    return True
