"""Dask views of a store, for analyses larger than RAM: :func:`to_dask` (field -> lazy
``dask.array``) and :func:`to_dask_dataframe` (the :meth:`~ReplayStore.to_pandas` columns,
lazily). Both read the committed rows of the store's state when they are called, in
logical order (row 0 = the oldest row still held; a ring that has wrapped reads physical
rows ``[cursor:capacity]`` then ``[0:cursor]``), straight from the field arrays' Zarr
chunks: rows still in a writer's buffer are not there, and nothing is ever written.

A *sharded* dataset (anything with a ``shards`` sequence of stores) reads shard after
shard, with one continuous row index. Needs ``pip install "replaystore[dask]"``.

Per-episode returns of a dataset larger than RAM, with bounded memory: the groupby reads
only the ``episode`` and ``reward`` columns (dask pushes the column selection into the
read), one partition of a few MB at a time per thread, and keeps one partial sum per
episode (run it on a ``distributed.Client`` for a cluster; the graph pickles):

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> s = rs.create(tempfile.mkdtemp() + "/s.zarr", gym.spaces.Discrete(4), gym.spaces.Discrete(2))
>>> s.extend({"obs": [0, 1, 2, 3, 0], "action": [0, 1, 0, 1, 1], "next_obs": [1, 2, 3, 0, 1],
...           "reward": [1.0, 0.5, 0.0, 2.0, 1.0], "terminated": [False, True, False, False, True],
...           "truncated": [False] * 5})
>>> s.flush()
>>> frame = s.to_dask_dataframe()
>>> frame.groupby("episode").reward.sum().compute().sort_index().to_dict()
{0: 1.5, 1: 3.0}

The same with dask arrays (episode ids count up from the store's first, so ``bincount``
needs only ``max - min + 1`` bins):

>>> import dask.array as da
>>> arrays = s.to_dask(["episode", "reward"])
>>> ep = arrays["episode"]
>>> lo, hi = (int(x) for x in da.compute(ep.min(), ep.max()))
>>> da.bincount(ep - lo, weights=arrays["reward"], minlength=hi - lo + 1).compute().tolist()
[1.5, 3.0]
>>> s.close()

The arrays and frames are lazy: rows are read when they are computed. Committed rows of
an unbounded store never change, but a ring's writer overwrites its oldest rows in place,
so compute a ring's arrays before its writer commits again (they do not check for
overwritten rows the way :meth:`~ReplayStore.read` does; a reader of a ring another process
writes should ``refresh()`` just before). They do not need the store to stay open.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CorruptStoreError, MissingExtraError, SchemaError
from . import layout, ring
from .backends import remote_errors
from .fieldio.chunked import ZarrArrays, every_chunk_written
from .frames import columns as field_columns
from .schema import Field

if TYPE_CHECKING:
    import dask.array
    import dask.dataframe

    from .store import ReplayStore

__all__ = ["to_dask", "to_dask_dataframe", "PARTITION_BYTES"]

#: target in-memory size of one partition of :func:`to_dask_dataframe` (all its columns);
#: a partition is at most one chunk of the field with the fewest rows per chunk
PARTITION_BYTES = 32 * 2**20


def _import(where: Any, what: str, module: str) -> Any:
    try:
        if module == "array":
            import dask.array as mod
        else:
            import dask.dataframe as mod
    except ImportError as e:
        raise MissingExtraError(
            f"{where}: {what} needs dask ({e}); pip install \"replaystore[dask]\""
        ) from None
    return mod


class _Shard:
    """One store's committed rows, as of one state: its read-only Zarr arrays and the
    physical row ranges that hold its logical rows, in order."""

    def __init__(self, store: ReplayStore, names: Sequence[str]) -> None:
        store._check_open()
        with store.lock:  # (one committed state: total and size together)
            total, size, generation = store.total, store.size, store.generation
        self.where = str(store.path)
        self.rows = size
        self.ranges = tuple(ring.physical_ranges(0, size, total=total, size=size,
                                                 capacity=store.capacity))
        from dask.base import tokenize

        self.token = tokenize(self.where, store.capacity, total, size, generation,
                              store.metadata.get("created"))
        self.arrays: dict[str, Any] = {}
        if not names:
            return
        backend = store.field_io(names[0]).backend
        opened = ZarrArrays(backend, writable=False)  # (a read-only zarr store of its own)
        for name in names:
            f = store.schema[name]
            arr = opened.get(name)
            self._check(backend, f, arr)
            self.arrays[name] = arr

    def _check(self, backend: Any, f: Field, arr: Any) -> None:
        """The array holds the committed rows, and (where writers write every chunk) each
        chunk they are in exists: zarr would read a missing one as zeros."""
        need = max((b for _, b in self.ranges), default=0)
        where = f"{self.where}/{layout.array_meta_key(f.name)}"
        if (arr.shape[0] < need or tuple(arr.shape[1:]) != f.shape or arr.dtype != f.dtype
                or tuple(arr.chunks) != (f.chunk_rows, *f.shape)):
            raise CorruptStoreError(
                f"{where}: array of field {f.name!r} has shape {list(arr.shape)}, chunks "
                f"{list(arr.chunks)} and dtype {arr.dtype}; the committed state in "
                f"{self.where}/zarr.json needs at least {need} rows of {list(f.shape)} {f.dtype} "
                f"in chunks of {f.chunk_rows} rows")
        if not self.ranges or not every_chunk_written(arr):
            return
        cr, ndim = f.chunk_rows, len(f.shape)
        with remote_errors(self.where):
            have = backend.sizes(f"{f.name}/c/")
        for a, b in self.ranges:
            for k in range(a // cr, -(-b // cr)):
                key = layout.chunk_key(f.name, k, ndim)
                if key not in have:
                    raise CorruptStoreError(
                        f"{self.where}/{key}: chunk {k} of field {f.name!r} is missing; expected "
                        f"a chunk file holding rows {k * cr}..{(k + 1) * cr - 1}")

    def array(self, name: str, da: Any) -> dask.array.Array:
        """Field ``name``'s committed rows in logical order, chunked like its Zarr array."""
        full = da.from_zarr(self.arrays[name], name=f"replaystore-{name}-{self.token}")
        pieces = [full[a:b] for a, b in self.ranges] or [full[:0]]
        return pieces[0] if len(pieces) == 1 else da.concatenate(pieces, axis=0)


def _select(source: Any, fields: Any) -> tuple[list[ReplayStore], list[Field]]:
    """The stores of ``source`` (a store, or anything with ``.shards``) and the selected
    fields, which every shard must have alike."""
    stores = list(source.shards) if hasattr(source, "shards") else [source]
    ref = getattr(source, "schema", None)
    if ref is None:
        if not stores:
            raise SchemaError(f"{source}: the dataset has no shards and no schema: nothing to read")
        ref = stores[0].schema
    where = getattr(source, "path", source)
    try:
        names = ref.select(fields)
    except SchemaError as e:
        raise SchemaError(f"{where}: {e}") from None
    want = [ref[nm] for nm in names]
    for st in stores:
        for f in want:
            g = st.schema.fields.get(f.name)
            if g is None or g.dtype != f.dtype or g.shape != f.shape:
                got = "missing" if g is None else f"{g.dtype} rows of {list(g.shape)}"
                raise SchemaError(
                    f"{st.path}: field {f.name!r} is {got} in this shard; the dataset {where} has "
                    f"{f.dtype} rows of {list(f.shape)} (shards of one dataset have the same fields)")
    return stores, want


def to_dask(source: ReplayStore | Any, fields: str | Sequence[str] | None = None
            ) -> dict[str, dask.array.Array]:
    """Field name -> dask array of the committed rows in logical order.

    Each array is ``dask.array.from_zarr`` of the field's Zarr array, sliced to the
    committed rows (a wrapped ring: two slices, concatenated), so its chunks are the Zarr
    chunks. For ``source`` with ``.shards``, the shards' arrays are concatenated in
    order. ``fields`` selects fields (default: all).
    """
    da = _import(getattr(source, "path", source), "to_dask", "array")
    stores, want = _select(source, fields)
    shards = [_Shard(st, [f.name for f in want]) for st in stores]
    out = {}
    for f in want:
        parts = [sh.array(f.name, da) for sh in shards]
        if not parts:  # (a dataset with no shards yet)
            parts = [da.from_array(np.empty((0, *f.shape), f.dtype))]
        out[f.name] = parts[0] if len(parts) == 1 else da.concatenate(parts, axis=0)
    return out


def _partition_rows(want: list[Field]) -> int:
    """Rows per partition: one chunk of the field with the fewest rows per chunk, halved
    (keeping partitions aligned with every power-of-two chunk) while over PARTITION_BYTES."""
    rows = min((f.chunk_rows for f in want), default=1 << 16)
    row_bytes = max(1, sum(f.row_bytes for f in want))
    while rows > 1 and rows % 2 == 0 and rows * row_bytes > PARTITION_BYTES:
        rows //= 2
    return rows


class _ReadPartition:
    """Reads one partition ``(shard, first logical row, physical a, physical b)`` as a
    pandas DataFrame; ``columns=`` (from dask's column projection) reads only the fields
    those columns come from."""

    def __init__(self, shards: list[_Shard], want: list[Field], names: dict[str, list[str]],
                 token: str) -> None:
        self.arrays = [sh.arrays for sh in shards]
        self.where = [sh.where for sh in shards]
        self.fields = list(want)
        self.names = names  # field -> its columns
        self.token = token

    def __dask_tokenize__(self) -> str:
        return self.token

    def __call__(self, part: tuple[int, int, int, int], columns: list[str] | None = None):
        import pandas as pd

        shard, start, a, b = part
        keep = None if columns is None else set(columns)
        cols: dict[str, np.ndarray] = {}
        for f in self.fields:
            if keep is not None and not keep.intersection(self.names[f.name]):
                continue
            if a == b:  # (the one empty partition of a store or dataset with no rows)
                values = np.empty((0, *f.shape), f.dtype)
            else:
                with remote_errors(self.where[shard]):
                    values = np.asarray(self.arrays[shard][f.name][a:b])
            cols.update(field_columns(f.name, values))
        df = pd.DataFrame(cols, index=pd.RangeIndex(start, start + (b - a), name="row"))
        return df if columns is None else df[list(columns)]


def to_dask_dataframe(source: ReplayStore | Any, fields: str | Sequence[str] | None = None, *,
                      max_columns_per_field: int = 64) -> dask.dataframe.DataFrame:
    """The committed rows as a lazy dask DataFrame with the columns, dtypes and index
    (``row``, the logical row number; divisions known) of :meth:`ReplayStore.to_pandas`.

    Vector fields become one column per component (``obs_0``, ...); a field of more than
    ``max_columns_per_field`` components is left out with a warning unless asked for by
    name. Partitions are row ranges of at most one chunk (and about
    :data:`PARTITION_BYTES`); a selection of columns reads only their fields. For
    ``source`` with ``.shards``, shard after shard with one continuous index.
    """
    dd = _import(getattr(source, "path", source), "to_dask_dataframe", "dataframe")
    import pandas as pd

    stores, want = _select(source, fields)
    wide = [f.name for f in want if int(np.prod(f.shape, dtype=np.int64)) > max_columns_per_field]
    if wide and fields is None:
        warnings.warn(
            f"to_dask_dataframe: left out wide field(s) {wide} (more than {max_columns_per_field} "
            "columns each); ask for them with fields=[...] or raise max_columns_per_field",
            stacklevel=2,
        )
        want = [f for f in want if f.name not in wide]
    shards = [_Shard(st, [f.name for f in want]) for st in stores]
    empty: dict[str, np.ndarray] = {}
    per_field: dict[str, list[str]] = {}
    for f in want:
        cols = field_columns(f.name, np.empty((0, *f.shape), f.dtype))
        per_field[f.name] = list(cols)
        empty.update(cols)
    meta = pd.DataFrame(empty, index=pd.RangeIndex(0, 0, name="row"))
    rows = _partition_rows(want)
    parts: list[tuple[int, int, int, int]] = []
    offset = 0
    for i, sh in enumerate(shards):
        logical = offset
        for a, b in sh.ranges:
            p = a
            while p < b:
                q = min(b, (p // rows + 1) * rows)
                parts.append((i, logical, p, q))
                logical, p = logical + (q - p), q
        offset += sh.rows
    if parts:
        divisions: tuple = (*(p[1] for p in parts), offset - 1)
    else:
        parts, divisions = [(0, 0, 0, 0)], (None, None)
    from dask.base import tokenize

    reader = _ReadPartition(shards, want, per_field,
                            tokenize([sh.token for sh in shards], [f.name for f in want], rows))
    return dd.from_map(reader, parts, meta=meta, divisions=divisions, label="read-replaystore",
                       enforce_metadata=False)
