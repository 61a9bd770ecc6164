"""Checking the priorities of prioritized replay (``_priority/``, optional).

A cleanly saved array must match its checksums; one left by a crash (not clean) must hold
values that are finite and >= 0. Either way its metadata must be what
:mod:`replaystore.storage.priorities` writes. Repair removes a damaged array: rows are
never dropped for it, they start at priority 1 when next sampled.

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> path = tempfile.mkdtemp() + "/s"
>>> store = rs.create(path, gym.spaces.Discrete(4), gym.spaces.Discrete(2))
>>> store.extend({"obs": [0, 1], "action": [0, 1], "reward": [0.0, 1.0], "next_obs": [1, 2],
...               "terminated": [False, True], "truncated": [False, False]})
>>> rs.PrioritizedSampler(store, batch_size=2).update_priorities([0, 1], [1.0, 2.0]); store.close()
>>> from pathlib import Path
>>> check_priorities_array(Path(path), None, {"total": 2, "size": 2})
([], [])
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ...errors import CorruptStoreError, ReplayStoreError
from ..backends import LocalBackend
from ..priorities import ARRAY, Priorities
from .report import SideDamage

__all__ = ["check_priorities_array"]


def check_priorities_array(root: Path, capacity: int | None, state: dict) -> tuple[list[SideDamage], list[str]]:
    """Damage found in ``root/_priority`` (none if there is no such array) and notes."""
    if not (root / ARRAY).exists():
        return [], []
    total, size = int(state.get("total", 0)), int(state.get("size", 0))
    backend = LocalBackend(root)
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pr = Priorities(backend, capacity=capacity, id_range=(total - size, total), alpha=1.0,
                            writable=False, stored_alpha=True)
        bad = [str(w.message) for w in caught if "not finite" in str(w.message)]
        if bad:
            return [SideDamage("priorities", bad[0].split(" (a crash")[0], "priorities", ARRAY)], notes
        if not pr.was_clean:
            notes.append(f"{root}/{ARRAY}: priorities were not saved cleanly (a crash, or a sampler "
                         "still in use): their values were checked, not their checksums")
        if np.count_nonzero(pr.leaves) == 0 and size:
            notes.append(f"{root}/{ARRAY}: every priority is 0")
    except (CorruptStoreError, ReplayStoreError, OSError, ValueError) as e:
        return [SideDamage("priorities", str(e), "priorities", ARRAY)], notes
    return [], notes
