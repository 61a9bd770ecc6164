"""The store's metadata: the group ``zarr.json`` (field list, spaces, committed state),
its backup, format versioning and timestamps."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from ..errors import CorruptStoreError, FormatVersionError, NotAStoreError, SchemaError
from ..version import __version__
from . import layout
from .backends import Backend, resolve
from .files import read_json

__all__ = ["FORMAT_VERSION", "META_KEY", "STATE_KEY", "now_iso", "package_version", "json_copy",
           "load_meta", "write_group", "write_backup", "parse_meta"]

FORMAT_VERSION = 1
META_KEY = layout.META_KEY
STATE_KEY = layout.STATE_KEY


def package_version() -> str:
    """The installed replaystore version (recorded in the stores it creates)."""
    return __version__


def json_copy(obj: Any, root: Any, what: str) -> Any:
    """A deep copy of JSON data (``SchemaError`` naming ``what`` if it is not JSON)."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise SchemaError(f"{root}: {what} must be JSON-serializable: {e}") from None


def now_iso() -> str:
    """Current UTC time, or ``SOURCE_DATE_EPOCH`` when set (for byte-identical rebuilds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = _dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch else _dt.datetime.now(_dt.UTC)
    return t.isoformat(timespec="seconds")


def _doc(meta: dict, state: dict) -> dict:
    return layout.group_doc({META_KEY: meta, STATE_KEY: state})


def write_group(backend: Backend, meta: dict, state: dict, *, fsync: bool) -> None:
    """Write the group ``zarr.json`` atomically (a local rename, or one object PUT)."""
    backend.put_json(layout.GROUP_META, _doc(meta, state), fsync=fsync)


def write_backup(backend: Backend, meta: dict, state: dict) -> None:
    """A copy of the group metadata (``.zarr.json.bak``) for ``verify --repair`` to fall back
    on if ``zarr.json`` itself is damaged later. Not atomic and not synced: only a backup;
    local stores only (an object store's PUT of ``zarr.json`` is atomic)."""
    backend.put_backup(layout.BACKUP, _doc(meta, state))


def load_meta(root: Backend | str | os.PathLike) -> tuple[dict, dict]:
    """Metadata and committed state of the store at ``root`` (a backend, path or URL)."""
    backend = root if isinstance(root, Backend) else resolve(root)
    local = backend.local
    if local is not None:
        if not local.exists():
            raise NotAStoreError(f"{local}: no such file or directory")
        if not local.is_dir() or not (local / layout.GROUP_META).exists():
            raise NotAStoreError(f"{local}: not a replaystore store (no zarr.json group metadata)")
        # read_json, not backend.get: a directory in its place is an error naming the file
        return parse_meta(read_json(local / layout.GROUP_META, what="store metadata (zarr.json)"), local)
    doc = backend.get_json(layout.GROUP_META, what="store metadata (zarr.json)")
    if doc is None:
        if backend.is_empty():
            raise NotAStoreError(f"{backend}: no such store (nothing there)")
        raise NotAStoreError(f"{backend}: not a replaystore store (no zarr.json group metadata)")
    return parse_meta(doc, backend)


def parse_meta(doc: Any, root: Path | Backend | str) -> tuple[dict, dict]:
    """Check a group document and return its ``(metadata, committed state)``."""
    zj = f"{root}/zarr.json"
    if not isinstance(doc, dict):
        raise CorruptStoreError(f"{zj}: store metadata is not a JSON object (got {type(doc).__name__})")
    attrs = doc.get("attributes", {})
    if doc.get("node_type") != "group" or not isinstance(attrs, dict) or META_KEY not in attrs:
        raise NotAStoreError(
            f"{root}: a Zarr node but not a replaystore store (no '{META_KEY}' attributes)"
        )
    meta, state = attrs[META_KEY], attrs.get(STATE_KEY)
    if not isinstance(meta, dict):
        raise CorruptStoreError(f"{zj}: attribute '{META_KEY}' is not a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise FormatVersionError(
            f"{root}: store format version {version!r} is not supported by replaystore "
            f"{package_version()} (reads format versions 1..{FORMAT_VERSION}); upgrade replaystore"
        )
    if not isinstance(state, dict) or not {"size", "cursor", "total"} <= state.keys():
        raise CorruptStoreError(f"{root}/zarr.json: committed state '{STATE_KEY}' is missing or incomplete")
    return meta, state
