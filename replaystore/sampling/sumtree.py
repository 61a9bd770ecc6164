"""Sums over blocks of leaf weights that change, for prioritized replay: the weighted
sampler's 8-ary block tree (:mod:`replaystore.sampling.blocktree`) with point updates.

The leaves (one ``float32`` weight per slot, ``priority ** alpha``) stay where they are --
a memory map of the store's ``_priority`` file, or an array -- and are only scanned a
block of 32 slots at a time. The tree keeps the running sums of 8 blocks per node (one
cache line) and of 8 nodes per node above, every value recomputed from the level below
(never incremented), so sums do not drift over millions of updates: about 9 bytes per 32
slots, plus per block its exact sum (so a point update re-sums 32 leaves, not 256) and
maximum, and one maximum per 256 slots, for "the largest priority": 21 bytes per 32 slots. Draws
descend 32 at a time, level by level, with the next level prefetched, so cache misses
overlap (about 3x a binary tree's branch-free descent with the caches a batch read leaves
behind). A leaf of weight zero is never drawn.

The kernels are compiled by numba (``cache=True``: once per installation).

>>> import numpy as np
>>> t = SumTree(np.array([0, 1, 0, 3], np.float32))
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

from .blocktree import BLOCK, FANOUT, BlockTree, draw_rows

__all__ = ["SumTree", "BLOCK"]


@njit(cache=True, nogil=True)
def _blocks(leaves, bsum, bmax, b0, b1):  # pragma: no cover - compiled
    """Sum (sequential, float64: the very sum a draw's scan computes) and maximum of the
    leaves of blocks ``[b0, b1)``."""
    n = leaves.shape[0]
    for b in range(b0, b1):
        s = 0.0
        mx = np.float32(0.0)
        for t in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            v = leaves[t]
            s += v
            if v > mx:
                mx = v
        bsum[b] = s
        bmax[b] = mx


@njit(cache=True, nogil=True)
def _refill(tree, offs, leaves, bsum, bmax, nmax, blocks):  # pragma: no cover - compiled
    """After leaves of ``blocks`` (sorted) changed: their sums, their level-0 nodes' running
    sums and maxima, then each level's touched nodes once (bottom up)."""
    m = blocks.shape[0]
    nodes = np.empty(m, np.int64)
    c = 0
    prev = -1
    for i in range(m):
        b = blocks[i]
        if b == prev:
            continue
        prev = b
        _blocks(leaves, bsum, bmax, b, b + 1)
        k = b // FANOUT
        if c == 0 or nodes[c - 1] != k:
            nodes[c] = k
            c += 1
    nb = bsum.shape[0]
    for i in range(c):  # level 0: running sums of the node's 8 block sums (as a build does)
        k = nodes[i]
        acc = 0.0
        mx = np.float32(0.0)
        for j in range(FANOUT):
            b = k * FANOUT + j
            if b < nb:
                acc += bsum[b]
                if bmax[b] > mx:
                    mx = bmax[b]
            tree[k * FANOUT + j] = acc
        nmax[k] = mx
    for lev in range(1, offs.shape[0] - 1):  # each parent once, from its children's totals
        below = offs[lev - 1]
        nchild = (offs[lev] - below) // FANOUT
        pc = 0
        for i in range(c):
            p = nodes[i] // FANOUT
            if pc and nodes[pc - 1] == p:
                continue
            nodes[pc] = p
            pc += 1
            base = offs[lev] + p * FANOUT
            acc = 0.0
            for j in range(FANOUT):
                ch = p * FANOUT + j
                if ch < nchild:
                    acc += tree[below + ch * FANOUT + FANOUT - 1]
                tree[base + j] = acc
        c = pc


@njit(cache=True, nogil=True)
def _ids_weights(leaves, logical, lo, ring, beta, ids, weight):  # pragma: no cover - compiled
    # the row id and slot of each drawn logical row, and its importance weight
    # (p_min / p) ** beta = (N P_i) ** -beta / max_j (N P_j) ** -beta
    m = logical.shape[0]
    pmin = np.inf
    for k in range(m):
        g = lo + logical[k]
        ids[k] = g
        v = leaves[g % ring if ring > 0 else g]
        weight[k] = v
        if v < pmin:
            pmin = v
    for k in range(m):
        weight[k] = (pmin / weight[k]) ** beta


@njit(cache=True, nogil=True)
def _set(leaves, ids, p, lo, hi, ring, alpha, nodes):  # pragma: no cover - compiled
    # checks everything first (nothing is written if any id or value is bad: returns its
    # position), then sets priority ** alpha of the ids still stored (>= lo); the touched
    # blocks go to ``nodes`` (their count returned as -(count + 2) when all is well)
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
        s = g % ring if ring > 0 else g
        v = p[k]
        leaves[s] = (1.0 if v > 0.0 else 0.0) if alpha == 0.0 else v ** alpha
        nodes[j] = s // BLOCK
        j += 1
    return -(j + 2)


class SumTree:
    """Sums and maxima over ``leaves`` (a 1-D ``float32`` array the tree reads and, through
    :meth:`update` / :meth:`set_priorities`, writes)."""

    def __init__(self, leaves: np.ndarray) -> None:
        if leaves.dtype != np.float32 or leaves.ndim != 1:
            raise TypeError("leaves must be a 1-D float32 array")
        self.leaves = leaves
        self._bt = BlockTree.build(leaves)
        nblocks = max(1, -(-len(leaves) // BLOCK))
        self.bsum = np.zeros(nblocks, np.float64)  # (point updates re-sum one block, not a node)
        self.bmax = np.zeros(nblocks, np.float32)
        _blocks(leaves, self.bsum, self.bmax, 0, -(-len(leaves) // BLOCK))
        self.nmax = np.pad(self.bmax, (0, -nblocks % FANOUT)).reshape(-1, FANOUT).max(axis=1)
        self._max: float | None = None

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return self._bt.total

    @property
    def max_leaf(self) -> float:
        """Largest leaf."""
        if self._max is None:
            self._max = float(self.nmax.max())
        return self._max

    def _changed(self, blocks: np.ndarray) -> None:
        blocks = np.sort(blocks)
        before = self._max
        _refill(self._bt.tree, self._bt.offs, self.leaves, self.bsum, self.bmax, self.nmax, blocks)
        if before is not None and len(blocks):
            top = float(self.bmax[blocks].max())
            # untouched nodes are <= before: a touched one at least as large is the maximum;
            # otherwise the maximum may have gone down, and is found again when asked
            self._max = top if top >= before else None

    def draw(self, u: np.ndarray) -> np.ndarray:
        """Leaf numbers for draws ``u`` in ``[0, total)``."""
        out = np.empty(len(u), np.int64)
        n = len(self.leaves)
        draw_rows(self._bt.tree, self._bt.offs, np.asarray(u, np.float64) / self.total, self.leaves,
                  self.leaves[:0], 0, n, n, 0, out)
        return out

    def draw_rows(self, u: np.ndarray, lo: int, hi: int, ring: int, beta: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draws for uniforms ``u`` in ``[0, 1)`` as ``(logical rows, row ids, importance
        weights)``, for leaves by slot of a store holding row ids ``[lo, hi)`` (``ring``:
        its capacity, 0 if unbounded)."""
        m = len(u)
        logical, ids, weight = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.float32)
        draw_rows(self._bt.tree, self._bt.offs, u, self.leaves, self.leaves[:0], lo, hi, hi, ring, logical)
        _ids_weights(self.leaves, logical, lo, ring, beta, ids, weight)
        return logical, ids, weight

    def set_priorities(self, ids: np.ndarray, p: np.ndarray, lo: int, hi: int, ring: int,
                       alpha: float) -> int:
        """Set leaves to ``p ** alpha`` for row ids ``ids`` (int64) with priorities ``p``
        (float64); ids below ``lo`` are skipped. -1, or (nothing set) the position of the
        first id outside ``[0, hi)`` or priority not finite and >= 0."""
        nodes = np.empty(len(ids), np.int64)
        r = int(_set(self.leaves, ids, p, lo, hi, ring, alpha, nodes))
        if r >= 0:
            return r
        self._changed(nodes[: -r - 2])
        return -1

    def update(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Set ``leaves[slots] = values`` (the last of repeated slots wins) and the sums above."""
        slots = np.asarray(slots, np.int64)
        self.leaves[slots] = np.asarray(values, np.float32)
        self._changed(slots // BLOCK)
