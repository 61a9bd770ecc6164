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

_BLOCK = 1 << 20


class WeightedSampler(Sampler):
    """Rows drawn with probability proportional to ``weights``, with replacement.

    ``weights`` is the name of a stored numeric field or an array with one weight per
    stored row (logical order). Zero-weight rows are never drawn. The cumulative sum
    is kept in memory as float64 (8 bytes per row); a stored field is re-read when the
    store changes.
    """

    def __init__(self, store, weights: str | np.ndarray, batch_size: int, *, seed=None,
                 fields=None, readahead="auto") -> None:
        super().__init__(store, batch_size, seed=seed, fields=fields, readahead=readahead)
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

    def _refresh(self) -> None:
        store = self.store
        key = (store.generation, store.total, store.size)
        if key == self._gen:
            return
        n = store.size
        if self.weights_field is None:
            w = self._array
            if len(w) != n:
                raise SamplerError(
                    f"{store.path}: weights array has {len(w)} entries but the store holds {n} rows; "
                    "give one weight per stored row"
                )
            cdf = np.cumsum(w)
            bad = _check(w, f"{store.path}: weights array")
        else:
            cdf = np.empty(n, np.float64)
            acc = 0.0
            bad = None
            for a in range(0, n, _BLOCK):
                b = min(n, a + _BLOCK)
                w = store.read_range(a, b, fields=[self.weights_field])[self.weights_field].astype(np.float64)
                bad = _check(w, f"{store.path}: weights field {self.weights_field!r}", offset=a)
                np.cumsum(w, out=cdf[a:b])
                cdf[a:b] += acc
                acc = cdf[b - 1] if b > a else acc
        if bad is not None:
            raise bad
        if n == 0 or cdf[-1] <= 0:
            raise SamplerError(f"{store.path}: all weights are zero; at least one row needs a positive weight")
        self._cdf = cdf
        self._gen = key

    def sample_indices(self) -> np.ndarray:
        self._size()
        self._refresh()
        u = self.rng.random(self.batch_size) * self._cdf[-1]
        # sorted keys let searchsorted narrow each search with the previous result
        order = np.argsort(u)
        idx = np.empty(self.batch_size, np.int64)
        idx[order] = np.searchsorted(self._cdf, u[order], side="right")
        return np.minimum(idx, len(self._cdf) - 1, out=idx)

    def _extra_state(self) -> dict[str, Any]:
        return {"weights": self.weights_field}


def _check(w: np.ndarray, what: str, offset: int = 0) -> SamplerError | None:
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return SamplerError(f"{what}: row {offset + i} has weight {float(w[i])}; weights must be finite and >= 0")
    return None
