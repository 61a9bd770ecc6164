"""Prioritized experience replay (Schaul et al. 2016), with priorities kept in the store.

Row ``i`` is drawn with probability ``P(i) = p_i**alpha / sum_k p_k**alpha`` (with
replacement; a row of priority 0 is never drawn) and comes with the importance weight
``w_i = (N * P(i)) ** -beta / max_j w_j``, the maximum taken over the batch, so weights
are at most 1 (``N`` = rows stored). Each batch holds the fields, ``"index"`` (the rows'
global ids, int64) and ``"weight"`` (float32). After learning on it, give the new
priorities (typically ``|TD error| + eps``) to :meth:`PrioritizedSampler.update_priorities`.
Rows appended later, and rows whose priorities were never saved, start at the largest
priority of the stored rows (1 in an empty store). Updates for rows a ring has evicted
since they were drawn are ignored.

The priorities are the store's ``_priority`` array (:mod:`replaystore.storage.priorities`):
saved with a store open for appending (on :meth:`~PrioritizedSampler.flush`, on the store's
``close()``, and by the online trainer at every commit), so a resumed run keeps them; kept in
memory for a store opened read-only or a ``.zip`` (with a warning). Only a sum tree over
blocks of 32 rows is held in memory (under a byte per row); draws and updates are compiled
by numba (:mod:`replaystore.sampling.sumtree`).

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> store = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(9), gym.spaces.Discrete(2))
>>> store.extend({"obs": np.arange(4), "action": np.zeros(4, int), "reward": np.zeros(4),
...               "next_obs": np.arange(4), "terminated": np.zeros(4, bool),
...               "truncated": np.zeros(4, bool)})
>>> s = PrioritizedSampler(store, batch_size=8, alpha=1.0, beta=0.5, seed=0)
>>> s.update_priorities(np.array([0, 1, 2, 3]), np.array([0.0, 1.0, 0.0, 3.0]))
>>> b = s.sample()
>>> sorted(set(b["index"].tolist())), float(b["weight"].max())
([1, 3], 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import SamplerError
from ..storage import TORN_RETRIES
from ..storage.priorities import check_priorities
from .base import Sampler

__all__ = ["PrioritizedSampler"]


def _check_exponent(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) \
            or not math.isfinite(float(v)) or float(v) < 0:
        raise SamplerError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


class PrioritizedSampler(Sampler):
    """Rows drawn in proportion to ``priority ** alpha``, with importance weights.

    ``beta`` is a number or a callable of the number of batches drawn so far (an
    annealing schedule, e.g. ``lambda k: min(1.0, 0.4 + 0.6 * k / 100_000)``).
    ``n_step=`` / ``gamma=`` work as for every sampler. The prioritized samplers of one open
    store share its priorities (and their alpha); :meth:`flush` or the store's ``close()``
    saves them.
    """

    def __init__(self, store, batch_size: int, *, alpha: float = 0.6,
                 beta: float | Callable[[int], float] = 0.4, seed=None, fields=None,
                 readahead="auto", n_step: int = 1, gamma: float | None = None) -> None:
        if not hasattr(store, "priorities"):
            raise SamplerError(f"{getattr(store, 'path', store)}: prioritized replay keeps its "
                               "priorities with one store; a sharded dataset has none (sample "
                               "it with a UniformSampler, BalancedSampler or WeightedSampler)")
        super().__init__(store, batch_size, seed=seed, fields=fields, readahead=readahead,
                         n_step=n_step, gamma=gamma)
        clash = [k for k in ("index", "weight") if k in self.fields]
        if clash:
            raise SamplerError(f"{store.path}: the store has a field {clash[0]!r}, and a PrioritizedSampler "
                               "adds 'index' (row ids) and 'weight' (importance weights) to its batches; "
                               "read the other fields (fields=[...])")
        self.alpha = _check_exponent("alpha", alpha)
        if not callable(beta):
            _check_exponent("beta", beta)
        self.beta = beta
        self.batches = 0
        from .sumtree import SumTree  # (numba is imported when a prioritized sampler is made)

        self._SumTree = SumTree
        self.priorities = store.priorities(self.alpha)
        if not self.priorities.persisted:
            warnings.warn(f"{store.path}: the store is not open for appending (read-only, a .zip or "
                          "remote); priorities live in memory and are not saved", RuntimeWarning,
                          stacklevel=2)
        if self.priorities.tree is None:
            self._start()

    @property
    def _tree(self):
        return self.priorities.tree

    @property
    def _seen(self) -> tuple[int, int]:
        return self.priorities.seen

    # -- keeping up with the store --------------------------------------------------------
    def _start(self) -> None:
        """The tree over the saved priorities: slots holding no stored row are 0, rows whose
        priorities were not saved get the largest saved one (1 if none)."""
        pr = self.priorities
        lo, hi = self.store.id_range
        pr.ensure(hi)
        held = np.zeros(len(pr.leaves), bool)
        held[pr.slots(np.arange(lo, hi, dtype=np.int64))] = True
        saved = pr.slots(np.arange(lo, max(lo, min(hi, pr.saved_rows)), dtype=np.int64))
        top = pr.leaves[saved].max() if len(saved) else np.float32(0)
        stale = np.flatnonzero(~held & (pr.leaves != 0))
        fresh = pr.slots(np.arange(max(lo, min(hi, pr.saved_rows)), hi, dtype=np.int64))
        if len(stale) or len(fresh):
            pr.mark_dirty()
            pr.leaves[stale] = 0
            pr.leaves[fresh] = top if top > 0 else 1.0
        pr.tree = self._SumTree(pr.leaves)
        pr.seen = lo, hi

    def _sync(self) -> None:
        """Rows appended since: the largest priority; rows evicted since: 0."""
        lo, hi = self.store.id_range
        old_lo, old_hi = self._seen
        if (lo, hi) == (old_lo, old_hi):
            return
        pr = self.priorities
        if pr.ensure(hi):
            pr.tree = self._SumTree(pr.leaves)
        gone = pr.slots(np.arange(old_lo, min(lo, old_hi), dtype=np.int64))
        new = pr.slots(np.arange(max(old_hi, lo, hi - len(pr.leaves)), hi, dtype=np.int64))
        top = self._tree.max_leaf
        pr.mark_dirty()
        self._tree.update(np.concatenate([gone, new]), np.concatenate(
            [np.zeros(len(gone), np.float32), np.full(len(new), top if top > 0 else 1.0, np.float32)]))
        pr.seen = lo, hi

    # -- drawing --------------------------------------------------------------------------
    def _ahead_key(self) -> tuple:
        return ()

    def sample_indices(self) -> np.ndarray:
        return self._draw_batch()[0]

    def _draw_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logical rows, global ids and importance weights of the next batch."""
        self._size()
        self._sync()
        tree = self._tree
        total = tree.total
        if not total > 0:
            raise SamplerError(f"{self.store.path}: every stored row has priority 0; at least one "
                               "needs a positive priority to be drawn")
        pr = self.priorities
        beta = float(self.beta(self.batches)) if callable(self.beta) else self.beta
        lo, hi = self._seen
        logical, ids, weight = tree.draw_rows(self.rng.random(self.batch_size), lo, hi, pr.capacity or 0, beta)
        self.batches += 1
        return logical, ids, weight

    def sample(self) -> dict[str, np.ndarray]:
        """The next batch: the fields, ``"index"`` (global row ids) and ``"weight"``."""
        for _ in range(TORN_RETRIES):
            idx, ids, weight = self._draw_batch()
            batch = self.reader.read(idx)
            if batch is not None:
                batch["index"] = ids
                batch["weight"] = weight
                return batch
        raise SamplerError(f"{self.store.path}: rows kept being overwritten while read")

    def iter(self, num_batches: int | None = None, prefetch: int = 0):
        """Yield batches; ``prefetch`` must be 0 (drawing ahead would ignore the priority
        updates made in between)."""
        if prefetch:
            raise SamplerError("a PrioritizedSampler cannot prefetch: the next batch depends on "
                               "the priority updates of this one (use prefetch=0)")
        return super().iter(num_batches, prefetch=0)

    def __iter__(self):
        return self.iter()

    # -- updating -------------------------------------------------------------------------
    def update_priorities(self, ids: Any, priorities: Any) -> None:
        """Set the priorities of the rows with global ids ``ids`` (e.g. ``batch["index"]``);
        ids a ring has evicted since are ignored. Priorities must be finite and >= 0."""
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise SamplerError(f"{self.store.path}: row ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64, copy=False).reshape(-1)
        p = np.asarray(priorities, dtype=np.float64)
        if p.shape != ids.shape:
            p = check_priorities(p, ids, f"{self.store.path}")  # (a scalar, or the error)
        self._sync()
        lo, hi = self._seen
        pr = self.priorities
        pr.mark_dirty()
        if self._tree.set_priorities(ids, p, lo, hi, pr.capacity or 0, self.alpha) >= 0:
            check_priorities(p, ids, f"{self.store.path}")
            bad = ids[(ids >= hi) | (ids < 0)]
            raise SamplerError(f"{self.store.path}: row ids {bad[:5].tolist()} were never stored "
                               f"(the store holds ids {lo}..{hi - 1})")

    # -- saving ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Save the priorities with the store's committed rows (a store open for appending)."""
        self.store.flush() if self.store.mode == "a" else None
        self.priorities.flush(min(self._seen[1], self.store.total))

    def close(self) -> None:
        """Save the priorities (the store's ``close()`` does too, and releases them)."""
        if self.priorities.leaves.size:
            self.flush()

    def priority(self, ids: Any) -> np.ndarray:
        """Current priorities (not raised to alpha) of the rows with global ids ``ids``."""
        ids = np.asarray(ids, np.int64)
        self._sync()
        lo, hi = self._seen
        if len(ids) and (int(ids.min()) < lo or int(ids.max()) >= hi):
            raise SamplerError(f"{self.store.path}: the store holds ids {lo}..{hi - 1}")
        leaf = self.priorities.leaves[self.priorities.slots(ids)].astype(np.float64)
        return leaf ** (1.0 / self.alpha) if self.alpha > 0 else leaf

    # -- state ----------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        beta = None if callable(self.beta) else self.beta
        return {"alpha": self.alpha, "beta": beta, "batches": self.batches}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.batches = int(state.get("batches", 0))

    def __repr__(self) -> str:
        return (f"PrioritizedSampler(store={str(self.store.path)!r}, batch_size={self.batch_size}, "
                f"alpha={self.alpha}, beta={self.beta!r})")
