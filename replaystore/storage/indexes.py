"""The class indexes of one open store: found, built, caught up and kept current.

Balanced sampling asks for the index of a key (:meth:`IndexSet.get`); a writer keeps the
persistent ones current on every commit (:meth:`IndexSet.on_write`). Indexes cover
*committed* rows; rows still in the write buffer are the sampler's business.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..errors import CorruptStoreError, SamplerError
from .backends import Backend
from .index import ClassIndex, KeySpec, key_spec
from .reader import StoreReader
from .schema import Schema

__all__ = ["IndexSet"]

_CATCH_UP_ROWS = 1 << 20


class IndexSet:
    """Class indexes by key name; ``hugepages`` maps the id lists with 2 MiB pages.

    A writer records each new persistent index in the store's metadata, which its next
    commit publishes (building an index commits nothing: reading never writes). Until
    then, or if the writer stops first, the index is only behind: it catches up when
    next used."""

    def __init__(self, backend: Backend, schema: Schema, capacity: int | None, meta: dict,
                 reader: StoreReader, *, writable: bool, hugepages: bool) -> None:
        self.backend = backend
        self.schema = schema
        self.capacity = capacity
        self.meta = meta
        self.reader = reader
        self.writable = writable
        self.hugepages = hugepages
        self._indexes: dict[str, ClassIndex] = {}
        self._check_recorded()

    def _check_recorded(self) -> None:
        """The indexes the metadata names are read before any file is touched: a crafted
        entry is a one-line error, never a path outside ``_index``."""
        specs = self.meta.get("indexes", [])
        if not isinstance(specs, list):
            raise CorruptStoreError(f"{self.backend}/zarr.json: 'indexes' must be a list, got {specs!r:.100}")
        for i, spec in enumerate(specs):
            try:
                KeySpec.from_json(spec)
            except SamplerError as e:
                raise CorruptStoreError(f"{self.backend}/zarr.json: indexes[{i}]: {e}") from None

    def _pages(self, idx: ClassIndex | None) -> ClassIndex | None:
        if idx is not None:
            idx.hugepages = self.hugepages
        return idx

    def _new(self, spec: KeySpec, *, persist: bool) -> ClassIndex:
        root = self.backend.local if self.backend.local is not None else self.backend.name
        return self._pages(ClassIndex.new(root, spec, self.capacity, persist=persist))

    def _load(self, spec: KeySpec) -> ClassIndex | None:
        return self._pages(ClassIndex.load(self.backend.local, spec, self.capacity, writable=self.writable))

    def get(self, by: Any, *, key_fields=None, key_name: str | None = None) -> ClassIndex:
        """The index of ``by``, built once and kept with the store where it can be; an
        index behind the committed rows catches up on the rows it misses."""
        spec = key_spec(self.schema, by, key_fields=key_fields, name=key_name)
        idx = self._indexes.get(spec.name)
        if idx is not None and idx.spec.kind == "callable":
            idx.spec = spec
        if not self.backend.persistent_indexes:
            # zip and URL stores: built in memory (from the key field only), kept current
            # by this process's own commits
            idx = idx or self._new(spec, persist=False)
            self.catch_up(idx)
            self._indexes[spec.name] = idx
            return idx
        if idx is None:
            idx = self._load(spec)
            if idx is not None:
                idx.spec = spec
        elif not self.writable:
            idx.reload()
        if idx is None or idx.covered < self.reader.total:
            idx = self._build(spec, idx)
        self._indexes[spec.name] = idx
        return idx

    def _build(self, spec: KeySpec, idx: ClassIndex | None) -> ClassIndex:
        """Build or catch up ``idx``; persisting it needs the writer lock."""
        lock = None
        persist = self.writable
        if not self.writable:
            try:
                lock = self.backend.lock()
                persist = os.access(self.backend.local, os.W_OK)
            except Exception:
                lock, persist = None, False
            if not persist:
                warnings.warn(
                    f"{self.backend}: building the {spec.name!r} class index in memory only (the "
                    "store is being written by another process or is read-only); it is rebuilt on "
                    "each open", stacklevel=5)
        try:
            if idx is None or not persist and not idx.in_memory:
                idx = self._new(spec, persist=persist)
            else:
                idx.writable = persist
            self.catch_up(idx)
            if persist and spec.persistent and self.writable:
                specs = self.meta.setdefault("indexes", [])
                if spec.to_json() not in specs:
                    specs.append(spec.to_json())  # published by the writer's next commit
        finally:
            if lock is not None:
                lock.release()
        return idx

    def catch_up(self, idx: ClassIndex) -> None:
        """Index the committed rows ``idx`` does not cover yet."""
        total, size = self.reader.total, self.reader.size
        start = max(idx.covered, total - size)
        if start >= total:
            idx.add(np.empty(0, np.int64), total, total)
            return
        needs = idx.spec.needs()
        for a in range(start, total, _CATCH_UP_ROWS):
            b = min(total, a + _CATCH_UP_ROWS)
            idx.add(idx.spec.keys(self.reader.read_ids(a, b, needs)), a, b)

    def on_write(self, rows: dict[str, np.ndarray], first_id: int, total: int, new_total: int) -> None:
        """Rows with global ids ``first_id..new_total-1`` were written (the commit that
        makes them visible follows): keep every current persistent index current."""
        for spec_json in self.meta.get("indexes", ()):
            spec = KeySpec.from_json(spec_json)
            idx = self._indexes.get(spec.name)
            if idx is None:
                if not self.backend.persistent_indexes:
                    continue  # not persisted: kept current only once built
                idx = self._load(spec) or self._new(spec, persist=True)
                self._indexes[spec.name] = idx
            if idx.covered == total:
                idx.add(idx.spec.keys(rows), first_id, new_total)
            # a stale index (written by an older writer) catches up when next used

    def close(self) -> None:
        for idx in self._indexes.values():
            idx.close()
        self._indexes.clear()
