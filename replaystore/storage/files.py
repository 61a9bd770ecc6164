"""Small file-level helpers for local stores: atomic JSON, the writer lock, the live floor."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..errors import CorruptStoreError, StoreLockedError, StoreModeError
from . import layout

__all__ = ["atomic_write_json", "read_json", "WriterLock", "LiveFloor", "remove_stray_temps"]


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
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read_json(path: Path, *, what: str = "metadata") -> dict:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except json.JSONDecodeError as e:
        raise CorruptStoreError(f"{path}: {what} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise CorruptStoreError(f"{path}: {what} is not valid JSON (not UTF-8 text)") from None


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
            raise StoreModeError(
                f"{self.path.parent}: cannot open for writing ({e.strerror}); the directory is not "
                "writable: open the store with mode='r'"
            ) from None
        try:
            _lock(fd)
        except BlockingIOError:
            try:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise StoreLockedError(
                f"{self.path.parent}: store is open for writing by process {pid}; open it with "
                "mode='r' to read, or close that writer first"
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
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except (FileNotFoundError, PermissionError):
            return
        try:
            if os.fstat(fd).st_size < 16:
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
