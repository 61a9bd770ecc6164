"""Field definitions: what each per-row array holds and how it is laid out on disk.

>>> f = Field("obs", "float32", (8,))
>>> f.row_bytes, f.chunk_rows
(32, 524288)
>>> Field("frame", "uint8", (84, 84), codec="zstd:3").codec
'zstd:3'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SchemaError

__all__ = [
    "Field",
    "Schema",
    "STANDARD_FIELDS",
    "TRANSITION_FIELDS",
    "SCALAR_FIELDS",
    "DEFAULT_CHUNK_BYTES",
    "default_chunk_rows",
    "parse_codec",
]

#: Target size of one chunk file of one field. Large chunks keep the number of files a
#: random batch touches small; see BENCHMARKS.md for the measurement behind this value.
DEFAULT_CHUNK_BYTES = 16 * 2**20
MIN_CHUNK_ROWS = 4096  # a power of two >= 4096 keeps every chunk page-aligned for mmap
MAX_CHUNK_ROWS = 2**20
#: rows larger than this do not get MIN_CHUNK_ROWS rows per chunk (4096 rows of 100 MB
#: would be a 400 GB chunk, and a write buffer as large)
LARGE_ROW_BYTES = 1 << 16

#: Fields every transition store has, in this order (``obs``/``action``/``next_obs`` are
#: split into ``obs.<key>`` ... fields for ``Dict``/``Tuple`` spaces).
STANDARD_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode", "step")
#: What a learner needs of a transition (the standard fields without the episode bookkeeping).
TRANSITION_FIELDS = STANDARD_FIELDS[:6]
#: The standard fields that do not depend on the spaces, with their dtypes.
SCALAR_FIELDS = (("reward", "float32"), ("terminated", "bool"), ("truncated", "bool"),
                 ("episode", "int64"), ("step", "int64"))

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_CODEC = re.compile(r"^(none|zstd|lz4|blosc-lz4|blosc-zstd|gzip)(?::(\d+))?$")


def default_chunk_rows(row_bytes: int) -> int:
    """Largest power of two of rows whose chunk stays within ``DEFAULT_CHUNK_BYTES``, but
    at least ``MIN_CHUNK_ROWS`` (page-aligned chunks) for rows up to ``LARGE_ROW_BYTES``;
    larger rows get chunks of at most ``DEFAULT_CHUNK_BYTES`` (or one row), so a chunk and
    the write buffer stay bounded however large a row is.

    >>> default_chunk_rows(1), default_chunk_rows(32), default_chunk_rows(7056)
    (1048576, 524288, 4096)
    >>> default_chunk_rows(100_000_000), default_chunk_rows(1 << 20)
    (1, 16)
    """
    rows = max(1, DEFAULT_CHUNK_BYTES // max(1, row_bytes))
    rows = 1 << (rows.bit_length() - 1)
    if row_bytes > LARGE_ROW_BYTES:
        return int(rows)
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, rows)))


def parse_codec(codec: str | None) -> tuple[str, int | None]:
    """Split ``"zstd:5"`` into ``("zstd", 5)``; ``None`` and ``"none"`` mean uncompressed."""
    if codec is None:
        return "none", None
    m = _CODEC.match(str(codec).strip().lower())
    if not m:
        raise SchemaError(
            f"unknown codec {codec!r}: expected None, 'none', 'zstd[:level]', 'lz4', "
            "'blosc-lz4[:level]', 'blosc-zstd[:level]' or 'gzip[:level]'"
        )
    return m.group(1), (int(m.group(2)) if m.group(2) else None)


@dataclass(frozen=True)
class Field:
    """One per-row array of a store: name, numpy dtype, per-row shape and on-disk layout."""

    name: str
    dtype: Any
    shape: tuple[int, ...] = ()
    chunk_rows: int | None = None
    codec: str | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or self.name.startswith("_"):
            raise SchemaError(
                f"field name {self.name!r} is not allowed: expected letters, digits, '_' or '.', "
                "not starting with a digit, '.' or '_'"
            )
        try:
            dt = np.dtype(self.dtype)
        except TypeError as e:
            raise SchemaError(f"field {self.name!r}: dtype {self.dtype!r} is not a numpy dtype") from e
        if dt.kind not in "biuf" or dt.itemsize > 8:
            raise SchemaError(
                f"field {self.name!r}: dtype {dt} is not supported; expected bool, int, uint or float"
            )
        object.__setattr__(self, "dtype", dt.newbyteorder("="))
        try:
            shape = tuple(int(s) for s in self.shape)
        except TypeError as e:
            raise SchemaError(f"field {self.name!r}: shape {self.shape!r} is not a tuple of ints") from e
        if any(s <= 0 for s in shape):
            raise SchemaError(f"field {self.name!r}: shape {shape} must have positive sizes")
        object.__setattr__(self, "shape", shape)
        cr = self.chunk_rows if self.chunk_rows is not None else default_chunk_rows(self.row_bytes)
        if type(cr) is not int and not isinstance(cr, np.integer):
            raise SchemaError(f"field {self.name!r}: chunk_rows must be an integer, got {cr!r}")
        if int(cr) <= 0:
            raise SchemaError(f"field {self.name!r}: chunk_rows must be positive, got {cr}")
        object.__setattr__(self, "chunk_rows", int(cr))
        name, level = parse_codec(self.codec)
        object.__setattr__(
            self, "codec", None if name == "none" else (name if level is None else f"{name}:{level}")
        )

    @property
    def row_bytes(self) -> int:
        return int(self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64)))

    @property
    def chunk_bytes(self) -> int:
        return self.row_bytes * self.chunk_rows

    @property
    def compressed(self) -> bool:
        return self.codec is not None

    def to_json(self) -> dict:
        d = {
            "name": self.name,
            "dtype": np.dtype(self.dtype).name,
            "shape": list(self.shape),
            "chunk_rows": self.chunk_rows,
            "codec": self.codec,
        }
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_json(cls, d: dict) -> Field:
        return cls(
            d["name"], d["dtype"], tuple(d["shape"]), d["chunk_rows"], d.get("codec"), d.get("meta", {})
        )


class Schema:
    """An ordered collection of :class:`Field`.

    >>> s = Schema([Field("obs", "float32", (4,)), Field("reward", "float32")])
    >>> s.names
    ('obs', 'reward')
    """

    def __init__(self, fields: list[Field]) -> None:
        names = [f.name for f in fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SchemaError(f"duplicate field names: {dup}")
        self.fields: dict[str, Field] = {f.name: f for f in fields}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.fields)

    def __getitem__(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise SchemaError(f"unknown field {name!r}; the store has fields {list(self.fields)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    def __iter__(self):
        return iter(self.fields.values())

    def __len__(self) -> int:
        return len(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and list(self) == list(other)

    def select(self, fields: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
        """Validate a field subset (``None`` = all) and return it as a tuple of names."""
        if fields is None:
            return self.names
        if isinstance(fields, str):
            fields = (fields,)
        for name in fields:
            self[name]
        return tuple(fields)

    def to_json(self) -> list[dict]:
        return [f.to_json() for f in self]

    @classmethod
    def from_json(cls, items: list[dict]) -> Schema:
        return cls([Field.from_json(d) for d in items])
