"""One-file stores: pack a store into a single ``.zip`` and unpack it again.

The zip is an ordinary Zarr zip store (zarr-python's ``ZipStore`` reads it) whose members
are *stored*, not deflated, and whose chunk members start on 16 KiB boundaries (an
extra-field pad, as Android's ``zipalign`` does). So replaystore memory-maps uncompressed
chunks straight out of the zip: :func:`replaystore.open` and every read-only command use a
``.zip`` in place, at the speed of the directory it came from. Compressed fields stay
compressed (their chunks are already compressed by the field's codec). The one exception:
each uncompressed field's partial last chunk, mostly zero padding, is deflated (see
:mod:`replaystore.storage.zipchunks`), so the zip is about as large as the data it holds;
readers inflate that one member into memory. ``unpack`` leaves zero runs of chunk files
as holes, so the unpacked store takes no more disk than the packed one.

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> d = tempfile.mkdtemp()
>>> with rs.create(d + "/s.zarr", gym.spaces.Discrete(4), gym.spaces.Discrete(2)) as s:
...     s.append(obs=1, action=0, reward=1.0, next_obs=2, terminated=True, truncated=False)
>>> pack(d + "/s.zarr", d + "/s.zip").name
's.zip'
>>> rs.open(d + "/s.zip").read([0], fields=["obs", "next_obs"])
{'obs': array([1]), 'next_obs': array([2])}

A store from someone else is data. ``pack`` never follows a symbolic link: a store holding
one (or a FIFO, socket or device) is refused with :class:`CorruptStoreError` naming it, so
nothing outside the store goes into the zip. ``unpack`` writes only inside ``out``: member
names that would leave it, duplicate or clashing names, members whose data lies outside
the zip or that claim to inflate beyond what deflate can (a zip bomb), and more data than
the disk has room for are refused before anything is written.

Both are all-or-nothing: the output is built under a temporary name next to it
(``.<name>.pack-<pid>.tmp`` / ``.<name>.unpack-<pid>.tmp``) and renamed into place when
complete (``unpack --overwrite`` swaps the directories atomically where the file system can),
so a failure or a kill leaves the old output, if any, as it was. The next ``pack`` or
``unpack`` into the same directory removes what a killed one left (see :func:`leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import (
    CorruptStoreError,
    NotAStoreError,
    ReplayStoreError,
    StoreExistsError,
    StoreModeError,
    StoreWriteError,
)
from ..progress import Progress, as_progress
from .backends import Backend, LocalBackend, ZipBackend, resolve
from .files import MAX_JSON_BYTES, exchange_paths, pid_alive
from .layout import BACKUP, GROUP_META, INDEX_DIR, RUNTIME_FILES, is_chunk_key, is_temp_name
from .metadata import load_meta
from .zipchunks import copy_sparse, partial_chunks

__all__ = ["pack", "unpack", "leftovers", "temp_path", "check_members", "ALIGN", "RUNTIME_FILES",
           "MAX_INFLATE"]

#: chunk members start at multiples of this (covers 4 KiB and 16 KiB pages)
ALIGN = 16384
#: a deflated member may claim at most this many bytes per stored byte (deflate's own
#: limit is about 1032:1); a member claiming more is a zip bomb and is refused by unpack
MAX_INFLATE = 1100
_PAD_ID = 0xD935  # the extra-field id zipalign uses for padding
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same store packs to the same bytes
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>pack|unpack|unpack-old)-(?P<pid>\d+)\.tmp$")


# -- temporary outputs, and what killed runs left ------------------------------------------
def temp_path(out: str | os.PathLike, kind: str) -> Path:
    """Where this process builds ``out`` (``kind``: ``"pack"`` or ``"unpack"``) before the
    rename: ``.<name>.<kind>-<pid>.tmp`` next to it."""
    out = Path(out)
    return out.with_name(f".{out.name}.{kind}-{os.getpid()}.tmp")


def leftovers(directory: str | os.PathLike) -> list[Path]:
    """Temporary outputs of ``pack``/``unpack`` in ``directory`` whose process is gone
    (killed part-way); the next ``pack``/``unpack`` into that directory removes them."""
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(directory) as it:
        for e in it:
            m = _TEMP.match(e.name)
            if m and not pid_alive(int(m["pid"])):
                found.append(Path(directory) / e.name)
    return sorted(found)


def _remove(p: Path) -> None:
    """Delete ``p`` (a file, link or directory tree) without following any link."""
    with contextlib.suppress(FileNotFoundError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _clean_leftovers(directory: Path) -> None:
    """Remove what killed runs left in ``directory``; an old store that a killed
    ``unpack --overwrite`` had moved aside (only where directories cannot be swapped
    atomically) goes back to its name if nothing took its place."""
    for p in leftovers(directory):
        m = _TEMP.match(p.name)
        target = p.with_name(m["name"])
        if m["kind"] == "unpack-old" and not (target.exists() or target.is_symlink()):
            with contextlib.suppress(OSError):
                os.rename(p, target)
                continue
        _remove(p)


# -- pack ------------------------------------------------------------------------------------
def _local_files(root: Path) -> dict[str, int]:
    """The store's regular files (key -> size), without lock, live-floor and temporary
    files (which are not read at all). A symbolic link, FIFO, socket or device anywhere in
    the store is refused, not followed."""
    out: dict[str, int] = {}
    todo = [""]
    while todo:
        rel = todo.pop()
        with os.scandir(root / rel if rel else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            key = f"{rel}/{e.name}" if rel else e.name
            if key in RUNTIME_FILES or is_temp_name(key):
                continue
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise CorruptStoreError(
                    f"{root}/{key}: is a symbolic link (to {os.readlink(root / key)!r}); a store holds "
                    "only regular files and directories, and pack never follows a link: remove it"
                )
            if stat.S_ISDIR(st.st_mode):
                todo.append(key)
            elif stat.S_ISREG(st.st_mode):
                out[key] = st.st_size
            else:
                raise CorruptStoreError(
                    f"{root}/{key}: is not a regular file (a FIFO, socket or device); a store holds only "
                    "regular files and directories: remove it"
                )
    return out


def _content_keys(loc: Backend) -> dict[str, int]:
    """The store's files (key -> size) without lock, live-floor and temporary files, and
    without class indexes (``_index/``: caches of the key fields, padded like chunks; a zip
    store builds them in memory when a balanced sampler needs one)."""
    keys = _local_files(loc.local) if loc.local is not None else {
        k: n for k, n in loc.sizes().items() if k not in RUNTIME_FILES and not is_temp_name(k)}
    return {k: n for k, n in keys.items() if not k.startswith(INDEX_DIR + "/")}


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


def _copy_local(root: Path, key: str, size: int, dst: Any) -> None:
    """Copy the ``size`` bytes of the store file ``key`` (opened without following a link)."""
    p = root / key
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise CorruptStoreError(f"{p}: cannot be packed ({e.strerror}); is it a link?") from None
    with os.fdopen(fd, "rb") as fsrc:
        st = os.fstat(fsrc.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            raise CorruptStoreError(f"{p}: changed while it was packed; is a writer running?")
        left = size
        while left:
            block = fsrc.read(min(left, 1 << 20))
            if not block:
                raise CorruptStoreError(f"{p}: shrank while it was packed; is a writer running?")
            dst.write(block)
            left -= len(block)


def _check_pack_target(loc: Backend, src: Any, out: Path, overwrite: bool) -> None:
    if isinstance(loc, ZipBackend):
        raise NotAStoreError(f"{src}: already a packed .zip store")
    if loc.local is not None:
        meta = loc.local / GROUP_META
        if meta.is_symlink():
            raise CorruptStoreError(f"{meta}: is a symbolic link; pack never follows a link: remove it")
    load_meta(loc)  # refuse anything that is not a store, before writing anything
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise StoreExistsError(f"{out}: already exists; pass overwrite=True to replace it",
                                   cli=f"{out}: already exists; use --overwrite to replace it")
        if out.is_dir() and not out.is_symlink():
            raise StoreExistsError(f"{out}: is a directory; refusing to replace it with a zip file")
    if not out.parent.is_dir():
        raise NotAStoreError(f"{out}: directory {out.parent} does not exist")


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
    is written to a temporary name and renamed when complete. A symbolic link (or any file
    that is not a regular file) inside a local store is refused, never followed.
    """
    loc = resolve(src, storage_options)
    out = Path(out)
    from .dataset import is_dataset

    if is_dataset(loc):
        raise StoreModeError(
            f"{src}: is a sharded dataset; a .zip holds one store: merge its shards into one first "
            f"(replaystore.merge(out, [{str(src)!r}]) or `replaystore merge one.zarr {src}`), then pack that")
    _check_pack_target(loc, src, out, overwrite)
    lock = loc.lock()
    try:
        deflate = partial_chunks(*load_meta(loc))  # (read again under the lock)
        _clean_leftovers(out.parent)
        tmp = temp_path(out, "pack")
        try:
            keys = _content_keys(loc)
            _remove(tmp)  # (ours: a process of this pid that died; no live one has it)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with as_progress(progress).task(sum(keys.values()), f"pack {out.name}") as bar, \
                    os.fdopen(fd, "wb") as fh, \
                    zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key in _order(keys):
                    _write_member(zf, fh, loc, key, keys[key], key in deflate)
                    bar.update(keys[key])
            os.replace(tmp, out)
        except OSError as e:
            if isinstance(e, ReplayStoreError):
                raise
            raise StoreWriteError(f"{out}: cannot write the zip ({e.strerror or e}); nothing was "
                                  "written at this name, the store is untouched") from None
        finally:
            _remove(tmp)
    finally:
        if lock is not None:
            lock.release()
    return out


def _write_member(zf: zipfile.ZipFile, fh: Any, loc: Backend, key: str, size: int,
                  deflate: bool) -> None:
    info = zipfile.ZipInfo(key, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.file_size = size
    if is_chunk_key(key) and not deflate:
        info.extra = _pad(fh.tell(), key.encode(), size)
    with zf.open(info, "w", force_zip64=size * 1.05 > zipfile.ZIP64_LIMIT) as dst:
        if loc.local is not None:
            _copy_local(loc.local, key, size, dst)
        else:
            dst.write(loc.get(key) or b"")


# -- unpack ----------------------------------------------------------------------------------
def check_members(loc: ZipBackend, src: Path) -> list[zipfile.ZipInfo]:
    """The members to extract, once every one is known to stay inside the output, to lie
    inside the zip and to inflate no further than deflate can."""
    members, names = [], set()
    for info in loc.members():
        name = info.filename
        where = f"{src}: member {name!r}"
        parts = name.split("/")
        if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts) \
                or "\0" in name:
            raise NotAStoreError(f"{where} would be extracted outside the store (or is not a plain path)")
        if name in names:
            raise NotAStoreError(f"{where} appears twice in the zip")
        names.add(name)
        if name in RUNTIME_FILES or is_temp_name(name):
            continue  # per-process files, not content (pack never writes them)
        if info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > MAX_INFLATE * info.compress_size + 1024:
                raise CorruptStoreError(
                    f"{where} claims {info.file_size:,} bytes from {info.compress_size:,} deflated "
                    f"bytes, more than deflate can inflate; refusing a zip bomb"
                )
        elif info.compress_type != zipfile.ZIP_STORED:
            raise CorruptStoreError(f"{where} uses zip compression method {info.compress_type}; "
                                    "only stored (as pack writes) and deflated members are unpacked")
        if name.rsplit("/", 1)[-1] in (GROUP_META, BACKUP) and info.file_size > MAX_JSON_BYTES:
            raise CorruptStoreError(f"{where}: this JSON document is {info.file_size:,} bytes; at most "
                                    f"{MAX_JSON_BYTES:,} are accepted")
        loc.locate(name)  # its data lies inside the zip (CorruptStoreError naming it otherwise)
        members.append(info)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise NotAStoreError(f"{src}: member {name!r} lies under member "
                                     f"{'/'.join(parts[:i])!r}, which is a file")
    return members


def _extract(loc: ZipBackend, src: Path, members: list[zipfile.ZipInfo], tmp: Path,
             bar: Any) -> None:
    _remove(tmp)  # (ours: a process of this pid that died; no live one has it)
    os.mkdir(tmp)
    for info in members:
        dest = tmp / info.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "wb") as fdst, loc.zip.open(info) as fsrc:
                if is_chunk_key(info.filename):
                    copy_sparse(fsrc, fdst, info.file_size)  # zero runs left as holes
                else:
                    shutil.copyfileobj(fsrc, fdst, 1 << 20)
        except (zipfile.BadZipFile, EOFError) as e:
            raise CorruptStoreError(f"{src}: member {info.filename!r} cannot be read: {e}") from None
        bar.update(info.file_size)


def unpack(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Extract a packed store ``src`` (a ``.zip``) into the directory ``out``.

    The result is the original store, file for file, ready to append to. It is extracted
    into a temporary directory next to ``out`` and renamed into place when complete; with
    ``overwrite`` the old store (which must be a store, and not being written) is replaced
    in one step, so a failure or a kill leaves it as it was.
    """
    src, out = Path(src), Path(out)
    loc = resolve(src)
    if not isinstance(loc, ZipBackend):
        raise NotAStoreError(f"{src}: not a .zip file (pack a store with `replaystore pack`)")
    lock = None
    try:
        load_meta(loc)
        if out.exists() or out.is_symlink():
            if not overwrite:
                raise StoreExistsError(f"{out}: already exists; pass overwrite=True to replace it",
                                       cli=f"{out}: already exists; use --overwrite to replace it")
            load_meta(out)  # only ever replace a store ...
            lock = LocalBackend(out).lock()  # ... that no writer has open
        if not out.parent.is_dir():
            raise NotAStoreError(f"{out}: directory {out.parent} does not exist")
        members = check_members(loc, src)
        need, free = sum(i.file_size for i in members), shutil.disk_usage(out.parent).free
        if need > free:
            raise StoreWriteError(f"{out}: unpacking {src} needs {need:,} bytes; the disk has {free:,} "
                                  "free; nothing was written")
        _clean_leftovers(out.parent)
        tmp = temp_path(out, "unpack")
        try:
            with as_progress(progress).task(need, f"unpack {out.name}") as bar:
                _extract(loc, src, members, tmp, bar)
            _put_in_place(tmp, out)
        except OSError as e:
            if isinstance(e, ReplayStoreError):
                raise
            raise StoreWriteError(f"{out}: cannot unpack {src} ({e.strerror or e}); nothing was "
                                  "changed at this name") from None
        finally:
            _remove(tmp)
    finally:
        if lock is not None:
            lock.release()
        loc.close()
    return out


def _put_in_place(tmp: Path, out: Path) -> None:
    """Rename the complete ``tmp`` to ``out``; an existing ``out`` is swapped out in one
    atomic step (then deleted), or, where the file system cannot swap, moved aside first."""
    if not (out.exists() or out.is_symlink()):
        os.rename(tmp, out)
        return
    if exchange_paths(tmp, out):
        return  # ``tmp`` now holds the old store; the caller removes it
    old = temp_path(out, "unpack-old")
    os.rename(out, old)
    os.rename(tmp, out)
    _remove(old)
