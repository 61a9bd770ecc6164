"""The store's metadata: the group ``zarr.json`` (field list, spaces, committed state),
its backup, format versioning and timestamps."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from ..errors import CorruptStoreError, FormatVersionError, NotAStoreError, SchemaError
from .files import atomic_write_json, read_json

__all__ = ["FORMAT_VERSION", "META_KEY", "STATE_KEY", "now_iso"]

FORMAT_VERSION = 1
META_KEY = "replaystore"
STATE_KEY = "replaystore_state"


def _version() -> str:
    from .. import __version__

    return __version__


def _json_copy(obj: Any, root: Path, what: str) -> Any:
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise SchemaError(f"{root}: {what} must be JSON-serializable: {e}") from None


def now_iso() -> str:
    """Current UTC time, or ``SOURCE_DATE_EPOCH`` when set (for byte-identical rebuilds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = _dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch else _dt.datetime.now(_dt.UTC)
    return t.isoformat(timespec="seconds")


def _group_doc(meta: dict, state: dict) -> dict:
    return {"zarr_format": 3, "node_type": "group", "attributes": {META_KEY: meta, STATE_KEY: state}}


def _write_group(root, meta: dict, state: dict, *, fsync: bool) -> None:
    """Write the group ``zarr.json`` atomically: a local rename, or one object PUT."""
    from .location import Location

    if isinstance(root, Location) and root.local is None:
        root.put_json("zarr.json", _group_doc(meta, state))
        return
    root = root.local if isinstance(root, Location) else root
    atomic_write_json(root / "zarr.json", _group_doc(meta, state), fsync=fsync)


def _write_backup(root, meta: dict, state: dict) -> None:
    """A copy of the group metadata (``.zarr.json.bak``) for ``verify --repair`` to fall back
    on if ``zarr.json`` itself is damaged later. Not atomic and not synced: only a backup.
    Local stores only (an object store's PUT of ``zarr.json`` is atomic)."""
    from .location import Location

    if isinstance(root, Location):
        if root.local is None:
            return
        root = root.local
    try:
        (root / ".zarr.json.bak").write_text(json.dumps(_group_doc(meta, state)))
    except OSError:
        pass


def _load_meta(root) -> tuple[dict, dict]:
    """Metadata and committed state of the store at ``root`` (a local path or a Location)."""
    from .location import LocalLocation, Location

    if not isinstance(root, Location):
        root = Path(root)
        if not root.exists():
            raise NotAStoreError(f"{root}: no such file or directory")
        if not root.is_dir() or not (root / "zarr.json").exists():
            raise NotAStoreError(f"{root}: not a replaystore store (no zarr.json group metadata)")
        doc = read_json(root / "zarr.json", what="store metadata (zarr.json)")
        return _parse_meta(doc, root)
    loc = root
    doc = loc.get_json("zarr.json", what="store metadata (zarr.json)")
    if doc is None:
        if isinstance(loc, LocalLocation):
            return _load_meta(loc.local)
        if loc.is_empty():
            raise NotAStoreError(f"{loc}: no such store (nothing there)")
        raise NotAStoreError(f"{loc}: not a replaystore store (no zarr.json group metadata)")
    return _parse_meta(doc, loc)


def _parse_meta(doc: Any, root) -> tuple[dict, dict]:
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
            f"{_version()} (reads format versions 1..{FORMAT_VERSION}); upgrade replaystore"
        )
    if not isinstance(state, dict) or not {"size", "cursor", "total"} <= state.keys():
        raise CorruptStoreError(f"{root}/zarr.json: committed state '{STATE_KEY}' is missing or incomplete")
    return meta, state
