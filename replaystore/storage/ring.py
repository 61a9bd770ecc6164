"""Pure index arithmetic for ring (FIFO) and unbounded stores. No I/O here.

A store keeps three counters together: ``total`` (rows ever written), ``size``
(rows currently readable) and ``cursor`` (physical row the next write goes to).
Logical row 0 is always the oldest readable row.

>>> physical_rows(np.array([0, 1, 2]), total=7, size=5, capacity=5)
array([2, 3, 4])
>>> write_segments(total=3, n=4, capacity=5)
[(0, 2, 3), (2, 4, 0)]
"""

from __future__ import annotations

import numpy as np

__all__ = ["physical_rows", "write_segments", "physical_ranges", "oldest_physical",
           "committed_intervals", "logical_range"]


def oldest_physical(total: int, size: int, capacity: int | None) -> int:
    """Physical row of logical row 0."""
    if capacity is None:
        return total - size
    return (total - size) % capacity


def physical_rows(logical: np.ndarray, *, total: int, size: int, capacity: int | None) -> np.ndarray:
    """Map logical row numbers (already bounds-checked, ``0 <= i < size``) to physical rows."""
    logical = np.asarray(logical, dtype=np.int64)
    start = oldest_physical(total, size, capacity)
    if capacity is None:
        return logical + start if start else logical
    phys = logical + start
    if start:
        phys[phys >= capacity] -= capacity
    return phys


def physical_ranges(
    start: int, stop: int, *, total: int, size: int, capacity: int | None
) -> list[tuple[int, int]]:
    """Physical ``[a, b)`` ranges covering logical rows ``[start, stop)`` in order (1 or 2 ranges)."""
    if stop <= start:
        return []
    first = oldest_physical(total, size, capacity) + start
    if capacity is None:
        return [(first, first + (stop - start))]
    first %= capacity
    n = stop - start
    if first + n <= capacity:
        return [(first, first + n)]
    return [(first, capacity), (0, n - (capacity - first))]


def write_segments(*, total: int, n: int, capacity: int | None) -> list[tuple[int, int, int]]:
    """Where ``n`` new rows land: a list of ``(src_start, src_stop, dst_physical_start)``.

    For a ring, rows that would be overwritten within the same batch are skipped, so at
    most ``capacity`` rows are written.
    """
    if n <= 0:
        return []
    if capacity is None:
        return [(0, n, total)]
    skip = max(0, n - capacity)
    src, pos = skip, (total + skip) % capacity
    segments = []
    while src < n:
        m = min(n - src, capacity - pos)
        segments.append((src, src + m, pos))
        src += m
        pos = (pos + m) % capacity
    return segments


def committed_intervals(total: int, size: int, capacity: int | None) -> list[tuple[int, int]]:
    """Physical row intervals holding the ``size`` newest rows, in physical order.

    >>> committed_intervals(7, 5, 5)
    [(0, 2), (2, 5)]
    """
    if size <= 0:
        return []
    if capacity is None:
        return [(total - size, total)]
    start = (total - size) % capacity
    end = start + size
    if end <= capacity:
        return [(start, end)]
    return [(0, end - capacity), (start, capacity)]


def logical_range(phys_a: int, phys_b: int, *, total: int, size: int,
                  capacity: int | None) -> tuple[int, int]:
    """Logical rows of the physical rows ``[phys_a, phys_b)`` (which must not wrap)."""
    oldest = oldest_physical(total, size, capacity)
    la = phys_a - oldest if capacity is None else (phys_a - oldest) % capacity
    return la, la + (phys_b - phys_a)
