"""A sum tree over blocks of leaf weights, for drawing rows in proportion to a weight that
changes (prioritized replay).

The leaves (one ``float32`` weight per row, typically ``priority ** alpha``) stay where they
are -- a memory map of a file in the store, or an array -- and are only scanned a block of
:data:`BLOCK` rows at a time. The tree holds, per block, the sum of its leaves (``float64``)
and their maximum, and above them a complete binary tree of sums and maxima: 2 x 12
bytes per block, under one byte per row. Every internal node is recomputed from its two
children (never incremented), so sums do not drift over millions of updates.

A draw of ``u`` in ``[0, total)`` descends to the block whose cumulative sum passes ``u``,
then scans that block's leaves: the chosen row is the first whose running sum passes
the rest of ``u``. A leaf of weight zero is never chosen, also when rounding puts ``u``
at a block's edge (the draw then takes the nearest positive leaf before it).

The kernels are compiled by numba (``cache=True``: once per installation).

>>> import numpy as np
>>> t = SumTree(np.array([0, 1, 0, 3], np.float32), block=2)
>>> t.total, t.max_leaf
(4.0, 3.0)
>>> t.draw(np.array([0.0, 0.99, 1.0, 3.99])).tolist()
[1, 1, 3, 3]
>>> t.update(np.array([1]), np.array([2.0], np.float32)); t.total
5.0
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["SumTree", "BLOCK"]

#: leaves per block (a block's sum is one tree leaf; a draw scans one block)
BLOCK = 32


@njit(cache=True, nogil=True)
def _build(leaves, block, sums, maxs, cap):  # pragma: no cover - compiled
    n = leaves.shape[0]
    nblocks = (n + block - 1) // block
    for b in range(nblocks):
        s = 0.0
        m = np.float32(0.0)
        for j in range(b * block, min(n, (b + 1) * block)):
            v = leaves[j]
            s += v
            if v > m:
                m = v
        sums[cap + b] = s
        maxs[cap + b] = m
    for b in range(nblocks, cap):
        sums[cap + b] = 0.0
        maxs[cap + b] = 0.0
    for i in range(cap - 1, 0, -1):
        sums[i] = sums[2 * i] + sums[2 * i + 1]
        maxs[i] = max(maxs[2 * i], maxs[2 * i + 1])


@njit(cache=True, nogil=True)
def _descend(leaves, block, sums, cap, u, out):  # pragma: no cover - compiled
    # Breadth-first: every draw takes one level at a time, so the loads of a level are
    # independent (the memory system overlaps their cache misses), and branch-free (which
    # child is a coin flip the branch predictor cannot learn).
    m = u.shape[0]
    n = leaves.shape[0]
    x = u.copy()
    node = np.ones(m, np.int64)
    width = cap
    while width > 1:
        for k in range(m):
            i = node[k]
            left = sums[2 * i]
            xk = x[k]
            right = (xk >= left) & (sums[2 * i + 1] > 0.0)
            node[k] = 2 * i + right
            x[k] = xk - left if right else min(xk, left)
        width //= 2
    for k in range(m):
        lo = (node[k] - cap) * block
        hi = min(n, lo + block)
        c = 0.0
        pick = lo
        last = -1
        xk = x[k]
        for j in range(lo, hi):  # the first leaf whose running sum passes x
            v = leaves[j]
            c += v
            pick += c <= xk
            if v > 0.0:
                last = j
        if pick >= hi or leaves[pick] <= 0.0:  # (rounding at the block's end)
            pick = last
        out[k] = pick


@njit(cache=True, nogil=True)
def _draw(leaves, block, sums, cap, u, out):  # pragma: no cover - compiled
    # in ascending order of u: neighbouring draws share the upper paths and touch the leaves
    # in address order (about 1.5-2x faster with cold caches); results go back in u's order
    order = np.argsort(u)
    found = np.empty(u.shape[0], np.int64)
    _descend(leaves, block, sums, cap, u[order], found)
    for k in range(u.shape[0]):
        out[order[k]] = found[k]


@njit(cache=True, nogil=True)
def _update(leaves, block, sums, maxs, cap, slots, values):  # pragma: no cover - compiled
    n = leaves.shape[0]
    m = slots.shape[0]
    for k in range(m):  # (in order: the last of repeated slots wins)
        leaves[slots[k]] = values[k]
    node = np.empty(m, np.int64)
    blocks = np.sort(slots // block)  # (in address order, as the draws)
    for k in range(m):
        b = blocks[k]
        s = 0.0
        mx = np.float32(0.0)
        for j in range(b * block, min(n, (b + 1) * block)):
            v = leaves[j]
            s += v
            if v > mx:
                mx = v
        sums[cap + b] = s
        maxs[cap + b] = mx
        node[k] = (cap + b) // 2
    # level by level, so a node shared by several slots is recomputed after all its children
    width = cap // 2
    while width >= 1:
        for k in range(m):
            i = node[k]
            sums[i] = sums[2 * i] + sums[2 * i + 1]
            maxs[i] = max(maxs[2 * i], maxs[2 * i + 1])
            node[k] = i // 2
        width //= 2


@njit(cache=True, nogil=True)
def _draw_rows(leaves, block, sums, cap, u, lo, ring, beta, logical, ids, weight):  # pragma: no cover
    # draws, then for each: the stored row id in the slot, its logical row, and the
    # importance weight (p_min / p) ** beta = (N P_i) ** -beta / max_j (N P_j) ** -beta
    m = u.shape[0]
    _draw(leaves, block, sums, cap, u, ids)
    pmin = np.inf
    for k in range(m):
        v = leaves[ids[k]]
        if v < pmin:
            pmin = v
    for k in range(m):
        s = ids[k]
        weight[k] = (pmin / leaves[s]) ** beta
        g = lo + (s - lo) % ring if ring > 0 else s
        ids[k] = g
        logical[k] = g - lo


@njit(cache=True, nogil=True)
def _set(leaves, block, sums, maxs, cap, ids, p, lo, hi, ring, alpha, slots, vals):  # pragma: no cover
    # checks everything first (nothing is written if any id or value is bad: returns its
    # position), then sets priority ** alpha of the ids still stored (>= lo)
    m = ids.shape[0]
    for k in range(m):
        v = p[k]
        if not (v >= 0.0 and v < np.inf) or ids[k] < 0 or ids[k] >= hi:
            return k
    j = 0
    for k in range(m):
        g = ids[k]
        if g < lo:
            continue
        slots[j] = g % ring if ring > 0 else g
        v = p[k]
        vals[j] = (1.0 if v > 0.0 else 0.0) if alpha == 0.0 else v ** alpha
        j += 1
    _update(leaves, block, sums, maxs, cap, slots[:j], vals[:j])
    return -1


class SumTree:
    """Block sums and maxima over ``leaves`` (a 1-D ``float32`` array the tree reads and,
    through :meth:`update`, writes). ``block`` leaves per block."""

    def __init__(self, leaves: np.ndarray, *, block: int = BLOCK) -> None:
        if leaves.dtype != np.float32 or leaves.ndim != 1:
            raise TypeError("leaves must be a 1-D float32 array")
        self.leaves = leaves
        self.block = int(block)
        nblocks = max(1, -(-len(leaves) // self.block))
        self.cap = 1 << (nblocks - 1).bit_length()
        self.sums = np.zeros(2 * self.cap, np.float64)
        self.maxs = np.zeros(2 * self.cap, np.float32)
        _build(leaves, self.block, self.sums, self.maxs, self.cap)

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self.sums[1])

    @property
    def max_leaf(self) -> float:
        """Largest leaf."""
        return float(self.maxs[1])

    def draw(self, u: np.ndarray) -> np.ndarray:
        """Leaf numbers for draws ``u`` in ``[0, total)`` (int64; -1 only if all leaves are 0)."""
        out = np.empty(len(u), np.int64)
        _draw(self.leaves, self.block, self.sums, self.cap, np.ascontiguousarray(u, np.float64), out)
        return out

    def draw_rows(self, u: np.ndarray, lo: int, ring: int, beta: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draws ``u`` as ``(logical rows, row ids, importance weights)``, for leaves by slot
        of a store whose oldest row id is ``lo`` (``ring``: its capacity, 0 if unbounded)."""
        m = len(u)
        logical, ids, weight = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.float32)
        _draw_rows(self.leaves, self.block, self.sums, self.cap, u, lo, ring, beta, logical, ids, weight)
        return logical, ids, weight

    def set_priorities(self, ids: np.ndarray, p: np.ndarray, lo: int, hi: int, ring: int,
                       alpha: float) -> int:
        """Set leaves to ``p ** alpha`` for row ids ``ids`` (int64) with priorities ``p``
        (float64); ids below ``lo`` are skipped. -1, or (nothing set) the position of the
        first id outside ``[0, hi)`` or priority not finite and >= 0."""
        m = len(ids)
        return int(_set(self.leaves, self.block, self.sums, self.maxs, self.cap, ids, p, lo, hi, ring,
                        alpha, np.empty(m, np.int64), np.empty(m, np.float32)))

    def update(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Set ``leaves[slots] = values`` (the last of repeated slots wins) and the sums above."""
        _update(self.leaves, self.block, self.sums, self.maxs, self.cap,
                np.ascontiguousarray(slots, np.int64), np.ascontiguousarray(values, np.float32))
