"""A sharded dataset: one directory (or URL) of ordinary stores that many writers fill at once.

Layout::

    cp.zarr/zarr.json              the dataset: a Zarr group whose 'replaystore_dataset'
                                   attribute holds the template (fields, spaces, env), written once
    cp.zarr/shards/zarr.json       an empty Zarr group
    cp.zarr/shards/shard-00000/    an ordinary replaystore store (its own single writer)
    cp.zarr/shards/shard-00001/    ...

Writers never coordinate with each other or with readers: each writes its own shard
(:meth:`ShardedDataset.open_shard`), created from the template, whose episode ids start at
``shard << 32`` so ids are unique across shards. A shard exists for readers once its
``zarr.json`` lands (it is written after its arrays, and a local shard is created under a
hidden name and renamed into place), so a reader lists only whole shards. Readers see the
dataset as one store: rows shard by shard, in shard order, each shard's committed rows only.
The view is a snapshot: :meth:`ShardedDataset.refresh` picks up new commits and new shards.

>>> import tempfile, gymnasium as gym, numpy as np
>>> root = tempfile.mkdtemp() + "/ds.zarr"
>>> ds = create_dataset(root, gym.spaces.Discrete(4), gym.spaces.Discrete(2))
>>> for i in range(2):
...     with ds.open_shard(i) as shard:
...         shard.extend({"obs": np.arange(3), "action": np.zeros(3, int), "reward": np.ones(3),
...                       "next_obs": np.arange(1, 4), "terminated": [False, False, True],
...                       "truncated": np.zeros(3, bool)})
>>> len(ds.refresh()), ds.read([0, 3], "episode")["episode"].tolist()
(6, [0, 4294967296])
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from .. import spaces as _spaces
from ..errors import (
    EmptyStoreError,
    NotAStoreError,
    RowIndexError,
    SchemaError,
    StoreExistsError,
    StoreModeError,
)
from . import layout
from .backends import Backend, resolve
from .create import build_schema, clear_local, clear_remote, new_meta, write_new
from .metadata import FORMAT_VERSION, json_copy
from .schema import Schema
from .shardreaders import MergedClassIndex, ShardedBatchReader
from .store import ReplayStore

__all__ = ["DATASET_KEY", "ShardedDataset", "ShardMismatchError", "NotADatasetError", "refuse_appending", "create_dataset", "open_dataset",
           "is_dataset", "SHARD_EPISODE_BITS", "MAX_SHARDS"]

#: the root group attribute that marks a sharded dataset
DATASET_KEY = "replaystore_dataset"
#: shard ``i``'s episode ids start at ``i << SHARD_EPISODE_BITS``
SHARD_EPISODE_BITS = 32
MAX_SHARDS = 100_000
_SHARDS = "shards"
SHARD_NAME = re.compile(r"^shard-(\d{5})$")


class ShardMismatchError(SchemaError):
    """A shard of a sharded dataset does not match the dataset's fields or spaces."""


class NotADatasetError(NotAStoreError):
    """The path holds no sharded dataset (nor, for ``rs.open``, a store)."""


def refuse_appending(loc: Backend, mode: str) -> None:
    """:func:`replaystore.open` in mode ``"a"``: :class:`StoreModeError` for a dataset,
    :class:`NotADatasetError` for anything else (one read of ``zarr.json``)."""
    if mode != "r" and _dataset_doc(loc) is not None:
        raise StoreModeError(
            f"{loc}: a sharded dataset is read as a whole (mode 'r') and written shard by "
            "shard: rs.open(path).open_shard(i)",
            cli=f"{loc}: a sharded dataset is written shard by shard (replaystore collect --workers)")
    if mode != "r":
        raise NotADatasetError(f"{loc}: not a sharded dataset")


def shard_name(i: int) -> str:
    return f"shard-{int(i):05d}"


def _check_shard_number(i: Any, root: Any) -> int:
    if not isinstance(i, int | np.integer) or isinstance(i, bool) or not 0 <= i < MAX_SHARDS:
        raise SchemaError(f"{root}: shard number must be an int in [0, {MAX_SHARDS}), got {i!r}")
    return int(i)


def create_dataset(
    path: str | os.PathLike,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    *,
    extra_fields: Iterable[Any] | None = None,
    fields: Iterable[Any] | None = None,
    chunk_rows: int | Mapping[str, int] | None = None,
    codecs: str | Mapping[str, str | None] | None = None,
    env: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> ShardedDataset:
    """Create an empty sharded dataset at ``path`` (a directory or an fsspec URL).

    The arguments are :func:`replaystore.create`'s (``env`` is the recorded env, e.g.
    ``{"id": "CartPole-v1", "kwargs": {}}``); every shard gets these fields and spaces.
    Shards are unbounded. Returns the dataset (no shards yet); write with
    :meth:`ShardedDataset.open_shard`.
    """
    loc = resolve(path, storage_options)
    if not loc.writable or (loc.local is not None and loc.local.suffix.lower() == ".zip"):
        raise StoreModeError(f"{path}: a sharded dataset is a directory or a URL, not a .zip")
    root = loc.local if loc.local is not None else loc.name
    schema, spaces_json = build_schema(observation_space, action_space, fields, extra_fields,
                                        chunk_rows, codecs)
    template = new_meta(schema, spaces_json, None, env=json_copy(dict(env or {}), root, "env"),
                        info=json_copy(dict(info or {}), root, "info"))
    if loc.local is None:
        if not loc.is_empty() and overwrite and _dataset_doc(loc) is not None:
            loc.delete_all()
        else:
            clear_remote(loc, overwrite)
    elif overwrite and _dataset_doc(loc) is not None:
        shutil.rmtree(loc.local)
    else:
        clear_local(loc.local, overwrite)
    if loc.local is not None:
        loc.local.mkdir(parents=True, exist_ok=True)
    sub = _child(loc, _SHARDS)
    if sub.local is not None:
        sub.local.mkdir(parents=True, exist_ok=True)
    sub.put_json(layout.GROUP_META, layout.group_doc({}), fsync=True)
    loc.put_json(layout.GROUP_META, layout.group_doc({DATASET_KEY: template}), fsync=True)
    return ShardedDataset(loc)


def open_dataset(path: str | os.PathLike | Backend, *,
                 storage_options: Mapping[str, Any] | None = None) -> ShardedDataset:
    """Open the sharded dataset at ``path`` for reading (``rs.open`` does this for you)."""
    return ShardedDataset(resolve(path, storage_options))


def is_dataset(path: str | os.PathLike | Backend, *,
               storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``path`` holds a sharded dataset (reads only its ``zarr.json``)."""
    try:
        return _dataset_doc(resolve(path, storage_options)) is not None
    except (OSError, ValueError):
        return False


def _dataset_doc(loc: Backend) -> dict | None:
    doc = loc.get_json(layout.GROUP_META, what="dataset metadata (zarr.json)")
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        return None
    attrs = doc.get("attributes")
    if not isinstance(attrs, dict) or DATASET_KEY not in attrs:
        return None
    return attrs[DATASET_KEY]


def _child(loc: Backend, name: str) -> Backend:
    """The backend of ``name`` under ``loc`` (same kind, same storage options)."""
    if loc.local is not None:
        return resolve(loc.local / name)
    return resolve(f"{loc.name}/{name}", getattr(loc, "storage_options", None))


def _list_shards(loc: Backend) -> list[int]:
    """Numbers of the shards (local: whose ``zarr.json`` exists; hidden temporaries and
    anything not named ``shard-NNNNN`` are ignored)."""
    if loc.local is not None:
        d = loc.local / _SHARDS
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := SHARD_NAME.match(n))
                      and (d / n / layout.GROUP_META).is_file())
    fs, base = loc.fs, f"{loc.root}/{_SHARDS}"
    fs.invalidate_cache(base)
    try:
        entries = fs.ls(base, detail=False)
    except FileNotFoundError:
        return []
    # (one LIST; a shard without its zarr.json yet is skipped when it is opened)
    return sorted(int(m.group(1)) for e in entries
                  if (m := SHARD_NAME.match(str(e).rstrip("/").rsplit("/", 1)[-1])))


class ShardedDataset:
    """Many stores (shards) read as one: ``len``, ``read``, ``read_range``, ``to_pandas``,
    ``episodes``, and the samplers, over the rows of every shard in shard order.

    Open with :func:`replaystore.open` (or :func:`open_dataset`); create with
    :func:`create_dataset`. A reader's view is a snapshot of every shard's committed rows:
    :meth:`refresh` moves it forward (new commits, new shards). Writers append shard by
    shard with :meth:`open_shard`.
    """

    mode = "r"
    capacity = None
    buffered = 0
    buffer_rows = 0

    def __init__(self, loc: Backend, **options: Any) -> None:
        self._loc = loc
        self.path: Path | str = loc.local or loc.name
        template = _dataset_doc(loc)
        if template is None:
            raise NotADatasetError(f"{self.path}: not a replaystore sharded dataset")
        if not isinstance(template, dict) or not isinstance(template.get("fields"), list):
            raise NotAStoreError(f"{self.path}/zarr.json: '{DATASET_KEY}' has no field list")
        version = template.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise NotAStoreError(f"{self.path}: dataset format version {version!r} is not supported")
        self._meta = template
        self.schema = Schema.from_json(template["fields"])
        self._options = options
        self._lock = threading.RLock()
        self._stores: dict[int, ReplayStore] = {}
        self._numbers: list[int] = []
        self._offsets = np.zeros(1, np.int64)  # rows before each shard, then the total
        self._closed = False
        self.refresh()

    # -- metadata -------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        return self._meta

    @property
    def info(self) -> dict:
        return self._meta.get("info", {})

    @property
    def env_info(self) -> dict:
        return self._meta.get("env", {})

    @property
    def observation_space(self) -> gym.Space | None:
        sp = self._meta.get("spaces", {}).get("observation")
        return None if sp is None else _spaces.space_from_json(sp)

    @property
    def action_space(self) -> gym.Space | None:
        sp = self._meta.get("spaces", {}).get("action")
        return None if sp is None else _spaces.space_from_json(sp)

    @property
    def format_version(self) -> int:
        return int(self._meta["format_version"])

    # -- shards ---------------------------------------------------------------------------
    @property
    def shard_numbers(self) -> tuple[int, ...]:
        """Numbers of the shards in this snapshot, in row order."""
        return tuple(self._numbers)

    @property
    def shards(self) -> tuple[ReplayStore, ...]:
        """The shards of this snapshot (read-only stores), in row order. A shard's own
        ``len`` may run ahead of the snapshot; :attr:`shard_rows` is what the dataset reads."""
        return tuple(self._stores[i] for i in self._numbers)

    @property
    def shard_rows(self) -> np.ndarray:
        """Rows of each shard in this snapshot."""
        return np.diff(self._offsets)

    def shard_path(self, i: int) -> Path | str:
        i = _check_shard_number(i, self.path)
        return (self._loc.local / _SHARDS / shard_name(i)) if self._loc.local is not None \
            else f"{self._loc.name}/{_SHARDS}/{shard_name(i)}"

    def open_shard(self, i: int, **options: Any) -> ReplayStore:
        """Shard ``i`` open for appending, created from the dataset's template if it does
        not exist yet (its episode ids then start at ``i << 32``). One writer per shard
        (a second one gets :class:`StoreLockedError`); ``options`` go to
        :func:`replaystore.open`. A shard whose creation was cut off (no ``zarr.json``) is
        made again: it never held a row."""
        i = _check_shard_number(i, self.path)
        loc = _child(_child(self._loc, _SHARDS), shard_name(i))
        if loc.get(layout.GROUP_META) is None:
            self._create_shard(i, loc)
        store = ReplayStore(loc, "a", **options)
        try:
            self._check_shard(i, store)
        except BaseException:
            store.close()
            raise
        return store

    def _create_shard(self, i: int, loc: Backend) -> None:
        first = i << SHARD_EPISODE_BITS
        if loc.local is None:
            if not loc.is_empty():
                loc.delete_all()  # arrays of a creation that was cut off: never a row
            write_new(loc, self._meta, first)
            return
        final = loc.local
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_new(resolve(tmp), self._meta, first)
        if final.exists() and not (final / layout.GROUP_META).exists():
            shutil.rmtree(final)  # a creation that was cut off before its zarr.json: no rows
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (final / layout.GROUP_META).exists():
                raise StoreExistsError(f"{final}: cannot create shard {i}: something is in the way") from None

    def _check_shard(self, i: int, store: ReplayStore) -> None:
        meta = store.metadata
        where = f"{self.path}: shard {i} ({store.path})"
        if meta.get("capacity") is not None:
            raise ShardMismatchError(f"{where} is a ring (capacity {meta['capacity']}); "
                                     "a dataset's shards are unbounded")
        theirs = {f["name"]: f for f in meta.get("fields", []) if isinstance(f, dict)}
        ours = {f["name"]: f for f in self._meta["fields"]}
        for name in [*ours, *(n for n in theirs if n not in ours)]:
            if theirs.get(name) != ours.get(name):
                raise ShardMismatchError(
                    f"{where}: field {name!r} is {_describe(theirs.get(name))}; the dataset's "
                    f"fields have {_describe(ours.get(name))}")
        if meta.get("spaces", {}) != self._meta.get("spaces", {}):
            raise ShardMismatchError(f"{where}: its observation/action spaces differ from the dataset's")

    # -- snapshot -------------------------------------------------------------------------
    def refresh(self) -> ShardedDataset:
        """Move the snapshot to every shard's newest commit, and find new shards."""
        with self._lock:
            self._check_open()
            numbers = _list_shards(self._loc)
            shards_loc = _child(self._loc, _SHARDS)
            found = []
            for i in numbers:
                if i not in self._stores:
                    try:
                        store = ReplayStore(_child(shards_loc, shard_name(i)), "r", **self._options)
                    except NotAStoreError:
                        # on an object store zarr writes a bare group zarr.json first, and
                        # the shard's own lands last: not a shard yet
                        continue
                    try:
                        self._check_shard(i, store)
                    except BaseException:
                        store.close()
                        raise
                    self._stores[i] = store
                else:
                    self._stores[i].refresh()
                found.append(i)
            self._numbers = numbers = found
            sizes = [self._stores[i].size for i in numbers]
            self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        return self

    @property
    def lock(self) -> threading.RLock:
        """Held by every read and by :meth:`refresh`: one snapshot across several calls."""
        return self._lock

    @property
    def size(self) -> int:
        return int(self._offsets[-1])

    total = size

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def version(self) -> tuple[int, int]:
        """``(rows, shards)`` of the snapshot: changes exactly when the readable rows do."""
        return (int(self._offsets[-1]), len(self._numbers))

    @property
    def id_range(self) -> tuple[int, int]:
        return (0, int(self._offsets[-1]))

    def __repr__(self) -> str:
        return (f"<ShardedDataset {str(self.path)!r} shards={len(self._numbers)} rows={len(self)} "
                f"fields={list(self.schema.names)}>")

    # -- reading --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreModeError(f"{self.path}: the dataset is closed")

    def _split(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shard positions (into the snapshot) and local rows of validated ``indices``."""
        pos = np.searchsorted(self._offsets, indices, side="right") - 1
        return pos, indices - self._offsets[pos]

    def _valid(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices).reshape(-1)
        if idx.size and idx.dtype.kind not in "iu":
            raise RowIndexError(f"{self.path}: row indices must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64)
        n = len(self)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            bad = idx[(idx < 0) | (idx >= n)]
            raise RowIndexError(f"{self.path}: rows {bad[:5].tolist()} out of range: the dataset "
                                f"holds rows 0..{n - 1}")
        return idx

    def read(self, indices: Any, fields: str | Sequence[str] | None = None, *,
             out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Rows at logical ``indices`` (any order, repeats allowed), one array per field."""
        names = self.schema.select(fields)
        with self._lock:
            self._check_open()
            idx = self._valid(indices)
            return self._gather_rows(idx, names, out)

    def _gather_rows(self, idx: np.ndarray, names: Sequence[str],
                     out: dict[str, np.ndarray] | None = None,
                     reader_of: Callable[[int], Any] | None = None) -> dict:
        if out is None:
            out = {n: np.empty((len(idx), *self.schema[n].shape), self.schema[n].dtype) for n in names}
        if not len(idx):
            return out
        pos, local = self._split(idx)
        order = np.argsort(pos, kind="stable")
        bounds = np.searchsorted(pos[order], np.arange(len(self._numbers) + 1))
        for p in range(len(self._numbers)):
            sel = order[bounds[p]:bounds[p + 1]]
            if not len(sel):
                continue
            if reader_of is not None:  # (a sampler's: the shard's own batch reader)
                part = reader_of(p).read(local[sel])
                if part is None:  # (unbounded shards never tear; kept for the protocol)
                    return None  # type: ignore[return-value]
            else:
                part = self._stores[self._numbers[p]].read(local[sel], list(names))
            for n in names:
                out[n][sel] = part[n]
        return out

    def gather(self, field: str, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One field's rows at validated logical ``indices``."""
        got = self.read(indices, [field])[field]
        if out is None:
            return got
        out[...] = got
        return out

    def read_range(self, start: int, stop: int, fields: str | Sequence[str] | None = None) -> dict:
        """Logical rows ``[start, stop)`` (clipped like a slice), shard by shard."""
        names = self.schema.select(fields)
        with self._lock:
            self._check_open()
            n = len(self)
            start, stop, _ = slice(start, stop).indices(n)
            stop = max(start, stop)
            parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
            for p, i in enumerate(self._numbers):
                lo, hi = int(self._offsets[p]), int(self._offsets[p + 1])
                a, b = max(start, lo), min(stop, hi)
                if a >= b:
                    continue
                got = self._stores[i].read_ids(a - lo, b - lo, fields=list(names))
                for k in names:
                    parts[k].append(got[k])
            return {k: (np.concatenate(v) if v else
                        np.empty((0, *self.schema[k].shape), self.schema[k].dtype))
                    for k, v in parts.items()}

    def read_ids(self, start: Any, stop: int | None = None,
                 fields: str | Sequence[str] | None = None) -> dict:
        """Rows by id (a dataset's ids are its logical rows): ``read_ids(a, b)`` or
        ``read_ids(ids)``."""
        if stop is not None:
            n = len(self)
            if not 0 <= int(start) <= int(stop) <= n:
                raise RowIndexError(f"{self.path}: rows {start}..{stop} are not held: the dataset "
                                    f"holds rows 0..{n - 1}")
            return self.read_range(int(start), int(stop), fields)
        return self.read(start, fields)

    def buffered_rows(self, fields: str | Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """A reader buffers nothing: empty arrays."""
        return {n: np.empty((0, *self.schema[n].shape), self.schema[n].dtype)
                for n in self.schema.select(fields)}

    def mapped_view(self, name: str) -> None:
        return None

    def torn(self, logical: np.ndarray) -> bool:
        return False

    #: ``ds[i]`` one row, ``ds[a:b]`` rows as arrays: exactly as a store's
    __getitem__ = ReplayStore.__getitem__

    def batch_reader(self, fields: Sequence[str], *, readahead: bool | str = "auto") -> ShardedBatchReader:
        """A reader of batches of ``fields`` over every shard (for samplers)."""
        self._check_open()
        return ShardedBatchReader(self, fields, readahead=readahead)

    def class_index(self, by: Any, *, key_fields=None, key_name: str | None = None) -> MergedClassIndex:
        """The per-class rows of the snapshot for ``by``: each shard's class index
        (``ReplayStore.class_index``), offset into the dataset's rows and joined. Holds the
        dataset's row ids in memory (8 bytes a row)."""
        with self._lock:
            self._check_open()
            if not self._numbers:
                raise EmptyStoreError(f"{self.path}: the dataset has no shards yet")
            parts = [(int(self._offsets[p]), int(self._offsets[p + 1] - self._offsets[p]),
                      self._stores[i].class_index(by, key_fields=key_fields, key_name=key_name))
                     for p, i in enumerate(self._numbers)]
            return MergedClassIndex(parts, covered=len(self))

    def to_pandas(self, fields=None, start=None, stop=None, *, max_columns_per_field: int = 64):
        """Rows ``[start, stop)`` as a pandas DataFrame (the columns of ``ReplayStore.to_pandas``)."""
        from . import frames

        return frames.to_pandas(self, fields=fields, start=start, stop=stop,
                                max_columns_per_field=max_columns_per_field)

    def episodes(self):
        """One row per episode, over every shard (see :func:`replaystore.storage.frames.episodes`)."""
        from . import frames

        return frames.episodes(self)

    def to_dask(self, fields=None):
        """Field -> ``dask.array`` of the snapshot's rows, shard by shard."""
        from .daskarrays import to_dask

        return to_dask(self, fields)

    def to_dask_dataframe(self, fields=None):
        """The :meth:`to_pandas` columns as a lazy ``dask.dataframe``."""
        from .daskarrays import to_dask_dataframe

        return to_dask_dataframe(self, fields)

    def nbytes_on_disk(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for s in self.shards:
            for k, v in s.nbytes_on_disk().items():
                total[k] = total.get(k, 0) + v
        return total

    # -- closing --------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            for s in self._stores.values():
                s.close()
            self._stores.clear()
            self._closed = True

    def __enter__(self) -> ShardedDataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _describe(f: Any) -> str:
    if f is None:
        return "missing"
    return f"dtype {f.get('dtype')} shape {tuple(f.get('shape', ()))}"
