"""ReplayStore: transitions in one chunked Zarr v3 array per field.

The store is a thin facade: a :class:`~replaystore.storage.reader.StoreReader` for every
store, plus a :class:`~replaystore.storage.writer.StoreWriter` in mode ``"a"``, over one
:class:`~replaystore.storage.fieldio.FieldIO` per field on a
:class:`~replaystore.storage.backends.Backend`.

>>> import tempfile, numpy as np, gymnasium as gym
>>> import replaystore as rs
>>> path = tempfile.mkdtemp() + "/demo.zarr"
>>> with rs.create(path, observation_space=gym.spaces.Discrete(6),
...                action_space=gym.spaces.Discrete(2), capacity=3) as store:
...     for t in range(5):
...         store.append(obs=t, action=t % 2, reward=1.0, next_obs=t + 1,
...                      terminated=False, truncated=t == 4)
>>> store = rs.open(path)
>>> len(store), store.read([0, 2], fields=["obs"])["obs"].tolist()
(3, [2, 4])
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from .. import spaces as _spaces
from ..errors import CorruptStoreError, NotAStoreError, RowIndexError, SchemaError, StoreModeError
from . import exitclose, frames, layout
from .backends import Backend, resolve
from .fieldio import ChunkCache, FieldIO, ZarrArrays, open_field
from .index import ClassIndex
from .indexes import IndexSet
from .mapping import MADV_NORMAL, MADV_RANDOM, ChunkedView, memory_budget
from .metadata import FORMAT_VERSION, MAX_COUNT, load_meta
from .priorities import ARRAY as PRIORITY_ARRAY
from .priorities import Priorities
from .reader import BatchReader, StoreReader
from .schema import Field, Schema
from .validate import RowValidator
from .writer import StoreWriter

if TYPE_CHECKING:
    from .dataset import ShardedDataset

__all__ = ["ReplayStore", "open", "FORMAT_VERSION"]


def open(  # noqa: A001
    path: str | os.PathLike,
    mode: str = "r",
    *,
    storage_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> ReplayStore | ShardedDataset:
    """Open an existing store: ``mode="r"`` to read, ``"a"`` to read and append.

    ``path`` is a directory, a ``.zip`` made by :func:`replaystore.pack` (read-only, used in
    place) or an fsspec URL such as ``s3://bucket/buf.zarr`` (``storage_options`` go to
    fsspec, e.g. ``{"endpoint_url": ...}``). Schema, spaces, capacity and counters come back
    from the metadata; appending in mode ``"a"`` continues where the last writer stopped.
    A sharded dataset opens as a :class:`~replaystore.storage.dataset.ShardedDataset`.
    """
    if mode not in ("r", "a"):
        raise StoreModeError(f"{path}: mode must be 'r' or 'a', got {mode!r}")
    try:
        return ReplayStore(path, mode, storage_options=storage_options, **options)
    except NotAStoreError as not_a_store:  # (a plain store never gets here)
        from .dataset import NotADatasetError, ShardedDataset, refuse_appending

        backend = resolve(path, storage_options)
        try:
            refuse_appending(backend, mode)
            return ShardedDataset(backend, **options)
        except NotADatasetError:
            raise not_a_store from None


def _dig(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]...`` of a JSON document, or None where it is not an object with that key."""
    for k in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(k)
    return doc


class ReplayStore:
    """A transition store on disk. Create with :func:`create`, open with :func:`open`."""

    def __init__(
        self,
        path: str | os.PathLike | Backend,
        mode: str = "r",
        *,
        storage_options: Mapping[str, Any] | None = None,
        buffer_rows: int | None = None,
        commit_every: int | None = None,
        commit_seconds: float | None = None,
        fsync: bool = True,
        cache_bytes: int = 256 * 2**20,
        bounds: str = "warn",
        nonfinite_rewards: str = "error",
        hugepages: bool | str = "auto",
    ) -> None:
        self._closed = True  # until fully open
        self._backend = backend = resolve(path, storage_options)
        #: the store's directory (local), zip file, or URL
        self.path: Path | str = backend.local or backend.name
        self.mode = mode
        if mode == "a" and not backend.writable:
            raise StoreModeError(
                f"{self.path}: a packed .zip store is read-only; unpack it (replaystore unpack) "
                "to append to it"
            )
        self._meta, state = load_meta(backend)
        try:
            self.schema = Schema.from_json(self._meta["fields"])
        except (KeyError, TypeError, ValueError, SchemaError) as e:
            raise CorruptStoreError(f"{self.path}/zarr.json: field list is damaged: {e}") from None
        self.capacity: int | None = self._meta.get("capacity")
        leaf_spaces = {f.name: _spaces.space_from_json(f.meta["space"]) for f in self.schema
                       if f.meta.get("space")}
        validator = RowValidator(self.schema, leaf_spaces, where=self.path, bounds=bounds,
                                 nonfinite_rewards=nonfinite_rewards)
        if hugepages not in (True, False, "auto"):
            raise SchemaError(f"{self.path}: hugepages must be True, False or 'auto', got {hugepages!r}")
        self._check_arrays(int(state["total"]))
        self._hugepages = self._decide_hugepages(hugepages, state)
        self._arrays = ZarrArrays(backend, writable=mode == "a")
        self._cache = ChunkCache(cache_bytes)
        self._fields = self._open_fields(state, private=mode == "a" and self.capacity is not None)
        live = None
        if mode == "r" and self.capacity is not None and backend.has_live_floor:
            live = backend.live_floor(create=False)
        self._reader = StoreReader(backend, self.schema, self.capacity, dict(state), self._fields,
                                   live=live, follow=mode == "r")
        self._writer: StoreWriter | None = None
        if mode == "a":
            self._writer = StoreWriter(backend, self._meta, self.schema, self.capacity, self._reader,
                                       self._fields, validator, buffer_rows=buffer_rows,
                                       commit_every=commit_every, commit_seconds=commit_seconds,
                                       fsync=fsync)
        self._indexes = IndexSet(
            backend, self.schema, self.capacity, self._meta, self._reader, writable=mode == "a",
            hugepages=self._hugepages)
        if self._writer is not None:
            self._writer.indexes = self._indexes
            exitclose.track(self)
        self._priorities: Priorities | None = None
        self._fsync = fsync
        self._closed = False

    def _check_arrays(self, total: int) -> None:
        """Every field's array matches the field list and holds the rows the committed state
        names (a crafted state is refused here, before anything is mapped or allocated)."""
        for f in self.schema:
            p = f"{self.path}/{layout.array_meta_key(f.name)}"
            am = self._backend.get_json(layout.array_meta_key(f.name), what=f"array metadata of field {f.name!r}")
            if am is None:
                raise CorruptStoreError(f"{p}: array metadata of field {f.name!r} is missing")
            chunks = _dig(am, "chunk_grid", "configuration", "chunk_shape")
            shape = _dig(am, "shape")
            if (not isinstance(shape, list) or not shape or list(shape[1:]) != list(f.shape)
                    or chunks != [f.chunk_rows, *f.shape]):
                raise CorruptStoreError(
                    f"{p}: array of field {f.name!r} has shape {shape} and chunks {chunks}; "
                    f"expected rows x {list(f.shape)} in chunks of {[f.chunk_rows, *f.shape]}"
                )
            rows = shape[0] if type(shape[0]) is int and 0 <= shape[0] <= MAX_COUNT else -1
            want = total if self.capacity is None else self.capacity
            if (rows < want) if self.capacity is None else (rows != want):
                raise CorruptStoreError(
                    f"{p}: array of field {f.name!r} has {rows} rows; the committed state in "
                    f"{self.path}/zarr.json names {want} ({'total written' if self.capacity is None else 'capacity'})"
                )

    def _decide_hugepages(self, opt: bool | str, state: dict) -> bool:
        """Map chunks with 2 MiB pages? ``"auto"``: when the mapped fields fit comfortably in
        the memory this process may use, so the page cache will hold them anyway."""
        if opt == "auto":
            rows = self.capacity or max(int(state["total"]), 1)
            mapped = sum(f.row_bytes * rows for f in self.schema
                         if not f.compressed and self._backend.memory_mappable)
            budget = memory_budget()
            opt = budget is not None and mapped <= budget // 2
        return bool(opt)

    def _open_fields(self, state: dict, *, private: bool = False) -> dict[str, FieldIO]:
        total = int(state["total"])
        extent = total if self.capacity is None else min(total, self.capacity)
        return {f.name: open_field(self._backend, f, capacity=self.capacity, extent=extent,
                                   arrays=self._arrays, cache=self._cache, advice=MADV_NORMAL,
                                   hugepages=self._hugepages, private=private) for f in self.schema}

    # -- metadata -------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """A copy of the store's metadata (format version, creation info, env, fields, spaces)."""
        return json.loads(json.dumps(self._meta))

    @property
    def info(self) -> dict:
        """Free-form user metadata; change it with :meth:`update_info` (mode ``"a"``)."""
        return json.loads(json.dumps(self._meta.get("info", {})))

    @property
    def env_info(self) -> dict:
        return json.loads(json.dumps(self._meta.get("env", {})))

    def update_info(self, info: Mapping[str, Any] | None = None, *, env: Mapping | None = None,
                    commit: bool = True) -> None:
        """Merge JSON-serializable ``info`` (and ``env`` details) into the metadata; committed
        now, or with ``commit=False`` by the next commit (in the same atomic step as the rows
        it publishes: e.g. a record of what those rows are)."""
        self._require_writable().update_info(info, env, commit=commit)

    @property
    def observation_space(self) -> gym.Space | None:
        sp = self._meta.get("spaces", {}).get("observation")
        return _spaces.space_from_json(sp) if sp else None

    @property
    def action_space(self) -> gym.Space | None:
        sp = self._meta.get("spaces", {}).get("action")
        return _spaces.space_from_json(sp) if sp else None

    @property
    def format_version(self) -> int:
        return int(self._meta["format_version"])

    # -- counters -------------------------------------------------------------------------
    @property
    def _state(self) -> dict:
        return self._writer.state if self._writer is not None else self._reader.state

    @property
    def size(self) -> int:
        """Rows committed to disk and readable (buffered rows not included)."""
        return self._reader.size

    @property
    def total(self) -> int:
        """Rows ever committed, including those a ring has evicted."""
        return self._reader.total

    @property
    def cursor(self) -> int:
        """Physical row the next committed row goes to."""
        return int(self._reader.state["cursor"])

    @property
    def generation(self) -> int:
        """Number of commits so far."""
        return int(self._reader.state.get("generation", 0))

    @property
    def buffered(self) -> int:
        """Rows appended but not yet committed (readable in this process, not in others)."""
        return self._writer.buffered if self._writer is not None else 0

    @property
    def buffer_rows(self) -> int:
        """Rows the write buffer holds before it commits on its own (mode ``"a"``; 0 for
        readers): ``rs.open(..., buffer_rows=)``, by default one chunk of the narrowest
        field, at most 16 MiB of rows (and 262,144 rows) and at most a ring's capacity."""
        return self._writer.buffer.capacity if self._writer is not None else 0

    @property
    def next_episode(self) -> int:
        return int(self._state["next_episode"])

    @property
    def version(self) -> tuple[int, int]:
        """``(rows ever appended, rows readable)``: the one signal that the readable rows
        changed (an append or an eviction); commits that change no rows keep it."""
        return self._reader.version

    @property
    def id_range(self) -> tuple[int, int]:
        """Global row ids ``[lo, hi)`` of logical rows ``0 .. len-1`` (0 = the first row ever
        appended); buffered rows included."""
        return self._reader.id_range

    def __len__(self) -> int:
        """Rows readable, counting rows appended but not yet flushed."""
        return len(self._reader)

    def __repr__(self) -> str:
        cap = "unbounded" if self.capacity is None else f"capacity={self.capacity}"
        return (f"<ReplayStore {str(self.path)!r} mode={self.mode!r} rows={len(self)} {cap} "
                f"fields={list(self.schema.names)}>")

    @property
    def lock(self):
        """The lock every read and every commit of this store holds (a ``threading.RLock``):
        hold it to see one state across several calls, e.g. to draw row numbers and turn
        them into row ids."""
        return self._reader.lock

    def refresh(self) -> ReplayStore:
        """Re-read the committed state, e.g. in a reader while another process appends
        (safe while a prefetching sampler reads in another thread: each read finishes
        against the state it started with)."""
        self._reader.refresh()
        return self

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> ReplayStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Flush buffered rows (mode ``"a"``), release the writer lock and unmap files."""
        if self._closed:
            return
        try:
            if self._writer is not None:
                self._writer.close()
            if self._priorities is not None:
                self._priorities.flush(self.total)
        finally:
            self._closed = True
            exitclose.untrack(self)
            if self._priorities is not None:
                self._priorities.close()
            for fio in self._fields.values():
                fio.close()
            self._arrays.clear()
            self._cache.clear()
            self._indexes.close()
            if self._reader.live is not None:
                self._reader.live.close()
            self._backend.close()

    def __del__(self) -> None:  # best effort: never lose buffered rows silently
        with contextlib.suppress(Exception):
            if not self._closed and self._writer is not None:
                self.close()

    # -- appending ------------------------------------------------------------------------
    def _require_writable(self) -> StoreWriter:
        self._check_open()
        if self._writer is None:
            raise StoreModeError(
                f"{self.path}: store is open read-only (mode='r'); open it with mode='a' to append"
            )
        return self._writer

    def append(self, **row: Any) -> None:
        """Append one transition given as keyword arguments, one per field.

        ``episode`` and ``step`` are filled in when omitted: a new episode starts after a
        row whose ``terminated`` or ``truncated`` is true.
        """
        w = self._writer
        if w is None or self._closed:
            w = self._require_writable()
        w.append(row)

    def extend(self, batch: Mapping[str, Any]) -> None:
        """Append many transitions: a dict of arrays with the same leading length."""
        self._require_writable().extend(batch)

    def new_episode_ids(self, k: int) -> np.ndarray:
        """Reserve ``k`` fresh episode ids, unique across the whole store (for collectors)."""
        return self._require_writable().new_episode_ids(k)

    def end_episode(self) -> None:
        """End the running episode without a ``terminated``/``truncated`` row (e.g. a run
        resumed after a crash, or a collector that stops mid-episode): the next appended row
        starts a new episode. Does nothing between episodes.

        >>> import tempfile, gymnasium as gym, replaystore as rs
        >>> s = rs.create(tempfile.mkdtemp() + "/e.zarr", gym.spaces.Discrete(2), gym.spaces.Discrete(2))
        >>> row = dict(obs=0, action=1, reward=0.0, next_obs=1, terminated=False, truncated=False)
        >>> s.append(**row); s.end_episode(); s.append(**row)
        >>> s.read([0, 1], fields=["episode"])["episode"].tolist()
        [0, 1]
        """
        self._require_writable().end_episode()

    def commit(self) -> None:
        """Same as :meth:`flush`: the durability point."""
        self.flush()

    def flush(self) -> None:
        """Write buffered rows to disk and commit them: they are readable and survive a crash.

        This is the durability point: data files are written first, then the committed
        state (rows, cursor, counters) replaces the old one atomically (and, with
        ``fsync=True``, the default, both reach the disk first). A crash loses at most the
        rows appended since the last commit.
        """
        self._require_writable().flush()

    # -- reading --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreModeError(f"{self.path}: store is closed")

    def physical(self, indices: np.ndarray) -> np.ndarray:
        """Physical rows of committed logical ``indices`` (validated)."""
        return self._reader.physical(indices)

    def read(self, indices: Any, fields: str | Sequence[str] | None = None, *,
             out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Rows at logical ``indices`` (any order, duplicates allowed), one array per field.

        ``fields`` selects a subset; only those fields' files are touched. ``out`` may hold
        preallocated arrays to fill (samplers use it to avoid allocation). All rows come
        from one committed state and are whole. In a reader of a ring another process is
        writing, a read of rows the writer overwrote while they were copied is done again
        from the writer's newest state (the store is refreshed): the same logical
        positions, which then name newer rows.
        """
        self._check_open()
        return self._reader.read(indices, self.schema.select(fields), out)

    def gather(self, field: str, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One field's rows at validated logical ``indices`` (no torn-read check: for
        samplers reading side fields such as weights)."""
        f = self.schema[field]
        if out is None:
            out = np.empty((len(indices), *f.shape), f.dtype)
        return self._reader.gather(field, np.asarray(indices, np.int64), out)

    def torn(self, logical: np.ndarray) -> bool:
        """After a read in a reader process: may a concurrent ring writer have overwritten
        any of these rows while they were copied? (Always False for writers and
        unbounded stores, whose committed rows never change.)"""
        return self._reader.torn(logical)

    def read_physical(self, phys: np.ndarray, names: Sequence[str], out: dict[str, np.ndarray]) -> dict:
        """Gather already-validated physical rows into ``out``."""
        for name in names:
            self._reader.ready(name).gather(phys, out[name])
        return out

    def read_range(self, start: int, stop: int, fields: str | Sequence[str] | None = None) -> dict:
        """Logical rows ``[start, stop)`` as a dict of arrays (copies), read sequentially:
        consecutive, whole rows of one committed state.

        In a reader of a ring another process is writing, a range the writer overwrote
        while it was copied is read again from the writer's newest state (the store is
        refreshed): the same logical positions, so newer rows, clipped like a slice if that
        state holds fewer rows. To read exactly the rows of given ids, see :meth:`read_ids`.
        """
        self._check_open()
        return self._reader.read_range(start, stop, self.schema.select(fields))

    def read_ids(self, start: Any, stop: int | None = None,
                 fields: str | Sequence[str] | None = None) -> dict:
        """Rows by global id (see :attr:`id_range`; samplers give them as ``batch["index"]``).

        ``read_ids(start, stop)``: the committed rows with ids ``[start, stop)``, read
        sequentially. ``read_ids(ids)``: the rows with the ids in the array ``ids`` (any
        order, repeats allowed; rows still in this process's write buffer too). Either way
        exactly those rows, whole, or :class:`~replaystore.RowIndexError` if the store does
        not hold them all (a ring evicted some, also while they were being read).
        """
        self._check_open()
        if stop is not None:
            return self._reader.read_ids(int(start), int(stop), self.schema.select(fields), check=True)
        ids = np.asarray(start).reshape(-1)
        if ids.dtype.kind not in "iu" and ids.size:
            raise RowIndexError(f"{self.path}: row ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64)
        for _ in range(8):
            lo, hi = self.id_range
            out = ids < lo
            if out.any() or (ids >= hi).any():
                bad = ids[out | (ids >= hi)]
                raise RowIndexError(f"{self.path}: rows with ids {bad[:5].tolist()}"
                                    f"{' ...' if len(bad) > 5 else ''} are not held: the store holds "
                                    f"ids {lo}..{hi - 1}")
            batch = self.read(ids - lo, fields)
            if self.id_range[0] == lo:  # (no eviction moved the logical rows while reading)
                return batch
        raise RowIndexError(f"{self.path}: rows kept being evicted while they were read")

    def buffered_rows(self, fields: str | Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The rows appended in this process and not yet committed, oldest first: global
        ids ``total .. total + buffered - 1`` (views: do not modify)."""
        return self._reader.buffered_rows(self.schema.select(fields))

    def batch_reader(self, fields: Sequence[str], *, readahead: bool | str = "auto") -> BatchReader:
        """A reader of batches of ``fields`` for samplers (see :class:`BatchReader`)."""
        self._check_open()
        return BatchReader(self._reader, self.schema.select(fields), readahead=readahead)

    def field_io(self, name: str) -> FieldIO:
        """How field ``name``'s rows are read and written (see :mod:`.fieldio`)."""
        return self._fields[self.schema[name].name]

    def __getitem__(self, key: Any) -> dict[str, Any]:
        """``store[i]`` one row (a dict of scalars/arrays), ``store[a:b]`` rows as arrays
        (torn-free like :meth:`read` and :meth:`read_range`)."""
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self.read_range(start, stop)
            return self.read(np.arange(start, stop, step, dtype=np.int64))
        if isinstance(key, int | np.integer):
            return {k: v[0] for k, v in self.read([int(key)]).items()}
        if isinstance(key, str):
            raise SchemaError(
                f"{self.path}: store[{key!r}]: index rows with ints/slices; read a field with "
                f"store.read_range(0, len(store), fields=[{key!r}])"
            )
        return self.read(key)

    # -- memory maps ----------------------------------------------------------------------
    def mapped_view(self, name: str) -> ChunkedView | None:
        """The memory-mapped view of an uncompressed field's committed rows (its ``array``
        is every physical row as one read-only numpy array), or ``None`` if the field is
        not memory-mapped (compressed, or on an object store)."""
        self._check_open()
        return self._reader.view(self.schema[name].name)

    def _view(self, f: Field) -> ChunkedView | None:
        return self.mapped_view(f.name)

    def _use_hugepages(self) -> bool:
        return self._hugepages

    def advise_random(self, on: bool = True) -> None:
        """Tell the kernel reads will be random (``MADV_RANDOM``), for stores far larger than
        RAM. This also stops mapping them with 2 MiB pages (whose faults read 2-4 MiB)."""
        self._reader.advise(MADV_RANDOM if on else MADV_NORMAL)

    # -- class indexes --------------------------------------------------------------------
    def saved_priorities(self) -> dict | None:
        """The attributes of the saved priority array (``alpha``, ``rows``, ``clean``), or
        None if the store has none (see :mod:`~replaystore.storage.priorities`)."""
        meta = self._backend.get_json(f"{PRIORITY_ARRAY}/zarr.json", what="priority array metadata")
        attrs = _dig(meta, "attributes", "replaystore", "priorities")
        return {k: attrs.get(k) for k in ("alpha", "rows", "clean")} if isinstance(attrs, dict) else None

    def priorities(self, alpha: float) -> Priorities:
        """The store's priorities for prioritized replay as ``priority ** alpha`` (see
        :mod:`~replaystore.storage.priorities`): saved with the store when it is open for
        appending, in memory otherwise. One at a time per open store.

        >>> # p = store.priorities(alpha=0.6); p.leaves[...]  (PrioritizedSampler uses this)
        """
        self._check_open()
        pr = self._priorities
        if pr is not None and pr.leaves.size:
            if pr.alpha == float(alpha):
                return pr  # (samplers of one store share its priorities)
            raise StoreModeError(f"{self.path}: its priorities are in use with alpha={pr.alpha}; "
                                 f"samplers of one open store share them, so alpha={alpha} needs the "
                                 "store opened again")
        self._priorities = Priorities(self._backend, capacity=self.capacity, id_range=self.id_range,
                                      alpha=alpha, writable=self.mode == "a", fsync=self._fsync)
        return self._priorities

    def class_index(self, by: Any, *, key_fields=None, key_name: str | None = None) -> ClassIndex:
        """The per-class row index for ``by`` (a discrete field, ``"reward_sign"`` or a
        function of a dict of rows returning integer classes), built once and kept with
        the store. Writers keep field and reward-sign indexes current on every commit; an
        index behind the store catches up on the rows it misses when asked for. It covers
        committed rows (see :meth:`buffered_rows` for the others)."""
        self._check_open()
        return self._indexes.get(by, key_fields=key_fields, key_name=key_name)

    # -- pandas ---------------------------------------------------------------------------
    def to_pandas(self, fields=None, start=None, stop=None, *, max_columns_per_field: int = 64):
        """Rows ``[start, stop)`` as a pandas DataFrame (see :func:`replaystore.storage.frames.to_pandas`)."""
        return frames.to_pandas(self, fields=fields, start=start, stop=stop,
                                max_columns_per_field=max_columns_per_field)

    def episodes(self):
        """One row per episode (see :func:`replaystore.storage.frames.episodes`)."""
        return frames.episodes(self)

    # -- disk usage -----------------------------------------------------------------------
    def nbytes_on_disk(self) -> dict[str, int]:
        """Bytes each field's files occupy on disk (sparse regions not counted)."""
        return {f.name: self._backend.disk_usage(f.name + "/") for f in self.schema}

    def to_dask(self, fields=None) -> dict:
        from .daskarrays import to_dask  # field -> dask array of the committed rows (see there)
        return to_dask(self, fields)

    def to_dask_dataframe(self, fields=None, *, max_columns_per_field: int = 64):
        from .daskarrays import to_dask_dataframe  # the to_pandas columns, lazily (see there)
        return to_dask_dataframe(self, fields, max_columns_per_field=max_columns_per_field)
