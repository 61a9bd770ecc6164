"""What frame stacks cost on disk: stacked at collection, or at sample time.

An env wrapped in gymnasium's ``FrameStackObservation(env, k)`` hands the collector
observations of ``k`` frames, so a store of it keeps every frame ``k`` times in ``obs``
and ``k`` times in ``next_obs``. Collecting the unwrapped env and sampling with
``frame_stack=k`` (:mod:`replaystore.sampling.framestack`) keeps each frame once in each
and gives the same stacks (``padding_type="reset"``, gymnasium's default).

>>> import gymnasium as gym, numpy as np
>>> fb = frame_stack_bytes(gym.spaces.Box(0, 255, (84, 84), np.uint8), 4, rows=1_000_000)
>>> fb.at_sample_time, fb.at_collection
(14112000000, 56448000000)
>>> print(fb)
frame_stack=4 at sample time: 13.1 GiB; FrameStackObservation(4) at collection: 52.6 GiB (4.0x)
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from . import spaces
from .errors import SamplerError
from .storage import ReplayStore

__all__ = ["FrameStackBytes", "frame_stack_bytes"]


@dataclass(frozen=True)
class FrameStackBytes:
    """Bytes of ``rows`` rows both ways. ``frame_bytes``: one frame (every ``obs`` field of
    one row, unstacked); ``other_bytes``: per row, every field but ``obs``/``next_obs``
    (0 when counted from a space)."""

    k: int
    rows: int
    frame_bytes: int
    other_bytes: int = 0

    @property
    def at_sample_time(self) -> int:
        """Each frame stored once in ``obs`` and once in ``next_obs``; ``frame_stack=k``."""
        return self.rows * (2 * self.frame_bytes + self.other_bytes)

    @property
    def at_collection(self) -> int:
        """Through ``FrameStackObservation(k)``: ``k`` frames in each of ``obs`` and ``next_obs``."""
        return self.rows * (2 * self.k * self.frame_bytes + self.other_bytes)

    def __str__(self) -> str:
        from .inspect import human_bytes

        ratio = self.at_collection / self.at_sample_time if self.at_sample_time else float(self.k)
        return (f"frame_stack={self.k} at sample time: {human_bytes(self.at_sample_time)}; "
                f"FrameStackObservation({self.k}) at collection: {human_bytes(self.at_collection)} ({ratio:.1f}x)")


def frame_stack_bytes(source: ReplayStore | gym.Space, k: int = 4, rows: int | None = None, *,
                      stacked: bool = False) -> FrameStackBytes:
    """Bytes ``rows`` rows take with frames stacked at sample time or at collection.

    ``source`` is a store (every field counted; ``rows`` defaults to the rows it holds) or
    an observation space (``obs`` and ``next_obs`` only; give ``rows``). ``stacked=True``
    says its observations already hold ``k`` frames (an env wrapped in
    ``FrameStackObservation(k)``): each ``obs`` field's first axis is then ``k``.
    """
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise SamplerError(f"frame stacks: k must be an int >= 1, got {k!r}")
    k = int(k)
    if isinstance(source, ReplayStore):
        where = str(source.path)
        obs = [(f.name, f.shape, f.dtype) for f in source.schema if f.name == "obs" or f.name.startswith("obs.")]
        other = sum(f.row_bytes for f in source.schema
                    if not any(f.name in (n, "next_" + n) for n, _, _ in obs))
        rows = len(source) if rows is None else rows
    elif isinstance(source, gym.Space):
        where = str(source)
        obs = []
        for name, space in spaces.flatten_space("obs", source):
            dtype, shape = spaces.field_spec(space)
            obs.append((name, tuple(shape), np.dtype(dtype)))
        other = 0
        if rows is None:
            raise SamplerError(f"frame stacks of {where}: give rows= (how many transitions)")
    else:
        raise SamplerError(f"frame stacks: expected a ReplayStore or a gymnasium Space, got {type(source).__name__}")
    if not obs:
        raise SamplerError(f"{where}: no observation field ('obs', 'obs.<key>') to stack")
    if not isinstance(rows, int | np.integer) or isinstance(rows, bool) or rows < 0:
        raise SamplerError(f"frame stacks of {where}: rows must be an int >= 0, got {rows!r}")
    frame = 0
    for name, shape, dtype in obs:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if stacked:
            if not shape or shape[0] != k:
                raise SamplerError(f"{where}: stacked=True needs {name!r} to hold k={k} frames on its first "
                                   f"axis, but its shape is {shape}")
            size //= k
        frame += size
    return FrameStackBytes(k, int(rows), frame, int(other))


def frames_line(store: ReplayStore, k: int = 4) -> str | None:
    """The ``replaystore info`` line for stores of image-like frames (an ``obs`` field of two
    or more axes); ``None`` for others."""
    if not any((f.name == "obs" or f.name.startswith("obs.")) and len(f.shape) >= 2 for f in store.schema):
        return None
    return str(frame_stack_bytes(store, k))
