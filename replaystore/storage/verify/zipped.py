"""Verify a packed ``.zip`` read-only: its members' raw data go into a private scratch
directory (sparse: zero runs are holes) that the directory checks then read.

Member data is read as the store's readers read it, straight from the zip bytes (stored
members) or inflated (deflated ones, never beyond the size the member declares, which
``pack``'s zip-bomb, path and duplicate checks bound first), *not* through zipfile's CRC
check: a damaged chunk is then found by the store's own checksums, naming the field and
rows. A member whose zip CRC does not match is reported as well.

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> d = tempfile.mkdtemp()
>>> with rs.create(d + "/s.zarr", gym.spaces.Discrete(4), gym.spaces.Discrete(2)) as s:
...     s.append(obs=1, action=0, reward=1.0, next_obs=2, terminated=True, truncated=False)
>>> z = rs.pack(d + "/s.zarr", d + "/s.zip")
>>> with scratch_copy(z) as (root, problems):
...     (root / "zarr.json").exists(), problems
(True, [])
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from ..backends import ZipBackend
from ..pack import check_members
from ..zipchunks import copy_sparse

__all__ = ["scratch_copy"]

_BLOCK = 1 << 20


class _RawMember:
    """A file-like ``read(n)`` over one member's data, from the zip bytes at ``offset``:
    stored as is, or inflated (at most ``info.file_size`` bytes in all); the CRC of what
    was read is :attr:`crc`."""

    def __init__(self, fh, info: zipfile.ZipInfo, offset: int) -> None:
        self.fh, self.left_raw, self.left = fh, info.compress_size, info.file_size
        self.inflate = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        self.pending = b""
        self.crc = 0
        fh.seek(offset)

    def _raw(self, n: int) -> bytes:
        block = self.fh.read(min(self.left_raw, n)) if self.left_raw else b""
        self.left_raw -= len(block)
        return block

    def read(self, n: int) -> bytes:
        n, parts, got_n = min(n, self.left), [], 0
        while got_n < n:
            if self.inflate is None:
                got = self._raw(n - got_n)
                if not got:
                    break
            else:
                src = b"" if self.inflate.eof else self.inflate.unconsumed_tail or self._raw(_BLOCK)
                if not src:
                    break
                got = self.inflate.decompress(src, n - got_n)
            parts.append(got)
            got_n += len(got)
        out = b"".join(parts)
        self.left -= len(out)
        self.crc = zlib.crc32(out, self.crc)
        return out


@contextlib.contextmanager
def scratch_copy(path: str | os.PathLike) -> Iterator[tuple[Path, list[str]]]:
    """``(directory, problems)``: the packed store ``path`` extracted into a temporary
    directory (removed afterwards), and what could not be extracted cleanly (a member
    that does not inflate, whose data ends early or whose zip CRC does not match)."""
    src = Path(path)
    loc = ZipBackend(src)
    problems: list[str] = []
    try:
        members = check_members(loc, src)
        with tempfile.TemporaryDirectory(prefix="replaystore-verify-") as tmp, \
                open(src, "rb") as fh:
            root = Path(tmp) / "store"
            root.mkdir()
            for info in members:
                raw = _RawMember(fh, info, loc.locate(info.filename)[1])
                dest = root / info.filename
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with open(dest, "xb") as out:
                        copy_sparse(raw, out, info.file_size)
                except (EOFError, zlib.error) as e:
                    problems.append(f"zip member {info.filename!r} cannot be read: {e}")
                    dest.unlink()
                    continue
                if raw.crc != info.CRC:
                    problems.append(f"zip member {info.filename!r}: its data does not match the zip's "
                                    "CRC (the file was changed after it was packed)")
            yield root, problems
    finally:
        loc.close()
