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

from ..errors import RowIndexError, SamplerError
from .base import Sampler

__all__ = ["WeightedSampler"]

#: a refresh that would recompute more than this share of the slots rebuilds them all
_REBUILD_SHARE = 0.5
#: slots read at a time when the tree is built
_STEP = 1 << 20


class WeightedSampler(Sampler):
    """Rows drawn with probability proportional to ``weights``, with replacement.

    ``weights`` is the name of a stored numeric field or an array with one weight per
    stored row (logical order). Zero-weight rows are never drawn. Memory stays small for
    any store size: only a tree of prefix sums over blocks of ``BLOCK`` rows is kept (about
    9 bytes per 32 rows, :mod:`~replaystore.sampling.blocktree`); a draw descends it to a
    block, then picks a row inside from the block's weights, read straight from the
    field's memory map (compressed fields and object stores: gathered). A stored field
    is indexed by the rows' places on disk, so when the store changes only the blocks of
    the rows added or evicted are read again (a ring that appends a few rows re-reads a
    few blocks; :attr:`rows_read` counts them); an array is re-read whole.
    """

    BLOCK = 32

    def __init__(self, store, weights: str | np.ndarray, batch_size: int, *, seed=None,
                 fields=None, readahead="auto", n_step: int = 1, gamma: float | None = None,
                 frame_stack: int = 1) -> None:
        super().__init__(store, batch_size, seed=seed, fields=fields, readahead=readahead,
                         n_step=n_step, gamma=gamma, frame_stack=frame_stack)
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
        from . import blocktree  # (numba: loaded with the first weighted sampler only)

        self._bt = blocktree
        self._tree = None
        self._span: tuple[int, int] | None = None  # readable global ids the tree holds
        self._gen = None
        #: rows whose weights were read from the store so far (building and updating the tree)
        self.rows_read = 0
        self._refresh()

    # -- the tree -------------------------------------------------------------------------
    def _what(self) -> str:
        return (f"{self.store.path}: weights array" if self.weights_field is None
                else f"{self.store.path}: weights field {self.weights_field!r}")

    def _refresh(self) -> None:
        store = self.store
        if store.version == self._gen:
            return
        with store.lock:
            if self._array is not None:
                self._build_from_array()
            else:
                self._update_from_store()
        if self._tree.total <= 0:
            raise SamplerError(f"{store.path}: all weights are zero; at least one row needs a positive weight")

    def _build_from_array(self) -> None:
        store, n = self.store, len(self.store)
        if len(self._array) != n:
            raise SamplerError(
                f"{store.path}: weights array has {len(self._array)} entries but the store holds {n} rows; "
                "give one weight per stored row"
            )
        for a in range(0, n, _STEP):
            bad = _check(self._array[a : a + _STEP], self._what(), offset=a)
            if bad is not None:
                raise bad
        self._tree = self._bt.BlockTree.build(self._array)
        self._gen = store.version

    def _update_from_store(self) -> None:
        """Bring the tree up to the store's rows: only the slots whose rows changed."""
        store = self.store
        for _ in range(1000):
            key = store.version
            lo, hi = store.id_range
            cap = store.capacity
            nslots = hi if cap is None else min(hi, cap)
            nblocks = -(-nslots // self.BLOCK)
            dirty = self._dirty(lo, hi, cap, nslots)
            tree = self._tree
            if dirty is None or tree is None:
                tree, dirty = self._bt.BlockTree(nblocks), [(0, nslots)]
            elif not tree.fits(nblocks):  # (the store grew: more blocks)
                tree = tree.reshaped(nblocks)
            try:
                for a, b in dirty:
                    self._fill(tree, a, b, lo, hi, cap, nslots)
            except RowIndexError:  # a ring writer in another process overwrote rows being read
                store.refresh()
                continue
            self._tree, self._span, self._gen = tree, (lo, hi), key
            return
        raise SamplerError(f"{store.path}: rows kept being overwritten while the weights were read")

    def _dirty(self, lo: int, hi: int, cap: int | None, nslots: int) -> list[tuple[int, int]] | None:
        """Slot ranges whose rows changed since the tree was made (``None``: all of them)."""
        if self._span is None or self._tree is None:
            return None
        lo0, hi0 = self._span
        if lo < lo0 or hi < hi0:
            return None
        changed = [(lo0, min(lo, hi0)), (max(hi0, lo), hi)]  # evicted, added (global ids)
        out: list[tuple[int, int]] = []
        for a, b in changed:
            if b <= a:
                continue
            if cap is None:
                out.append((a, b))
            elif b - a >= cap:
                return None
            else:
                sa, sb = a % cap, b % cap
                out.extend([(sa, sb)] if sa < sb else [(sa, cap), (0, sb)])
        node = self._bt.NODE_SLOTS
        out = sorted((a // node * node, min(nslots, -(-b // node) * node)) for a, b in out if b > a)
        merged: list[tuple[int, int]] = []
        for a, b in out:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        if sum(b - a for a, b in merged) > _REBUILD_SHARE * nslots:
            return None
        return merged

    def _fill(self, tree, a: int, b: int, lo: int, hi: int, cap: int | None, nslots: int) -> None:
        """Read the weights of slots ``[a, b)`` (a multiple of NODE_SLOTS) into ``tree``."""
        for s0 in range(a, b, _STEP):
            s1 = min(b, s0 + _STEP)
            tree.fill(s0, self._slot_weights(s0, s1, lo, hi, cap), propagate_up=False)
        self._bt.propagate(tree.tree, tree.offs, a // self._bt.NODE_SLOTS, -(-b // self._bt.NODE_SLOTS))

    def _slot_weights(self, s0: int, s1: int, lo: int, hi: int, cap: int | None) -> np.ndarray:
        """Weights of slots ``[s0, s1)`` as float64 (0 where no readable row is)."""
        w = np.zeros(s1 - s0)
        if cap is None:
            runs = [(max(s0, lo), min(s1, hi), max(s0, lo))]
        else:
            d0 = (s0 - lo) % cap  # logical row of slot s0 (if held)
            cut = min(s1, s0 + cap - d0)  # slots from here on wrap to logical 0
            runs = [(lo + d0, lo + min(d0 + cut - s0, hi - lo), s0),
                    (lo, lo + min(s1 - cut, hi - lo), cut)]
        for ga, gb, sa in runs:
            if gb > ga:
                vals = self._read_ids(ga, gb)
                bad = _check(vals, self._what(), offset=ga - lo)
                if bad is not None:
                    raise bad
                w[sa - s0 : sa - s0 + (gb - ga)] = vals
        return w

    def _read_ids(self, a: int, b: int) -> np.ndarray:
        """Weights of the rows with global ids ``[a, b)``: committed ones from the store,
        buffered ones (this process's appends) from the write buffer."""
        store, name = self.store, self.weights_field
        total = store.total
        self.rows_read += b - a
        parts = []
        if a < total:
            parts.append(store.read_ids(a, min(b, total), fields=[name])[name])
        if b > total:
            parts.append(store.buffered_rows([name])[name][max(a, total) - total : b - total])
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)).astype(np.float64)

    # -- drawing --------------------------------------------------------------------------
    def sample_indices(self) -> np.ndarray:
        self._size()
        with self.store.lock:
            self._refresh()
            return self._drawn_ahead()

    def _draw(self, rows: int) -> np.ndarray:
        u = self.rng.random(rows)
        tree, bt = self._tree, self._bt
        out = np.empty(rows, np.int64)
        if self._array is not None:
            n = len(self._array)
            bt.draw_rows(tree.tree, tree.offs, u, self._array, self._array[:0], 0, n, n, 0, out)
            return out
        store, name = self.store, self.weights_field
        lo, hi = self._span
        cap = store.capacity or 0
        total = store.total
        view = store.mapped_view(name)
        if view is not None and view.array is not None and view.contiguous:
            src = view.array
            tail = store.buffered_rows([name])[name] if hi > total else src[:0]
            bt.draw_rows(tree.tree, tree.offs, u, src, tail, lo, hi, total, cap, out)
            return out
        # no memory map (compressed field, object store): gather the drawn blocks' weights
        blocks, rest = np.empty(rows, np.int64), np.empty(rows)
        bt.descend_many(tree.tree, tree.offs, u, blocks, rest)
        slots = blocks[:, None] * self.BLOCK + np.arange(self.BLOCK)
        logical = slots - lo if not cap else (slots - lo) % cap
        occupied = (logical >= 0) & (logical < hi - lo) & (slots < (hi if not cap else min(hi, cap)))
        w = np.zeros(slots.shape)
        w[occupied] = store.gather(name, logical[occupied])
        k = np.empty(rows, np.int64)
        bt.pick_many(w, occupied, rest, k)
        return logical[np.arange(rows), k]

    def _extra_state(self) -> dict[str, Any]:
        return {"weights": self.weights_field}


def _check(w: np.ndarray, what: str, offset: int = 0) -> SamplerError | None:
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return SamplerError(f"{what}: row {offset + i} has weight {float(w[i])}; weights must be finite and >= 0")
    return None
