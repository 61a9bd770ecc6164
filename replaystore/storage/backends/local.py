"""A store in a local directory: the fast path.

Uncompressed chunk files are written in place (``pwrite``) and read through memory maps;
documents are replaced atomically (temp file + rename); a ``flock`` keeps out a second
writer; ``.live`` tells ring readers which rows may have been overwritten.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ...errors import CorruptStoreError
from .. import layout
from ..files import LiveFloor, WriterLock, atomic_write_json, read_json, remove_stray_temps
from .base import Backend, ChunkLocation

__all__ = ["LocalBackend"]


class LocalBackend(Backend):
    writable = True
    memory_mappable = True
    in_place_writes = True
    hugepage_mappable = True
    has_lock = True
    has_live_floor = True
    has_checksums = True
    persistent_indexes = True

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(Path(path))
        self.local = Path(path)

    def path(self, key: str) -> Path:
        return self.local / key

    def get(self, key: str) -> bytes | None:
        p = self.local / key
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(st.st_mode):
            return None
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device could block or never end
            raise CorruptStoreError(f"{p}: expected a regular file")
        return p.read_bytes()

    def get_json(self, key: str, *, what: str) -> Any:
        try:
            return read_json(self.local / key, what=what)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def put(self, key: str, data: bytes) -> None:
        p = self.local / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def put_json(self, key: str, obj, *, fsync: bool = False) -> None:
        atomic_write_json(self.local / key, obj, fsync=fsync)

    def put_backup(self, key: str, obj) -> None:
        try:
            (self.local / key).write_text(json.dumps(obj))
        except OSError:
            pass

    def sizes(self, prefix: str = "") -> dict[str, int]:
        out = {}
        base = self.local / prefix if prefix else self.local
        for dirpath, _, files in os.walk(base):
            for f in files:
                p = os.path.join(dirpath, f)
                out[os.path.relpath(p, self.local).replace(os.sep, "/")] = os.lstat(p).st_size
        return out

    def disk_usage(self, prefix: str = "") -> int:
        total = 0
        for dirpath, _, files in os.walk(self.local / prefix if prefix else self.local):
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))  # (a link is not followed)
                total += min(st.st_size, st.st_blocks * 512)
        return total

    def zarr_store(self, *, read_only: bool):
        from zarr.storage import LocalStore

        return LocalStore(str(self.local), read_only=read_only)

    def locate(self, key: str) -> ChunkLocation | None:
        p = str(self.local / key)
        try:
            return p, 0, os.path.getsize(p), True
        except FileNotFoundError:
            return None

    def fsync(self, key: str) -> None:
        try:
            fd = os.open(self.local / key, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock(self) -> WriterLock:
        lock = WriterLock(self.local)
        lock.acquire()
        return lock

    def live_floor(self, *, create: bool) -> LiveFloor | None:
        live = LiveFloor(self.local, create=create)
        return live if live.array is not None else None

    def remove_stray_temps(self) -> None:
        remove_stray_temps(self.local)

    def chunk_path(self, field: str, k: int, ndim: int) -> str:
        return layout.chunk_path(self.local, field, k, ndim)
