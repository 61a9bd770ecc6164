"""Uniform sampling: with replacement, or epochs that read every row once.

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> store = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(5), gym.spaces.Discrete(2))
>>> store.extend({"obs": np.arange(5), "action": np.zeros(5, int), "reward": np.ones(5),
...               "next_obs": np.arange(5), "terminated": np.ones(5, bool),
...               "truncated": np.zeros(5, bool)})
>>> s = UniformSampler(store, batch_size=5, seed=0, replacement=False)
>>> sorted(s.sample()["obs"].tolist())
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SamplerError
from .base import Sampler
from .permutation import FeistelPermutation

__all__ = ["UniformSampler"]

#: epochs over at most this many rows use an exact shuffle held in memory (int32/int64);
#: larger stores use a keyed Feistel permutation that needs no memory
EXACT_SHUFFLE_MAX_ROWS = 1 << 24


class UniformSampler(Sampler):
    """Every stored row equally likely.

    ``replacement=True`` (default) draws each batch independently. ``replacement=False``
    runs epochs: each row present when the epoch starts is returned exactly once per epoch
    (rows a ring evicts mid-epoch are skipped); the last batch of an epoch is completed
    from the next epoch, so every batch has ``batch_size`` rows.
    """

    def __init__(self, store, batch_size: int, *, seed=None, replacement: bool = True,
                 fields=None, readahead="auto", exact_shuffle_max_rows: int = EXACT_SHUFFLE_MAX_ROWS,
                 n_step: int = 1, gamma: float | None = None, frame_stack: int = 1) -> None:
        super().__init__(store, batch_size, seed=seed, fields=fields, readahead=readahead,
                         n_step=n_step, gamma=gamma, frame_stack=frame_stack)
        self.replacement = bool(replacement)
        self._exact_max = int(exact_shuffle_max_rows)
        self.epoch = 0
        self._epoch_lo = 0  # global id of the epoch's first row
        self._epoch_n = 0  # rows in the epoch
        self._pos = 0  # position within the epoch
        self._keys: list[int] | None = None
        self._perm: np.ndarray | None = None
        self._started = False

    def sample_indices(self) -> np.ndarray:
        if self.replacement:
            # draws of u in [0, 1) do not depend on the store, so a block of them stays good
            # while rows are appended: row floor(u * n) is uniform over the n rows of now.
            # (u is a multiple of 2**-53 below 1, so u * n rounds to at most n - 1 for any
            # n < 2**53: the product is more than half a unit in the last place below n.)
            n = self._size()
            return (self._drawn_ahead() * n).astype(np.int64)
        self._size()
        out = []
        need = self.batch_size
        while need:
            if not self._started or self._pos >= self._epoch_n:
                self._new_epoch()
            m = min(need, self._epoch_n - self._pos)
            ids = self._epoch_ids(self._pos, self._pos + m)
            self._pos += m
            lo = self.store.id_range[0]
            live = ids[ids >= lo]  # skip rows evicted since the epoch began
            out.append(live - lo)
            need -= len(live)
        return np.concatenate(out) if len(out) > 1 else out[0]

    def _ahead_key(self) -> tuple:
        return ()

    def _draw(self, rows: int) -> np.ndarray:
        return self.rng.random(rows)

    def _new_epoch(self) -> None:
        if self._started:
            self.epoch += 1
        self._started = True
        store = self.store
        self._epoch_lo, hi = store.id_range
        self._epoch_n = hi - self._epoch_lo
        if self._epoch_n == 0:
            raise SamplerError(f"{store.path}: cannot run an epoch over an empty store")
        self._pos = 0
        self._epoch_rng = self.rng.bit_generator.state
        if self._epoch_n <= self._exact_max:
            dt = np.int32 if self._epoch_n < 2**31 else np.int64
            self._perm = self.rng.permutation(self._epoch_n).astype(dt)
            self._keys = None
        else:
            self._perm = None
            self._keys = FeistelPermutation(self._epoch_n, self.rng).keys

    def _epoch_ids(self, a: int, b: int) -> np.ndarray:
        if self._perm is not None:
            return self._perm[a:b].astype(np.int64) + self._epoch_lo
        perm = FeistelPermutation(self._epoch_n, keys=self._keys)
        return perm(np.arange(a, b, dtype=np.int64)) + self._epoch_lo

    # -- state ----------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        if self.replacement:
            return {"replacement": True}
        return {
            "replacement": False,
            "epoch": self.epoch,
            "started": self._started,
            "epoch_lo": self._epoch_lo,
            "epoch_n": self._epoch_n,
            "pos": self._pos,
            "keys": self._keys,
            # an exact shuffle is regenerated from the RNG state at the epoch's start
            "epoch_rng": getattr(self, "_epoch_rng", None),
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.replacement = bool(state.get("replacement", True))
        if self.replacement:
            return
        self.epoch = int(state["epoch"])
        self._started = bool(state["started"])
        self._epoch_lo = int(state["epoch_lo"])
        self._epoch_n = int(state["epoch_n"])
        self._pos = int(state["pos"])
        self._keys = state["keys"]
        self._perm = None
        if self._started and self._keys is None:
            # rebuild the exact shuffle: replay the permutation draw from the saved RNG state
            rng = np.random.Generator(getattr(np.random, state["epoch_rng"]["bit_generator"])())
            rng.bit_generator.state = state["epoch_rng"]
            dt = np.int32 if self._epoch_n < 2**31 else np.int64
            self._perm = rng.permutation(self._epoch_n).astype(dt)
        self._epoch_rng = state.get("epoch_rng")
