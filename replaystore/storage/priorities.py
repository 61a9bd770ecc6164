"""Priorities of prioritized replay, kept with the store: the ``_priority`` array.

``<store>/_priority`` is a plain Zarr v3 array (``float32``, one uncompressed chunk, so
``zarr.open_array(store_path + "/_priority")[:]`` reads it) holding ``priority ** alpha``
of every row at its physical place -- row id ``g`` at ``g % capacity`` in a ring, at
``g`` in an unbounded store, where the array grows by doubling. Its attributes
(``replaystore.priorities``) say ``alpha``, ``rows`` (priorities of row ids below it were
saved by the last :meth:`Priorities.flush`) and, when ``clean``, a CRC32 of every
:data:`CRC_ROWS` slots.

In a store open for appending the array is a shared memory map of the file: an update
reaches the page cache at once (a SIGKILL loses nothing), :meth:`Priorities.flush` makes
it durable and records the checksums. The first update after a flush marks the array
not clean; reopened in that state (a crash), its values are checked instead of its
checksums, and any that are not finite and >= 0 are reset to the largest priority. Rows
appended after the last flush start at the largest priority. Stores opened read-only,
``.zip`` files and remote stores keep priorities in memory (loaded from the array if
there is one) and never write them.

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> store = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(4), gym.spaces.Discrete(2),
...                   capacity=8)
>>> p = store.priorities(alpha=0.5)
>>> p.persisted, len(p.leaves)
(True, 8)
>>> p.close(); store.close()
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from typing import Any

import numpy as np

from ..errors import CorruptStoreError, SamplerError
from .backends import Backend

__all__ = ["Priorities", "ARRAY", "CRC_ROWS"]

#: the array's name in the store's group
ARRAY = "_priority"
#: slots per checksum
CRC_ROWS = 1 << 16
#: smallest allocation of an unbounded store's array
MIN_ROWS = 1 << 16


def _array_meta(rows: int, attrs: dict) -> dict:
    return {
        "shape": [rows], "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [rows]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {"replaystore": {"priorities": attrs}},
        "zarr_format": 3, "node_type": "array", "storage_transformers": [],
    }


def _crcs(a: np.ndarray) -> list[int]:
    raw = a.view(np.uint8)
    step = CRC_ROWS * 4
    return [zlib.crc32(raw[i:i + step]) for i in range(0, len(raw), step)]


class Priorities:
    """The priorities of one store (see the module docstring); built by
    :meth:`ReplayStore.priorities`. ``leaves`` is the ``float32`` array of
    ``priority ** alpha`` by physical slot (a memory map when :attr:`persisted`)."""

    def __init__(self, backend: Backend, *, capacity: int | None, id_range: tuple[int, int],
                 alpha: float, writable: bool, fsync: bool = True, stored_alpha: bool = False) -> None:
        keep_alpha = stored_alpha  # (verify: read the values as saved, whatever their alpha)
        self.backend = backend
        self.capacity = capacity
        self.alpha = float(alpha)
        self.fsync = fsync
        self.persisted = bool(writable and backend.local is not None)
        self.where = f"{backend}/{ARRAY}"
        self.dirty = False
        self.saved_rows = 0
        #: kept here for the samplers sharing these priorities: their tree over the leaves
        #: and the row ids ``(lo, hi)`` it covers (set by the sampling layer)
        self.tree: Any = None
        self.seen = (0, 0)
        self._crc: list[int] | None = None
        self._map: np.memmap | None = None
        hi = id_range[1]
        meta = backend.get_json(f"{ARRAY}/zarr.json", what="priority array metadata")
        attrs = self._check_meta(meta, hi) if meta is not None else None
        rows = self._rows_for(hi) if attrs is None else int(meta["shape"][0])
        if self.persisted:
            self._open_file(rows, create=attrs is None)
        else:
            self.leaves = self._load_copy(rows) if attrs is not None else np.zeros(rows, np.float32)
        self.was_clean = attrs is None or bool(attrs["clean"])
        if attrs is None:
            saved, clean, stored_alpha = 0, True, self.alpha
        else:
            saved, clean, stored_alpha = int(attrs["rows"]), bool(attrs["clean"]), float(attrs["alpha"])
            if keep_alpha:
                self.alpha = stored_alpha
            if clean and _crcs(self.leaves) != list(attrs["crc"]):
                bad = [i for i, (x, y) in enumerate(zip(_crcs(self.leaves), attrs["crc"], strict=True)) if x != y]
                raise CorruptStoreError(
                    f"{self.where}: priorities of slots {bad[0] * CRC_ROWS}..{(bad[0] + 1) * CRC_ROWS - 1} "
                    f"do not match their checksum ({len(bad)} damaged block(s)); repairing the store "
                    "(replaystore verify --repair) removes them, and every row starts at priority 1")
        self._crc = None
        self.saved_rows = saved
        self._sanitize(stored_alpha)

    # -- opening --------------------------------------------------------------------------
    def _rows_for(self, hi: int) -> int:
        if self.capacity is not None:
            return int(self.capacity)
        return max(MIN_ROWS, 1 << max(0, hi - 1).bit_length())

    def _check_meta(self, meta: Any, hi: int) -> dict:
        """The saved attributes, after checking the array is what this module writes (a
        crafted file is refused before anything is read or allocated)."""
        shape = meta.get("shape") if isinstance(meta, dict) else None
        rows = shape[0] if isinstance(shape, list) and len(shape) == 1 and type(shape[0]) is int else -1
        want = "capacity" if self.capacity is not None else "a power of two >= 65536 covering the rows"
        ok = (rows == self.capacity) if self.capacity is not None else (
            rows >= max(hi, MIN_ROWS) and rows & (rows - 1) == 0 and rows <= 2 * max(hi, MIN_ROWS))
        if not ok or meta != _array_meta(rows, meta.get("attributes", {}).get("replaystore", {}).get("priorities")):
            raise CorruptStoreError(f"{self.where}/zarr.json: not a priority array of this store (expected "
                                    f"one float32 chunk of {want} slots, uncompressed)")
        attrs = meta["attributes"]["replaystore"]["priorities"]
        try:
            ok = (isinstance(attrs, dict) and math.isfinite(float(attrs["alpha"])) and float(attrs["alpha"]) >= 0
                  and type(attrs["rows"]) is int and 0 <= attrs["rows"] and isinstance(attrs["clean"], bool)
                  and (not attrs["clean"] or (isinstance(attrs["crc"], list)
                                              and len(attrs["crc"]) == -(-rows // CRC_ROWS))))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CorruptStoreError(f"{self.where}/zarr.json: priority attributes are damaged "
                                    "(expected alpha, rows, clean and checksums)")
        return attrs

    def _open_file(self, rows: int, *, create: bool) -> None:
        path = self.backend.local / ARRAY / "c" / "0"
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.truncate(rows * 4)
        elif not path.is_file() or path.stat().st_size != rows * 4:
            raise CorruptStoreError(f"{self.where}/c/0: expected {rows * 4} bytes of priorities, "
                                    f"found {path.stat().st_size if path.is_file() else 'no file'}")
        self._map = np.memmap(path, np.float32, "r+", shape=(rows,))
        self.leaves = self._map
        if create:
            self._write_meta(rows, clean=True, saved=0)

    def _load_copy(self, rows: int) -> np.ndarray:
        size = self.backend.sizes(f"{ARRAY}/c").get(f"{ARRAY}/c/0")
        if size != rows * 4:  # (checked before reading: a crafted file is never loaded)
            raise CorruptStoreError(f"{self.where}/c/0: expected {rows * 4} bytes of priorities, found "
                                    f"{'none' if size is None else size}")
        raw = self.backend.get(f"{ARRAY}/c/0")
        if raw is None or len(raw) != rows * 4:
            raise CorruptStoreError(f"{self.where}/c/0: expected {rows * 4} bytes of priorities, found "
                                    f"{'none' if raw is None else len(raw)}")
        return np.frombuffer(raw, "<f4").astype(np.float32)

    def _sanitize(self, stored_alpha: float) -> None:
        """Convert to this alpha and reset values that are not finite and >= 0 (slots of rows
        without saved priorities are set by the sampler)."""
        a = self.leaves
        if stored_alpha != self.alpha:
            if stored_alpha == 0:
                a[a > 0] = 1.0
            else:
                np.power(a, self.alpha / stored_alpha, out=a, where=a > 0)
            self.mark_dirty()
        bad = ~np.isfinite(a) | (a < 0)
        if bad.any():
            good = a[~bad]
            a[bad] = good.max() if good.size else 1.0
            warnings.warn(f"{self.where}: {int(bad.sum())} priorities were not finite and >= 0 "
                          "(a crash while they were written?); they are reset to the largest",
                          RuntimeWarning, stacklevel=4)
            self.mark_dirty()

    # -- slots ----------------------------------------------------------------------------
    def slots(self, ids: np.ndarray) -> np.ndarray:
        """Physical slots of row ids (``ids % capacity`` in a ring)."""
        return ids % self.capacity if self.capacity is not None else ids

    def ensure(self, hi: int) -> bool:
        """Room for row ids below ``hi`` (an unbounded store's array doubles); True if the
        array was reallocated (trees over it must be rebuilt)."""
        if self.capacity is not None or hi <= len(self.leaves):
            return False
        rows = self._rows_for(hi)
        if self.persisted:
            self._map.flush()
            del self.leaves
            self._map = None
            path = self.backend.local / ARRAY / "c" / "0"
            with open(path, "r+b") as f:
                f.truncate(rows * 4)
            self._map = np.memmap(path, np.float32, "r+", shape=(rows,))
            self.leaves = self._map
            self._crc = None
            self.dirty = False
            self.mark_dirty(rows=rows)
        else:
            grown = np.zeros(rows, np.float32)
            grown[: len(self.leaves)] = self.leaves
            self.leaves = grown
        return True

    # -- saving ---------------------------------------------------------------------------
    def mark_dirty(self, rows: int | None = None) -> None:
        """Called before the first change after a flush: the saved array is no longer clean."""
        if self.dirty:
            return
        self.dirty = True
        self._crc = None
        if self.persisted:
            self._write_meta(rows or len(self.leaves), clean=False, saved=self.saved_rows)

    def _write_meta(self, rows: int, *, clean: bool, saved: int) -> None:
        attrs: dict[str, Any] = {"alpha": self.alpha, "rows": int(saved), "clean": clean}
        if clean:
            attrs["crc"] = self._crc if self._crc is not None else _crcs(self.leaves)
        self.backend.put_json(f"{ARRAY}/zarr.json", _array_meta(rows, attrs), fsync=self.fsync)

    def flush(self, rows: int) -> None:
        """Make the priorities durable with checksums, recording that those of row ids below
        ``rows`` are saved (nothing happens for priorities kept in memory)."""
        if not self.persisted:
            return
        if self.dirty or rows != self.saved_rows:
            self._map.flush()
            if self.fsync:
                fd = os.open(self._map.filename, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._crc = _crcs(self.leaves)
            self.saved_rows = int(rows)
            self._write_meta(len(self.leaves), clean=True, saved=rows)
            self.dirty = False

    def close(self) -> None:
        if self._map is not None:
            self._map.flush()
            self._map = None
        self.leaves = np.zeros(0, np.float32)

    def __repr__(self) -> str:
        return f"<Priorities {self.where} alpha={self.alpha} slots={len(self.leaves)} persisted={self.persisted}>"


def check_priorities(values: Any, ids: np.ndarray, where: str) -> np.ndarray:
    """``values`` as float64 of ``ids``' shape, finite and >= 0, or a SamplerError naming the
    offending ids."""
    p = np.asarray(values, dtype=np.float64)
    if p.ndim == 0:
        p = np.full(ids.shape, float(p))
    if p.shape != ids.shape:
        raise SamplerError(f"{where}: {len(ids)} row ids but priorities of shape {p.shape}; give one "
                           "priority per id")
    bad = ~np.isfinite(p) | (p < 0)
    if bad.any():
        k = np.flatnonzero(bad)
        shown = ", ".join(f"{int(ids[i])}: {float(p[i])}" for i in k[:5])
        raise SamplerError(f"{where}: priorities must be finite and >= 0; row ids {shown}"
                           + (f" and {len(k) - 5} more" if len(k) > 5 else ""))
    return p
