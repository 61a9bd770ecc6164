"""One-file stores: pack a store into a single ``.zip`` and unpack it again.

The zip is an ordinary Zarr zip store (zarr-python's ``ZipStore`` reads it) whose members
are *stored*, not deflated, and whose chunk members start on 16 KiB boundaries (an
extra-field pad, as Android's ``zipalign`` does). So replaystore memory-maps uncompressed
chunks straight out of the zip: :func:`replaystore.open` and every read-only command use a
``.zip`` in place, at the speed of the directory it came from. Compressed fields stay
compressed (their chunks are already compressed by the field's codec).

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> d = tempfile.mkdtemp()
>>> with rs.create(d + "/s.zarr", gym.spaces.Discrete(4), gym.spaces.Discrete(2)) as s:
...     s.append(obs=1, action=0, reward=1.0, next_obs=2, terminated=True, truncated=False)
>>> pack(d + "/s.zarr", d + "/s.zip").name
's.zip'
>>> rs.open(d + "/s.zip").read([0], fields=["obs", "next_obs"])
{'obs': array([1]), 'next_obs': array([2])}
"""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import NotAStoreError, StoreExistsError
from ..progress import Progress, as_progress
from .backends import Backend, ZipBackend, resolve
from .layout import RUNTIME_FILES, is_chunk_key, is_temp_name, temp_name
from .metadata import load_meta

__all__ = ["pack", "unpack", "ALIGN", "RUNTIME_FILES"]

#: chunk members start at multiples of this (covers 4 KiB and 16 KiB pages)
ALIGN = 16384
_PAD_ID = 0xD935  # the extra-field id zipalign uses for padding
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same store packs to the same bytes


def _content_keys(loc: Backend) -> dict[str, int]:
    """The store's files (key -> size) without lock, live-floor and temporary files."""
    return {k: n for k, n in loc.sizes().items() if k not in RUNTIME_FILES and not is_temp_name(k)}


def _order(keys) -> list[str]:
    # metadata first (a reader finds it near the start), then the data, all sorted
    return sorted(keys, key=lambda k: (not k.endswith("zarr.json"), k))


def _pad(offset: int, name: bytes, size: int) -> bytes:
    """Extra field that makes member data start on an ``ALIGN`` boundary."""
    zip64 = size * 1.05 > zipfile.ZIP64_LIMIT  # zipfile then adds a 20-byte zip64 extra
    data_at = offset + 30 + len(name) + (20 if zip64 else 0)
    pad = -data_at % ALIGN
    if pad < 6:
        pad += ALIGN
    return struct.pack("<HHH", _PAD_ID, pad - 4, ALIGN) + b"\0" * (pad - 6)


def pack(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | Progress = False,
) -> Path:
    """Write the store at ``src`` (a directory or URL) into the single zip file ``out``.

    The store must not be written meanwhile: for a local store the writer lock is held
    while packing, so a running writer makes this fail with ``StoreLockedError``. The zip
    is written to a temporary name and renamed when complete.
    """
    loc = resolve(src, storage_options)
    if isinstance(loc, ZipBackend):
        raise NotAStoreError(f"{src}: already a packed .zip store")
    load_meta(loc)  # refuse anything that is not a store, before writing anything
    out = Path(out)
    if out.exists() and not overwrite:
        raise StoreExistsError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
    if not out.parent.is_dir():
        raise NotAStoreError(f"{out}: directory {out.parent} does not exist")
    lock = loc.lock()
    tmp = out.with_name(temp_name(out.name))
    try:
        keys = _content_keys(loc)
        with as_progress(progress).task(sum(keys.values()), f"pack {out.name}") as bar, \
                open(tmp, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key in _order(keys):
                info = zipfile.ZipInfo(key, date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                info.file_size = keys[key]
                if is_chunk_key(key):
                    info.extra = _pad(fh.tell(), key.encode(), keys[key])
                with zf.open(info, "w", force_zip64=keys[key] * 1.05 > zipfile.ZIP64_LIMIT) as dst:
                    if loc.local is not None:
                        with open(loc.local / key, "rb") as fsrc:
                            shutil.copyfileobj(fsrc, dst, 1 << 20)
                    else:
                        dst.write(loc.get(key) or b"")
                bar.update(keys[key])
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
        if lock is not None:
            lock.release()
    return out


def unpack(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Extract a packed store ``src`` (a ``.zip``) into the directory ``out``.

    The result is the original store, file for file, ready to append to. It is extracted
    into a temporary directory next to ``out`` and renamed into place when complete.
    """
    src, out = Path(src), Path(out)
    loc = resolve(src)
    if not isinstance(loc, ZipBackend):
        raise NotAStoreError(f"{src}: not a .zip file (pack a store with `replaystore pack`)")
    try:
        load_meta(loc)
        if out.exists():
            if not overwrite:
                raise StoreExistsError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
            load_meta(out)  # only ever replace a store
        if not out.parent.is_dir():
            raise NotAStoreError(f"{out}: directory {out.parent} does not exist")
        tmp = out.with_name(temp_name(out.name))
        if tmp.exists():
            shutil.rmtree(tmp)
        members = loc.members()
        try:
            for info in members:
                name = info.filename
                if name.startswith("/") or ".." in name.split("/"):
                    raise NotAStoreError(f"{src}: member {name!r} would be extracted outside the store")
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with loc.zip.open(info) as fsrc, open(dest, "wb") as fdst:
                    shutil.copyfileobj(fsrc, fdst, 1 << 20)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    finally:
        loc.close()
    return out
