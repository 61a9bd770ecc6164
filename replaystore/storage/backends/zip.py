"""A read-only store inside one ``.zip`` file (see :mod:`replaystore.storage.pack`).

Members are stored uncompressed and page-aligned, so uncompressed chunks are
memory-mapped straight out of the zip file.
"""

from __future__ import annotations

import mmap
import struct
import zipfile
from pathlib import Path

from ...errors import CorruptStoreError, NotAStoreError
from .base import Backend, ChunkLocation

__all__ = ["ZipBackend"]

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header, 30 bytes


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

    def get(self, key: str) -> bytes | None:
        if key not in self._infos:
            return None
        try:
            return self.zip.read(key)
        except (zipfile.BadZipFile, OSError) as e:
            raise CorruptStoreError(f"{self.file}: member {key!r} cannot be read: {e}") from None

    def sizes(self, prefix: str = "") -> dict[str, int]:
        return {k: i.file_size for k, i in self._infos.items() if k.startswith(prefix)}

    def members(self) -> list[zipfile.ZipInfo]:
        """Every file member, in the zip's order."""
        return [i for i in self.zip.infolist() if not i.is_dir()]

    def locate(self, key: str) -> ChunkLocation | None:
        """``(zip file, offset, size, stored)`` of member ``key``'s data."""
        info = self._infos.get(key)
        if info is None:
            return None
        off = self._offsets.get(key)
        if off is None:
            fh = self.zip.fp  # the zip's own open file (zipfile seeks before each read)
            fh.seek(info.header_offset)
            head = fh.read(_LOCAL_HEADER.size)
            if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
                raise CorruptStoreError(f"{self.file}: member {key!r} has a damaged local header")
            name_len, extra_len = _LOCAL_HEADER.unpack(head)[-2:]
            off = self._offsets[key] = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        return str(self.file), off, info.file_size, info.compress_type == zipfile.ZIP_STORED

    def aligned(self, keys: list[str]) -> bool:
        return all((m := self.locate(k)) is None or m[1] % mmap.PAGESIZE == 0 for k in keys)

    def zarr_store(self, *, read_only: bool):
        from zarr.storage import ZipStore

        return ZipStore(self.file, mode="r")

    def close(self) -> None:
        self.zip.close()
