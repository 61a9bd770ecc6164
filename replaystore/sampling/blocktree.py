"""A tree of prefix sums over blocks of weights that stay where they are (the index of
:class:`~replaystore.sampling.weighted.WeightedSampler`).

Slots (rows) are grouped in blocks of :data:`BLOCK`; a node holds :data:`FANOUT`
children. Level 0 keeps, per node of 8 blocks, the running sums of its blocks' sums
(``float64``, one 64-byte cache line per node); each level above keeps the running sums
of the totals of the nodes below; the top is one node. That is about 9 bytes per 32
slots, and every value is recomputed from the level below (never incremented), so it
depends only on the weights, not on the order of updates. A block's sum is the
sequential ``float64`` sum of its weights, the very sum a draw's scan of the block
computes.

A draw of ``u`` in ``[0, 1)`` scales it by the total and descends: in each node it takes
the first child whose running sum exceeds the rest of ``u`` (8 compares, no branch), then
scans the block's weights, read where they are (a memory map or an array), and takes the
first slot whose running sum exceeds what is left: row ``i`` is drawn with probability
``w_i / sum(w)`` up to float64 rounding (the draws are the exact inverse of the cdf but for
``u`` within a rounding error of a boundary). A slot of weight zero is never taken, also
when rounding puts ``u`` past the end of a node or block (the draw then takes the last
child or slot of positive weight). Draws go :data:`GROUP` at a time, level by level, with
the next level's nodes and then the blocks' weights prefetched for the whole group, so
their cache misses overlap. The tree is shaped by the number of blocks rounded up to a
power of two, so a tree grown by updates and one built at once hold the same values and
give the same draws.

The kernels are compiled by numba (``cache=True``: once per installation); import this
module lazily (``import replaystore`` does not load numba).

>>> import numpy as np
>>> w = np.zeros(64); w[[3, 40]] = [1.0, 3.0]
>>> t = BlockTree.build(w)
>>> t.total, t.draw_array(w, np.array([0.0, 0.2, 0.3, 0.99])).tolist()
(4.0, [3, 3, 40, 40])
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..errors import SamplerError

__all__ = ["BLOCK", "FANOUT", "NODE_SLOTS", "BlockTree", "draw_rows", "descend_many", "pick_many"]

#: slots per block (a draw scans one block's weights)
BLOCK = 32
#: children per node
FANOUT = 8
#: slots under one level-0 node: updates recompute whole nodes
NODE_SLOTS = BLOCK * FANOUT


# -- kernels --------------------------------------------------------------------------------
@intrinsic
def _prefetch(typingctx, arr, idx):  # pragma: no cover - compiled
    """Ask for the cache line of ``arr[idx]`` without waiting for it (``llvm.prefetch``)."""
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # (read, keep in all cache levels, data)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(arr, idx), codegen


@njit(cache=True, nogil=True)
def fill_nodes(tree, w, node0):  # pragma: no cover - compiled
    """Level-0 nodes ``node0, node0 + 1, ...`` from the weights ``w`` of their slots."""
    for i in range(w.shape[0] // NODE_SLOTS):
        base = (node0 + i) * FANOUT
        acc = 0.0
        for j in range(FANOUT):
            o = (i * FANOUT + j) * BLOCK
            s = 0.0
            for t in range(BLOCK):
                s += w[o + t]
            acc += s
            tree[base + j] = acc


@njit(cache=True, nogil=True)
def propagate(tree, offs, k0, k1):  # pragma: no cover - compiled
    """Recompute every node above the level-0 nodes ``[k0, k1)``."""
    for lev in range(1, offs.shape[0] - 1):
        below = offs[lev - 1]
        nchild = (offs[lev] - below) // FANOUT
        p0, p1 = k0 // FANOUT, (k1 - 1) // FANOUT + 1
        for p in range(p0, p1):
            base = offs[lev] + p * FANOUT
            acc = 0.0
            for j in range(FANOUT):
                c = p * FANOUT + j
                if c < nchild:
                    acc += tree[below + c * FANOUT + FANOUT - 1]
                tree[base + j] = acc
        k0, k1 = p0, p1


@njit(cache=True, nogil=True, inline="always")
def _descend(tree, offs, r):  # pragma: no cover - compiled
    k = 0
    for lev in range(offs.shape[0] - 2, -1, -1):
        base = offs[lev] + k * FANOUT
        j = 0
        for t in range(FANOUT):
            j += tree[base + t] <= r
        if j == FANOUT:  # rounding: past the node's end; its last child of positive total
            j = FANOUT - 1
            while j > 0 and tree[base + j] <= tree[base + j - 1]:
                j -= 1
        if j > 0:
            r -= tree[base + j - 1]
        k = k * FANOUT + j
    return k, r


@njit(cache=True, nogil=True, inline="always")
def _scan(src, tail, p, r, lo, n, total, cap, nslots, lo_slot):  # pragma: no cover - compiled
    """Logical row of the draw that reached block ``p`` with rest ``r`` (see draw_rows)."""
    b0 = p * BLOCK
    count = min(BLOCK, nslots - b0)
    if cap == 0:
        d0 = b0 - lo
        simple = d0 >= 0 and b0 + count <= total
    else:
        d0 = b0 - lo_slot
        if d0 < 0:
            d0 += cap
        simple = d0 + count <= n and lo + d0 + count <= total
    if simple:  # every slot committed and readable: weights straight from src
        c = 0.0
        k = 0
        while k < count:  # (the block's lines are in cache by now: an early exit is cheapest)
            c += np.float64(src[b0 + k])
            if c > r:
                break
            k += 1
        if k == count:  # rounding: past the block's end; its last slot of positive weight
            k = count - 1
            while k > 0 and not src[b0 + k] > 0:
                k -= 1
        return d0 + k
    c = 0.0
    pick = -1
    last = -1
    last_occ = -1
    for t in range(count):
        s = b0 + t
        if cap == 0:
            d = s - lo
            if d < 0:
                continue
        else:
            d = s - lo_slot
            if d < 0:
                d += cap
            if d >= n:
                continue
        last_occ = d
        g = lo + d
        w = np.float64(tail[g - total]) if g >= total else np.float64(src[s])
        if w > 0:
            c += w
            last = d
            if c > r:
                pick = d
                break
    return pick if pick >= 0 else (last if last >= 0 else last_occ)


#: draws processed side by side: their memory reads overlap instead of waiting in turn
GROUP = 32


@njit(cache=True, nogil=True)
def draw_rows(tree, offs, u, src, tail, lo, hi, total, cap, out):  # pragma: no cover - compiled
    """Logical rows for the uniforms ``u`` into ``out``.

    Slot ``s`` holds the row with global id ``g`` (``g = s`` when ``cap == 0``, else the
    id in ``[lo, hi)`` with ``g % cap == s``); rows ``[lo, hi)`` are readable, logical row
    ``g - lo``; the weight of a row below ``total`` is ``src[s]``, of a row from ``total``
    on (buffered) ``tail[g - total]``.
    """
    top = offs.shape[0] - 2
    whole = tree[offs[top] + FANOUT - 1]
    n = hi - lo
    nslots = hi if cap == 0 else min(hi, cap)
    lo_slot = 0 if cap == 0 else lo % cap
    last_src = src.shape[0] - 1
    # two groups in flight: the blocks of one are fetched while the next descends
    ks = np.empty((2, GROUP), np.int64)
    rs = np.empty((2, GROUP))
    prev_start, prev_m = 0, 0
    nu = u.shape[0]
    for start in range(0, nu + GROUP, GROUP):
        cur = (start // GROUP) & 1
        m = max(0, min(GROUP, nu - start))
        for g in range(m):
            ks[cur, g] = 0
            rs[cur, g] = u[start + g] * whole
        for lev in range(top, -1, -1):  # one level for the whole group, then the next
            for g in range(m):  # (the group's nodes are fetched side by side)
                _prefetch(tree, offs[lev] + ks[cur, g] * FANOUT)
            for g in range(m):
                base = offs[lev] + ks[cur, g] * FANOUT
                r = rs[cur, g]
                j = 0
                for t in range(FANOUT):
                    j += tree[base + t] <= r
                if j == FANOUT:  # rounding: past the node's end; its last child of positive total
                    j = FANOUT - 1
                    while j > 0 and tree[base + j] <= tree[base + j - 1]:
                        j -= 1
                if j > 0:
                    rs[cur, g] = r - tree[base + j - 1]
                ks[cur, g] = ks[cur, g] * FANOUT + j
        if last_src >= 0:
            for g in range(m):
                b0 = ks[cur, g] * BLOCK
                _prefetch(src, min(b0, last_src))
                _prefetch(src, min(b0 + BLOCK // 2, last_src))
        other = 1 - cur
        for g in range(prev_m):  # the previous group's blocks arrived meanwhile
            out[prev_start + g] = _scan(src, tail, ks[other, g], rs[other, g], lo, n, total, cap, nslots, lo_slot)
        prev_start, prev_m = start, m


@njit(cache=True, nogil=True)
def descend_many(tree, offs, u, blocks, rest):  # pragma: no cover - compiled
    """The block and the rest of each draw (the first half of :func:`draw_rows`)."""
    top = offs[offs.shape[0] - 2]
    whole = tree[top + FANOUT - 1]
    for i in range(u.shape[0]):
        p, r = _descend(tree, offs, u[i] * whole)
        blocks[i] = p
        rest[i] = r


@njit(cache=True, nogil=True)
def pick_many(weights, occupied, rest, out):  # pragma: no cover - compiled
    """Per draw, the slot (0..BLOCK-1) of its block's ``weights`` row that ``rest`` falls in
    (the second half of :func:`draw_rows`, for weights gathered by the caller)."""
    for i in range(weights.shape[0]):
        c = 0.0
        pick = -1
        last = -1
        last_occ = 0
        r = rest[i]
        for t in range(weights.shape[1]):
            if not occupied[i, t]:
                continue
            last_occ = t
            w = weights[i, t]
            if w > 0:
                c += w
                last = t
                if c > r:
                    pick = t
                    break
        out[i] = pick if pick >= 0 else (last if last >= 0 else last_occ)


# -- the tree -------------------------------------------------------------------------------
def _level_offsets(nblocks: int) -> np.ndarray:
    """Start of each level in the flat array (bottom first), and its end."""
    cap = max(FANOUT, 1 << max(0, int(nblocks) - 1).bit_length())
    offs = [0]
    n = cap
    while True:
        entries = -(-n // FANOUT) * FANOUT
        offs.append(offs[-1] + entries)
        n = entries // FANOUT
        if n == 1:
            return np.array(offs, np.int64)


def _aligned_zeros(n: int) -> np.ndarray:
    """``n`` float64 zeros starting on a node boundary (``8 * FANOUT`` bytes): a node then
    spans as few cache lines as it can (one, for 8 children)."""
    raw = np.zeros(n + FANOUT, np.float64)
    skip = (-raw.ctypes.data % (8 * FANOUT)) // 8
    return raw[skip : skip + n]


class BlockTree:
    """Prefix sums over the blocks of ``nblocks * BLOCK`` slots (all weights zero at first)."""

    def __init__(self, nblocks: int) -> None:
        self.offs = _level_offsets(nblocks)
        self.tree = _aligned_zeros(int(self.offs[-1]))
        #: slots the tree has room for (a power of two times BLOCK, at least NODE_SLOTS)
        self.slots = int(self.offs[1]) * BLOCK

    @classmethod
    def build(cls, weights: np.ndarray) -> BlockTree:
        """A tree over ``weights`` (one per slot), e.g. an array held in memory."""
        t = cls(-(-len(weights) // BLOCK))
        step = NODE_SLOTS * 2048
        for a in range(0, len(weights), step):
            t.fill(a, np.asarray(weights[a : a + step], np.float64), propagate_up=False)
        t.propagate_all()
        return t

    def fits(self, nblocks: int) -> bool:
        """Whether this tree has the shape for ``nblocks`` blocks."""
        return np.array_equal(_level_offsets(nblocks), self.offs)

    def reshaped(self, nblocks: int) -> BlockTree:
        """A tree of the shape for ``nblocks`` blocks holding this one's weights (those
        of slots beyond the new size dropped)."""
        t = BlockTree(nblocks)
        keep = min(int(self.offs[1]), int(t.offs[1]))
        t.tree[:keep] = self.tree[:keep]
        t.propagate_all()
        return t

    def fill(self, start: int, weights: np.ndarray, *, propagate_up: bool = True) -> None:
        """Set the weights of slots ``[start, start + len(weights))`` (float64; ``start`` a
        multiple of :data:`NODE_SLOTS`; the rest of the last node is set to zero)."""
        if start % NODE_SLOTS:
            raise SamplerError(f"block tree: slot {start} does not start a node (a multiple of {NODE_SLOTS})")
        pad = -len(weights) % NODE_SLOTS
        if pad:
            weights = np.concatenate([weights, np.zeros(pad)])
        k0 = start // NODE_SLOTS
        fill_nodes(self.tree, weights, k0)
        if propagate_up:
            propagate(self.tree, self.offs, k0, k0 + len(weights) // NODE_SLOTS)

    def propagate_all(self) -> None:
        propagate(self.tree, self.offs, 0, int(self.offs[1]) // FANOUT)

    @property
    def total(self) -> float:
        return float(self.tree[int(self.offs[-2]) + FANOUT - 1])

    def draw_array(self, weights: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Slots for the uniforms ``u``, with the weights of every slot in ``weights``."""
        out = np.empty(len(u), np.int64)
        n = len(weights)
        draw_rows(self.tree, self.offs, np.asarray(u, np.float64), weights, weights[:0], 0, n, n, 0, out)
        return out
