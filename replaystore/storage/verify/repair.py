"""Repairing a store: side files from the data in place, damaged rows by a rebuild aside.

Side-file damage (checksums, class indexes, ``.live``, a missing fill-value chunk, array
metadata of an uncompressed field, a state the backup corrects) is repaired in place, each
file replaced atomically; no row is touched. Only when the data itself fails its checksum
is the store rebuilt: every other row is copied, in order and bit for bit, through the
normal writer into a hidden directory next to the store, which then takes the store's
place in one ``renameat2(RENAME_EXCHANGE)``; a kill at any moment leaves the old store or
the repaired one (and a hidden leftover that the next repair removes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np

from ...errors import CorruptStoreError, StoreWriteError
from .. import layout
from ..backends import LocalBackend
from ..files import atomic_write_json, exchange_paths, fsync_dir, pid_alive
from ..integrity import rebuild_checksums
from ..metadata import write_backup, write_group
from ..ring import committed_intervals, physical_ranges
from ..schema import Field
from .check import FieldReader, StateCheck, dropped_ranges
from .report import VerifyReport

__all__ = ["repair", "remove_leftovers"]

_BATCH_BYTES = 32 << 20
_KNOWN = {layout.GROUP_META, layout.BACKUP, layout.LOCK, layout.LIVE, layout.CRC_DIR, layout.INDEX_DIR}


def _aside_prefix(root: Path) -> str:
    return f".{root.name}.repair-"


def remove_leftovers(root: Path) -> None:
    """Remove what killed repairs of this store left next to it (hold the store's lock)."""
    prefix = _aside_prefix(root)
    with contextlib.suppress(OSError):
        for name in os.listdir(root.parent):
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix):-4].split("-")[-1]
            if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                continue
            path = root.parent / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def repair(root: Path, chk: StateCheck, report: VerifyReport, lock) -> None:
    """Repair what ``chk`` found (the caller holds the writer lock ``lock``)."""
    if chk.problems or chk.schema is None:
        report.repaired = ("not repaired: the store's metadata cannot be read; restore zarr.json "
                           "from a copy of the store")
        return
    if chk.damage:
        _rebuild(root, chk, report, lock)
        return
    done = _repair_side(root, chk)
    report.repaired = "no rows dropped; " + "; ".join(done)


# -- side files --------------------------------------------------------------------------
def _strict_reader(root: Path, f: Field, chk: StateCheck) -> tuple[FieldReader, object]:
    total = int(chk.state["total"])
    reader = FieldReader(root, f, chk.capacity, total if chk.capacity is None else min(total, chk.capacity))

    def read(a: int, b: int) -> bytes:
        data, err = reader.read(a, b)
        if err:
            raise CorruptStoreError(f"{root}: cannot read rows of {f.name!r} to checksum them: {err}")
        return data

    return reader, read


def _repair_side(root: Path, chk: StateCheck) -> list[str]:
    meta, state, cap = chk.meta, chk.state, chk.capacity
    total, size, gen = int(state["total"]), int(state["size"]), int(state.get("generation", 0))
    backend = LocalBackend(root)
    done = []
    actions = {s.action for s in chk.side}
    if "state" in actions:
        write_group(backend, meta, state, fsync=True)
        done.append(f"restored zarr.json from its backup (commit {gen})")
    for s in chk.side:
        if s.action == "array_meta":
            f = chk.schema[s.target]
            rows = total if cap is None else cap
            atomic_write_json(root / layout.array_meta_key(f.name),
                              layout.array_doc(f.dtype, f.shape, f.chunk_rows, rows), fsync=True)
            done.append(f"rewrote the array metadata of {f.name!r}")
        elif s.action == "chunk":
            _write_fill_chunk(root, chk, s.target)
            done.append(f"wrote chunk {s.target} (fill value) again")
    for name in sorted({s.target for s in chk.side if s.action == "checksums"}):
        f = chk.schema[name]
        reader, read = _strict_reader(root, f, chk)
        try:
            rebuild_checksums(root, f, committed_intervals(total, size, cap), gen, read)
        finally:
            reader.close()
        done.append(f"checksums of field {name!r} rebuilt from the data")
    for s in chk.side:
        if s.action == "index":
            _remove_index(root, s.target)
            done.append(f"removed class index {s.target!r} (rebuilt when next used)")
        elif s.action == "live":
            _reset_live(root, int(s.target))
            done.append(f"reset .live to {int(s.target):,}")
        elif s.action == "priorities":
            shutil.rmtree(root / s.target)
            done.append(f"removed the damaged priorities {s.target!r} (rows start at priority 1 "
                        "when next sampled)")
    write_backup(backend, meta, state)
    return done


def _write_fill_chunk(root: Path, chk: StateCheck, key: str) -> None:
    import zarr
    from zarr.storage import LocalStore

    name, _, rest = key.partition("/c/")
    f = chk.schema[name]
    k = int(rest.split("/")[0])
    arr = zarr.open_array(store=LocalStore(str(root)), path=name, mode="r+", zarr_format=3)
    arr = arr.with_config({"write_empty_chunks": True})
    lo = k * f.chunk_rows
    hi = min(lo + f.chunk_rows, arr.shape[0])
    arr[lo:hi] = np.zeros((hi - lo, *f.shape), f.dtype)
    LocalBackend(root).fsync(key)


def _remove_index(root: Path, name: str) -> None:
    base = root / layout.INDEX_DIR
    path = base if name == layout.INDEX_DIR else base / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
        return
    if not path.exists():
        return
    trash = path.with_name(layout.temp_name(path.name))  # one rename: the index is gone at once
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _reset_live(root: Path, floor: int) -> None:
    path = root / layout.LIVE
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or (path.exists() and not path.is_file()):
        path.unlink()
    if path.is_file() and path.stat().st_size == 16:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        try:
            os.pwrite(fd, int(floor).to_bytes(8, "little", signed=True), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    tmp = path.with_name(layout.temp_name(path.name))
    tmp.write_bytes(int(floor).to_bytes(8, "little", signed=True) + bytes(8))
    os.replace(tmp, path)


# -- damaged rows: rebuild aside ------------------------------------------------------------
def _rebuild(root: Path, chk: StateCheck, report: VerifyReport, lock) -> None:
    from ..create import create  # (create imports the store: not at module level)

    meta, state, schema, cap = chk.meta, chk.state, chk.schema, chk.capacity
    total, size = int(state["total"]), int(state["size"])
    drops = dropped_ranges(chk.damage)
    keep, pos = [], 0
    for a, b in drops:
        if a > pos:
            keep.append((pos, min(a, size)))
        pos = max(pos, b)
    if pos < size:
        keep.append((pos, size))
    aside = root.parent / f"{_aside_prefix(root)}{os.getpid()}.tmp"
    if aside.exists():
        shutil.rmtree(aside)
    readers = {f.name: FieldReader(root, f, cap, total if cap is None else min(total, cap)) for f in schema}
    try:
        episodes = _dropped_episodes(readers.get("episode"), drops, state, cap)
        plain = [Field(f.name, f.dtype, f.shape, f.chunk_rows, f.codec) for f in schema]
        store = create(aside, fields=plain, capacity=cap, bounds="ignore", nonfinite_rewards="allow")
        try:
            rows_per_batch = max(1, min(65536, _BATCH_BYTES // max(1, sum(f.row_bytes for f in schema))))
            for a, b in keep:
                for s in range(a, b, rows_per_batch):
                    e = min(b, s + rows_per_batch)
                    store.extend({f.name: _rows(readers[f.name], f, s, e, state, cap) for f in schema})
        finally:
            store.close()
    finally:
        for r in readers.values():
            r.close()
    backend = LocalBackend(aside)
    new_state = {**_read_state(aside)}
    for key in ("episode", "step", "next_episode"):
        if key in state and keep and keep[-1][1] == size:
            new_state[key] = state[key]  # the running episode goes on where it was
    new_state["next_episode"] = max(int(new_state.get("next_episode", 1)), int(state.get("next_episode", 1)))
    write_group(backend, meta, new_state, fsync=True)
    write_backup(backend, meta, new_state)
    _copy_extras(root, aside, {f.name for f in schema})
    _exchange(aside, root)
    lock.release()  # (the old store's lock file is in the old store, now at ``aside``)
    shutil.rmtree(aside, ignore_errors=True)
    kept = sum(b - a for a, b in keep)
    ranges = ", ".join(f"{a}..{b - 1}" for a, b in drops[:10]) + (" ..." if len(drops) > 10 else "")
    report.repaired = (f"kept {kept:,} of {size:,} rows, bit for bit; dropped {size - kept:,} "
                       f"damaged row(s) (logical rows {ranges}){episodes}; rebuilt aside and "
                       "swapped in; class indexes will be rebuilt")


def _rows(reader: FieldReader, f: Field, s: int, e: int, state: dict, cap: int | None) -> np.ndarray:
    parts = []
    for x, y in physical_ranges(s, e, total=int(state["total"]), size=int(state["size"]), capacity=cap):
        data, err = reader.read(x, y)
        if err:
            raise StoreWriteError(f"{reader.fio.field.name!r}: rows to keep cannot be read: {err}")
        parts.append(np.frombuffer(data, f.dtype.newbyteorder("<")).reshape(y - x, *f.shape))
    rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return rows.astype(f.dtype, copy=False)


def _dropped_episodes(reader: FieldReader | None, drops, state: dict, cap: int | None) -> str:
    if reader is None or not drops:
        return ""
    eps: set[int] = set()
    unknown = 0
    for a, b in drops:
        for x, y in physical_ranges(a, b, total=int(state["total"]), size=int(state["size"]), capacity=cap):
            for s in range(x, y, 1 << 20):
                data, err = reader.read(s, min(y, s + (1 << 20)))
                if err:
                    unknown += min(y, s + (1 << 20)) - s
                else:
                    eps.update(np.unique(np.frombuffer(data, "<i8")).tolist())
    ids = sorted(eps)
    text = ", ".join(map(str, ids[:20])) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
    out = f"; episodes now missing steps: {text}" if ids else ""
    if unknown:
        out += f" (the episode ids of {unknown:,} dropped rows are unreadable)"
    return out


def _read_state(root: Path) -> dict:
    from ..metadata import load_meta

    return load_meta(root)[1]


def _copy_extras(root: Path, aside: Path, fields: set[str]) -> None:
    """Files a user keeps in the store directory (not the store's own) go along."""
    for name in os.listdir(root):
        if name in _KNOWN or name in fields or layout.is_temp_name(name):
            continue
        src, dst = root / name, aside / name
        if dst.exists():
            continue
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        elif src.is_file():
            shutil.copy2(src, dst)


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories atomically (Linux ``renameat2``), or as close as the platform
    allows (two renames: a kill between them leaves the old store at a hidden name)."""
    if exchange_paths(a, b):
        fsync_dir(b.parent)
        return
    old = b.with_name(f"{_aside_prefix(b)}old-{os.getpid()}.tmp")
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)
    fsync_dir(b.parent)


