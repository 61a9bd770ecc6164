"""Backends: where a store's keys live (local directory, one ``.zip``, an fsspec URL).

:func:`resolve` picks the backend from a path or URL; everything else asks the backend's
capability flags (see :mod:`.base`), never which kind it is.

>>> resolve("runs/buf.zarr").in_place_writes, resolve("file:///tmp/buf.zarr").has_lock
(True, True)
>>> resolve("memory://demo/buf.zarr").memory_mappable
False
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Backend, ChunkLocation
from .local import LocalBackend
from .remote import FsspecBackend, remote_errors
from .zip import ZipBackend

__all__ = ["Backend", "ChunkLocation", "LocalBackend", "ZipBackend", "FsspecBackend", "resolve",
           "is_url", "is_local_dir", "remote_errors"]


def is_url(path: Any) -> bool:
    """Whether ``path`` is a URL with a scheme (``s3://...``), not a local path."""
    return isinstance(path, str) and "://" in path


def _is_zip(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return True
    return path.is_file() and zipfile.is_zipfile(path)


def is_local_dir(path: Any) -> bool:
    """Whether ``path`` names a local directory store (not a URL, not a ``.zip``); opens nothing."""
    if isinstance(path, Backend):
        return path.in_place_writes
    if is_url(path):
        scheme, _, rest = str(path).partition("://")
        return scheme == "file" and not _is_zip(Path(rest))
    return not (_is_zip(Path(path)) and Path(path).exists())


def resolve(path: str | os.PathLike | Backend, storage_options: Mapping[str, Any] | None = None) -> Backend:
    """The :class:`Backend` of a store path or URL.

    Local directories and ``file://`` URLs are local; a ``.zip`` path (or ``file://...zip``)
    is a packed store; any other URL goes through fsspec with ``storage_options``
    (credentials and endpoints also come from the usual environment variables, e.g.
    ``AWS_ACCESS_KEY_ID`` and ``AWS_ENDPOINT_URL`` for ``s3://``).
    """
    if isinstance(path, Backend):
        return path
    if is_url(path):
        scheme, _, rest = str(path).partition("://")
        if scheme == "file":
            local = Path(rest)
            return ZipBackend(local) if _is_zip(local) else LocalBackend(local)
        return FsspecBackend(str(path), storage_options)
    local = Path(path)
    return ZipBackend(local) if _is_zip(local) and local.exists() else LocalBackend(local)
