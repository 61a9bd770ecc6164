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
from .backends import Backend, ZipBackend, resolve
from .files import MAX_JSON_BYTES, MAX_JSON_DEPTH, check_json_depth, parse_json, read_json

__all__ = ["FORMAT_VERSION", "META_KEY", "STATE_KEY", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_COUNT",
           "now_iso", "package_version", "json_copy", "load_meta", "write_group", "write_backup",
           "parse_meta", "check_state"]

FORMAT_VERSION = 1
META_KEY = layout.META_KEY
STATE_KEY = layout.STATE_KEY
#: the largest row count or counter a committed state may hold (it is used as an int64)
MAX_COUNT = 2**62
#: counters of the committed state: (key, required)
_COUNTERS = (("size", True), ("total", True), ("cursor", True), ("generation", False),
             ("episode", False), ("step", False), ("next_episode", False))


def package_version() -> str:
    """The installed replaystore version (recorded in the stores it creates)."""
    return __version__


def json_copy(obj: Any, root: Any, what: str) -> Any:
    """A deep copy of JSON data (``SchemaError`` naming ``what`` if it is not JSON)."""
    try:
        doc = json.loads(json.dumps(obj, allow_nan=False))
    except RecursionError:
        raise SchemaError(f"{root}: {what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (TypeError, ValueError) as e:
        raise SchemaError(f"{root}: {what} must be JSON-serializable: {e}") from None
    # a store refuses to read deeper documents: refuse to write them
    check_json_depth(doc, where=root, what=what, error=SchemaError)
    return doc


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
    what = "store metadata (zarr.json)"
    if isinstance(backend, ZipBackend):  # a member's declared size, before it is read
        n = backend.sizes(layout.GROUP_META).get(layout.GROUP_META, 0)
        if n > MAX_JSON_BYTES:
            raise CorruptStoreError(
                f"{backend}/{layout.GROUP_META}: {what} is {n:,} bytes; at most {MAX_JSON_BYTES:,} "
                "are accepted"
            )
    data = backend.get(layout.GROUP_META)
    doc = None if data is None else parse_json(data, where=f"{backend}/{layout.GROUP_META}", what=what)
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
    capacity = meta.get("capacity")
    if capacity is not None and (not _is_int(capacity) or not 0 < capacity <= MAX_COUNT):
        raise CorruptStoreError(
            f"{zj}: '{META_KEY}.capacity' is {_show(capacity)}; expected null (unbounded) or a "
            "positive integer (at most 2**62)"
        )
    fields = meta.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        raise CorruptStoreError(
            f"{zj}: '{META_KEY}.fields' is {_show(fields)}; expected a list of field objects"
        )
    check_state(state, capacity, zj)
    return meta, state


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (int, float, str, bool, type(None))) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def check_state(state: dict, capacity: int | None, where: Any) -> None:
    """Check a committed state's counters (``CorruptStoreError`` naming ``where`` and the key):
    integers in ``[0, MAX_COUNT]``, ``size <= total``, and for a ring ``size <= capacity``
    and ``cursor == total % capacity`` (``cursor == total`` for an unbounded store)."""
    for key, required in _COUNTERS:
        if key not in state and not required:
            continue
        v = state[key]
        if not _is_int(v) or not 0 <= v <= MAX_COUNT:
            raise CorruptStoreError(
                f"{where}: committed state '{STATE_KEY}.{key}' is {_show(v)}; expected a "
                "non-negative integer (at most 2**62)"
            )
    size, total, cursor = state["size"], state["total"], state["cursor"]
    if size > total:
        raise CorruptStoreError(
            f"{where}: committed state '{STATE_KEY}.size' is {size}, more than the {total} rows "
            f"ever written ('total'); expected size <= total"
        )
    if capacity is not None and size > capacity:
        raise CorruptStoreError(
            f"{where}: committed state '{STATE_KEY}.size' is {size}, more than the ring's capacity "
            f"{capacity}; expected size <= capacity"
        )
    want = total if capacity is None else total % capacity
    if cursor != want:
        rule = "total" if capacity is None else f"total % capacity ({total} % {capacity})"
        raise CorruptStoreError(
            f"{where}: committed state '{STATE_KEY}.cursor' is {cursor}; expected {want} "
            f"(cursor == {rule})"
        )
