"""The FieldIO ABC: how one field's rows are written and gathered.

A store opens one FieldIO per field, chosen once (see :func:`replaystore.storage.fieldio.open_field`):
memory-mapped uncompressed chunk files, or zarr chunks decoded through a bounded cache.
Rows are addressed by *physical* row number (ring arithmetic is the reader's and the
writer's business, see :mod:`replaystore.storage.ring`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..mapping import ChunkedView
from ..schema import Field

__all__ = ["FieldIO"]


class FieldIO(ABC):
    """Physical rows of one field. ``mapped`` FieldIOs expose a memory-mapped ``view``."""

    #: reads go through memory maps (``view`` is a :class:`ChunkedView`)
    mapped = False

    def __init__(self, field: Field) -> None:
        self.field = field

    @property
    def view(self) -> ChunkedView | None:
        """The memory-mapped view of the rows (``mapped`` FieldIOs), else ``None``."""
        return None

    # -- reading --------------------------------------------------------------------------
    def ensure(self, rows: int) -> None:  # noqa: B027 - only mapped fields map lazily
        """Physical rows ``[0, rows)`` are committed: make them readable."""

    @abstractmethod
    def gather(self, phys: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Copy physical rows ``phys`` (any order) into ``out``."""

    @abstractmethod
    def slice(self, start: int, stop: int) -> np.ndarray:
        """Physical rows ``[start, stop)`` as a new array."""

    @abstractmethod
    def read_bytes(self, start: int, stop: int) -> bytes:
        """Little-endian bytes of physical rows ``[start, stop)`` as stored (for checksums);
        ``OSError`` (:class:`~replaystore.errors.CorruptStoreError` for chunks that do not
        decode) when they cannot be read."""

    def absent_chunks(self, start: int, stop: int) -> list[str]:
        """Keys of the chunk files of rows ``[start, stop)`` that do not exist (only
        fields whose absent chunks read as the fill value report any)."""
        return []

    def invalidate(self) -> None:  # noqa: B027 - nothing cached by default
        """Another process committed: forget cached chunks and array shapes."""

    def advise(self, advice: int) -> None:  # noqa: B027 - only mapped fields take advice
        """``madvise`` the mapped rows (``MADV_RANDOM`` for stores far larger than RAM)."""

    def will_need(self, phys: np.ndarray) -> None:  # noqa: B027 - optional readahead
        """Ask the kernel to start reading the pages of these rows."""

    # -- writing --------------------------------------------------------------------------
    def write(self, dst: int, rows: np.ndarray) -> None:
        """Write ``rows`` at physical row ``dst`` onwards (may span chunks)."""
        raise NotImplementedError(f"field {self.field.name!r} is read-only here")

    def reserve(self, rows: int, *, fsync: bool = False) -> None:  # noqa: B027
        """Grow the array to hold at least ``rows`` physical rows (whole chunks)."""

    def trim(self, rows: int, *, fsync: bool) -> None:  # noqa: B027
        """Make the array's shape exactly ``rows`` rows (unbounded stores, on close)."""

    def sync(self) -> None:  # noqa: B027
        """Make everything written so far durable."""

    def close(self) -> None:  # noqa: B027
        """Unmap and close files."""
