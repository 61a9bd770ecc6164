"""A block of collected rows, written to the store with one ``extend``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import SchemaError
from ..storage import ReplayStore

__all__ = ["RowBlock"]


class RowBlock:
    """Rows of a run gathered in numpy arrays (one per field of ``store``), written with
    one ``store.extend``. In episodes mode, rows of episodes still running are held back
    (:meth:`flush` with ``hold``) until their episode ends.

    >>> import tempfile, gymnasium as gym, numpy as np, replaystore as rs
    >>> store = rs.create(tempfile.mkdtemp() + "/b", gym.spaces.Discrete(3), gym.spaces.Discrete(2))
    >>> block = RowBlock(store, 4)
    >>> block.add({"obs": np.array([0, 1]), "action": np.array([1, 0]), "reward": np.zeros(2),
    ...            "next_obs": np.array([1, 2]), "terminated": np.array([False, True]),
    ...            "truncated": np.zeros(2, bool), "episode": np.array([0, 0]),
    ...            "step": np.array([0, 1])}, None)
    >>> block.flush(); len(store), block.written
    (2, 2)
    >>> store.close()
    """

    def __init__(self, store: ReplayStore, rows: int) -> None:
        self.store = store
        self.fields = {f.name: (f.dtype, f.shape) for f in store.schema}
        self.arrays = {n: np.empty((rows, *s), d) for n, (d, s) in self.fields.items()}
        self.n = 0
        self.written = 0

    @property
    def capacity(self) -> int:
        return len(self.arrays["reward"])

    def reserve(self, m: int) -> None:
        if self.n + m <= self.capacity:
            return
        new = max(2 * self.capacity, self.n + m)
        for name, arr in self.arrays.items():
            grown = np.empty((new, *arr.shape[1:]), arr.dtype)
            grown[: self.n] = arr[: self.n]
            self.arrays[name] = grown

    def add(self, cols: Mapping[str, np.ndarray], idx: np.ndarray | None) -> None:
        m = len(cols["reward"]) if idx is None else len(idx)
        self.reserve(m)
        lo, hi = self.n, self.n + m
        for name, arr in self.arrays.items():
            src = cols[name] if idx is None else np.asarray(cols[name])[idx]
            try:
                np.copyto(arr[lo:hi], src, casting="same_kind")
            except (TypeError, ValueError) as e:
                raise SchemaError(
                    f"{self.store.path}: field {name!r} expects {arr.dtype} values of shape "
                    f"{arr.shape[1:]}, the env/policy gave {np.asarray(src).dtype} of shape "
                    f"{np.shape(src)[1:]}: {e}"
                ) from None
        self.n = hi

    def flush(self, hold: np.ndarray | None = None, *, discard_held: bool = False) -> None:
        """Extend the store with the rows whose episode is not in ``hold``; keep (or
        discard) the held rows at the front of the block."""
        n = self.n
        if not n:
            return
        if hold is None or not len(hold):
            write = None
            held = 0
        else:
            keep = np.isin(self.arrays["episode"][:n], hold)
            write = np.flatnonzero(~keep)
            held_idx = np.flatnonzero(keep)
            held = len(held_idx)
        if write is None:
            self.store.extend({k: v[:n] for k, v in self.arrays.items()})
            self.written += n
        else:
            if len(write):
                self.store.extend({k: v[write] for k, v in self.arrays.items()})
                self.written += len(write)
            if held and not discard_held:
                for arr in self.arrays.values():
                    arr[:held] = arr[held_idx]
            else:
                held = 0
        self.n = held
