"""Feeding PyTorch models from a store: :class:`ReplayDataset`, for ``torch.utils.data.DataLoader``.

Each item is a whole batch (a dict of tensors, what the sampler returns), so give the
loader ``batch_size=None``. With ``num_workers=k`` every worker opens the store itself
(read-only, from its path) and draws with its own generator, seeded from ``seed``, the
worker's number and :meth:`ReplayDataset.set_epoch`'s epoch, so a run is reproducible;
with ``replacement=False`` the workers share one epoch order and take turns, so every row
is read exactly once per epoch. Pass ``pin_memory=True`` to the loader for pinned tensors.
Workers read committed rows; rows still in a writer's buffer are seen with
``num_workers=0`` in the writer's own process.

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> path = tempfile.mkdtemp() + "/s"
>>> with rs.create(path, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)) as store:
...     store.extend({"obs": np.zeros((10, 3)), "action": np.ones(10, int), "reward": np.ones(10),
...                   "next_obs": np.zeros((10, 3)), "terminated": np.zeros(10, bool),
...                   "truncated": np.zeros(10, bool)})
>>> import torch
>>> loader = torch.utils.data.DataLoader(ReplayDataset(path, batch_size=4, num_batches=2, seed=0),
...                                      batch_size=None)
>>> [tuple(b["obs"].shape) for b in loader]
[(4, 3), (4, 3)]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .agents.dqn import require_torch
from .errors import SamplerError
from .storage import ReplayStore
from .storage import open as open_store

torch = require_torch()

__all__ = ["ReplayDataset"]


class ReplayDataset(torch.utils.data.IterableDataset):
    """Batches of a store as dicts of tensors (see the module docstring).

    ``store`` is a path (or URL) or an open :class:`ReplayStore` (workers reopen it by its
    path). ``sampler`` is ``"uniform"`` (``replacement=`` as :class:`UniformSampler`),
    ``"balanced"`` (``by=``) or ``"weighted"`` (``weights=``); other keywords (``fields``,
    ``n_step``, ``gamma``, ...) go to the sampler. ``num_batches`` per worker per epoch
    (``None``: forever with replacement, one epoch without).
    """

    def __init__(self, store: str | os.PathLike | ReplayStore, batch_size: int, *, seed: int = 0,
                 sampler: str = "uniform", num_batches: int | None = None,
                 fields: Sequence[str] | None = None, storage_options: dict | None = None,
                 **sampler_kwargs: Any) -> None:
        super().__init__()
        if sampler not in ("uniform", "balanced", "weighted"):
            raise SamplerError(f"sampler must be 'uniform', 'balanced' or 'weighted', got {sampler!r}")
        self._store = store if isinstance(store, ReplayStore) else None
        self.path = str(store.path) if isinstance(store, ReplayStore) else os.fspath(store)
        self.storage_options = storage_options
        self.batch_size, self.seed, self.sampler = int(batch_size), int(seed), sampler
        self.num_batches = num_batches
        self.fields = list(fields) if fields is not None else None
        self.sampler_kwargs = sampler_kwargs
        self.epoch = 0
        if self._store is None:  # (fail here, in the main process, with the store's own error)
            open_store(self.path, storage_options=storage_options).close()

    def set_epoch(self, epoch: int) -> None:
        """Use another epoch's draws (call before each pass over the loader)."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"] = None  # (a worker opens its own)
        return state

    def _make(self, store: ReplayStore, seed: int):
        from .sampling import BalancedSampler, UniformSampler, WeightedSampler

        kw = dict(self.sampler_kwargs, seed=seed, fields=self.fields)
        if self.sampler == "uniform":
            return UniformSampler(store, self.batch_size, **kw)
        if self.sampler == "balanced":
            return BalancedSampler(store, batch_size=self.batch_size, **kw)
        return WeightedSampler(store, batch_size=self.batch_size, **kw)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        own = self._store is not None and info is None
        store = self._store if own else open_store(self.path, storage_options=self.storage_options)
        try:
            epochs = self.sampler == "uniform" and self.sampler_kwargs.get("replacement") is False
            # epochs: one order for all workers, which take turns; else each its own draws
            ss = np.random.SeedSequence([self.seed, self.epoch] + ([] if epochs else [worker]))
            sampler = self._make(store, int(ss.generate_state(1)[0]))
            if epochs:
                per_epoch = -(-len(store) // self.batch_size)
                total = per_epoch if self.num_batches is None else self.num_batches * workers
                for k in range(total):
                    batch = sampler.sample()
                    if k % workers == worker:
                        yield _tensors(batch)
                return
            k = 0
            while self.num_batches is None or k < self.num_batches:
                yield _tensors(sampler.sample())
                k += 1
        finally:
            if not own:
                store.close()


def _tensors(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
