"""A read-only store inside one ``.zip`` file (see :mod:`replaystore.storage.pack`).

Full chunks are stored uncompressed and page-aligned, so they are memory-mapped straight
out of the zip file; a deflated chunk member (``pack`` deflates a field's partial last
chunk, which is mostly zero padding) is inflated into memory by :meth:`ZipBackend.inflate`,
never beyond the size the store's metadata gives a chunk.
"""

from __future__ import annotations

import mmap
import os
import struct
import zipfile
import zlib
from pathlib import Path

from ...errors import CorruptStoreError, NotAStoreError
from ..files import MAX_JSON_BYTES, parse_json
from .base import Backend, ChunkLocation

__all__ = ["ZipBackend"]

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header, 30 bytes
_UTF8_NAME = 0x800  # general purpose flag: the member name is UTF-8


def _is_document(key: str) -> bool:
    """Whether ``key`` is one of a store's JSON documents (group or array ``zarr.json``)."""
    return key.rsplit("/", 1)[-1] in ("zarr.json", ".zarr.json.bak")


class ZipBackend(Backend):
    memory_mappable = True

    def __init__(self, path: str | Path) -> None:
        super().__init__(Path(path))
        self.file = Path(path)
        try:
            self.zip = zipfile.ZipFile(self.file, "r")
        except zipfile.BadZipFile as e:
            raise NotAStoreError(f"{self.file}: not a zip file ({e})") from None
        except IsADirectoryError:
            raise NotAStoreError(f"{self.file}: a directory, not a zip file") from None
        self._infos = {i.filename: i for i in self.zip.infolist() if not i.is_dir()}
        self._offsets: dict[str, int] = {}
        #: member data must end here: at the central directory (and within the file)
        self._data_end = min(self.zip.start_dir, os.fstat(self.zip.fp.fileno()).st_size)

    def get(self, key: str) -> bytes | None:
        info = self._infos.get(key)
        if info is None:
            return None
        if _is_document(key) and info.file_size > MAX_JSON_BYTES:
            # a member's declared size, checked before a byte of it is read (or inflated)
            raise CorruptStoreError(
                f"{self.file}/{key}: this JSON document is {info.file_size:,} bytes; at most "
                f"{MAX_JSON_BYTES:,} are accepted"
            )
        try:
            return self.zip.read(key)
        except (zipfile.BadZipFile, OSError) as e:
            raise CorruptStoreError(f"{self.file}: member {key!r} cannot be read: {e}") from None

    def get_json(self, key: str, *, what: str):
        """A JSON member, within the size and depth limits of local stores' documents."""
        data = self.get(key)
        return None if data is None else parse_json(data, where=f"{self.file}/{key}", what=what)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        return {k: i.file_size for k, i in self._infos.items() if k.startswith(prefix)}

    def disk_usage(self, prefix: str = "") -> int:
        """Bytes the members under ``prefix`` take inside the zip (deflated ones: compressed)."""
        return sum(i.compress_size for k, i in self._infos.items() if k.startswith(prefix))

    def inflate(self, key: str, expected: int) -> bytes | None:
        """The data of the deflated member ``key``, which must be exactly ``expected`` bytes
        (one chunk, as the store's metadata says): a member declaring another size is damage,
        refused before anything is allocated or inflated (``None`` if there is no member).

        ``CorruptStoreError`` naming the member if its data does not inflate to that size or
        fails its CRC."""
        info = self._infos.get(key)
        if info is None:
            return None
        where = f"{self.file}: member {key!r}"
        if info.file_size != expected:
            raise CorruptStoreError(f"{where} declares {info.file_size:,} bytes; a chunk of this field "
                                    f"is {expected:,} bytes")
        if info.compress_type != zipfile.ZIP_DEFLATED or info.compress_size > expected + expected // 64 + 1024:
            raise CorruptStoreError(f"{where} is not a deflated chunk of at most {expected:,} bytes "
                                    f"(method {info.compress_type}, {info.compress_size:,} bytes)")
        off = self.locate(key)[1]  # its data lies inside the zip
        try:
            raw = os.pread(self.zip.fp.fileno(), info.compress_size, off)
            inflate = zlib.decompressobj(-15)
            data = inflate.decompress(raw, expected)  # never more than one chunk
            whole = inflate.eof and not inflate.unconsumed_tail
        except (zlib.error, OSError) as e:
            raise CorruptStoreError(f"{where} cannot be inflated: {e}") from None
        if len(data) != expected or not whole:
            raise CorruptStoreError(f"{where} does not inflate to the {expected:,} bytes it declares")
        if zlib.crc32(data) != info.CRC:
            raise CorruptStoreError(f"{where} is damaged: its data does not match the zip's CRC")
        return data

    def members(self) -> list[zipfile.ZipInfo]:
        """Every file member, in the zip's order."""
        return [i for i in self.zip.infolist() if not i.is_dir()]

    def locate(self, key: str) -> ChunkLocation | None:
        """``(zip file, offset, size, stored)`` of member ``key``'s data.

        The member's local header is checked against the central directory, and its data
        must lie inside the file, before the central directory: a crafted zip whose member
        runs past the end of the file would otherwise be memory-mapped, and touching the
        missing pages kills the process (SIGBUS)."""
        info = self._infos.get(key)
        if info is None:
            return None
        off = self._offsets.get(key)
        if off is None:
            off = self._offsets[key] = self._data_offset(key, info)
        return str(self.file), off, info.file_size, info.compress_type == zipfile.ZIP_STORED

    def _data_offset(self, key: str, info: zipfile.ZipInfo) -> int:
        where = f"{self.file}: member {key!r}"
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CorruptStoreError(
                f"{where} is stored uncompressed but records {info.compress_size} stored bytes "
                f"for {info.file_size} bytes of data"
            )
        if info.header_offset < 0 or info.header_offset + _LOCAL_HEADER.size > self._data_end:
            raise CorruptStoreError(
                f"{where} has a damaged local header (offset {info.header_offset} is outside "
                f"the {self._data_end} bytes of member data)"
            )
        fh = self.zip.fp  # the zip's own open file (zipfile seeks before each read)
        fh.seek(info.header_offset)
        head = fh.read(_LOCAL_HEADER.size)
        if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
            raise CorruptStoreError(f"{where} has a damaged local header")
        fields = _LOCAL_HEADER.unpack(head)
        flags, (name_len, extra_len) = fields[2], fields[-2:]
        raw_name = fh.read(name_len)
        try:
            name = raw_name.decode("utf-8" if flags & _UTF8_NAME else "cp437")
        except UnicodeDecodeError:
            name = None
        if len(raw_name) != name_len or name != info.orig_filename:
            raise CorruptStoreError(
                f"{where} has a damaged local header (it names {raw_name[:80]!r}, not the member)"
            )
        off = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if off + info.compress_size > self._data_end:
            raise CorruptStoreError(
                f"{where} is damaged: its {info.compress_size} bytes at offset {off} run past the "
                f"end of the member data ({self._data_end} bytes; the zip file is "
                f"{os.fstat(fh.fileno()).st_size} bytes)"
            )
        return off

    def aligned(self, keys: list[str]) -> bool:
        # (deflated members are inflated into memory, not mapped: their offset does not matter)
        return all((m := self._try_locate(k)) is None or not m[3] or m[1] % mmap.PAGESIZE == 0
                   for k in keys)

    def _try_locate(self, key: str) -> ChunkLocation | None:
        # a damaged member fails when its field is mapped (naming it), not when the store opens
        try:
            return self.locate(key)
        except CorruptStoreError:
            return None

    def zarr_store(self, *, read_only: bool):
        from zarr.storage import ZipStore

        return ZipStore(self.file, mode="r")

    def close(self) -> None:
        self.zip.close()
