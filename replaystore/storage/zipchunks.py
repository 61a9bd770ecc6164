"""Which chunk members ``pack`` deflates, and writing files without their zero runs.

Zarr stores every chunk of an uncompressed field padded to the full chunk (up to a
million rows), and local stores leave that padding as holes in sparse files. ``pack``
keeps *full* chunks stored uncompressed (memory-mapped in place) and deflates each field's
partial last chunk (and any chunk past the rows held), so a zip holds no padding; zarr
reads those members transparently. ``unpack`` writes chunk files with holes where they
are zero, so the unpacked store is as small on disk as the one that was packed.

>>> partial_chunks({"capacity": None, "fields": [{"name": "obs", "chunk_rows": 4,
...                 "codec": None, "shape": []}]}, {"total": 6})
{'obs/c/1'}
"""

from __future__ import annotations

from typing import Any, BinaryIO

from .layout import chunk_key

__all__ = ["partial_chunks", "held_rows", "copy_sparse", "HOLE"]

#: zero runs of at least this many bytes (aligned) become holes when unpacking
HOLE = 1 << 16


def held_rows(meta: dict, state: dict) -> int:
    """Physical rows the committed state says the field arrays hold."""
    total = int(state.get("total", 0))
    cap = meta.get("capacity")
    return total if cap is None else min(total, int(cap))


def partial_chunks(meta: dict, state: dict) -> set[str]:
    """Chunk keys of uncompressed fields that are not full of held rows (the last, partial
    chunk of each field, and a ring's chunks not yet written): the members ``pack`` deflates."""
    held, out = held_rows(meta, state), set()
    cap = meta.get("capacity")
    for f in meta.get("fields", []):
        cr = f.get("chunk_rows")
        if f.get("codec") or not isinstance(cr, int) or cr <= 0:
            continue
        last = max(-(-int(cap) // cr) if cap is not None else 0, -(-held // cr))  # chunks there may be
        for k in range(held // cr, last):
            out.add(chunk_key(f["name"], k, len(f.get("shape", []))))
    return out


def copy_sparse(src: BinaryIO, dst: Any, size: int) -> None:
    """Copy ``size`` bytes from ``src`` to the file ``dst``, seeking over aligned zero runs
    of :data:`HOLE` bytes instead of writing them (holes in a sparse file); ``dst`` ends at
    exactly ``size`` bytes. Raises ``EOFError`` if ``src`` ends early."""
    zero = bytes(HOLE)
    left = size
    while left:
        block = src.read(min(left, HOLE))
        if not block:
            raise EOFError(f"the data ended {left:,} bytes early")
        if len(block) == HOLE and block == zero:
            dst.seek(HOLE, 1)
        else:
            dst.write(block)
        left -= len(block)
    dst.truncate(size)
