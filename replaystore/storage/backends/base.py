"""The Backend ABC: where a store's keys live, and what that place can do.

A backend maps keys (``"zarr.json"``, ``"obs/zarr.json"``, ``"obs/c/0/0"``; see
:mod:`replaystore.storage.layout`) to bytes. Its capability flags tell the rest of the
storage layer what it may rely on, so nothing else needs to know *which* backend it has:

=====================  ======================================================  =====  ===  ======
flag                   meaning                                                 local  zip  fsspec
=====================  ======================================================  =====  ===  ======
``writable``           can be created and appended to                          yes    no   yes
``memory_mappable``    uncompressed chunks can be memory-mapped in place       yes    yes  no
``in_place_writes``    rows are written into chunk files in place (pwrite)     yes    no   no
``hugepage_mappable``  chunk files may be mapped with 2 MiB pages              yes    no   no
``has_lock``           a writer lock keeps a second writer out                 yes    no   no
``has_live_floor``     ring readers detect rows overwritten while read         yes    no   no
``has_checksums``      committed rows are checksummed (``verify``)             yes    no   no
``persistent_indexes`` class indexes are kept with the store                   yes    no   no
=====================  ======================================================  =====  ===  ======
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import StoreModeError
from ..files import parse_json

__all__ = ["Backend", "ChunkLocation"]

#: where a chunk's bytes are: ``(file, byte offset, size, stored uncompressed)``
ChunkLocation = tuple[str, int, int, bool]


class Backend(ABC):
    """One store's home. ``name`` is what messages show; ``local`` is the directory of a
    local store (``None`` for every other backend)."""

    writable = False
    memory_mappable = False
    in_place_writes = False
    hugepage_mappable = False
    has_lock = False
    has_live_floor = False
    has_checksums = False
    persistent_indexes = False

    def __init__(self, name: str | Path) -> None:
        self.name = name
        self.local: Path | None = None

    def __str__(self) -> str:
        return str(self.name)

    # -- keys -----------------------------------------------------------------------------
    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The bytes at ``key``, or ``None`` when there is nothing there."""

    def put(self, key: str, data: bytes) -> None:
        raise StoreModeError(f"{self.name}: this store is read-only")

    @abstractmethod
    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes."""

    def disk_usage(self, prefix: str = "") -> int:
        """Bytes the keys under ``prefix`` occupy (sparse regions of local files not counted)."""
        return sum(self.sizes(prefix).values())

    def exists(self) -> bool:
        return self.get("zarr.json") is not None

    def is_empty(self) -> bool:
        return not self.sizes()

    def delete_all(self) -> None:
        raise StoreModeError(f"{self.name}: this store is read-only")

    @abstractmethod
    def zarr_store(self, *, read_only: bool) -> Any:
        """A zarr ``Store`` over the same keys (for zarr-python array I/O)."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release open files."""

    # -- JSON documents -------------------------------------------------------------------
    def get_json(self, key: str, *, what: str) -> Any:
        data = self.get(key)
        if data is None:
            return None
        return parse_json(data, where=f"{self.name}/{key}", what=what)

    def put_json(self, key: str, obj: Mapping, *, fsync: bool = False) -> None:
        """Replace the document at ``key`` atomically: readers see the old or the new one."""
        self.put(key, json.dumps(obj, indent=2, allow_nan=False).encode())

    def put_backup(self, key: str, obj: Mapping) -> None:  # noqa: B027 - optional
        """Best-effort copy of a document (local stores keep one for ``verify --repair``)."""

    # -- capabilities that need files -----------------------------------------------------
    def locate(self, key: str) -> ChunkLocation | None:
        """Where a memory map of ``key`` starts (``memory_mappable`` backends only)."""
        raise NotImplementedError(f"{self.name}: chunks cannot be memory-mapped here")

    def aligned(self, keys: list[str]) -> bool:
        """Whether every existing key of ``keys`` starts on a page boundary of its file."""
        return True

    def fsync(self, key: str) -> None:  # noqa: B027 - a PUT is durable when it returns
        """Make the file at ``key`` durable (local files; objects are once PUT)."""

    def lock(self) -> Any:
        """An acquired writer lock (``has_lock`` backends), else ``None``."""
        return None

    def live_floor(self, *, create: bool) -> Any:
        """The ``.live`` floor of a ring (``has_live_floor`` backends), else ``None``."""
        return None

    def remove_stray_temps(self) -> None:  # noqa: B027 - object PUTs leave no temp files
        """Delete temporary files a killed writer left (call while holding the lock)."""
