"""How samplers read a sharded dataset: a batch reader over every shard's own reader, and
the shards' class indexes joined (see :mod:`replaystore.storage.dataset`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .dataset import ShardedDataset

__all__ = ["MergedClassIndex", "ShardedBatchReader"]


class MergedClassIndex:
    """Class lists of a dataset: the shards' class indexes joined (the ``ClassIndex``
    interface the balanced sampler reads: ``classes``, ``ids_view``, ``live_ranges``)."""

    ring = None

    def __init__(self, parts: Sequence[tuple[int, int, Any]], *, covered: int) -> None:
        self.spec = parts[0][2].spec
        self.covered = covered
        lists: dict[int, list[np.ndarray]] = {}
        for offset, rows, index in parts:
            starts, counts = index.live_ranges(0, rows)
            for j, c in enumerate(index.classes):
                ids = index.gather(j, np.arange(starts[j], starts[j] + counts[j], dtype=np.int64))
                lists.setdefault(int(c), []).append(ids + offset)
        self.classes = sorted(lists)
        self._ids = [np.concatenate(lists[c]).astype(np.int64) for c in self.classes]
        self.counts = [len(a) for a in self._ids]

    def ids_view(self, j: int) -> np.ndarray:
        return self._ids[j]

    def live_ranges(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        starts = np.array([np.searchsorted(a, lo) for a in self._ids], np.int64)
        ends = np.array([np.searchsorted(a, hi) for a in self._ids], np.int64)
        return starts, ends - starts

    def gather(self, j: int, positions: np.ndarray) -> np.ndarray:
        return self._ids[j][positions]


class ShardedBatchReader:
    """The samplers' batch reader of a dataset: each shard's own :class:`BatchReader` reads
    its rows of the batch (memory-mapped where the shard's fields are), scattered into one
    batch. Made for one snapshot layout; rebuilt when a refresh adds shards."""

    def __init__(self, ds: ShardedDataset, fields: Sequence[str], *, readahead: bool | str = "auto") -> None:
        self.ds = ds
        self.fields = tuple(fields)
        self.readahead = readahead
        self._readers: dict[int, Any] = {}

    def _reader_of(self, p: int) -> Any:
        i = self.ds._numbers[p]
        r = self._readers.get(i)
        if r is None:
            r = self._readers[i] = self.ds._stores[i].batch_reader(self.fields, readahead=self.readahead)
        return r

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray] | None:
        ds = self.ds
        with ds._lock:
            idx = np.asarray(indices, np.int64)
            return ds._gather_rows(idx, self.fields, None, self._reader_of)

    def will_need(self, indices: np.ndarray) -> None:
        ds = self.ds
        with ds._lock:
            idx = np.asarray(indices, np.int64)
            if not len(idx) or int(idx.max()) >= len(ds):
                return
            pos, local = ds._split(idx)
            for p in np.unique(pos):
                r = self._reader_of(int(p))
                if hasattr(r, "will_need"):
                    r.will_need(local[pos == p])
