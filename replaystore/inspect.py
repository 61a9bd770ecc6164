"""pandas views of a store: rows as a DataFrame, one row per episode, a sampled batch,
and the summary ``replaystore info`` prints.

``to_pandas`` and ``episodes`` live with the store (:mod:`replaystore.storage.frames`,
so ``store.to_pandas()`` needs nothing above the storage layer) and are re-exported here.

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> s = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Box(-2, 2, (2,)), gym.spaces.Discrete(3))
>>> s.extend({"obs": [[0, 0], [1, 1]], "action": [0, 2], "reward": [1.0, 2.0],
...           "next_obs": [[1, 1], [2, 2]], "terminated": [False, True], "truncated": [False, False]})
>>> to_pandas(s, fields=["obs", "action", "reward"]).columns.tolist()
['obs_0', 'obs_1', 'action', 'reward']
>>> s.close()
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import spaces
from .framebytes import frames_line
from .sampling import BalancedSampler, UniformSampler
from .storage.frames import BLOCK_ROWS, columns, episodes, to_pandas

if TYPE_CHECKING:
    from .storage import ReplayStore

__all__ = ["to_pandas", "episodes", "columns", "batch_frame", "sample_frame", "frame_text",
           "human_bytes", "summary", "StoreSummary", "BLOCK_ROWS"]


def batch_frame(batch: Mapping[str, np.ndarray], *, max_columns_per_field: int = 64) -> pd.DataFrame:
    """A sampled batch (dict of aligned arrays) as a DataFrame, one column per component;
    fields wider than ``max_columns_per_field`` (images) are left out.

    >>> batch_frame({"obs": np.zeros((2, 2)), "action": np.array([1, 0])}).columns.tolist()
    ['obs_0', 'obs_1', 'action']
    """
    cols: dict[str, np.ndarray] = {}
    for name, values in batch.items():
        if int(np.prod(values.shape[1:], dtype=np.int64)) <= max_columns_per_field:
            cols.update(columns(name, values))
    return pd.DataFrame(cols)


def sample_frame(
    store: ReplayStore,
    *,
    batch_size: int = 8,
    balanced_by: str | None = None,
    seed: int | None = 0,
    fields: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One seeded batch as a DataFrame (what ``replaystore sample`` prints): uniform, or
    class-balanced by a discrete field (``balanced_by``, e.g. ``"action"``)."""
    if balanced_by:
        sampler = BalancedSampler(store, by=balanced_by, batch_size=batch_size, seed=seed,
                                  fields=fields)
    else:
        sampler = UniformSampler(store, batch_size=batch_size, seed=seed, fields=fields)
    return batch_frame(sampler.sample())


def frame_text(df: pd.DataFrame, *, index: bool = True) -> str:
    """A DataFrame as plain text, up to 200 characters and 30 columns wide."""
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        return df.to_string(index=index)


def human_bytes(n: float) -> str:
    """``n`` bytes in B, KiB, MiB or GiB.

    >>> human_bytes(512), human_bytes(3 * 2**20)
    ('512 B', '3.0 MiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@dataclass(frozen=True)
class StoreSummary:
    """What a store holds, as ``replaystore info`` prints it (:meth:`lines`)."""

    path: str
    format_version: int
    created: Mapping[str, Any]
    env: Mapping[str, Any]
    rows: int
    total: int
    capacity: int | None
    episodes: int
    complete_episodes: int
    observation: str | None
    action: str | None
    fields: tuple[tuple[str, str, tuple[int, ...], int, str | None, int, int], ...]
    """``(name, dtype, shape, chunk rows, codec, data bytes, bytes on disk)`` of every field:
    data is the rows held (uncompressed: rows x row bytes; compressed: the chunks' bytes)"""
    on_disk: int = 0
    """bytes the whole store takes on disk (a directory: blocks allocated; a zip: its size)"""
    apparent: int | None = None
    """a directory's files' total length, holes of sparse files included (None for a zip)"""
    priorities: str | None = None
    """what the store's saved priorities (prioritized replay) are, if it has any"""
    frame_stacks: str | None = None
    """for image-like observations: the bytes of stacking 4 frames at sample time or at collection"""
    shards: str | None = None
    """for a sharded dataset: how many shards and their rows"""

    def lines(self) -> list[str]:
        env = self.env.get("id") or "-"
        if self.env.get("kwargs"):
            env += f" {json.dumps(self.env.get('kwargs'))}"
        cap = "unbounded" if self.capacity is None else f"{self.capacity:,} (ring)"
        lines = [
            f"store:          {self.path}",
            f"format version: {self.format_version} (replaystore "
            f"{self.created.get('replaystore_version')}, created {self.created.get('time')})",
            f"env:            {env}",
            f"rows:           {self.rows:,} (total written {self.total:,})",
            f"capacity:       {cap}",
            f"episodes:       {self.episodes:,} ({self.complete_episodes:,} complete)",
        ]
        if self.observation is not None:
            lines.append(f"observation:    {self.observation}")
            lines.append(f"action:         {self.action}")
        lines.append("fields:")
        lines.append(f"  {'name':<16}{'dtype':<9}{'shape':<12}{'chunk rows':>11}  {'codec':<12}"
                     f"{'data':>10}{'on disk':>10}")
        for name, dtype, shape, chunk_rows, codec, data, size in self.fields:
            lines.append(f"  {name:<16}{dtype:<9}{str(shape):<12}{chunk_rows:>11,}  "
                         f"{codec or 'none':<12}{human_bytes(data):>10}{human_bytes(size):>10}")
        lines.append(f"  {'total':<60}{human_bytes(sum(f[-2] for f in self.fields)):>10}"
                     f"{human_bytes(sum(f[-1] for f in self.fields)):>10}")
        lines.append(f"size:           {self.size_line()}")
        if self.shards is not None:
            lines.append(f"shards:         {self.shards}")
        if self.priorities is not None:
            lines.append(f"priorities:     {self.priorities}")
        if self.frame_stacks is not None:
            lines.append(f"frame stacks:   {self.frame_stacks}")
        return lines

    def size_line(self) -> str:
        """Data, size on disk and apparent size in one line.

        >>> StoreSummary("s", 1, {}, {}, 1, 1, None, 0, 0, None, None,
        ...              (("obs", "int64", (), 8, None, 8, 4096),), 8192, 65536).size_line()
        'data 8 B, on disk 8.0 KiB, apparent 64.0 KiB (sparse files; cp, rsync or tar may inflate them)'
        """
        data = human_bytes(sum(f[-2] for f in self.fields))
        if self.apparent is None:
            return f"data {data}, zip file {human_bytes(self.on_disk)}"
        note = (" (sparse files; cp, rsync or tar may inflate them)"
                if self.apparent > 2 * max(self.on_disk, 1) else "")
        return f"data {data}, on disk {human_bytes(self.on_disk)}, apparent {human_bytes(self.apparent)}{note}"


def _dir_sizes(root: Path) -> tuple[int, int]:
    """``(bytes on disk, apparent bytes)`` of the files under ``root`` (links not followed)."""
    disk = apparent = 0
    for d, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(d, name))
                apparent += st.st_size
                disk += getattr(st, "st_blocks", -(-st.st_size // 512)) * 512
    return disk, apparent


def _sizes(path: str) -> tuple[int, int | None]:
    """``(on disk, apparent)`` of the store at ``path``: a directory, a zip file, or a URL
    (``(0, None)``: unknown)."""
    p = Path(path)
    if "://" in path or not p.exists():
        return 0, None
    if p.is_dir():
        return _dir_sizes(p)
    return p.stat().st_size, None


def summary(store: ReplayStore) -> StoreSummary:
    """Schema, spaces, rows, episodes, capacity, chunking and size on disk of ``store``.

    >>> import tempfile, gymnasium as gym, replaystore as rs
    >>> s = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(3), gym.spaces.Discrete(2))
    >>> summary(s).lines()[4]
    'capacity:       unbounded'
    >>> s.close()
    """
    meta = store.metadata
    sizes = store.nbytes_on_disk()
    held = store.total if store.capacity is None else min(store.total, store.capacity)
    on_disk, apparent = _sizes(str(store.path))
    ep = store.episodes()
    obs = store.observation_space
    return StoreSummary(
        path=str(store.path),
        format_version=store.format_version,
        created=meta.get("created", {}),
        env=meta.get("env", {}),
        rows=len(store),
        total=store.total,
        capacity=store.capacity,
        episodes=len(ep),
        complete_episodes=int(ep["complete"].sum()) if len(ep) else 0,
        observation=None if obs is None else spaces.describe(obs),
        action=None if obs is None else spaces.describe(store.action_space),
        fields=tuple((f.name, f.dtype.name, tuple(f.shape), f.chunk_rows, f.codec,
                      sizes[f.name] if f.compressed else held * f.row_bytes, sizes[f.name])
                     for f in store.schema),
        on_disk=on_disk,
        apparent=apparent,
        priorities=_priorities_line(store),
        frame_stacks=frames_line(store),
        shards=_shards_line(store),
    )


def _shards_line(store: Any) -> str | None:
    rows = getattr(store, "shard_rows", None)
    if rows is None:
        return None
    if not len(rows):
        return "0 (a sharded dataset with no shards yet)"
    return (f"{len(rows):,} (sharded dataset; rows per shard: min {int(rows.min()):,}, "
            f"max {int(rows.max()):,})")


def _priorities_line(store: ReplayStore) -> str | None:
    p = store.saved_priorities() if hasattr(store, "saved_priorities") else None
    if p is None:
        return None
    state = "saved cleanly (checksums)" if p["clean"] else "not saved cleanly (in use, or a crash)"
    return (f"priority**{p['alpha']:g} of rows with ids below {p['rows']:,} in _priority/, {state}; "
            "newer rows start at the largest")
