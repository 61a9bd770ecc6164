"""Where a store lives: a local directory, a single ``.zip`` file, or an fsspec URL.

A local directory is the fast path (chunk files written with ``pwrite`` and read through
memory maps). A ``.zip`` written by :func:`replaystore.pack` is read in place: its members
are stored uncompressed and page-aligned, so uncompressed chunks are memory-mapped
straight out of the zip file. Any other URL (``s3://bucket/buf.zarr``, ``memory://x``,
``gcs://...``) goes through `fsspec <https://filesystem-spec.readthedocs.io>`_: metadata and
whole chunks are read and written as objects, and read chunks are kept in a bounded cache.

>>> resolve("runs/buf.zarr").kind, resolve("file:///tmp/buf.zarr").kind
('local', 'local')
>>> resolve("memory://demo/buf.zarr").kind
'fsspec'
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import (
    CorruptStoreError,
    MissingExtraError,
    NotAStoreError,
    RemoteStoreError,
    ReplayStoreError,
    StoreModeError,
)

__all__ = ["Location", "resolve", "is_url", "is_local_dir", "remote_errors"]

_REMOTE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "fsspec",
                   "requests", "urllib3", "google", "azure")


@contextlib.contextmanager
def remote_errors(where):
    """Turn an object-store client's exceptions (botocore, aiohttp...) into
    :class:`RemoteStoreError` naming ``where``; everything else passes through."""
    try:
        yield
    except ReplayStoreError:
        raise
    except Exception as e:
        mod = type(e).__module__ or ""
        if mod.split(".")[0] in _REMOTE_MODULES:
            raise RemoteStoreError(f"{where}: object store request failed: {e}") from e
        raise

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header, 30 bytes


def is_url(path: Any) -> bool:
    """Whether ``path`` is a URL with a scheme (``s3://...``), not a local path."""
    return isinstance(path, str) and "://" in path


class Location:
    """One store's home. ``kind`` is ``"local"``, ``"zip"`` or ``"fsspec"``.

    ``local`` is the directory of a local store (``None`` otherwise); ``name`` is what
    error messages show.
    """

    kind = "local"

    def __init__(self, name: str | Path) -> None:
        self.name = name
        self.local: Path | None = None

    def __str__(self) -> str:
        return str(self.name)

    # -- keys: "zarr.json", "obs/zarr.json", "obs/c/0/0" ----------------------------------
    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise StoreModeError(f"{self.name}: this store is read-only ({self.kind})")

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes."""
        raise NotImplementedError

    def exists(self) -> bool:
        return self.get("zarr.json") is not None

    def is_empty(self) -> bool:
        return not self.sizes()

    def delete_all(self) -> None:
        raise StoreModeError(f"{self.name}: this store is read-only ({self.kind})")

    def zarr_store(self, *, read_only: bool):
        """A zarr ``Store`` over the same keys (for zarr-python array I/O)."""
        raise NotImplementedError

    def get_json(self, key: str, *, what: str) -> dict | None:
        data = self.get(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except json.JSONDecodeError as e:
            raise CorruptStoreError(
                f"{self.name}/{key}: {what} is not valid JSON ({e.msg} at line {e.lineno})"
            ) from None
        except UnicodeDecodeError:
            raise CorruptStoreError(f"{self.name}/{key}: {what} is not valid JSON (not UTF-8 text)") from None

    def put_json(self, key: str, obj: Mapping) -> None:
        self.put(key, json.dumps(obj, indent=2, allow_nan=False).encode())


class LocalLocation(Location):
    kind = "local"

    def __init__(self, path: Path) -> None:
        super().__init__(Path(path))
        self.local = Path(path)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.local / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def sizes(self, prefix: str = "") -> dict[str, int]:
        out = {}
        base = self.local / prefix if prefix else self.local
        for dirpath, _, files in os.walk(base):
            for f in files:
                p = os.path.join(dirpath, f)
                out[os.path.relpath(p, self.local).replace(os.sep, "/")] = os.path.getsize(p)
        return out

    def zarr_store(self, *, read_only: bool):
        from zarr.storage import LocalStore

        return LocalStore(str(self.local), read_only=read_only)


class ZipLocation(Location):
    """A read-only store inside one zip file (see :mod:`replaystore.storage.pack`)."""

    kind = "zip"

    def __init__(self, path: Path) -> None:
        super().__init__(Path(path))
        self.file = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.file, "r")
        except zipfile.BadZipFile as e:
            raise NotAStoreError(f"{self.file}: not a zip file ({e})") from None
        except IsADirectoryError:
            raise NotAStoreError(f"{self.file}: a directory, not a zip file") from None
        self._infos = {i.filename: i for i in self._zip.infolist() if not i.is_dir()}
        self._offsets: dict[str, int] = {}

    def get(self, key: str) -> bytes | None:
        if key not in self._infos:
            return None
        try:
            return self._zip.read(key)
        except (zipfile.BadZipFile, OSError) as e:
            raise CorruptStoreError(f"{self.file}: member {key!r} cannot be read: {e}") from None

    def sizes(self, prefix: str = "") -> dict[str, int]:
        return {k: i.file_size for k, i in self._infos.items() if k.startswith(prefix)}

    def member(self, key: str) -> tuple[int, int, bool] | None:
        """``(offset, size, stored)`` of member ``key``'s data inside the zip file: where a
        memory map of it starts, its length, and whether it is stored uncompressed."""
        info = self._infos.get(key)
        if info is None:
            return None
        off = self._offsets.get(key)
        if off is None:
            fh = self._zip.fp  # the zip's own open file (zipfile seeks before each read)
            fh.seek(info.header_offset)
            head = fh.read(_LOCAL_HEADER.size)
            if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
                raise CorruptStoreError(f"{self.file}: member {key!r} has a damaged local header")
            name_len, extra_len = _LOCAL_HEADER.unpack(head)[-2:]
            off = self._offsets[key] = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        return off, info.file_size, info.compress_type == zipfile.ZIP_STORED

    def zarr_store(self, *, read_only: bool):
        from zarr.storage import ZipStore

        return ZipStore(self.file, mode="r")

    def close(self) -> None:
        self._zip.close()


class FsspecLocation(Location):
    """A store at an fsspec URL; every key is one object (file)."""

    kind = "fsspec"

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url.rstrip("/"))
        try:
            import fsspec
        except ImportError:
            raise MissingExtraError(
                f"{url}: URLs need fsspec (and s3fs for s3://): pip install \"replaystore[s3]\""
            ) from None
        self.url = url.rstrip("/")
        if storage_options is None:
            storage_options = _env_storage_options(url)
        self.storage_options = dict(storage_options)
        try:
            self.fs, self.root = fsspec.url_to_fs(self.url, **self.storage_options)
        except ImportError as e:
            raise MissingExtraError(
                f"{url}: this URL scheme needs an fsspec backend that is not installed ({e}); "
                "for s3:// pip install \"replaystore[s3]\""
            ) from None
        except ValueError as e:
            raise StoreModeError(f"{url}: cannot open this URL: {e}") from None
        self.root = self.root.rstrip("/")

    def _p(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def get(self, key: str) -> bytes | None:
        try:
            with remote_errors(self.url):
                return self.fs.cat_file(self._p(key))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def put(self, key: str, data: bytes) -> None:
        # one PUT per object: object stores replace objects atomically
        with remote_errors(self.url):
            self.fs.pipe_file(self._p(key), data)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        base = self._p(prefix.rstrip("/"))
        try:
            with remote_errors(self.url):
                found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for p, d in found.items():
            if d.get("type") == "directory":
                continue
            key = p[len(self.root) + 1 :] if p.startswith(self.root + "/") else p
            out[key] = int(d.get("size") or 0)
        return out

    def delete_all(self) -> None:
        with remote_errors(self.url):
            if self.fs.exists(self.root):
                self.fs.rm(self.root, recursive=True)

    def zarr_store(self, *, read_only: bool):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.url, storage_options=self.storage_options or None,
                                    read_only=read_only)


def _env_storage_options(url: str) -> dict:
    """``REPLAYSTORE_STORAGE_OPTIONS`` (a JSON object) as fsspec storage options: how the
    command line takes options such as ``{"endpoint_url": ..., "anon": true}``."""
    text = os.environ.get("REPLAYSTORE_STORAGE_OPTIONS")
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreModeError(
            f"{url}: REPLAYSTORE_STORAGE_OPTIONS is not valid JSON ({e.msg}): {text!r}"
        ) from None
    if not isinstance(opts, dict):
        raise StoreModeError(
            f"{url}: REPLAYSTORE_STORAGE_OPTIONS must be a JSON object like "
            f'{{"endpoint_url": "http://127.0.0.1:9000"}}, got {text!r}'
        )
    return opts


def is_local_dir(path: Any) -> bool:
    """Whether ``path`` names a local directory store (not a URL, not a ``.zip``); opens nothing."""
    if isinstance(path, Location):
        return path.kind == "local"
    if is_url(path):
        scheme, _, rest = str(path).partition("://")
        return scheme == "file" and not _is_zip(Path(rest))
    return not (_is_zip(Path(path)) and Path(path).exists())


def _is_zip(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return True
    return path.is_file() and zipfile.is_zipfile(path)


def resolve(path: str | os.PathLike | Location, storage_options: Mapping[str, Any] | None = None) -> Location:
    """The :class:`Location` of a store path or URL.

    Local directories and ``file://`` URLs are local; a ``.zip`` path (or ``file://...zip``)
    is a packed store; any other URL goes through fsspec with ``storage_options``
    (credentials and endpoints also come from the usual environment variables, e.g.
    ``AWS_ACCESS_KEY_ID`` and ``AWS_ENDPOINT_URL`` for ``s3://``).
    """
    if isinstance(path, Location):
        return path
    if is_url(path):
        scheme, _, rest = str(path).partition("://")
        if scheme == "file":
            local = Path(rest)
            return ZipLocation(local) if _is_zip(local) else LocalLocation(local)
        return FsspecLocation(str(path), storage_options)
    local = Path(path)
    return ZipLocation(local) if _is_zip(local) and local.exists() else LocalLocation(local)
