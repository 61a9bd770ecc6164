"""The write buffer: rows appended but not yet committed, oldest first.

Rows are copied into preallocated arrays of ``capacity`` rows; when they fill up the
writer writes them out. If a write fails, the rows that did not fit are kept aside in
order (``pending``), so nothing handed to ``append``/``extend`` is lost. Readers in the
writer's own process read buffered rows from here (:meth:`gather`, :meth:`rows`), so
reading never has to write.

>>> import numpy as np
>>> from replaystore.storage.schema import Field, Schema
>>> b = WriteBuffer(Schema([Field("reward", "float32")]), 4)
>>> b.add({"reward": np.arange(3, dtype=np.float32)}, 3, write=lambda: None)
>>> b.count, b.gather("reward", np.array([2, 0])).tolist()
(3, [2.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import StoreWriteError
from .schema import Schema

__all__ = ["WriteBuffer", "copy_rows"]


def copy_rows(arrays: dict[str, np.ndarray], a: int, b: int) -> dict[str, np.ndarray]:
    """Rows ``[a, b)`` of a batch as new arrays (a single row becomes a batch of one)."""
    if arrays["reward"].ndim == 0:
        return {k: np.asarray(v)[None].copy() for k, v in arrays.items()}
    return {k: np.array(v[a:b]) for k, v in arrays.items()}


class WriteBuffer:
    """Buffered rows of every field of ``schema``."""

    def __init__(self, schema: Schema, capacity: int) -> None:
        self.schema = schema
        self.capacity = int(capacity)
        self.own = {f.name: np.zeros((self.capacity, *f.shape), f.dtype) for f in schema}
        self.arrays = self.own  # where rows go: ``own``, or views bound by :meth:`bind`
        self.limit = self.capacity  # rows ``arrays`` can hold
        self.n = 0  # rows in ``arrays``
        self.pending: list[dict[str, np.ndarray]] = []  # rows a failed write left, in order
        #: called after :meth:`demote` (the writer's fast path holds the arrays)
        self.on_demote: Callable[[], None] | None = None

    def bind(self, views: dict[str, np.ndarray] | None) -> None:
        """Hold the next rows in ``views`` (same fields, at most ``capacity`` rows each), e.g.
        the rows' own places in a private map, or in ``own`` (``None``); only when empty."""
        assert not self.n and not self.pending
        self.arrays = views if views is not None else self.own
        self.limit = len(next(iter(self.arrays.values()))) if views is not None else self.capacity

    def demote(self) -> None:
        """Bound views full before ``capacity`` rows: move the rows to ``own`` and go on there."""
        if self.arrays is self.own:
            return
        for name, a in self.arrays.items():
            self.own[name][: self.n] = a[: self.n]
        self.arrays, self.limit = self.own, self.capacity
        if self.on_demote is not None:
            self.on_demote()

    @property
    def count(self) -> int:
        """All buffered rows (``arrays`` first, then ``pending``)."""
        if not self.pending:
            return self.n
        return self.n + sum(len(p["reward"]) for p in self.pending)

    @property
    def full(self) -> bool:
        return self.n == self.capacity

    def add(self, arrays: dict[str, np.ndarray], n: int, *, write: Callable[[], None]) -> None:
        """Copy ``n`` rows in, calling ``write()`` (which empties the arrays) whenever they
        fill up. If it fails, the rows not yet copied go to ``pending`` and it re-raises."""
        single = arrays["reward"].ndim == 0
        src = 0
        if self.n == self.capacity:  # full: an earlier write of it failed; try again first
            try:
                write()
            except StoreWriteError:
                self.pending.append(copy_rows(arrays, 0, n))
                raise
        while src < n:
            if self.n == self.limit < self.capacity:
                self.demote()
            m = min(n - src, self.limit - self.n)
            for name, buf in self.arrays.items():
                a = arrays[name]
                if single:
                    buf[self.n] = a
                else:
                    buf[self.n : self.n + m] = a[src : src + m]
            self.n += m
            src += m
            if self.n == self.capacity:
                try:
                    write()
                except StoreWriteError:
                    if src < n:
                        self.pending.append(copy_rows(arrays, src, n))
                    raise

    def queue(self, arrays: dict[str, np.ndarray], n: int) -> None:
        """Keep rows aside behind the pending ones (an earlier write failed)."""
        self.pending.append(copy_rows(arrays, 0, n))

    def rows(self, name: str) -> np.ndarray:
        """Every buffered row of field ``name``, oldest first (a view when possible)."""
        head = self.arrays[name][: self.n]
        if not self.pending:
            return head
        return np.concatenate([head, *(p[name] for p in self.pending)])

    def gather(self, name: str, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Buffered rows at ``positions`` (0 = the oldest buffered row)."""
        src = self.arrays[name] if not self.pending else self.rows(name)
        return src.take(positions, axis=0, out=out)

    def take_all(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        return {name: self.rows(name) for name in names}
