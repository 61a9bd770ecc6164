"""Class-balanced sampling by any discrete key.

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> store = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(5), gym.spaces.Discrete(2))
>>> a = np.array([0] * 99 + [1])
>>> store.extend({"obs": np.zeros(100, int), "action": a, "reward": np.zeros(100),
...               "next_obs": np.zeros(100, int), "terminated": np.zeros(100, bool),
...               "truncated": np.zeros(100, bool)})
>>> s = BalancedSampler(store, by="action", batch_size=1000, seed=0)
>>> 400 < int(s.sample()["action"].sum()) < 600
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import SamplerError
from .base import Sampler

__all__ = ["BalancedSampler"]


class BalancedSampler(Sampler):
    """Each class of ``by`` gets an equal share of every batch (or ``class_weights``).

    ``by`` is a discrete field (``"action"``, a user ``"label"``, ``"terminated"``),
    ``"reward_sign"``, or a function ``f(rows: dict) -> int array`` (give ``key_name``
    and optionally ``key_fields``). Within a class rows are drawn uniformly, with
    replacement. The per-class index is built once and stored with the store; writers
    keep it current. Classes with no stored rows are skipped with a warning.
    """

    def __init__(self, store, by: Any, batch_size: int, *, seed=None,
                 class_weights: Mapping[Any, float] | None = None, fields=None,
                 key_fields=None, key_name: str | None = None, readahead="auto",
                 n_step: int = 1, gamma: float | None = None, frame_stack: int = 1) -> None:
        super().__init__(store, batch_size, seed=seed, fields=fields, readahead=readahead,
                         n_step=n_step, gamma=gamma, frame_stack=frame_stack)
        self.by = by
        self.index = store.class_index(by, key_fields=key_fields, key_name=key_name)
        self.class_weights = dict(class_weights) if class_weights is not None else None
        if self.class_weights is not None:
            for c, w in self.class_weights.items():
                if not np.isfinite(w) or w < 0:
                    raise SamplerError(f"class_weights[{c!r}] = {w!r}; expected a finite weight >= 0")
        self._gen = None
        self._tail_cache: dict | None = None  # buffered rows' ids per class (see _tail_ids)
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        store = self.store
        key = store.version
        if not force and key == self._gen:
            return
        if self.index.covered < store.total:
            self.index = store.class_index(self.by, key_fields=self.index.spec.fields or None,
                                           key_name=self.index.spec.name)
        lo, _ = store.id_range
        # committed rows come from the index, rows still in the write buffer from the buffer
        starts, counts = self.index.live_ranges(lo, store.total)
        classes = list(self.index.classes)
        ids = [self.index.ids_view(j) for j in range(len(classes))]
        tail = self._tail_ids(lo, classes, ids)
        starts = np.concatenate([starts, np.zeros(len(classes) - len(starts), np.int64)])
        counts = np.concatenate([counts, np.zeros(len(classes) - len(counts), np.int64)])
        totals = counts + np.array([len(t) for t in tail], np.int64)
        w = np.ones(len(classes))
        if self.class_weights is not None:
            unknown = [c for c in self.class_weights if _as_int(c) not in classes]
            if unknown:
                warnings.warn(
                    f"{store.path}: class_weights name classes {unknown} that have no rows in "
                    f"{self.index.spec.name!r}; they are skipped", stacklevel=3)
            w = np.array([float(self._weight_of(c)) for c in classes])
        empty = [c for c, n, wt in zip(classes, totals, w, strict=True) if n == 0 and wt > 0]
        if empty and force:
            warnings.warn(
                f"{store.path}: classes {empty} of {self.index.spec.name!r} have no stored rows; "
                "they are skipped", stacklevel=3)
        w = np.where(totals > 0, w, 0.0)
        if w.sum() <= 0:
            raise SamplerError(
                f"{store.path}: no class of {self.index.spec.name!r} has both stored rows and a "
                "positive weight"
            )
        self.classes = classes
        self.p = w / w.sum()
        self._active = np.flatnonzero(self.p > 0).tolist()
        self._starts = starts  # live range of each class list
        self._committed = counts
        self._counts = totals.astype(np.float64)
        self._ids = ids
        self._tail = tail if any(len(t) for t in tail) else None
        self._ring = self.index.ring
        self._lo = lo
        self._gen = key

    def _tail_ids(self, lo: int, classes: list[int], ids: list[np.ndarray]) -> list[np.ndarray]:
        """Global ids of the buffered rows of each class (classes seen only there are added).

        Kept across calls while the buffer only grows (the online loop: one row appended
        before each batch): only the rows buffered since the last call are keyed."""
        store = self.store
        b, first = store.buffered, store.total
        cache = self._tail_cache
        if not b or lo > first:  # (nothing buffered, or a ring evicting buffered rows)
            self._tail_cache = None
            return self._tail_ids_all(lo, classes, ids) if b else [np.empty(0, np.int64) for _ in classes]
        if cache is None or cache["first"] != first or cache["n"] > b:
            cache = self._tail_cache = {"first": first, "n": 0, "ids": {}, "len": {}}
        if cache["n"] < b:
            needs = self.index.spec.needs()
            rows = store.buffered_rows(needs)
            keys = self.index.spec.keys({k: v[cache["n"] : b] for k, v in rows.items()})
            row_ids = np.arange(first + cache["n"], first + b, dtype=np.int64)
            values = (keys[:1] if len(keys) == 1 else np.unique(keys)).tolist()
            for value in values:
                new = row_ids if len(values) == 1 else row_ids[keys == value]
                have = cache["ids"].get(value)
                n0 = cache["len"].get(value, 0)
                if have is None or n0 + len(new) > len(have):  # grow by doubling
                    grown = np.empty(max(2 * (n0 + len(new)), 64), np.int64)
                    if have is not None:
                        grown[:n0] = have[:n0]
                    have = cache["ids"][value] = grown
                have[n0 : n0 + len(new)] = new
                cache["len"][value] = n0 + len(new)
            cache["n"] = b
        for value in cache["ids"]:
            if value not in classes:
                classes.append(int(value))
                ids.append(np.empty(0, np.int64))
        return [cache["ids"][c][: cache["len"][c]] if c in cache["ids"] else np.empty(0, np.int64)
                for c in classes]

    def _tail_ids_all(self, lo: int, classes: list[int], ids: list[np.ndarray]) -> list[np.ndarray]:
        store = self.store
        tail = [np.empty(0, np.int64) for _ in classes]
        keys = self.index.spec.keys(store.buffered_rows(self.index.spec.needs()))
        first = store.total
        row_ids = np.arange(first, first + len(keys), dtype=np.int64)
        keep = row_ids >= lo
        keys, row_ids = keys[keep], row_ids[keep]
        for value in np.unique(keys).tolist():
            if value not in classes:
                classes.append(int(value))
                ids.append(np.empty(0, np.int64))
                tail.append(np.empty(0, np.int64))
            tail[classes.index(value)] = row_ids[keys == value]
        return tail

    def _weight_of(self, c: int) -> float:
        for k, v in self.class_weights.items():
            if _as_int(k) == c:
                return v
        return 0.0

    def sample_indices(self) -> np.ndarray:
        self._size()
        self._refresh()
        return self._drawn_ahead()

    def _draw(self, rows: int) -> np.ndarray:
        # class counts, then rows uniformly within each class, then a random order: the
        # same distribution as drawing (class, row) pairs one by one
        counts = self.rng.multinomial(rows, self.p)
        u = self.rng.random(rows)
        # positions within each class (committed list, then buffered rows), all rows at once
        pos = u * np.repeat(self._counts, counts)
        pos = pos.astype(np.int64)
        ids = np.empty(rows, np.int64)
        if self._tail is None:
            pos += np.repeat(self._starts, counts)
            if self._ring is not None:
                pos %= self._ring
            a = 0
            for j, c in zip(self._active, counts[self._active].tolist(), strict=True):
                if c:
                    np.take(self._ids[j], pos[a : a + c], out=ids[a : a + c])
                    a += c
        else:
            self._draw_with_tail(counts, pos, ids)
        if len(self._active) > 1:
            ids = ids[self.rng.permutation(rows)]
        ids -= self._lo
        return ids

    def _draw_with_tail(self, counts: np.ndarray, pos: np.ndarray, ids: np.ndarray) -> None:
        a = 0
        for j, c in zip(self._active, counts[self._active].tolist(), strict=True):
            if not c:
                continue
            seg, out = pos[a : a + c], ids[a : a + c]
            old = seg < self._committed[j]
            p = seg[old] + self._starts[j]
            if self._ring is not None:
                p %= self._ring
            out[old] = self._ids[j][p]
            out[~old] = self._tail[j][seg[~old] - self._committed[j]]
            a += c

    def _extra_state(self) -> dict[str, Any]:
        return {"by": self.index.spec.name}


def _as_int(c: Any) -> int:
    if isinstance(c, bool | np.bool_):
        return int(c)
    return int(c)
