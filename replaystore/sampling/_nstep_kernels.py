"""Compiled (numba) n-step window walk: the hot path of :class:`~replaystore.sampling.nstep.NStepReader`.

:func:`walk` does in one call what the reader's numpy path does in about twenty over
``(n, B)`` arrays: for each drawn row it follows the row's episode (the next row by global
id, or the episode's link where vector envs interleave), stops where the window ends (see
:mod:`replaystore.sampling.nstep`) and sums the discounted rewards in the same order as
the numpy path (``acc = 0.0``, then ``acc += gamma**k * float64(r[t+k])`` for
``k = 0 .. m-1``; each product and sum rounded to float64, no fused multiply-add), so both
give the same bits. Only ``nstep.py`` imports this module, on the
first n-step read, so ``import replaystore`` does not load numba. Compiled once per
installation (``cache=True``).

Rows are read by global id ``q``: committed rows from the fields' memory maps (physical
row ``q % cap`` in a ring, ``q`` in an unbounded store), rows still in the writer's buffer
(``q >= committed``) from the buffer's arrays at ``q - committed``. Windows of ``n``
committed rows that do not wrap (nearly all) are read one field and one offset at a time
in tight loops, so many rows' cache misses are in flight at once (a loop doing a whole
window per row keeps only a row or two in flight: twice as slow); the others (near the
newest row, at a ring's wrap, in the write buffer, interleaved episodes) row by row.

>>> import numpy as np
>>> rew, no = np.ones(4, np.float32), np.zeros(4, bool)
>>> ep, st = np.zeros(4, np.int64), np.arange(4, dtype=np.int64)
>>> r, ints, flags = np.empty(2, np.float32), np.empty((4, 2), np.int64), np.empty((2, 2), bool)
>>> walk(np.array([0, 2]), 0, 4, 4, 0, rew, no, no, ep, st, rew[:0], no[:0], no[:0], ep[:0], st[:0],
...      np.empty(0, np.int64), 0, 0, 0.5 ** np.arange(4), 3, r, ints, flags)
0
>>> r.tolist(), ints.tolist()  # reward; m, last, episode, step
([1.75, 1.5], [[3, 2], [2, 3], [0, 0], [0, 2]])
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["walk", "NEEDS_LINKS", "INCONSISTENT"]

#: :func:`walk` found a window that goes on in another place of the store (vector envs)
#: and was given no links: build them and call again
NEEDS_LINKS = 1
#: :func:`walk` met a row outside what it was given (rows out of range, links behind the
#: store): nothing it wrote is meaningful, read the batch another way
INCONSISTENT = 2


@njit(cache=True, nogil=True)
def walk(idx, lo, hi, committed, cap, c_rew, c_term, c_trunc, c_ep, c_st, b_rew, b_term, b_trunc, b_ep, b_st,
         nxt, lbase, lhi, powers, n, reward, ints, flags):  # pragma: no cover - compiled
    """The n-step windows of logical rows ``idx`` (global ids ``lo + idx``, the store holds
    ids ``[lo, hi)``, ids below ``committed`` are committed).

    ``c_*``/``b_*``: the ``reward``, ``terminated``, ``truncated``, ``episode``, ``step``
    arrays of the committed rows (by physical row; ``cap`` the ring's capacity, 0 if
    unbounded) and of the buffered ones. ``nxt[q - lbase]`` (for ids ``[lbase, lhi)``) is the
    id of the next row of row ``q``'s episode (-1: none); ``lhi == 0``: no links. Writes per
    row the discounted return (``reward``, in its dtype), ``ints[0]`` ``m`` (``n_steps``),
    ``ints[1]`` the logical row of the window's last row, ``ints[2]``/``ints[3]`` row
    ``t``'s ``episode``/``step``, and ``flags[0]``/``flags[1]`` the last row's
    ``terminated``/``truncated``. Returns 0, or :data:`NEEDS_LINKS` / :data:`INCONSISTENT`
    (the outputs are then incomplete)."""
    n_steps, last, episode, step = ints[0], ints[1], ints[2], ints[3]
    terminated, truncated = flags[0], flags[1]
    rows = min(c_rew.shape[0], c_term.shape[0], c_trunc.shape[0], c_ep.shape[0], c_st.shape[0])
    B = idx.shape[0]
    held = min(hi, committed)  # rows up to here are in the maps
    p_lo = 0 if cap == 0 else lo % cap  # physical row of logical row 0 (if committed)
    phys = np.zeros(B, np.int64)  # rows t of windows read in one go (others: 0, a dummy)
    general = np.zeros(B, np.bool_)  # windows for the general walk
    for b in range(B):
        i = idx[b]
        if i < 0 or lo + i >= hi:
            return INCONSISTENT
        p = p_lo + i
        if cap > 0 and p >= cap:
            p -= cap
        if lo + i + n > held or p + n > rows or (cap > 0 and p + n > cap):
            general[b] = True  # near the newest row, at a ring's wrap, in the write buffer
        else:
            phys[b] = p
    acc = np.empty(B, np.float64)
    if rows >= n:  # (else every window is the general walk's)
        # 1. row t of each window, one field at a time, in loops so short that the cache
        #    misses of many rows are in flight at once ...
        for b in range(B):
            episode[b] = c_ep[phys[b]]
        for b in range(B):
            step[b] = c_st[phys[b]]
        for b in range(B):
            acc[b] = 0.0
            acc[b] += powers[0] * np.float64(c_rew[phys[b]])
        for b in range(B):
            terminated[b] = c_term[phys[b]]
        for b in range(B):
            truncated[b] = c_trunc[phys[b]]
        # ... then, window by window, rows t+1 .. (mostly in the lines row t brought in)
        for b in range(B):
            m, r = 1, acc[b]
            te, tr = terminated[b], truncated[b]
            if not (general[b] or te or tr):
                p, e0, s0 = phys[b], episode[b], step[b]
                while m < n:
                    q = p + m
                    if c_ep[q] != e0:  # the next stored row is another episode's
                        general[b] = True
                        break
                    if c_st[q] != s0 + m:  # steps do not go on
                        break
                    r += powers[m] * np.float64(c_rew[q])
                    te, tr = c_term[q], c_trunc[q]
                    m += 1
                    if te or tr:
                        break
            reward[b] = r
            n_steps[b] = m
            last[b] = idx[b] + m - 1
            terminated[b], truncated[b] = te, tr
    # 2. the others, row by row: buffered rows, a ring's wrap, the newest rows, vector envs
    return _general(idx, np.flatnonzero(general), lo, hi, committed, cap, (c_rew, c_term, c_trunc, c_ep, c_st),
                    (b_rew, b_term, b_trunc, b_ep, b_st), nxt, lbase, lhi, powers, n,
                    reward, n_steps, last, terminated, truncated, episode, step)


@njit(cache=True, nogil=True)
def _general(idx, which, lo, hi, committed, cap, cols, bufs, nxt, lbase, lhi, powers, n,
             reward, n_steps, last, terminated, truncated, episode, step):  # pragma: no cover - compiled
    """:func:`walk` for rows ``idx[which]``, row by row (any place, links followed)."""
    c_rew, c_term, c_trunc, c_ep, c_st = cols
    b_rew, b_term, b_trunc, b_ep, b_st = bufs
    rows = min(c_rew.shape[0], c_term.shape[0], c_trunc.shape[0], c_ep.shape[0], c_st.shape[0])
    top = committed + min(b_rew.shape[0], b_term.shape[0], b_trunc.shape[0], b_ep.shape[0], b_st.shape[0])
    status = 0
    for b in which:
        q = lo + idx[b]  # the next row the window may take
        m = 0
        acc = 0.0
        prev = q
        e0 = s0 = 0
        te = tr = linked = False
        while q < hi:
            if q < committed:  # row q, from the maps or the write buffer
                p = q % cap if cap > 0 else q
                if p >= rows:
                    return INCONSISTENT
                r, t1, t2, e, s = c_rew[p], c_term[p], c_trunc[p], c_ep[p], c_st[p]
            else:
                if q >= top:
                    return INCONSISTENT
                p = q - committed
                r, t1, t2, e, s = b_rew[p], b_term[p], b_trunc[p], b_ep[p], b_st[p]
            if m == 0:
                e0, s0 = e, s
            elif e != e0:  # another episode's row: the episode goes on at its link (vector envs)
                if linked:
                    break
                if lhi == 0:
                    status = NEEDS_LINKS
                    break
                if prev < lbase or prev >= lhi:
                    return INCONSISTENT
                q = nxt[prev - lbase]
                if q < 0:
                    break
                linked = True
                continue
            if s != s0 + m:  # steps do not go on
                break
            acc += powers[m] * np.float64(r)
            m += 1
            prev, te, tr, linked = q, t1, t2, False
            if m == n or te or tr:
                break
            q += 1
        reward[b] = acc
        n_steps[b] = m
        last[b] = prev - lo
        terminated[b] = te
        truncated[b] = tr
        episode[b] = e0
        step[b] = s0
    return status
