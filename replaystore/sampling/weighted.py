"""Sampling proportional to a non-negative per-row weight.

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> store = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(5), gym.spaces.Discrete(2))
>>> store.extend({"obs": np.arange(4), "action": np.zeros(4, int), "reward": np.zeros(4),
...               "next_obs": np.arange(4), "terminated": np.zeros(4, bool),
...               "truncated": np.zeros(4, bool)})
>>> s = WeightedSampler(store, weights=np.array([0.0, 1.0, 0.0, 1.0]), batch_size=8, seed=0)
>>> sorted(set(s.sample()["obs"].tolist()))
[1, 3]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SamplerError
from .base import Sampler

__all__ = ["WeightedSampler"]

class WeightedSampler(Sampler):
    """Rows drawn with probability proportional to ``weights``, with replacement.

    ``weights`` is the name of a stored numeric field or an array with one weight per
    stored row (logical order). Zero-weight rows are never drawn. Memory stays small for
    any store size: only the sum of each block of ``BLOCK`` rows is kept (8 bytes per
    32 rows); a draw picks a block by its sum, then a row inside it from the block's
    weights. A stored field is re-read when the store changes.
    """

    BLOCK = 32

    def __init__(self, store, weights: str | np.ndarray, batch_size: int, *, seed=None,
                 fields=None, readahead="auto", n_step: int = 1, gamma: float | None = None) -> None:
        super().__init__(store, batch_size, seed=seed, fields=fields, readahead=readahead,
                         n_step=n_step, gamma=gamma)
        if isinstance(weights, str):
            f = store.schema[weights]
            if f.shape != () or f.dtype.kind not in "biuf":
                raise SamplerError(f"weights field {weights!r} must hold one number per row, has shape {f.shape}")
            self.weights_field: str | None = weights
            self._array = None
        else:
            self.weights_field = None
            self._array = np.asarray(weights, dtype=np.float64)
            if self._array.ndim != 1:
                raise SamplerError(f"weights array must be 1-D, got shape {self._array.shape}")
        self._gen = None
        self._refresh()

    def _weights(self, a: int, b: int) -> np.ndarray:
        if self._array is not None:
            return self._array[a:b]
        return self.store.read_range(a, b, fields=[self.weights_field])[self.weights_field].astype(np.float64)

    def _refresh(self) -> None:
        store = self.store
        key = store.version
        if key == self._gen:
            return
        n = len(store)
        what = (f"{store.path}: weights array" if self.weights_field is None
                else f"{store.path}: weights field {self.weights_field!r}")
        if self._array is not None and len(self._array) != n:
            raise SamplerError(
                f"{store.path}: weights array has {len(self._array)} entries but the store holds {n} rows; "
                "give one weight per stored row"
            )
        B = self.BLOCK
        nblocks = -(-n // B)
        sums = np.zeros(nblocks, np.float64)
        step = B * 8192
        for a in range(0, n, step):
            b = min(n, a + step)
            w = self._weights(a, b)
            bad = _check(w, what, offset=a)
            if bad is not None:
                raise bad
            padded = np.zeros(-(-len(w) // B) * B)
            padded[: len(w)] = w
            sums[a // B : a // B + len(padded) // B] = padded.reshape(-1, B).sum(axis=1)
        cdf = np.cumsum(sums)
        if n == 0 or cdf[-1] <= 0:
            raise SamplerError(f"{store.path}: all weights are zero; at least one row needs a positive weight")
        self._cdf = cdf
        self._n = n
        self._gen = key

    def sample_indices(self) -> np.ndarray:
        self._size()
        self._refresh()
        return self._drawn_ahead()

    def _draw(self, rows: int) -> np.ndarray:
        B, n, cdf = self.BLOCK, self._n, self._cdf
        u = self.rng.random(rows) * cdf[-1]
        order = np.argsort(u)  # sorted keys: each search starts where the last one ended
        blk = np.empty(len(u), np.int64)
        blk[order] = np.searchsorted(cdf, u[order], side="right")
        np.minimum(blk, len(cdf) - 1, out=blk)
        # skip blocks whose weights are all zero (possible only through rounding at edges)
        rest = u - np.where(blk > 0, cdf[blk - 1], 0.0)
        rows = blk[:, None] * B + np.arange(B)
        inside = rows < n
        flat = np.minimum(rows, n - 1).reshape(-1)
        if self._array is not None:
            w = self._array[flat]
        else:
            w = self.store.gather(self.weights_field, flat)
        w = np.where(inside, w.reshape(len(blk), B), 0.0)
        cum = np.cumsum(w, axis=1)
        k = (cum <= rest[:, None]).sum(axis=1)
        # rounding can push ``rest`` past the block's own sum: take its last positive row
        last = B - 1 - np.argmax((w > 0)[:, ::-1], axis=1)
        k = np.minimum(k, last)
        return blk * B + k

    def _extra_state(self) -> dict[str, Any]:
        return {"weights": self.weights_field}


def _check(w: np.ndarray, what: str, offset: int = 0) -> SamplerError | None:
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return SamplerError(f"{what}: row {offset + i} has weight {float(w[i])}; weights must be finite and >= 0")
    return None
