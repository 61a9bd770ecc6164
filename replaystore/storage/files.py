"""Small file-level helpers for local stores: atomic JSON, chunk paths, the writer lock."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..errors import CorruptStoreError, StoreLockedError

__all__ = ["atomic_write_json", "read_json", "chunk_path", "WriterLock"]


def atomic_write_json(path: Path, obj: dict, *, fsync: bool = False) -> None:
    """Write ``obj`` to ``path`` so readers see either the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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


def chunk_path(root: Path, field: str, k: int, ndim: int) -> str:
    """Path of chunk ``k`` (along rows) of a field whose rows have ``ndim`` dimensions.

    Zarr v3 default chunk key encoding: ``c/<k>/0/0...``, one ``/0`` per row dimension.
    """
    return os.path.join(root, field, "c", str(k), *(["0"] * ndim))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLock:
    """A lock file holding the writer's pid; a lock left by a dead process is taken over."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / ".writer.lock"
        self.held = False

    def acquire(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise StoreLockedError(
                        f"{self.path.parent}: store is open for writing by process {pid}; "
                        "open it with mode='r' to read, or stop that writer first"
                    ) from None
                if pid == os.getpid():
                    raise StoreLockedError(
                        f"{self.path.parent}: store is already open for writing in this process; "
                        "close the other handle first"
                    ) from None
                # stale lock: the process that held it is gone
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return
        raise StoreLockedError(f"{self.path.parent}: could not take the writer lock")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.held = False
