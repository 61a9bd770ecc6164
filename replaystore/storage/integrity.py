"""Checksums of committed rows, and verification / repair of a store.

Each field's rows are split into fixed blocks of physical rows (about 64 KiB each).
For every block the writer records a CRC32 of the block's *committed* rows (in physical
order) together with the commit generation it belongs to. Each block has two slots; a
commit writes into the older slot, so a crash between writing checksums and publishing
the state leaves the previous commit's checksums intact. ``verify`` recomputes every
block's CRC from the files and compares it with the newest slot not newer than the
committed generation.

Files: ``.crc/<field>.bin``, ``n_blocks x 2`` records of ``(uint32 crc, uint32 rows,
int64 generation)``, little endian.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import layout
from .schema import Field

__all__ = ["BlockChecksums", "block_rows_for", "changed_blocks", "RECORD", "CHECKSUM_BLOCK_BYTES"]

RECORD = np.dtype([("crc", "<u4"), ("rows", "<u4"), ("generation", "<i8")])
#: bytes of a field's rows covered by one checksum (about: rows per block are a power of two)
CHECKSUM_BLOCK_BYTES = 1 << 16


def block_rows_for(f: Field) -> int:
    """Rows per checksum block: a power of two, about 64 KiB of the field's rows."""
    rows = max(1, CHECKSUM_BLOCK_BYTES // max(1, f.row_bytes))
    return 1 << (rows.bit_length() - 1)


def _intersect(intervals: list[tuple[int, int]], a: int, b: int) -> list[tuple[int, int]]:
    out = []
    for lo, hi in intervals:
        x, y = max(lo, a), min(hi, b)
        if x < y:
            out.append((x, y))
    return out


class BlockChecksums:
    """Reads and writes the checksum records of one field."""

    def __init__(self, root: Path, f: Field, *, writable: bool) -> None:
        self.field = f
        self.block_rows = block_rows_for(f)
        self.path = Path(root) / layout.crc_key(f.name)
        self.writable = writable
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def records(self) -> np.ndarray:
        """All records, shape ``(n_blocks, 2)`` (empty when the file is missing)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return np.zeros((0, 2), RECORD)
        pair = 2 * RECORD.itemsize
        n = -(-len(data) // pair)  # the last block may have only its first slot written
        data = data + bytes(n * pair - len(data))
        return np.frombuffer(data, RECORD).reshape(n, 2)

    def expected(self, block: int, generation: int, records: np.ndarray) -> tuple[int, int] | None:
        """(crc, rows) valid at ``generation`` for a block, or None if never recorded."""
        if block >= len(records):
            return None
        slots = records[block]
        ok = [s for s in slots if 0 < s["generation"] <= generation]
        if not ok:
            return None
        best = max(ok, key=lambda s: s["generation"])
        return int(best["crc"]), int(best["rows"])

    def update(self, blocks: set[int], intervals: list[tuple[int, int]], generation: int,
               read_rows: Callable[[int, int], bytes]) -> None:
        """Record the CRC of the committed rows of ``blocks`` for ``generation``."""
        if not blocks:
            return
        fd = self._open()
        br = self.block_rows
        rec_size = RECORD.itemsize
        for b in sorted(blocks):
            crc, rows = 0, 0
            for x, y in _intersect(intervals, b * br, (b + 1) * br):
                crc = zlib.crc32(read_rows(x, y), crc)
                rows += y - x
            raw = os.pread(fd, 2 * rec_size, b * 2 * rec_size)
            raw += bytes(2 * rec_size - len(raw))  # slots past the end of the file are empty
            slots = np.frombuffer(raw, RECORD).copy()
            if slots[0]["generation"] == generation or slots[1]["generation"] == generation:
                slot = 0 if slots[0]["generation"] == generation else 1
            else:
                slot = 0 if slots[0]["generation"] <= slots[1]["generation"] else 1
            rec = np.array([(crc, rows, generation)], RECORD)
            os.pwrite(fd, rec.tobytes(), (b * 2 + slot) * rec_size)

    def forget_after(self, generation: int) -> int:
        """Clear records newer than the committed ``generation`` (left by a writer that
        died before publishing them), so generation numbers can be reused. Returns how
        many were cleared."""
        records = self.records()
        stale = np.argwhere(records["generation"] > generation)
        if not len(stale):
            return 0
        fd = self._open()
        zero = np.zeros(1, RECORD).tobytes()
        for b, slot in stale:
            os.pwrite(fd, zero, (int(b) * 2 + int(slot)) * RECORD.itemsize)
        os.fsync(fd)
        return len(stale)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def changed_blocks(block_rows: int, before: list[tuple[int, int]], after: list[tuple[int, int]],
                   written: list[tuple[int, int]]) -> set[int]:
    """Blocks whose committed rows may differ between two states (plus rewritten blocks)."""
    out: set[int] = set()

    def add(a: int, b: int) -> None:
        if b > a:
            out.update(range(a // block_rows, (b - 1) // block_rows + 1))

    for a, b in written:
        add(a, b)
    # where the committed range starts or ends differently, the boundary blocks change
    edges_before = {e for iv in before for e in iv}
    edges_after = {e for iv in after for e in iv}
    for e in edges_before ^ edges_after:
        blk = e // block_rows
        out.add(blk)
        if e % block_rows == 0 and blk:
            out.add(blk - 1)
    # blocks that left or entered the committed range entirely
    lo_b = sorted(edges_before | edges_after)
    for a, b in zip(lo_b, lo_b[1:], strict=False):
        inside_before = any(x <= a and b <= y for x, y in before)
        inside_after = any(x <= a and b <= y for x, y in after)
        if inside_before != inside_after:
            add(a, b)
    return out
