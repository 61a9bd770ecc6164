"""Every on-disk name of a store, in one place.

A store is a Zarr v3 group; keys are ``/``-separated paths relative to its root:

>>> chunk_key("obs", 3, 1)
'obs/c/3/0'
>>> array_meta_key("reward"), crc_key("obs"), index_key("action")
('reward/zarr.json', '.crc/obs.bin', '_index/action')
>>> index_key("../evil")
Traceback (most recent call last):
ValueError: index name '../evil' is not allowed: expected 1-128 letters, digits, '_', '.' or '-', not starting with '.'
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = [
    "GROUP_META", "BACKUP", "LOCK", "LIVE", "CRC_DIR", "INDEX_DIR", "META_KEY", "STATE_KEY",
    "INDEX_ATTR", "ARRAY_ATTR", "RUNTIME_FILES", "chunk_key", "chunk_path", "array_meta_key", "crc_key", "crc_check_key",
    "index_key", "valid_index_name", "index_class_key", "group_doc", "array_doc", "temp_name", "is_temp_name", "is_chunk_key",
]

#: the group metadata: field list, spaces, committed state
GROUP_META = "zarr.json"
#: a copy of the group metadata for ``verify --repair`` (local stores)
BACKUP = ".zarr.json.bak"
#: the writer lock (an ``flock``-ed file holding the writer's pid)
LOCK = ".writer.lock"
#: the oldest row a ring writer has not evicted (shared memory for torn-read checks)
LIVE = ".live"
#: checksums of committed rows, one file per field
CRC_DIR = ".crc"
#: class indexes for balanced sampling, one group per key
INDEX_DIR = "_index"
#: attribute of the group metadata holding the store's metadata ...
META_KEY = "replaystore"
#: ... and the committed state
STATE_KEY = "replaystore_state"
#: attribute of an index group's metadata
INDEX_ATTR = "replaystore_index"
#: attribute of a field array's metadata: ``{"every_chunk_written": true}`` in stores whose
#: writers write every chunk (a chunk file that is missing there is damage, not the fill value)
ARRAY_ATTR = "replaystore_array"
#: per-process files of a local store that are not part of its content
RUNTIME_FILES = (LOCK, LIVE)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_TEMP = re.compile(r"(^|/)\.[^/]*\.tmp$")
_CHUNK = re.compile(r"(^|/)c/\d+(/0)*$")


def chunk_key(field: str, k: int, ndim: int) -> str:
    """Key of chunk ``k`` (along rows) of a field whose rows have ``ndim`` dimensions:
    Zarr v3's default chunk key encoding, ``c/<k>/0/0...`` (one ``/0`` per row dimension)."""
    return "/".join([field, "c", str(k), *(["0"] * ndim)])


def chunk_path(root: str | os.PathLike, field: str, k: int, ndim: int) -> str:
    """Local path of :func:`chunk_key` under the store directory ``root``."""
    return os.path.join(root, field, "c", str(k), *(["0"] * ndim))


def array_meta_key(field: str) -> str:
    return f"{field}/{GROUP_META}"


def crc_key(field: str) -> str:
    return f"{CRC_DIR}/{field}.bin"


def crc_check_key(field: str) -> str:
    """The check words of :func:`crc_key`'s records (one ``uint32`` per record slot)."""
    return f"{CRC_DIR}/{field}.chk"


def index_key(name: str) -> str:
    """The directory of the class index named ``name`` (unsafe characters replaced).
    A name whose directory would not be a plain name inside ``_index`` (``..``, ``.x``, an
    empty or over-long name) is refused: index directories are deleted and rebuilt."""
    if not valid_index_name(name):
        raise ValueError(f"index name {name!r} is not allowed: expected 1-128 letters, digits, "
                         "'_', '.' or '-', not starting with '.'")
    return f"{INDEX_DIR}/{_UNSAFE.sub('_', name)}"


def valid_index_name(name: object) -> bool:
    """Whether ``name`` can name a class index (its directory stays inside ``_index``)."""
    if not isinstance(name, str) or not 0 < len(name) <= 128:
        return False
    return not _UNSAFE.sub("_", name).startswith(".")


def index_class_key(name: str, j: int) -> str:
    """The id-list array of class number ``j`` of index ``name``."""
    return f"{index_key(name)}/c{j}"


def group_doc(attributes: dict[str, Any]) -> dict[str, Any]:
    """A Zarr v3 group ``zarr.json`` document with these attributes."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def array_doc(dtype: Any, shape: tuple[int, ...], chunk_rows: int, rows: int) -> dict[str, Any]:
    """The ``zarr.json`` of an uncompressed Zarr v3 row array (``bytes`` codec, little endian):
    what zarr-python writes for it, written here without starting zarr's event loop.

    >>> array_doc("int64", (), 4096, 0)["chunk_grid"]["configuration"]["chunk_shape"]
    [4096]
    """
    import numpy as np

    dt = np.dtype(dtype)
    return {
        "shape": [int(rows), *map(int, shape)],
        "data_type": dt.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [int(chunk_rows), *map(int, shape)]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": False if dt.kind == "b" else 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def temp_name(name: str) -> str:
    """Name of the temporary file written before ``name`` is replaced atomically."""
    return f".{name}.{os.getpid()}.tmp"


def is_temp_name(key: str) -> bool:
    return bool(_TEMP.search(key))


def is_chunk_key(key: str) -> bool:
    return bool(_CHUNK.search(key))
