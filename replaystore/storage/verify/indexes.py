"""Checking what readers trust besides the rows: class indexes and the ``.live`` floor.

A class index (``_index/<name>/``) must hold every committed row id it covers in exactly
one class, in ascending order, with counts that match its id lists; for indexes keyed by a
field (or the reward's sign) each id's key value must be its class. The ``.live`` floor of
a ring must be a sane floor for the committed state (not above its oldest row). Damage to
either is side-file damage: repair removes the index (it is rebuilt when next used) or
resets the floor; no row is dropped for it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from ...errors import ReplayStoreError, SamplerError
from .. import layout
from ..files import read_json
from ..index import MAX_CLASSES, KeySpec
from ..ring import physical_ranges
from ..schema import Schema
from .check import FieldReader
from .report import SideDamage

__all__ = ["check_indexes", "check_live"]


class _Bad(Exception):
    pass


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _read_ids(path: Path, n: int, phys: np.ndarray) -> np.ndarray:
    """int64 ids at physical positions ``phys`` of a class array with ``n`` positions
    readable, read from its chunk files (regular files of whole chunks only)."""
    doc = read_json(path / "zarr.json", what="index class array metadata")
    try:
        cr = int(doc["chunk_grid"]["configuration"]["chunk_shape"][0])
    except (KeyError, TypeError, IndexError, ValueError):
        raise _Bad(f"{path}/zarr.json: no chunk shape") from None
    if cr <= 0:
        raise _Bad(f"{path}/zarr.json: chunk shape {cr}")
    out = np.empty(len(phys), np.int64)
    if not len(phys):
        return out
    ck = phys // cr
    for k in np.unique(ck).tolist():
        key = path / "c" / str(k)
        try:
            st = os.lstat(key)
        except OSError:
            raise _Bad(f"{key}: chunk {k} of the class array is missing") from None
        if not stat.S_ISREG(st.st_mode) or st.st_size != cr * 8:
            raise _Bad(f"{key}: chunk {k} of the class array is not a regular file of {cr * 8} bytes")
        with open(key, "rb") as fh:
            chunk = np.frombuffer(fh.read(cr * 8), "<i8")
        sel = ck == k
        out[sel] = chunk[phys[sel] - k * cr]
    return out


def check_indexes(root: Path, schema: Schema, capacity: int | None, state: dict) -> list[SideDamage]:
    """Every class index under ``_index/`` against the committed rows and the key field."""
    base = root / layout.INDEX_DIR
    try:
        st = os.lstat(base)
    except OSError:
        return []
    if not stat.S_ISDIR(st.st_mode):
        return [SideDamage(f"{layout.INDEX_DIR}/", "is not a directory; removed (class indexes are "
                           "rebuilt when next used)", "index", layout.INDEX_DIR)]
    out = []
    keys: dict[tuple[str, str], np.ndarray] = {}  # (kind, field) -> key of live rows
    for name in sorted(os.listdir(base)):
        if name.startswith(".") or name == layout.GROUP_META:
            continue
        try:
            _check_index(root, base / name, schema, capacity, state, keys)
        except (_Bad, ReplayStoreError, OSError, ValueError, TypeError, KeyError) as e:
            out.append(SideDamage(f"class index {name!r}", f"{e}; removed (it is rebuilt when next "
                                  "used)", "index", name))
    return out


def _check_index(root: Path, path: Path, schema: Schema, capacity: int | None, state: dict,
                 keys: dict) -> None:
    if path.is_symlink() or not path.is_dir():
        raise _Bad(f"{path} is not a directory")
    doc = read_json(path / "zarr.json", what="index metadata")
    attrs = doc.get("attributes", {}).get(layout.INDEX_ATTR) if isinstance(doc, dict) else None
    if not isinstance(attrs, dict):
        raise _Bad("its metadata has no index attributes")
    try:
        spec = KeySpec.from_json(attrs.get("key"))
    except SamplerError as e:
        raise _Bad(f"its key is malformed: {e}") from None
    if layout.index_key(spec.name) != f"{layout.INDEX_DIR}/{path.name}":
        raise _Bad(f"it is keyed {spec.name!r} but lives in {path.name!r}")
    classes, counts, covered = attrs.get("classes"), attrs.get("counts"), attrs.get("covered")
    if not (isinstance(classes, list) and isinstance(counts, list) and len(classes) == len(counts)
            and len(classes) <= MAX_CLASSES and all(map(_is_int, classes)) and all(map(_is_int, counts))
            and len(set(classes)) == len(classes) and all(c >= 0 for c in counts) and _is_int(covered)):
        raise _Bad("its classes / counts / covered are malformed")
    total, size = int(state["total"]), int(state["size"])
    if not 0 <= covered <= total:
        raise _Bad(f"it covers {covered:,} rows; the store has {total:,}")
    if sum(counts) > covered:
        raise _Bad(f"its counts add up to {sum(counts):,} ids, more than the {covered:,} rows it covers")
    lo = total - size
    live_lists = []
    for j, n in enumerate(counts):
        stored = n if capacity is None else min(n, capacity)
        first = n - stored
        pos = np.arange(first, n, dtype=np.int64)
        phys = pos % capacity if capacity is not None else pos
        ids = _read_ids(path / f"c{j}", stored, phys) if stored else np.empty(0, np.int64)
        if len(ids) > 1 and not (np.diff(ids) > 0).all():
            raise _Bad(f"the ids of class {classes[j]} are not ascending (counts or ids damaged)")
        if len(ids) and (ids[0] < 0 or ids[-1] >= covered):
            raise _Bad(f"class {classes[j]} holds ids outside 0..{covered - 1}")
        live_lists.append(ids[ids >= lo])
    if covered <= lo:
        return
    live = np.concatenate(live_lists) if live_lists else np.empty(0, np.int64)
    if len(live) != covered - lo or not np.array_equal(np.sort(live), np.arange(lo, covered)):
        raise _Bad(f"its classes do not hold each of the rows {lo:,}..{covered - 1:,} exactly once "
                   f"({len(live):,} ids for {covered - lo:,} rows)")
    if spec.kind == "callable":
        return  # (the key function is the user's: only the structure can be checked)
    fname = spec.field if spec.kind == "field" else "reward"
    if fname not in schema:
        raise _Bad(f"it is keyed by field {fname!r}, which the store does not have")
    key = keys.get((spec.kind, fname))
    if key is None or len(key) < covered - lo:
        key = keys[(spec.kind, fname)] = _keys(root, schema, capacity, state, spec, lo, covered)
    for j, ids in enumerate(live_lists):
        bad = key[ids - lo] != classes[j]
        if bad.any():
            g = int(ids[np.argmax(bad)])
            raise _Bad(f"row {g} is listed in class {classes[j]} but its {fname!r} is of class "
                       f"{int(key[g - lo])}")


def _keys(root: Path, schema: Schema, capacity: int | None, state: dict, spec: KeySpec,
          lo: int, hi: int) -> np.ndarray:
    """The class of every row id in ``[lo, hi)``."""
    f = schema[spec.field if spec.kind == "field" else "reward"]
    total, size = int(state["total"]), int(state["size"])
    reader = FieldReader(root, f, capacity, total if capacity is None else min(total, capacity))
    first = total - size
    try:
        parts = []
        for a, b in physical_ranges(lo - first, hi - first, total=total, size=size, capacity=capacity):
            data, err = reader.read(a, b)
            if err:
                raise _Bad(f"its key field {f.name!r} cannot be read: {err}")
            parts.append(np.frombuffer(data, f.dtype.newbyteorder("<")))
        values = np.concatenate(parts) if parts else np.empty(0, f.dtype)
    finally:
        reader.close()
    return spec.keys({f.name: values})


def check_live(root: Path, capacity: int | None, state: dict) -> list[SideDamage]:
    """The ``.live`` floor of a ring: a regular file whose floor is not above the oldest
    committed row (readers would take live rows for torn ones)."""
    if capacity is None:
        return []
    path = root / layout.LIVE
    try:
        st = os.lstat(path)
    except OSError:
        return []
    want = int(state["total"]) - int(state["size"])
    if not stat.S_ISREG(st.st_mode) or st.st_size != 16:
        return [SideDamage(layout.LIVE, "is not a 16-byte regular file; replaced (floor "
                           f"{want:,})", "live", str(want))]
    with open(path, "rb") as fh:
        floor = int.from_bytes(fh.read(8), "little", signed=True)
    if 0 <= floor <= want:
        return []
    return [SideDamage(layout.LIVE, f"floor {floor:,} is not a floor for the committed rows "
                       f"{want:,}..{int(state['total']) - 1:,}; reset to {want:,}", "live", str(want))]
