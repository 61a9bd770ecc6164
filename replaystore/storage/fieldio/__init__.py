"""How one field's rows are written and gathered, chosen once per field.

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> s = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(3), gym.spaces.Discrete(2),
...               codecs={"obs": "zstd:3"})
>>> type(s.field_io("obs")).__name__, type(s.field_io("action")).__name__
('ChunkedField', 'MappedField')
>>> s.close()
"""

from __future__ import annotations

from ..backends import Backend
from ..schema import Field
from .base import FieldIO
from .chunked import ChunkCache, ChunkedField, ZarrArrays
from .mapped import MappedField

__all__ = ["FieldIO", "MappedField", "ChunkedField", "ChunkCache", "ZarrArrays", "open_field"]


def open_field(backend: Backend, field: Field, *, capacity: int | None, extent: int,
               arrays: ZarrArrays, cache: ChunkCache, advice: int, hugepages: bool,
               private: bool = False) -> FieldIO:
    """The FieldIO of ``field``: memory maps for uncompressed fields where the backend can
    map chunks (local directory, zip), zarr chunks through the cache otherwise.
    ``private``: copy-on-write maps, for a ring's writer (see :class:`ChunkedView`)."""
    if not field.compressed and backend.memory_mappable:
        return MappedField(backend, field, capacity=capacity, extent=extent, advice=advice,
                           hugepages=hugepages, private=private and backend.in_place_writes)
    return ChunkedField(backend, field, capacity=capacity, arrays=arrays, cache=cache)
