"""numba kernels of :mod:`replaystore.sampling.framestack`: which rows a stack holds.

Compiled once per installation (``cache=True``); import this module lazily
(``import replaystore`` does not load numba).

>>> import numpy as np
>>> pos = np.array([[-1, 0, 1]]); ep = np.array([[7, 7, 7]]); st = np.array([[0, 0, 1]])
>>> need = np.zeros(1, np.bool_); c0 = np.zeros(1, np.int64)
>>> stack_rows(pos, ep, st, c0, need)
>>> pos.tolist(), c0.tolist(), need.tolist()
([[0, 0, 1]], [1], [False])
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["stack_rows", "follow_back"]


@njit(cache=True, nogil=True)
def stack_rows(pos: np.ndarray, ep: np.ndarray, st: np.ndarray, c0: np.ndarray, need: np.ndarray) -> None:
    """For stacks ``pos`` (``(B, k)`` logical rows ``t-k+1..t``, negative before the oldest
    row; ``ep``/``st`` read at them, clipped to 0): ``c0[b]`` is the first column that
    continues row ``t``'s episode step by step; ``need[b]`` says the row before it is
    another episode's while the episode had earlier steps (follow the links: vector envs).
    Stacks that need nothing are padded in place (columns before ``c0`` repeat it)."""
    B, k = pos.shape
    for b in range(B):
        e = ep[b, k - 1]
        s = st[b, k - 1]
        c = k - 1
        while c > 0 and pos[b, c - 1] >= 0 and ep[b, c - 1] == e and st[b, c - 1] == s - (k - c):
            c -= 1
        c0[b] = c
        need[b] = c > 0 and pos[b, c - 1] >= 0 and ep[b, c - 1] != e and st[b, c] > 0
        if not need[b]:
            for j in range(c):
                pos[b, j] = pos[b, c]


@njit(cache=True, nogil=True)
def follow_back(prv: np.ndarray, base: int, lo: int, pos: np.ndarray, c0: np.ndarray, rows: np.ndarray) -> None:
    """Extend stacks ``rows`` to the left along the backward links ``prv`` (global id of
    the previous row of the episode, its step one less; index ``g - base``; below ``lo``:
    none or evicted) from their column ``c0[b]``, then pad them (columns before the
    earliest row found repeat it). ``pos`` holds logical rows (global id - ``lo``)."""
    for b in rows:
        c = c0[b]
        g = pos[b, c] + lo
        while c > 0:
            p = prv[g - base]
            if p < lo:
                break
            c -= 1
            pos[b, c] = p - lo
            g = p
        c0[b] = c
        for j in range(c):
            pos[b, j] = pos[b, c]
