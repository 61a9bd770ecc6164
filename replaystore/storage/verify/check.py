"""Checking one committed state of a store against its files, block by block.

A block of rows is *damaged data* only when its bytes cannot be read, or do not match a
checksum record that passed its own check word. A block without a usable record (the
checksum file is missing, the record is zeroed or fails its check word) is *side-file
damage*: the rows are kept, and their checksums are rebuilt from the data.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ReplayStoreError
from .. import layout
from ..backends import LocalBackend
from ..fieldio import ChunkCache, ChunkedField, ZarrArrays, open_field
from ..files import read_json
from ..integrity import BlockChecksums, Records
from ..mapping import MADV_NORMAL
from ..metadata import load_meta
from ..ring import committed_intervals, logical_range
from ..schema import Field, Schema
from .report import Damage, SideDamage

__all__ = ["FieldReader", "StateCheck", "check_state", "merge_damage", "dropped_ranges", "RETRY_LIMIT"]

#: times a block that does not match is re-checked while another process writes the store
RETRY_LIMIT = 200


class FieldReader:
    """Reads physical rows of one field from its files (through the field's FieldIO),
    reporting damage instead of failing. A missing chunk reads as the fill value here (the
    checksum decides whether that is what was stored)."""

    def __init__(self, root: Path, f: Field, capacity: int | None, extent: int) -> None:
        backend = LocalBackend(root)
        self.field = f
        self.fio = open_field(backend, f, capacity=capacity, extent=extent,
                              arrays=ZarrArrays(backend, writable=False), cache=ChunkCache(64 << 20),
                              advice=MADV_NORMAL, hugepages=False)
        if isinstance(self.fio, ChunkedField):
            self.fio.absent_is_fill = True

    def read(self, a: int, b: int) -> tuple[bytes | None, str | None]:
        try:
            return self.fio.read_bytes(a, b), None
        except (OSError, ValueError, MemoryError) as e:
            return None, str(e)

    def absent(self, a: int, b: int) -> list[str]:
        try:
            return self.fio.absent_chunks(a, b)
        except OSError:
            return []

    def invalidate(self) -> None:
        self.fio.invalidate()

    def close(self) -> None:
        self.fio.close()


@dataclass
class StateCheck:
    """The result of checking one ``(meta, state)`` against the files."""

    meta: dict
    state: dict
    schema: Schema | None = None
    capacity: int | None = None
    problems: list[str] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    side: list[SideDamage] = field(default_factory=list)
    rows_checked: int = 0
    blocks_checked: int = 0

    @property
    def clean(self) -> bool:
        """Every committed row verified against a checksum it can be sure of."""
        return not self.problems and not self.damage and not any(
            s.action in ("checksums", "array_meta") for s in self.side)


def _chunk_rows_on_disk(root: Path, f: Field) -> int:
    """Physical rows the field's chunk files could hold (highest chunk number + 1, whole
    chunks): rows past it have no file at all."""
    try:
        names = os.listdir(root / f.name / "c")
    except OSError:
        return 0
    ks = [int(n) for n in names if n.isdigit() and len(n) < 19]
    return (max(ks) + 1) * f.chunk_rows if ks else 0


def _array_meta(root: Path, f: Field) -> tuple[dict | None, str | None]:
    am = root / f.name / "zarr.json"
    try:
        doc = read_json(am, what=f"array metadata of {f.name!r}")
        shape = doc["shape"]
        chunks = doc["chunk_grid"]["configuration"]["chunk_shape"]
        if chunks != [f.chunk_rows, *f.shape] or list(shape[1:]) != list(f.shape):
            return None, f"{am}: chunks {chunks} and shape {shape} do not match the field list"
        if not isinstance(shape[0], int) or isinstance(shape[0], bool) or shape[0] < 0:
            return None, f"{am}: shape {shape} is not a row count"
        return doc, None
    except (OSError, KeyError, TypeError, IndexError, ReplayStoreError) as e:
        return None, f"array metadata unreadable: {e}"


def _live_floor(root: Path) -> int:
    """The writer's ``.live`` floor (0 when there is none)."""
    try:
        fd = os.open(root / layout.LIVE, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return 0
    try:
        if not os.fstat(fd).st_mode & 0o170000 == 0o100000:
            return 0
        return int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little", signed=True)
    finally:
        os.close(fd)


def check_state(root: Path, meta: dict, state: dict, *, live_writer: bool) -> StateCheck:
    """Check every committed block of every field of ``state`` (see the module docstring).
    ``live_writer``: another process writes the store; blocks that do not match are
    re-checked against the newest committed state before they count as damaged."""
    out = StateCheck(meta, state)
    try:
        out.schema = Schema.from_json(meta["fields"])
        out.capacity = meta.get("capacity")
        int(state["total"]), int(state["size"]), int(state.get("generation", 0))
    except (KeyError, TypeError, ValueError, ReplayStoreError) as e:
        out.problems.append(f"metadata is inconsistent: {e}")
        return out
    for f in out.schema:
        _check_field(root, f, out, live_writer=live_writer)
    out.damage = merge_damage(out.damage)
    return out


class _Unverified:
    """Rows of one field kept without verification, by reason."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def add(self, reason: str, n: int) -> None:
        self.rows[reason] = self.rows.get(reason, 0) + n


def _check_field(root: Path, f: Field, out: StateCheck, *, live_writer: bool) -> None:
    state, cap = out.state, out.capacity
    total, size = int(state["total"]), int(state["size"])
    doc, err = _array_meta(root, f)
    want_rows = total if cap is None else cap
    if doc is None and f.compressed:
        out.damage.append(Damage(f.name, 0, size, err or "array metadata unreadable"))
        return
    if doc is None or (doc["shape"][0] < want_rows if cap is None else doc["shape"][0] != cap):
        why = err or f"the array holds {doc['shape'][0]:,} rows; the committed state names {want_rows:,}"
        if f.compressed:  # zarr reads no rows past the array's shape
            limit_rows = doc["shape"][0]
        else:
            limit_rows = None
            out.side.append(SideDamage(f"array metadata of {f.name!r}", f"{why}; rewritten from the "
                                       "field list", "array_meta", f.name))
    else:
        limit_rows = None
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    mark = attrs.get(layout.ARRAY_ATTR) if isinstance(attrs, dict) else None
    marked = isinstance(mark, dict) and mark.get("every_chunk_written") is True
    crc = BlockChecksums(root, f, writable=False)
    recs = crc.load()
    br = crc.block_rows
    # physical rows past which no file holds anything: no block is read there
    # (or no record: a compressed chunk that is missing may hold only the fill value)
    limit = max(_chunk_rows_on_disk(root, f), len(recs) * br)
    if limit_rows is not None:
        limit = min(limit, limit_rows)
    reader = FieldReader(root, f, cap, total if cap is None else min(total, cap))
    unverified = _Unverified()
    missing_chunks: set[str] = set()
    try:
        for lo, hi in committed_intervals(total, size, cap):
            if min(hi, limit) < hi:
                a = max(lo, limit)
                la, lb = logical_range(a, hi, total=total, size=size, capacity=cap)
                out.damage.append(Damage(f.name, la, lb, f"no chunk file holds physical rows {a}..{hi - 1}"))
            for blk in range(lo // br, (min(hi, limit) - 1) // br + 1) if min(hi, limit) > lo else ():
                _check_one(root, f, blk, br, out, reader, crc, recs, unverified, missing_chunks,
                           marked, live_writer)
    finally:
        reader.close()
    if recs.missing:
        unverified.rows = {"its checksum file is missing": sum(unverified.rows.values())}
    elif not unverified.rows and len(recs) and not live_writer:
        # a record no block needed fails its check word (one a commit that was never
        # published left, with a newer generation, is no damage: the next writer clears it).
        # Not while another process writes: a record it is writing reads torn, and no
        # block needed it (the blocks were checked, and re-checked as they moved).
        gen = int(state.get("generation", 0))
        stale = (~recs.trusted) & (recs.slots["generation"] <= gen)
        if stale.any():
            out.side.append(SideDamage(
                f"checksums of field {f.name!r}", f"{int(stale.sum())} unused checksum record(s) "
                "fail their own check: checksums rebuilt from the data", "checksums", f.name))
    for reason, n in unverified.rows.items():
        if not n:
            continue
        out.side.append(SideDamage(
            f"checksums of field {f.name!r}", f"{reason}: checksums rebuilt from the data; "
            f"those {n:,} rows could not be verified", "checksums", f.name, unverified=n))
    for key in sorted(missing_chunks):
        out.side.append(SideDamage(f"chunk {key}", "is missing; its rows verify as the fill value: "
                                   "the chunk is written again", "chunk", key))


def _check_one(root: Path, f: Field, blk: int, br: int, out: StateCheck, reader: FieldReader,
               crc: BlockChecksums, recs: Records, unverified: _Unverified, missing_chunks: set[str],
               marked: bool, live_writer: bool) -> None:
    """Check one block (re-checking it against newer states while another process writes)."""
    state, cap = out.state, out.capacity
    tries = 0
    while True:
        total, size, gen = int(state["total"]), int(state["size"]), int(state.get("generation", 0))
        pieces = [(max(x, blk * br), min(y, (blk + 1) * br)) for x, y in committed_intervals(total, size, cap)
                  if max(x, blk * br) < min(y, (blk + 1) * br)]
        if not pieces:
            return  # evicted meanwhile
        if tries:
            recs = crc.block_slots(blk)
            exp = recs.expected(0, gen, br)
        else:
            exp = recs.expected(blk, gen, br)
        verdict, err = _verdict(reader, pieces, exp)
        if verdict == "ok" or not live_writer or tries >= RETRY_LIMIT:
            break
        # another process writes: is there a newer committed state to check the block against?
        tries += 1
        try:
            fresh = load_meta(root)[1]
        except ReplayStoreError:
            break
        if int(fresh.get("generation", 0)) == gen and tries > 1 and \
                _live_floor(root) <= total - size:
            break  # the state did not move: the answer stands
        state = fresh
        reader.invalidate()
    out.blocks_checked += 1
    rows = sum(y - x for x, y in pieces)
    if verdict == "ok":
        out.rows_checked += rows
        if marked:
            missing_chunks.update(k for x, y in pieces for k in reader.absent(x, y))
        return
    if verdict == "unverified":
        unverified.add(err, rows)
        return
    for x, y in pieces:
        la, lb = logical_range(x, y, total=total, size=size, capacity=cap)
        out.damage.append(Damage(f.name, la, lb, err))


def _verdict(reader: FieldReader, pieces: list[tuple[int, int]], exp) -> tuple[str, str]:
    """``("ok" | "damaged" | "unverified", reason)`` of one block."""
    value, rows = 0, 0
    for x, y in pieces:
        data, err = reader.read(x, y)
        if err:
            return "damaged", err
        value = zlib.crc32(data, value)
        rows += y - x
    if exp.want is None:
        return "unverified", "no usable checksum is recorded for some blocks"
    if (value, rows) == exp.want:
        return "ok", ""
    if not exp.sure:
        return "unverified", "some checksum records fail their own check"
    absent = [k for x, y in pieces for k in reader.absent(x, y)]
    return "damaged", (f"chunk file {absent[0]} is missing" if absent
                       else "checksum mismatch (data changed on disk)")


def merge_damage(damage: list[Damage]) -> list[Damage]:
    """Adjacent or overlapping ranges of one field with one reason, merged."""
    damage = sorted(damage, key=lambda d: (d.field, d.start))
    out: list[Damage] = []
    for d in damage:
        if out and out[-1].field == d.field and out[-1].reason == d.reason and out[-1].stop >= d.start:
            out[-1].stop = max(out[-1].stop, d.stop)
        else:
            out.append(d)
    return out


def dropped_ranges(damage: list[Damage]) -> list[tuple[int, int]]:
    """The logical rows any field has damaged, merged into ranges."""
    out: list[tuple[int, int]] = []
    for a, b in sorted((d.start, d.stop) for d in damage if d.stop > d.start):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out

