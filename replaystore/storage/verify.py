"""Check every chunk of a store against its checksums, and repair by truncation.

>>> import tempfile, gymnasium as gym, numpy as np, replaystore as rs
>>> p = tempfile.mkdtemp() + "/s"
>>> with rs.create(p, gym.spaces.Discrete(4), gym.spaces.Discrete(2)) as s:
...     s.extend({"obs": [0, 1], "action": [0, 1], "reward": [0.0, 1.0], "next_obs": [1, 2],
...               "terminated": [False, True], "truncated": [False, False]})
>>> verify(p).ok
True
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptStoreError, NotAStoreError, ReplayStoreError, StoreModeError
from . import layout
from .backends import LocalBackend, is_local_dir, is_url
from .fieldio import ChunkCache, ZarrArrays, open_field
from .files import atomic_write_json, read_json
from .integrity import BlockChecksums, changed_blocks
from .mapping import MADV_NORMAL
from .metadata import META_KEY, STATE_KEY, load_meta, write_backup
from .ring import committed_intervals, logical_range
from .schema import Field, Schema

__all__ = ["verify", "VerifyReport", "Damage"]


@dataclass
class Damage:
    """Damaged logical rows ``[start, stop)`` of one field (or of the metadata)."""

    field: str
    start: int
    stop: int
    reason: str

    def __str__(self) -> str:
        rows = f"rows {self.start}..{self.stop - 1}" if self.stop > self.start else "no rows"
        return f"{self.field}: {rows}: {self.reason}"


@dataclass
class VerifyReport:
    path: str
    ok: bool = True
    rows: int = 0
    rows_checked: int = 0
    blocks_checked: int = 0
    problems: list[str] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    repaired: str | None = None

    def lines(self) -> list[str]:
        out = [f"{self.path}: {'OK' if self.ok else 'DAMAGED'} — {self.rows:,} committed rows, "
               f"{self.blocks_checked:,} blocks checked"]
        out += [f"  metadata: {p}" for p in self.problems]
        out += [f"  {d}" for d in self.damage]
        if self.repaired:
            out.append(f"  repaired: {self.repaired}")
        return out


def _load(root: Path, report: VerifyReport) -> tuple[dict, dict] | None:
    try:
        return load_meta(root)
    except NotAStoreError:
        raise
    except ReplayStoreError as e:
        report.problems.append(f"zarr.json: {e}")
        bak = root / layout.BACKUP
        try:
            doc = json.loads(bak.read_text())
            attrs = doc["attributes"]
            meta, state = attrs[META_KEY], attrs[STATE_KEY]
            report.problems.append(f"{bak.name} holds the metadata of commit {state.get('generation')}")
            return meta, state
        except (OSError, ValueError, KeyError, TypeError):
            report.problems.append("no usable backup (.zarr.json.bak) either")
            return None


class _FieldReader:
    """Reads physical rows of one field from its files (through the field's FieldIO),
    reporting damage instead of failing."""

    def __init__(self, root: Path, f: Field, capacity: int | None, extent: int) -> None:
        backend = LocalBackend(root)
        self.fio = open_field(backend, f, capacity=capacity, extent=extent,
                              arrays=ZarrArrays(backend, writable=False), cache=ChunkCache(64 << 20),
                              advice=MADV_NORMAL, hugepages=False)

    def read(self, a: int, b: int) -> tuple[bytes | None, str | None]:
        try:
            return self.fio.read_bytes(a, b), None
        except OSError as e:
            return None, str(e)

    def absent(self, a: int, b: int) -> list[str]:
        """Chunk files of these rows that zarr may have left out (they read as the fill
        value: the checksum decides whether that is what was stored)."""
        return self.fio.absent_chunks(a, b)

    def close(self) -> None:
        self.fio.close()


def verify(path: str | os.PathLike, *, repair: bool = False) -> VerifyReport:
    """Check the metadata and every committed block of every field against its checksum.

    With ``repair=True`` a damaged store is truncated to its longest undamaged prefix of
    rows (oldest first); the report says what was dropped. A store that is already open
    for writing elsewhere should not be repaired.
    """
    if is_url(path) or not is_local_dir(path):
        raise StoreModeError(
            f"{path}: verify checks local directory stores (their checksums); unpack a .zip "
            "or copy a remote store to a local directory first"
        )
    root = Path(path)
    report = VerifyReport(str(root))
    loaded = _load(root, report)
    if loaded is None:
        report.ok = False
        return report
    meta, state = loaded
    try:
        schema = Schema.from_json(meta["fields"])
        cap = meta.get("capacity")
        total, size = int(state["total"]), int(state["size"])
        int(state.get("generation", 0))  # (used per block; a bad value is reported here)
    except (KeyError, TypeError, ValueError, ReplayStoreError) as e:
        report.problems.append(f"metadata is inconsistent: {e}")
        report.ok = False
        return report
    report.rows = size
    if size < 0 or size > total or (cap is not None and (size > cap or state.get("cursor") != total % cap)):
        report.problems.append(f"committed state is inconsistent: size {size}, total {total}, "
                               f"cursor {state.get('cursor')}, capacity {cap}")
    held = _rows_held(root, schema)
    if cap is None and held is not None and total > held:
        # a state naming rows no array holds: checking (or repairing) block by block would
        # walk rows that do not exist
        report.problems.append(f"committed state says {total:,} rows were written, but the field "
                               f"arrays hold {held:,}")
        report.ok = False
        if repair:
            report.repaired = ("not repaired: the committed state does not match the arrays; "
                               "restore zarr.json from a copy of the store")
        return report
    intervals = committed_intervals(total, size, cap)
    for f in schema:
        _check_field(root, f, cap, state, intervals, report)
    report.damage = _merge(report.damage)
    report.ok = not report.damage and not report.problems
    if repair and not report.ok:
        _repair(root, meta, state, schema, report)
    return report


def _check_field(root: Path, f: Field, cap: int | None, state: dict,
                 intervals: list[tuple[int, int]], report: VerifyReport) -> None:
    """Every committed block of field ``f`` against its checksum; damage goes to ``report``."""
    total, size, gen = int(state["total"]), int(state["size"]), int(state.get("generation", 0))
    am = root / f.name / "zarr.json"
    try:
        doc = read_json(am, what=f"array metadata of {f.name!r}")
        ok_shape = doc["chunk_grid"]["configuration"]["chunk_shape"] == [f.chunk_rows, *f.shape]
        if not ok_shape or (cap is None and doc["shape"][0] < 0):
            raise CorruptStoreError(f"{am}: chunking does not match the store's field list")
    except (OSError, KeyError, TypeError, ReplayStoreError) as e:
        report.damage.append(Damage(f.name, 0, size, f"array metadata unreadable: {e}"))
        return
    crc = BlockChecksums(root, f, writable=False)
    records = crc.records()
    reader = _FieldReader(root, f, cap, total if cap is None else min(total, cap))
    br = crc.block_rows
    bad: list[tuple[int, int, str]] = []
    for lo, hi in intervals:
        for blk in range(lo // br, (hi - 1) // br + 1):
            a, b = max(lo, blk * br), min(hi, (blk + 1) * br)
            report.blocks_checked += 1
            pieces = [(max(x, blk * br), min(y, (blk + 1) * br)) for x, y in intervals
                      if max(x, blk * br) < min(y, (blk + 1) * br)]
            err = _check_block(reader, pieces, crc.expected(blk, gen, records))
            if err:
                bad.append((a, b, err))
            else:
                report.rows_checked += b - a
    reader.close()
    for a, b, err in bad:
        la, lb = logical_range(a, b, total=total, size=size, capacity=cap)
        report.damage.append(Damage(f.name, la, lb, err))


def _check_block(reader: _FieldReader, pieces: list[tuple[int, int]],
                 want: tuple[int, int] | None) -> str | None:
    """What is wrong with one checksum block (its committed ``pieces``), or None."""
    value, rows = 0, 0
    for x, y in pieces:
        data, err = reader.read(x, y)
        if err:
            return err
        value = zlib.crc32(data, value)
        rows += y - x
    if want is None:
        return "no checksum recorded for this block"
    if (value, rows) != want:
        absent = [k for x, y in pieces for k in reader.absent(x, y)]
        return f"chunk file {absent[0]} is missing" if absent else "checksum mismatch (data changed on disk)"
    return None


def _rows_held(root: Path, schema: Schema) -> int | None:
    """The fewest rows any field's array metadata says it holds (None if unreadable)."""
    held = None
    for f in schema:
        try:
            rows = read_json(root / f.name / "zarr.json", what=f"array metadata of {f.name!r}")["shape"][0]
        except (OSError, KeyError, TypeError, IndexError, ReplayStoreError):
            continue
        if isinstance(rows, int):
            held = rows if held is None else min(held, rows)
    return held


def _merge(damage: list[Damage]) -> list[Damage]:
    damage = sorted(damage, key=lambda d: (d.field, d.start))
    out: list[Damage] = []
    for d in damage:
        if out and out[-1].field == d.field and out[-1].reason == d.reason and out[-1].stop >= d.start:
            out[-1].stop = max(out[-1].stop, d.stop)
        else:
            out.append(d)
    return out


def _repair(root: Path, meta: dict, state: dict, schema: Schema, report: VerifyReport) -> None:
    backend = LocalBackend(root)
    lock = backend.lock()
    try:
        cap = meta.get("capacity")
        total, size = int(state["total"]), int(state["size"])
        keep = min([d.start for d in report.damage] + [size])
        new_total = total - (size - keep)
        new_state = {**state, "size": keep, "total": new_total,
                     "cursor": new_total % cap if cap is not None else new_total,
                     "generation": int(state.get("generation", 0)) + 1}
        before = committed_intervals(total, size, cap)
        after = committed_intervals(new_total, keep, cap)
        for f in schema:
            crc = BlockChecksums(root, f, writable=True)
            reader = _FieldReader(root, f, cap, total if cap is None else min(total, cap))

            def read(a: int, b: int, reader=reader, name=f.name) -> bytes:
                data, err = reader.read(a, b)
                if err:
                    raise CorruptStoreError(f"{root}: cannot re-checksum kept rows of {name!r}: {err}")
                return data

            crc.update(changed_blocks(crc.block_rows, before, after, []), after,
                       new_state["generation"], read)
            crc.sync()
            crc.close()
            reader.close()
            if cap is None and not f.compressed:
                am = root / f.name / "zarr.json"
                doc = read_json(am)
                doc["shape"][0] = new_total
                atomic_write_json(am, doc, fsync=True)
        shutil.rmtree(root / layout.INDEX_DIR, ignore_errors=True)  # rebuilt on demand
        doc = layout.group_doc({META_KEY: meta, STATE_KEY: new_state})
        atomic_write_json(root / layout.GROUP_META, doc, fsync=True)
        write_backup(backend, meta, new_state)
        dropped = size - keep
        kept = f"kept rows 0..{keep - 1}" if keep else "kept no rows"
        report.repaired = (f"{kept}, dropped {dropped:,} of {size:,} row(s) (from logical row {keep} on); "
                           "class indexes will be rebuilt")
        if report.problems and not report.damage:
            report.repaired = "restored zarr.json from its backup; no rows dropped"
    finally:
        lock.release()
