"""Pseudo-random permutations of ``range(n)`` that need no memory.

For epochs over stores too large to hold a shuffled index array, a keyed Feistel
network permutes ``[0, 2**k)`` and cycle-walking keeps the values inside ``[0, n)``.
It is a bijection, so every row appears exactly once per epoch.

>>> p = FeistelPermutation(10, np.random.default_rng(0))
>>> sorted(p(np.arange(10)).tolist())
[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
"""

from __future__ import annotations

import numpy as np

__all__ = ["FeistelPermutation"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    # splitmix64 finalizer of (x ^ key): a good 64-bit mixing function
    z = (x ^ key) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class FeistelPermutation:
    """A keyed bijection of ``[0, n)``; keys are drawn from ``rng``."""

    ROUNDS = 6

    def __init__(self, n: int, rng: np.random.Generator | None = None, *, keys=None) -> None:
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = np.uint64((1 << self.half) - 1)
        if keys is None:
            keys = rng.integers(0, 2**63, size=self.ROUNDS, dtype=np.int64)
        self.keys = [int(k) for k in keys]

    def _round_trip(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left = x >> h
        right = x & self.mask
        with np.errstate(over="ignore"):
            for k in self.keys:
                left, right = right, left ^ (_mix(right, np.uint64(k)) & self.mask)
        return (left << h) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        x = self._round_trip(np.asarray(positions, dtype=np.uint64))
        bad = x >= np.uint64(self.n)
        while bad.any():
            x[bad] = self._round_trip(x[bad])
            bad = x >= np.uint64(self.n)
        return x.astype(np.int64)
