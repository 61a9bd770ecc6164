"""Checksums of committed rows.

Each field's rows are split into fixed blocks of physical rows (about 64 KiB each).
For every block the writer records a CRC32 of the block's *committed* rows (in physical
order) together with the commit generation it belongs to. Each block has two slots; a
commit writes into the older slot, so a crash between writing checksums and publishing
the state leaves the previous commit's checksums intact. ``verify`` recomputes every
block's CRC from the files and compares it with the newest slot not newer than the
committed generation.

Files: ``.crc/<field>.bin``, ``n_blocks x 2`` records of ``(uint32 crc, uint32 rows,
int64 generation)``, little endian; and ``.crc/<field>.chk``, one ``uint32`` check word
per record slot: the CRC32 of the record's 16 bytes followed by its block number and slot
(``<QB``). A record whose check word does not match is itself damaged: ``verify`` then
cannot tell damaged data from a damaged record, and keeps the rows. Stores written before
check words existed have no ``.chk`` file; their records are trusted as they are (the
first writer that appends to such a store adds the check words of the records it finds).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import layout
from .files import fsync_dir, read_at_most
from .schema import Field

__all__ = ["BlockChecksums", "Records", "Expected", "block_rows_for", "changed_blocks",
           "rebuild_checksums", "RECORD", "CHECK", "CHECKSUM_BLOCK_BYTES"]

RECORD = np.dtype([("crc", "<u4"), ("rows", "<u4"), ("generation", "<i8")])
CHECK = np.dtype("<u4")
#: bytes of a field's rows covered by one checksum (about: rows per block are a power of two)
CHECKSUM_BLOCK_BYTES = 1 << 16
_MAX_RECORDS_BYTES = 1 << 31  # a checksum file larger than this is not read whole


def block_rows_for(f: Field) -> int:
    """Rows per checksum block: a power of two, about 64 KiB of the field's rows."""
    rows = max(1, CHECKSUM_BLOCK_BYTES // max(1, f.row_bytes))
    return 1 << (rows.bit_length() - 1)


def check_word(record: bytes, block: int, slot: int) -> int:
    """The check word of one 16-byte record at ``(block, slot)``."""
    return zlib.crc32(record + struct.pack("<QB", block, slot))


def _intersect(intervals: list[tuple[int, int]], a: int, b: int) -> list[tuple[int, int]]:
    out = []
    for lo, hi in intervals:
        x, y = max(lo, a), min(hi, b)
        if x < y:
            out.append((x, y))
    return out


@dataclass
class Expected:
    """What one block should hold at a generation: ``want`` is ``(crc, rows)`` or None when
    no usable record exists; ``sure`` is False when a slot of the block failed its own check
    (a mismatch then may be the record's fault, not the data's). Only data that does not
    match a record it can be sure of is damaged data."""

    want: tuple[int, int] | None
    sure: bool


@dataclass
class Records:
    """The checksum records of one field as read from its files."""

    slots: np.ndarray  # (n_blocks, 2) RECORD
    trusted: np.ndarray  # (n_blocks, 2) bool: the slot passed its own check (or is empty)
    missing: bool  # the records file does not exist (or is not a regular file)
    checked: bool  # check words exist (stores written since they were introduced)

    def __len__(self) -> int:
        return len(self.slots)

    def expected(self, block: int, generation: int, block_rows: int) -> Expected:
        if block >= len(self.slots):
            return Expected(None, False)
        slots, trusted = self.slots[block], self.trusted[block]
        ok = [s for s, t in zip(slots, trusted, strict=True)
              if t and 0 < s["generation"] <= generation and s["rows"] <= block_rows]
        sure = bool(trusted.all())
        if not ok:
            return Expected(None, False)
        best = max(ok, key=lambda s: s["generation"])
        return Expected((int(best["crc"]), int(best["rows"])), sure)

    @property
    def untrusted(self) -> int:
        return int((~self.trusted).sum())


def _read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file (``None`` if it is missing or anything else: a FIFO, a
    device, a directory or a symlink is not read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000) or st.st_size > limit:
            return None
        return read_at_most(fd, st.st_size)
    finally:
        os.close(fd)


class BlockChecksums:
    """Reads and writes the checksum records (and their check words) of one field."""

    def __init__(self, root: Path, f: Field, *, writable: bool) -> None:
        self.field = f
        self.block_rows = block_rows_for(f)
        self.path = Path(root) / layout.crc_key(f.name)
        self.check_path = Path(root) / layout.crc_check_key(f.name)
        self.writable = writable
        self._fd: int | None = None
        self._cfd: int | None = None

    def _open(self) -> tuple[int, int]:
        if self._fd is None:
            self.path.parent.mkdir(exist_ok=True)
            had_checks = self.check_path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._cfd = os.open(self.check_path, os.O_RDWR | os.O_CREAT, 0o644)
            if not had_checks:
                self._add_checks()
        return self._fd, self._cfd

    def _add_checks(self) -> None:
        """Check words for the records of a store written before they existed."""
        assert self._fd is not None and self._cfd is not None
        size = os.fstat(self._fd).st_size
        raw = os.pread(self._fd, size, 0)
        n = len(raw) // RECORD.itemsize
        words = np.zeros(n, CHECK)
        for i in range(n):
            rec = raw[i * RECORD.itemsize : (i + 1) * RECORD.itemsize]
            if any(rec):
                words[i] = check_word(rec, i // 2, i % 2)
        os.pwrite(self._cfd, words.tobytes(), 0)

    def load(self) -> Records:
        """All records, shape ``(n_blocks, 2)``, each marked trusted or not."""
        data = _read_regular(self.path, _MAX_RECORDS_BYTES)
        checks = _read_regular(self.check_path, _MAX_RECORDS_BYTES // 4)
        if data is None:
            return Records(np.zeros((0, 2), RECORD), np.ones((0, 2), bool), True, checks is not None)
        pair = 2 * RECORD.itemsize
        n = -(-len(data) // pair)  # the last block may have only its first slot written
        data = data + bytes(n * pair - len(data))
        slots = np.frombuffer(data, RECORD).reshape(n, 2)
        nonzero = np.frombuffer(data, "<u8").reshape(n, 2, 2).any(axis=2)
        trusted = np.ones((n, 2), bool)
        if checks is not None:
            words = np.zeros(2 * n, CHECK)
            have = min(len(checks) // 4, 2 * n)
            words[:have] = np.frombuffer(checks[: have * 4], CHECK)
            sz = RECORD.itemsize
            for i in np.flatnonzero(nonzero.reshape(-1)).tolist():
                if int(words[i]) != check_word(data[i * sz : (i + 1) * sz], i // 2, i % 2):
                    trusted[i // 2, i % 2] = False
        return Records(slots, trusted, False, checks is not None)

    def block_slots(self, block: int) -> Records:
        """The records of one block only (re-read while another process writes)."""
        sz = RECORD.itemsize
        data = self._pread(self.path, 2 * sz, block * 2 * sz)
        if data is None:
            return Records(np.zeros((0, 2), RECORD), np.ones((0, 2), bool), True, False)
        data += bytes(2 * sz - len(data))
        checks = self._pread(self.check_path, 8, block * 8)
        trusted = np.ones((1, 2), bool)
        if checks is not None:
            checks += bytes(8 - len(checks))
            for slot in (0, 1):
                rec = data[slot * sz : (slot + 1) * sz]
                word = int.from_bytes(checks[slot * 4 : slot * 4 + 4], "little")
                if any(rec) and word != check_word(rec, block, slot):
                    trusted[0, slot] = False
        # (as block 0 of a one-block file: callers ask it for block 0)
        return Records(np.frombuffer(data, RECORD).reshape(1, 2), trusted, False, checks is not None)

    @staticmethod
    def _pread(path: Path, n: int, offset: int) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        try:
            if not os.fstat(fd).st_mode & 0o170000 == 0o100000:
                return None
            return os.pread(fd, n, offset)
        finally:
            os.close(fd)

    def records(self) -> np.ndarray:
        """All records, shape ``(n_blocks, 2)`` (empty when the file is missing)."""
        return self.load().slots

    def update(self, blocks: set[int], intervals: list[tuple[int, int]], generation: int,
               read_rows: Callable[[int, int], bytes]) -> None:
        """Record the CRC of the committed rows of ``blocks`` for ``generation``."""
        if not blocks:
            return
        fd, cfd = self._open()
        br = self.block_rows
        sz = RECORD.itemsize
        order = sorted(blocks)
        runs, first = [], 0
        for i in range(1, len(order) + 1):  # runs of consecutive blocks: one read, one write each
            if i == len(order) or order[i] != order[i - 1] + 1:
                runs.append((order[first], order[i - 1] + 1))
                first = i
        for b0, b1 in runs:
            n = b1 - b0
            raw = os.pread(fd, 2 * sz * n, b0 * 2 * sz)
            raw += bytes(2 * sz * n - len(raw))  # slots past the end of the file are empty
            slots = np.frombuffer(raw, RECORD).reshape(n, 2).copy()
            craw = os.pread(cfd, 8 * n, b0 * 8)
            craw += bytes(8 * n - len(craw))
            words = np.frombuffer(craw, CHECK).reshape(n, 2).copy()
            for b in range(b0, b1):
                crc, rows = 0, 0
                for x, y in _intersect(intervals, b * br, (b + 1) * br):
                    crc = zlib.crc32(read_rows(x, y), crc)
                    rows += y - x
                pair = slots[b - b0]
                if pair[0]["generation"] == generation or pair[1]["generation"] == generation:
                    slot = 0 if pair[0]["generation"] == generation else 1
                else:
                    slot = 0 if pair[0]["generation"] <= pair[1]["generation"] else 1
                rec = np.array([(crc, rows, generation)], RECORD)
                pair[slot] = rec[0]
                words[b - b0, slot] = check_word(rec.tobytes(), b, slot)
            os.pwrite(fd, slots.tobytes(), b0 * 2 * sz)
            os.pwrite(cfd, words.tobytes(), b0 * 8)

    def forget_after(self, generation: int) -> int:
        """Clear records newer than the committed ``generation`` (left by a writer that
        died before publishing them), so generation numbers can be reused. Returns how
        many were cleared."""
        records = self.records()
        stale = np.argwhere(records["generation"] > generation)
        if not len(stale):
            return 0
        fd, cfd = self._open()
        zero = np.zeros(1, RECORD).tobytes()
        for b, slot in stale:
            i = int(b) * 2 + int(slot)
            os.pwrite(fd, zero, i * RECORD.itemsize)
            os.pwrite(cfd, bytes(4), i * 4)
        os.fsync(fd)
        os.fsync(cfd)
        return len(stale)

    def sync(self) -> None:
        for fd in (self._fd, self._cfd):
            if fd is not None:
                os.fsync(fd)

    def close(self) -> None:
        for fd in (self._fd, self._cfd):
            if fd is not None:
                os.close(fd)
        self._fd = self._cfd = None


def rebuild_checksums(root: Path, f: Field, intervals: list[tuple[int, int]], generation: int,
                      read_rows: Callable[[int, int], bytes]) -> None:
    """Write the checksum files of field ``f`` afresh from its data: one record per block
    of the committed ``intervals`` at ``generation``. Each file is written aside and
    renamed into place, so a crash leaves the old one or the new one."""
    br = block_rows_for(f)
    blocks = sorted({b for lo, hi in intervals for b in range(lo // br, (hi - 1) // br + 1)})
    n = blocks[-1] + 1 if blocks else 0
    slots = np.zeros((n, 2), RECORD)
    words = np.zeros((n, 2), CHECK)
    for b in blocks:
        crc, rows = 0, 0
        for x, y in _intersect(intervals, b * br, (b + 1) * br):
            crc = zlib.crc32(read_rows(x, y), crc)
            rows += y - x
        slots[b, 0] = (crc, rows, generation)
        words[b, 0] = check_word(slots[b, 0].tobytes(), b, 0)
    crc_dir = Path(root) / layout.CRC_DIR
    if crc_dir.is_symlink() or (crc_dir.exists() and not crc_dir.is_dir()):
        crc_dir.unlink()
    crc_dir.mkdir(exist_ok=True)
    # the check words first: a crash between the two renames leaves old records whose
    # check words fail (damage verify reports and keeps the rows for), never the reverse
    for key, data in ((layout.crc_check_key(f.name), words.tobytes()),
                      (layout.crc_key(f.name), slots.tobytes())):
        path = Path(root) / key
        tmp = path.with_name(layout.temp_name(path.name))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path)
        os.replace(tmp, path)
    fsync_dir(crc_dir)


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
