"""Per-class row indexes, stored with the store, for class-balanced sampling.

An index maps each class of a discrete key (a field such as ``action`` or ``label``, the
sign of the reward, or a user function of the rows) to the ascending list of *global row
ids* (row ``g`` is the ``g``-th row ever written) that carry that class. Lists only grow:
a ring's eviction needs no rewrite, because rows older than ``total - size`` are simply
not live any more, and each class list is itself a ring of the store's capacity.

On disk an index is a Zarr group ``_index/<name>/`` holding one uncompressed int64 array
per class (``c0``, ``c1``, ...) and, in its attributes, the key, the class values, how
many ids each class list holds and the store row count it covers. The attributes are
written after the arrays, and the store commits its own state after both.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptStoreError, SamplerError
from . import layout
from .array import RowArray, create_row_array
from .files import atomic_write_json, read_json

__all__ = ["ClassIndex", "KeySpec", "key_spec", "MAX_CLASSES", "INDEX_CHUNK_ROWS"]

MAX_CLASSES = 4096
INDEX_CHUNK_ROWS = 1 << 18  # 2 MiB of int64 ids: chunks that 2 MiB pages can map
_MIN_CHUNK_ROWS = 1 << 12
_ATTR = layout.INDEX_ATTR


class KeySpec:
    """What an index is keyed by: ``kind`` is ``"field"``, ``"reward_sign"`` or ``"callable"``."""

    KINDS = ("field", "reward_sign", "callable")

    def __init__(self, kind: str, name: str, field: str | None = None,
                 fn: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None,
                 fields: tuple[str, ...] = ()) -> None:
        if not layout.valid_index_name(name):
            raise SamplerError(
                f"index name {name!r} is not allowed: expected 1-128 letters, digits, '_', '.' "
                "or '-', not starting with '.'"
            )
        self.kind, self.name, self.field, self.fn, self.fields = kind, name, field, fn, tuple(fields)

    @property
    def persistent(self) -> bool:
        """Whether any writer can keep this index current (not true of user functions)."""
        return self.kind != "callable"

    def needs(self) -> tuple[str, ...]:
        if self.kind == "field":
            return (self.field,)
        if self.kind == "reward_sign":
            return ("reward",)
        return self.fields

    def keys(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.kind == "field":
            return np.asarray(rows[self.field]).astype(np.int64, copy=False)
        if self.kind == "reward_sign":
            return np.sign(np.asarray(rows["reward"], dtype=np.float64)).astype(np.int64)
        out = np.asarray(self.fn(rows))
        n = len(next(iter(rows.values()))) if rows else 0
        if out.shape != (n,) or out.dtype.kind not in "biu":
            raise SamplerError(
                f"balance key function {self.name!r} must return one integer class per row "
                f"(shape ({n},)), got dtype {out.dtype} and shape {out.shape}"
            )
        return out.astype(np.int64, copy=False)

    def to_json(self) -> dict:
        d: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.field:
            d["field"] = self.field
        if self.fields:
            d["fields"] = list(self.fields)
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> KeySpec:
        """The spec recorded in a store's metadata (``SamplerError`` if it is malformed)."""
        if not isinstance(d, Mapping) or d.get("kind") not in cls.KINDS:
            raise SamplerError(f"expected an index spec with a kind in {list(cls.KINDS)}, got {d!r:.200}")
        field, fields = d.get("field"), d.get("fields", ())
        if (field is not None and not isinstance(field, str)) or not isinstance(fields, list | tuple) \
                or not all(isinstance(f, str) for f in fields):
            raise SamplerError(f"index spec {d!r:.200}: 'field' must be a name and 'fields' a list of names")
        return cls(d["kind"], d.get("name"), field, None, tuple(fields))


def key_spec(schema, by: Any, *, key_fields: tuple[str, ...] | None = None, name: str | None = None) -> KeySpec:
    """Turn a ``by=`` argument into a :class:`KeySpec`, refusing continuous fields."""
    if callable(by):
        fname = name or getattr(by, "__name__", None)
        if not fname or fname == "<lambda>":
            raise SamplerError("a balance key function needs a name: pass key_name='...'")
        fields = tuple(key_fields) if key_fields else tuple(
            f.name for f in schema if f.shape == ()
        )
        for f in fields:
            schema[f]
        return KeySpec("callable", fname, fn=by, fields=fields)
    if by == "reward_sign":
        return KeySpec("reward_sign", "reward_sign")
    if not isinstance(by, str):
        raise SamplerError(f"by= must be a field name, 'reward_sign' or a function, got {by!r}")
    f = schema[by]
    if f.dtype.kind == "f":
        what = f"cannot balance by field {by!r}: it is continuous ({f.dtype}); balance by a discrete field (bool/int)"
        raise SamplerError(f"{what}, by='reward_sign', or by a function that returns integer classes",
                           cli=f"{what}, or by reward_sign (--balanced-by reward_sign)")
    if f.shape != ():
        raise SamplerError(
            f"cannot balance by field {by!r}: its rows have shape {f.shape}; expected scalars"
        )
    return KeySpec("field", by, field=by)


class ClassIndex:
    """Class lists of global row ids for one key of one store."""

    def __init__(self, root: Path, spec: KeySpec, capacity: int | None, *, writable: bool) -> None:
        self.root = Path(root)
        self.spec = spec
        self.capacity = capacity
        self.writable = writable
        self.classes: list[int] = []
        self.counts: list[int] = []
        self.covered = 0  # store total the index covers
        self._arrays: dict[int, RowArray] = {}
        self._memory: dict[int, list[np.ndarray]] | None = None  # in-memory (unpersisted) mode
        self.hugepages = False  # map the id lists with 2 MiB pages (set by the store)

    # -- persistence ----------------------------------------------------------------------
    @classmethod
    def load(cls, store_root: Path, spec: KeySpec, capacity: int | None, *, writable: bool) -> ClassIndex | None:
        root = Path(store_root) / layout.index_key(spec.name)
        if not (root / "zarr.json").exists():
            return None
        doc = read_json(root / "zarr.json", what=f"index {spec.name!r} metadata")
        attrs = doc.get("attributes", {}).get(_ATTR)
        if not attrs or attrs.get("key") != spec.to_json():
            return None
        idx = cls(root, spec, capacity, writable=writable)
        idx.classes = [int(c) for c in attrs["classes"]]
        idx.counts = [int(c) for c in attrs["counts"]]
        idx.covered = int(attrs["covered"])
        return idx

    @classmethod
    def new(cls, store_root: Path, spec: KeySpec, capacity: int | None, *, persist: bool) -> ClassIndex:
        root = Path(store_root) / layout.index_key(spec.name)
        idx = cls(root, spec, capacity, writable=persist)
        if persist:
            if root.is_symlink() or root.resolve().parent != (Path(store_root) / layout.INDEX_DIR).resolve():
                raise SamplerError(f"{root}: an index directory must be a plain directory inside "
                                   f"{layout.INDEX_DIR}/ of the store")  # never delete anything else
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            if not (root.parent / layout.GROUP_META).exists():
                atomic_write_json(root.parent / layout.GROUP_META, layout.group_doc({}))
            idx._write_meta()
        else:
            idx._memory = {}
        return idx

    def reload(self) -> None:
        """Re-read counts written by another process."""
        if self._memory is not None:
            return
        doc = read_json(self.root / "zarr.json", what=f"index {self.spec.name!r} metadata")
        attrs = doc["attributes"][_ATTR]
        self.classes = [int(c) for c in attrs["classes"]]
        self.counts = [int(c) for c in attrs["counts"]]
        self.covered = int(attrs["covered"])

    def _write_meta(self) -> None:
        doc = layout.group_doc({_ATTR: {"key": self.spec.to_json(), "classes": self.classes,
                                        "counts": self.counts, "covered": self.covered}})
        atomic_write_json(self.root / layout.GROUP_META, doc)

    def _array(self, j: int) -> RowArray:
        ra = self._arrays.get(j)
        if ra is None:
            path = self.root / f"c{j}"
            if (path / "zarr.json").exists():  # chunking as written (older stores: 65,536 rows)
                meta = read_json(path / "zarr.json", what=f"index {self.spec.name!r} class array")
                try:
                    chunk_rows = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
                    if type(chunk_rows) is not int or chunk_rows <= 0:
                        raise TypeError(f"chunk rows {chunk_rows!r}")
                except (KeyError, TypeError, IndexError) as e:
                    raise CorruptStoreError(
                        f"{path}/zarr.json: index {self.spec.name!r} class array has no usable chunk "
                        f"shape ({e}); run `replaystore verify --repair` to rebuild the index") from None
            else:
                chunk_rows = INDEX_CHUNK_ROWS
                if self.capacity is not None:  # a ring never needs chunks longer than itself
                    chunk_rows = min(chunk_rows, max(_MIN_CHUNK_ROWS, 1 << (self.capacity - 1).bit_length()))
                if self.writable:
                    create_row_array(path, np.int64, (), chunk_rows,
                                     rows=self.capacity if self.capacity is not None else 0)
            ra = RowArray(path, dtype=np.int64, shape=(), chunk_rows=chunk_rows,
                          max_rows=self.capacity, name=f"index {self.spec.name!r} class {self.classes[j]}",
                          hugepages=self.hugepages)
            self._arrays[j] = ra
        return ra

    # -- updating -------------------------------------------------------------------------
    def add(self, keys: np.ndarray, first_id: int, covered: int) -> None:
        """Index rows with global ids ``first_id .. first_id+len(keys)-1``; then covers ``covered``."""
        keys = np.asarray(keys, dtype=np.int64)
        if keys.size:
            ids = np.arange(first_id, first_id + len(keys), dtype=np.int64)
            uniq, inv = np.unique(keys, return_inverse=True)
            if len(set(self.classes) | set(uniq.tolist())) > MAX_CLASSES:
                raise SamplerError(
                    f"index {self.spec.name!r}: more than {MAX_CLASSES} distinct classes; "
                    "balancing needs a discrete key with few classes"
                )
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
            for u, value in enumerate(uniq.tolist()):
                sel = ids[order[bounds[u] : bounds[u + 1]]]
                if value not in self.classes:
                    self.classes.append(int(value))
                    self.counts.append(0)
                j = self.classes.index(value)
                self._append(j, sel)
        self.covered = int(covered)
        if self._memory is None:
            self._write_meta()

    def _append(self, j: int, ids: np.ndarray) -> None:
        if self._memory is not None:
            self._memory.setdefault(j, []).append(ids)
            self.counts[j] += len(ids)
            return
        cap = self.capacity
        if cap is not None and len(ids) > cap:
            # the oldest ids would be overwritten within this very batch
            self.counts[j] += len(ids) - cap
            ids = ids[-cap:]
        ra = self._array(j)
        pos = self.counts[j]
        if cap is None:
            ra.write(pos, ids)
            end = pos + len(ids)
            ra.set_rows(-(-end // ra.chunk_rows) * ra.chunk_rows)  # a chunk at a time
        else:
            start = pos % cap
            first = min(len(ids), cap - start)
            ra.write(start, ids[:first])
            if first < len(ids):
                ra.write(0, ids[first:])
        self.counts[j] += len(ids)

    # -- reading --------------------------------------------------------------------------
    def _materialize_memory(self) -> None:
        assert self._memory is not None
        for j, parts in self._memory.items():
            if len(parts) > 1:
                self._memory[j] = [np.concatenate(parts)]

    @property
    def in_memory(self) -> bool:
        """Built in memory only (not persisted with the store)."""
        return self._memory is not None

    @property
    def ring(self) -> int | None:
        """Length of each class list's ring (persisted indexes of rings), else ``None``."""
        return self.capacity if self._memory is None else None

    def ids_view(self, j: int) -> np.ndarray:
        """All stored ids of class ``j`` in physical (ring) order."""
        if self._memory is not None:
            self._materialize_memory()
            parts = self._memory.get(j)
            return parts[0] if parts else np.empty(0, np.int64)
        stored = self.counts[j] if self.capacity is None else min(self.counts[j], self.capacity)
        return self._array(j).readable(stored).array

    def live_ranges(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """For each class: (first logical class position, count) of ids in ``[lo, hi)``."""
        k = len(self.classes)
        starts = np.zeros(k, np.int64)
        counts = np.zeros(k, np.int64)
        for j in range(k):
            ids = self.ids_view(j)
            total = self.counts[j]
            cap = self.capacity if self._memory is None else None
            stored = total if cap is None else min(total, cap)
            first = total - stored  # logical class position of the oldest stored id

            def at(p: int, ids=ids, cap=cap) -> int:
                return int(ids[p % cap] if cap is not None else ids[p])

            a = self._search(at, first, total, lo)
            b = self._search(at, a, total, hi)
            starts[j], counts[j] = a, b - a
        return starts, counts

    @staticmethod
    def _search(at: Callable[[int], int], a: int, b: int, value: int) -> int:
        """First logical position in ``[a, b)`` whose id is >= value (ids ascending)."""
        while a < b:
            m = (a + b) // 2
            if at(m) < value:
                a = m + 1
            else:
                b = m
        return a

    def gather(self, j: int, positions: np.ndarray) -> np.ndarray:
        """Global ids at logical class positions."""
        ids = self.ids_view(j)
        if self.capacity is not None and self._memory is None:
            positions = positions % self.capacity
        return ids[positions]

    def close(self) -> None:
        for ra in self._arrays.values():
            ra.close()
        self._arrays.clear()
