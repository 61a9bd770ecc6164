"""ReplayStore: transitions in one chunked Zarr v3 array per field.

>>> import tempfile, numpy as np, gymnasium as gym
>>> import replaystore as rs
>>> path = tempfile.mkdtemp() + "/demo.zarr"
>>> with rs.create(path, observation_space=gym.spaces.Discrete(4),
...                action_space=gym.spaces.Discrete(2), capacity=3) as store:
...     for t in range(5):
...         store.append(obs=t, action=t % 2, reward=1.0, next_obs=t + 1,
...                      terminated=False, truncated=t == 4)
>>> store = rs.open(path)
>>> len(store), store.read([0, 2], fields=["obs"])["obs"].tolist()
(3, [2, 4])
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import zarr

from .. import spaces as _spaces
from ..errors import (
    CorruptStoreError,
    EmptyStoreError,
    ReplayStoreError,
    RowIndexError,
    SchemaError,
    StoreModeError,
    StoreWriteError,
)
from . import ring
from .array import RowArray
from .files import LiveFloor, WriterLock, remove_stray_temps
from .index import ClassIndex, KeySpec, key_spec
from .integrity import BlockChecksums, changed_blocks, committed_intervals
from .location import Location, remote_errors, resolve
from .mapping import MADV_NORMAL, MADV_RANDOM, ChunkedView
from .metadata import (
    FORMAT_VERSION,
    _load_meta,
    _write_backup,
    _write_group,
)
from .schema import Field, Schema
from .validate import _cast, _copy_rows, _fast_check

__all__ = ["ReplayStore", "open", "FORMAT_VERSION"]

_OPTIONAL = ("episode", "step")


def _alloc(rows: int, chunk_rows: int) -> int:
    """Rows rounded up to whole chunks."""
    return -(-rows // chunk_rows) * chunk_rows




def open(  # noqa: A001
    path: str | os.PathLike,
    mode: str = "r",
    *,
    storage_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> ReplayStore:
    """Open an existing store: ``mode="r"`` to read, ``"a"`` to read and append.

    ``path`` is a directory, a ``.zip`` made by :func:`replaystore.pack` (read-only, used in
    place) or an fsspec URL such as ``s3://bucket/buf.zarr`` (``storage_options`` go to
    fsspec, e.g. ``{"endpoint_url": ...}``). Schema, spaces, capacity and counters come back
    from the metadata; appending in mode ``"a"`` continues where the last writer stopped.
    """
    if mode not in ("r", "a"):
        raise StoreModeError(f"{path}: mode must be 'r' or 'a', got {mode!r}")
    return ReplayStore(path, mode, storage_options=storage_options, **options)


# ---------------------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------------------
class ReplayStore:
    """A transition store on disk. Create with :func:`create`, open with :func:`open`."""

    def __init__(
        self,
        path: str | os.PathLike | Location,
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
        self._loc = resolve(path, storage_options)
        self._local = self._loc.local is not None
        #: the store's directory (local), zip file, or URL
        self.path: Path | str = self._loc.local or self._loc.name
        self.mode = mode
        self._closed = True  # until fully open
        if mode == "a" and self._loc.kind == "zip":
            raise StoreModeError(
                f"{self.path}: a packed .zip store is read-only; unpack it (replaystore unpack) "
                "to append to it"
            )
        meta, state = _load_meta(self._loc)
        self._meta = meta
        self._state = dict(state)
        self._opened_state = dict(state)
        try:
            self.schema = Schema.from_json(meta["fields"])
        except (KeyError, TypeError, SchemaError) as e:
            raise CorruptStoreError(f"{self.path}/zarr.json: field list is damaged: {e}") from None
        self.capacity: int | None = meta.get("capacity")
        self._fsync = fsync
        if bounds not in ("error", "warn", "ignore"):
            raise SchemaError(f"{self.path}: bounds must be 'error', 'warn' or 'ignore', got {bounds!r}")
        if nonfinite_rewards not in ("error", "allow"):
            raise SchemaError(
                f"{self.path}: nonfinite_rewards must be 'error' or 'allow', got {nonfinite_rewards!r}"
            )
        self._bounds = bounds
        self._nonfinite_rewards = nonfinite_rewards
        self._warned_bounds: set[str] = set()
        self._leaf_spaces = {
            f.name: _spaces.space_from_json(f.meta["space"]) for f in self.schema if f.meta.get("space")
        }
        self._fast_ok = {name: _fast_check(sp) for name, sp in self._leaf_spaces.items()}
        self._cache_bytes = int(cache_bytes)
        self._rows: dict[str, RowArray] = {}
        self._zarr: dict[str, zarr.Array] = {}
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._closed = False
        self._lock: WriterLock | None = None
        self._open_chunks: dict[str, tuple[int, np.ndarray]] = {}
        self._dirty_compressed: set[tuple[str, int]] = set()
        self._written: list[tuple[int, int]] = []  # physical rows written since the last commit
        self._crc: dict[str, BlockChecksums] = {}
        self._array_meta: dict[str, dict] = {}
        self._advice = MADV_NORMAL
        if hugepages not in (True, False, "auto"):
            raise SchemaError(f"{self.path}: hugepages must be True, False or 'auto', got {hugepages!r}")
        self._hugepages_opt = hugepages
        self._hugepages: bool | None = None  # decided when the first field is mapped
        self._indexes: dict[str, ClassIndex] = {}
        self._zip_views: dict[str, ChunkedView] = {}
        self._zstore = None
        self._check_arrays()
        self._live: LiveFloor | None = None
        self._live_reader: LiveFloor | None = None
        if mode == "r" and self.capacity is not None and self._local:
            self._live_reader = LiveFloor(self.path, create=False)
            if self._live_reader.array is None:
                self._live_reader = None
        if mode == "a" and self._local:
            self._lock = WriterLock(self.path)
            self._lock.acquire()
            # a writer killed mid-commit leaves temp files and checksums of a commit it never
            # published; the committed state is intact
            remove_stray_temps(self.path)
            for f in self.schema:
                crc = self._crc[f.name] = BlockChecksums(self.path, f, writable=True)
                crc.forget_after(self.generation)
            if self.capacity is not None:
                self._live = LiveFloor(self.path, create=True)
                self._live.raise_floor(self.total - self.size)
        if mode == "a":
            min_chunk = min(f.chunk_rows for f in self.schema)
            self._buffer_rows = int(buffer_rows or min(max(min_chunk, 1), 65536))
            if self.capacity is not None:
                self._buffer_rows = min(self._buffer_rows, self.capacity)
            self._buf = {
                f.name: np.zeros((self._buffer_rows, *f.shape), f.dtype) for f in self.schema
            }
            self._nbuf = 0
            self._pending: list[dict[str, np.ndarray]] = []
            self._commit_every = commit_every
            self._commit_seconds = commit_seconds
            self._last_commit = time.monotonic()
            self._since_commit = 0

    # -- where fields are read and written ----------------------------------------------
    def _mapped(self, f: Field) -> bool:
        """Rows of ``f`` are read through memory maps (uncompressed, local or zip)."""
        return not f.compressed and self._loc.kind in ("local", "zip")

    def _direct(self, f: Field) -> bool:
        """Rows of ``f`` are written in place (uncompressed, local): else via zarr chunks."""
        return not f.compressed and self._local

    # -- metadata -------------------------------------------------------------------------
    def _check_arrays(self) -> None:
        for f in self.schema:
            p = f"{self.path}/{f.name}/zarr.json"
            am = self._loc.get_json(f"{f.name}/zarr.json", what=f"array metadata of field {f.name!r}")
            if am is None:
                raise CorruptStoreError(f"{p}: array metadata of field {f.name!r} is missing")
            chunks = am.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
            if list(am.get("shape", [None])[1:]) != list(f.shape) or chunks != [f.chunk_rows, *f.shape]:
                raise CorruptStoreError(
                    f"{p}: array of field {f.name!r} has shape {am.get('shape')} and chunks {chunks}; "
                    f"expected rows x {list(f.shape)} in chunks of {[f.chunk_rows, *f.shape]}"
                )
            self._array_meta[f.name] = am

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

    def update_info(self, info: Mapping[str, Any] | None = None, *, env: Mapping | None = None) -> None:
        """Merge JSON-serializable ``info`` (and ``env`` details) into the metadata; kept on commit."""
        self._require_writable()
        for target, new in (("info", info), ("env", env)):
            if new:
                merged = {**self._meta.get(target, {}), **dict(new)}
                try:
                    # a deep copy: later changes to the caller's objects cannot reach us
                    self._meta[target] = json.loads(json.dumps(merged, allow_nan=False))
                except (TypeError, ValueError) as e:
                    raise SchemaError(f"{self.path}: {target} must be JSON-serializable: {e}") from None
        self._commit_state(self._state)

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

    @property
    def size(self) -> int:
        """Rows committed to disk and readable (buffered rows not included)."""
        return int(self._state["size"])

    @property
    def total(self) -> int:
        """Rows ever committed, including those a ring has evicted."""
        return int(self._state["total"])

    @property
    def cursor(self) -> int:
        """Physical row the next committed row goes to."""
        return int(self._state["cursor"])

    @property
    def generation(self) -> int:
        return int(self._state.get("generation", 0))

    @property
    def buffered(self) -> int:
        """Rows appended but not yet committed."""
        if self.mode != "a":
            return 0
        return self._nbuf + sum(len(p["reward"]) for p in self._pending)

    @property
    def next_episode(self) -> int:
        return int(self._state["next_episode"])

    def __len__(self) -> int:
        """Rows readable, counting rows appended but not yet flushed."""
        if self.mode != "a" or not self.buffered:
            return self.size
        n = self.size + self.buffered
        return min(n, self.capacity) if self.capacity is not None else n

    def __repr__(self) -> str:
        cap = "unbounded" if self.capacity is None else f"capacity={self.capacity}"
        return f"<ReplayStore {str(self.path)!r} mode={self.mode!r} rows={len(self)} {cap} fields={list(self.schema.names)}>"

    def refresh(self) -> ReplayStore:
        """Re-read the committed state, e.g. in a reader while another process appends."""
        if self.mode == "a":
            return self
        _, state = _load_meta(self._loc)
        if self.capacity is not None and self._live_reader is None and self._local:
            live = LiveFloor(self.path, create=False)
            self._live_reader = live if live.array is not None else None
        if state.get("generation", 0) != self._state.get("generation", 0):
            self._state = dict(state)
            for f in self.schema:
                if not self._mapped(f):
                    self._zarr.pop(f.name, None)
                    for key in [k for k in self._cache if k[0] == f.name]:
                        self._cached_bytes -= self._cache.pop(key).nbytes
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
            if self.mode == "a":
                self.flush()
                self._trim_arrays()
        finally:
            self._closed = True
            for ra in self._rows.values():
                ra.close()
            self._rows.clear()
            for view in self._zip_views.values():
                view.close()
            self._zip_views.clear()
            self._zarr.clear()
            if self._loc.kind == "zip":
                self._loc.close()
            for idx in self._indexes.values():
                idx.close()
            self._indexes.clear()
            self._cache.clear()
            for crc in self._crc.values():
                crc.close()
            for live in (self._live, self._live_reader):
                if live is not None:
                    live.close()
            if self._lock is not None:
                self._lock.release()

    def __del__(self) -> None:  # best effort: never lose buffered rows silently
        try:
            if not self._closed and self.mode == "a":
                self.close()
        except Exception:
            pass

    # -- appending ------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if self._closed:
            raise StoreModeError(f"{self.path}: store is closed")
        if self.mode != "a":
            raise StoreModeError(
                f"{self.path}: store is open read-only (mode='r'); open it with mode='a' to append"
            )

    def append(self, **row: Any) -> None:
        """Append one transition given as keyword arguments, one per field.

        ``episode`` and ``step`` are filled in when omitted: a new episode starts after a
        row whose ``terminated`` or ``truncated`` is true.
        """
        self._require_writable()
        batch = self._validate(row, batched=False)
        self._put(batch, 1)

    def extend(self, batch: Mapping[str, Any]) -> None:
        """Append many transitions: a dict of arrays with the same leading length."""
        self._require_writable()
        if not isinstance(batch, Mapping):
            raise SchemaError(f"{self.path}: extend() takes a dict of arrays, got {type(batch).__name__}")
        arrays = self._validate(batch, batched=True)
        n = len(next(iter(arrays.values())))
        if n:
            self._put(arrays, n)

    def _validate(self, row: Mapping[str, Any], *, batched: bool) -> dict[str, np.ndarray]:
        names = set(self.schema.names)
        unknown = sorted(set(row) - names)
        if unknown:
            raise SchemaError(
                f"{self.path}: unknown field(s) {unknown}; the store has fields {list(self.schema.names)}"
            )
        missing = [n for n in self.schema.names if n not in row and n not in _OPTIONAL]
        if missing:
            raise SchemaError(f"{self.path}: missing field(s) {missing}; every row needs a value for each")
        given_opt = [n for n in _OPTIONAL if n in row]
        if len(given_opt) == 1:
            raise SchemaError(
                f"{self.path}: got {given_opt[0]!r} without {({'episode', 'step'} - set(given_opt)).pop()!r};"
                " give both or neither (then they are filled in)"
            )
        out: dict[str, np.ndarray] = {}
        n = None
        for name, value in row.items():
            f = self.schema[name]
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            want = f.shape if not batched else None
            if batched:
                if arr.ndim != len(f.shape) + 1 or arr.shape[1:] != f.shape:
                    raise SchemaError(
                        f"{self.path}: field {name!r} has shape {arr.shape}; expected (n, {', '.join(map(str, f.shape))})"
                        .replace(", )", ")")
                    )
                if n is None:
                    n = arr.shape[0]
                elif arr.shape[0] != n:
                    raise SchemaError(
                        f"{self.path}: field {name!r} has {arr.shape[0]} rows but other fields have {n}; "
                        "every field of a batch needs the same number of rows"
                    )
            elif arr.shape != want:
                raise SchemaError(f"{self.path}: field {name!r} has shape {arr.shape}; expected {f.shape}")
            out[name] = _cast(arr, f, self.path)
        self._check_values(out, batched)
        return out

    def _check_values(self, arrays: dict[str, np.ndarray], batched: bool) -> None:
        """Values must fit their spaces: discrete ones always, Box bounds per ``bounds``."""
        import warnings

        r = arrays.get("reward")
        if r is not None and self._nonfinite_rewards == "error" and r.dtype.kind == "f":
            bad = ~np.isfinite(r)
            if bad.any():
                i = int(np.flatnonzero(np.atleast_1d(bad))[0])
                raise SchemaError(
                    f"{self.path}: field 'reward' has a non-finite value ({np.atleast_1d(r)[i]}) at row {i} "
                    "of the batch; rewards must be finite (open with nonfinite_rewards='allow' to keep them)"
                )
        for name, space in self._leaf_spaces.items():
            arr = arrays.get(name)
            if arr is None:
                continue
            is_box = isinstance(space, gym.spaces.Box)
            if is_box and self._bounds == "ignore":
                continue
            fast = self._fast_ok[name]
            if fast is not None and fast(arr):
                continue
            try:
                _spaces.check_values(name, space, arr, batched=batched)
            except ValueError as e:
                if is_box and self._bounds == "warn":
                    if name not in self._warned_bounds:
                        self._warned_bounds.add(name)
                        warnings.warn(f"{self.path}: {e} (stored anyway; further warnings for "
                                      f"{name!r} suppressed)", stacklevel=4)
                    continue
                raise type(e)(f"{self.path}: {e}") from None

    def _put(self, arrays: dict[str, np.ndarray], n: int) -> None:
        if "episode" not in arrays:
            self._fill_episodes(arrays, n)
        else:
            ep = arrays["episode"]
            if n:
                st = arrays["step"]
                last_done = bool(arrays["terminated"].reshape(n)[-1] or arrays["truncated"].reshape(n)[-1])
                self._state["next_episode"] = max(self.next_episode, int(ep.max()) + 1)
                if last_done:
                    self._state["episode"] = self._state["next_episode"]
                    self._state["next_episode"] += 1
                    self._state["step"] = 0
                else:
                    self._state["episode"] = int(ep.reshape(n)[-1])
                    self._state["step"] = int(st.reshape(n)[-1]) + 1
        self._since_commit += n
        if self._pending:
            # an earlier write failed: keep the order, queue behind it, and try again
            self._pending.append(_copy_rows(arrays, 0, n))
            self.flush()
        else:
            self._buffer_rows_in(arrays, n)
        if self._commit_every is not None and self._since_commit >= self._commit_every:
            self.flush()
        elif self._commit_seconds is not None and time.monotonic() - self._last_commit >= self._commit_seconds:
            self.flush()

    def _buffer_rows_in(self, arrays: dict[str, np.ndarray], n: int) -> None:
        """Copy rows into the write buffer, writing it out whenever it fills up.

        If a write fails, the rows of ``arrays`` not yet buffered are kept aside (in
        order) so that nothing handed to append/extend is lost; flush() retries."""
        single = arrays["reward"].ndim == 0
        src = 0
        while src < n:
            m = min(n - src, self._buffer_rows - self._nbuf)
            for name, buf in self._buf.items():
                a = arrays[name]
                if single:
                    buf[self._nbuf] = a
                else:
                    buf[self._nbuf : self._nbuf + m] = a[src : src + m]
            self._nbuf += m
            src += m
            if self._nbuf == self._buffer_rows:
                try:
                    self._write_buffer()
                except StoreWriteError:
                    if src < n:
                        self._pending.append(_copy_rows(arrays, src, n))
                    raise

    def _fill_episodes(self, arrays: dict[str, np.ndarray], n: int) -> None:
        cur_ep, cur_step, nxt = int(self._state["episode"]), int(self._state["step"]), self.next_episode
        done = (arrays["terminated"] | arrays["truncated"]).reshape(n)
        if n == 1 and arrays["reward"].ndim == 0:
            arrays["episode"] = np.int64(cur_ep)
            arrays["step"] = np.int64(cur_step)
            if done[0]:
                self._state.update(episode=nxt, step=0, next_episode=nxt + 1)
            else:
                self._state["step"] = cur_step + 1
            return
        d = done.astype(np.int64)
        before = np.cumsum(d) - d  # dones strictly before each row
        ep = np.where(before == 0, cur_ep, nxt + before - 1)
        idx = np.arange(n, dtype=np.int64)
        last_done = np.where(done, idx, -1)
        prev = np.maximum.accumulate(np.concatenate(([-1], last_done[:-1])))
        step = np.where(prev < 0, cur_step + idx, idx - prev - 1)
        arrays["episode"] = ep.astype(np.int64)
        arrays["step"] = step.astype(np.int64)
        ndone = int(d.sum())
        if done[-1]:
            self._state.update(episode=nxt + ndone - 1, step=0, next_episode=nxt + ndone)
        else:
            self._state.update(episode=int(ep[-1]), step=int(step[-1]) + 1, next_episode=nxt + ndone)

    def new_episode_ids(self, k: int) -> np.ndarray:
        """Reserve ``k`` fresh episode ids, unique across the whole store (for collectors)."""
        self._require_writable()
        start = self.next_episode
        self._state["next_episode"] = start + int(k)
        return np.arange(start, start + int(k), dtype=np.int64)

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
        self._require_writable()
        if self._nbuf:
            self._write_buffer()
        while self._pending:
            rows = self._pending.pop(0)
            queued = len(self._pending)
            try:
                self._buffer_rows_in(rows, len(rows["reward"]))
            except StoreWriteError:
                if len(self._pending) > queued:  # the rest of these rows: back to the front
                    self._pending.insert(0, self._pending.pop())
                raise
            if self._nbuf:
                self._write_buffer()
        if self._nbuf:
            self._write_buffer()
        elif self._state != self._committed_state():
            self._commit_state(self._state)
        self._since_commit = 0
        self._last_commit = time.monotonic()

    def _record_checksums(self, state: dict) -> None:
        """CRC32 of the committed rows of every block this commit changes (see integrity.py)."""
        if not self._local:  # checksums are kept for local stores (object stores have their own)
            self._written = []
            return
        prev = self._last_committed if getattr(self, "_last_committed", None) else self._opened_state
        cap = self.capacity
        before = committed_intervals(int(prev["total"]), int(prev["size"]), cap)
        after = committed_intervals(int(state["total"]), int(state["size"]), cap)
        if before == after and not self._written:
            return
        for f in self.schema:
            crc = self._crc.get(f.name)
            if crc is None:
                crc = self._crc[f.name] = BlockChecksums(self.path, f, writable=True)
            blocks = changed_blocks(crc.block_rows, before, after, self._written)
            crc.update(blocks, after, int(state["generation"]), self._row_bytes_reader(f))
            if self._fsync:
                crc.sync()
        self._written = []

    def _row_bytes_reader(self, f: Field):
        if self._direct(f):
            return self._row_array(f).read_bytes

        def read(a: int, b: int) -> bytes:
            out = np.empty((b - a, *f.shape), f.dtype)
            cr = f.chunk_rows
            k = a // cr
            cached = self._open_chunks.get(f.name)
            if cached is not None and cached[0] == k and (b - 1) // cr == k:
                out[:] = cached[1][a - k * cr : b - k * cr]
            else:
                arr = self._zarr_array(f)
                out[:] = arr[a:b]
            return np.ascontiguousarray(out, dtype=f.dtype.newbyteorder("<")).tobytes()

        return read

    def _sync_data(self) -> None:
        """fsync every chunk file written since the last commit (before the state names them)."""
        if not self._local:  # an object store has each object durably once its PUT returns
            self._dirty_compressed.clear()
            return
        for ra in self._rows.values():
            ra.sync()
        for name, k in self._dirty_compressed:
            f = self.schema[name]
            path = self.path / name / "c" / str(k)
            path = path.joinpath(*(["0"] * len(f.shape)))
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._dirty_compressed.clear()

    def _trim_arrays(self) -> None:
        """Make every field array's shape exactly the stored rows (unbounded stores)."""
        if self.capacity is not None:
            return
        for f in self.schema:
            if not self._direct(f):
                arr = self._zarr_array(f)
                if arr.shape[0] != self.total:
                    arr.resize((self.total, *f.shape))
            else:
                self._row_array(f).set_rows(self.total, fsync=self._fsync)

    def _committed_state(self) -> dict:
        # what is on disk: the last commit, or what was there when the store was opened (so
        # closing a store that changed nothing writes nothing)
        return getattr(self, "_last_committed", None) or self._opened_state

    def _write_buffer(self) -> None:
        try:
            with remote_errors(self.path):
                self._write_buffer_unsafe()
        except OSError as e:
            if isinstance(e, ReplayStoreError):
                raise
            where = getattr(self, "_writing", None)
            what = f"writing field {where!r}" if where else "committing"
            raise StoreWriteError(
                f"{self.path}: {what} failed: {e.strerror or e}; the {self.size:,} committed rows are "
                f"intact and the {self._nbuf:,} rows not yet committed are still buffered: fix the "
                "cause (e.g. free disk space) and call flush() again"
            ) from e
        finally:
            self._writing = None

    def _write_buffer_unsafe(self) -> None:
        n = self._nbuf
        if not n:
            return
        total = self.total
        cap = self.capacity
        segments = ring.write_segments(total=total, n=n, capacity=cap)
        new_total = total + n
        new_size = new_total if cap is None else min(cap, self.size + n)
        if cap is not None and self.size + n > cap:
            # Commit the eviction first: the rows about to be overwritten leave the
            # committed range before any byte of them changes.
            written = sum(b - a for a, b, _ in segments)
            keep = max(0, min(self.size, cap - written))
            self._commit_state({**self._state, "size": keep, "total": total, "cursor": self.cursor})
            if self._live is not None:
                # readers that still hold an older state learn here which rows may tear
                self._live.raise_floor(total - keep)
        for name in self.schema.names:
            f = self.schema[name]
            self._writing = name
            buf = self._buf[name]
            if cap is None and not self._direct(f):
                self._resize_zarr(f, _alloc(new_total, f.chunk_rows))
            for a, b, dst in segments:
                self._write_rows(f, dst, buf[a:b])
        self._written.extend((dst, dst + (b - a)) for a, b, dst in segments)
        if cap is None:
            # While a writer has the store open, arrays grow a whole chunk at a time (one
            # metadata write per chunk, not per commit); close() trims them to the rows.
            for f in self.schema:
                if self._direct(f):
                    self._row_array(f).set_rows(_alloc(new_total, f.chunk_rows), fsync=self._fsync)
        self._writing = None
        if self._fsync:
            self._sync_data()
        if self._meta.get("indexes"):
            skip = segments[0][0] if segments else n
            rows = {name: self._buf[name][skip:n] for name in self.schema.names}
            for spec_json in self._meta["indexes"]:
                idx = self._persistent_index(KeySpec.from_json(spec_json))
                if idx is not None and idx.covered == total:
                    idx.add(idx.spec.keys(rows), total + skip, new_total)
                # a stale index (written by an older writer) catches up when next used
        self._nbuf = 0
        self._commit_state(
            {
                **self._state,
                "size": new_size,
                "total": new_total,
                "cursor": new_total % cap if cap is not None else new_total,
            }
        )

    def _commit_state(self, state: dict) -> None:
        state = dict(state)
        state["generation"] = int(self._state.get("generation", 0)) + 1
        self._record_checksums(state)
        _write_group(self._loc, self._meta, state, fsync=self._fsync)
        _write_backup(self._loc, self._meta, state)
        self._state = state
        self._last_committed = dict(state)

    # -- chunk writing --------------------------------------------------------------------
    def _row_array(self, f: Field) -> RowArray:
        ra = self._rows.get(f.name)
        if ra is None:
            ra = RowArray(
                self.path / f.name,
                dtype=f.dtype,
                shape=f.shape,
                chunk_rows=f.chunk_rows,
                max_rows=self.capacity,
                name=f.name,
                advice=self._advice,
                hugepages=self._use_hugepages(),
            )
            self._rows[f.name] = ra
        return ra

    def _write_rows(self, f: Field, dst: int, rows: np.ndarray) -> None:
        if self._direct(f):
            self._row_array(f).write(dst, rows)
            return
        cr = f.chunk_rows
        pos, src = dst, 0
        n = len(rows)
        while src < n:
            k, off = divmod(pos, cr)
            m = min(n - src, cr - off)
            self._write_compressed(f, k, off, rows[src : src + m])
            pos += m
            src += m

    def _zarr_array(self, f: Field) -> zarr.Array:
        arr = self._zarr.get(f.name)
        if arr is None:
            mode = "r+" if self.mode == "a" else "r"
            if self._local:
                arr = zarr.open_array(str(self.path / f.name), mode=mode)
            else:
                with remote_errors(self.path):
                    if self._zstore is None:
                        self._zstore = self._loc.zarr_store(read_only=self.mode != "a")
                    arr = zarr.open_array(store=self._zstore, path=f.name, mode=mode, zarr_format=3)
            self._zarr[f.name] = arr
        return arr

    def _resize_zarr(self, f: Field, rows: int) -> None:
        arr = self._zarr_array(f)
        if arr.shape[0] < rows:
            arr.resize((rows, *f.shape))

    def _write_compressed(self, f: Field, k: int, off: int, part: np.ndarray) -> None:
        cr = f.chunk_rows
        arr = self._zarr_array(f)
        cached = self._open_chunks.get(f.name)
        if cached is None or cached[0] != k:
            lo, hi = k * cr, min((k + 1) * cr, arr.shape[0])
            chunk = np.zeros((cr, *f.shape), f.dtype)
            if hi > lo and not (off == 0 and len(part) >= hi - lo):
                chunk[: hi - lo] = arr[lo:hi]  # keep the rows this write does not cover
            cached = (k, chunk)
            self._open_chunks[f.name] = cached
        chunk = cached[1]
        chunk[off : off + len(part)] = part
        lo = k * cr
        hi = min(lo + cr, arr.shape[0])
        arr[lo:hi] = chunk[: hi - lo]
        self._cache.pop((f.name, k), None)
        self._dirty_compressed.add((f.name, k))

    # -- reading --------------------------------------------------------------------------
    def _publish(self) -> None:
        if self.mode == "a" and self._nbuf:
            self._write_buffer()

    def _physical_extent(self) -> int:
        return self.total if self.capacity is None else min(self.total, self.capacity)

    def _view(self, f: Field) -> ChunkedView:
        if self._loc.kind == "zip":
            view = self._zip_views.get(f.name)
            if view is None:
                view = self._zip_views[f.name] = self._zip_view(f)
            view.ensure(self._physical_extent())
            return view
        return self._row_array(f).readable(self._physical_extent())

    def _zip_view(self, f: Field) -> ChunkedView:
        """Chunks of ``f`` mapped straight out of the zip file (members stored uncompressed)."""
        import mmap

        loc = self._loc
        ndim = len(f.shape)

        def key(k: int) -> str:
            return "/".join([f.name, "c", str(k), *(["0"] * ndim)])

        def locate(k: int):
            m = loc.member(key(k))
            if m is None:
                return None
            offset, size, stored = m
            if not stored:
                raise CorruptStoreError(
                    f"{loc}: member {key(k)!r} is compressed inside the zip; replaystore reads "
                    "uncompressed members in place: re-pack it with replaystore pack"
                )
            return str(loc.file), offset, size

        n_chunks = -(-self._physical_extent() // f.chunk_rows)
        aligned = all(
            (m := loc.member(key(k))) is None or m[0] % mmap.PAGESIZE == 0 for k in range(n_chunks)
        )
        return ChunkedView(
            lambda k: f"{loc}:{key(k)}", dtype=f.dtype, shape=f.shape, chunk_rows=f.chunk_rows,
            max_rows=self.capacity, name=f.name, advice=self._advice, locate=locate,
            contiguous=aligned,  # 16 KiB-aligned members: 2 MiB pages cannot map them
        )

    def _use_hugepages(self) -> bool:
        """Map chunks with 2 MiB pages? ``"auto"``: when the mapped fields fit comfortably in
        the memory this process may use, so the page cache will hold them anyway."""
        if self._hugepages is None:
            opt = self._hugepages_opt
            if opt == "auto":
                from .mapping import memory_budget

                rows = self.capacity or max(self.total, 1)
                mapped = sum(f.row_bytes * rows for f in self.schema if self._mapped(f))
                budget = memory_budget()
                opt = budget is not None and mapped <= budget // 2
            self._hugepages = bool(opt)
        return self._hugepages

    def advise_random(self, on: bool = True) -> None:
        """Tell the kernel reads will be random (``MADV_RANDOM``), for stores far larger than
        RAM. This also stops mapping them with 2 MiB pages (whose faults read 2-4 MiB)."""
        self._advice = MADV_RANDOM if on else MADV_NORMAL
        for ra in self._rows.values():
            ra.view.advise(self._advice)
        for view in self._zip_views.values():
            view.advise(self._advice)

    def _chunk(self, f: Field, k: int) -> np.ndarray:
        key = (f.name, k)
        chunk = self._cache.get(key)
        if chunk is not None:
            self._cache.move_to_end(key)
            return chunk
        arr = self._zarr_array(f)
        lo = k * f.chunk_rows
        with remote_errors(self.path):
            chunk = arr[lo : min(lo + f.chunk_rows, arr.shape[0])]
        self._cache[key] = chunk
        self._cached_bytes += chunk.nbytes
        while self._cached_bytes > self._cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes
        return chunk

    def _gather(self, f: Field, phys: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self._mapped(f):
            return self._view(f).take(phys, out)
        cr = f.chunk_rows
        if not len(phys):
            return out
        ck = phys // cr
        lo_k, hi_k = int(ck.min()), int(ck.max())
        if lo_k == hi_k:  # one chunk (small stores, sequential reads)
            return np.take(self._chunk(f, lo_k), phys - lo_k * cr, axis=0, out=out)
        order = np.argsort(ck, kind="stable")
        sck = ck[order]
        bounds = np.flatnonzero(np.diff(sck)) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(sck)], strict=True):
            if a == b:
                continue
            k = int(sck[a])
            sel = order[a:b]
            out[sel] = self._chunk(f, k)[phys[sel] - k * cr]
        return out

    def physical(self, indices: np.ndarray) -> np.ndarray:
        """Physical rows of logical ``indices`` (validated); used by samplers."""
        return ring.physical_rows(indices, total=self.total, size=self.size, capacity=self.capacity)

    def _normalize(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.dtype.kind == "b":
            raise RowIndexError(f"{self.path}: boolean masks are not row indices; use np.flatnonzero(mask)")
        if idx.size and idx.dtype.kind not in "iu":
            raise RowIndexError(f"{self.path}: row indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        n = self.size
        if idx.size:
            if n == 0:
                raise EmptyStoreError(f"{self.path}: the store holds no rows")
            lo, hi = idx.min(), idx.max()
            if lo < -n or hi >= n:
                bad = int(lo) if lo < -n else int(hi)
                raise RowIndexError(f"{self.path}: row {bad} is out of range for a store of {n} rows")
            if lo < 0:
                idx = np.where(idx < 0, idx + n, idx)
        return idx

    def read(
        self,
        indices: Any,
        fields: str | Sequence[str] | None = None,
        *,
        out: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Rows at logical ``indices`` (any order, duplicates allowed), one array per field.

        ``fields`` selects a subset; only those fields' files are touched. ``out`` may hold
        preallocated arrays to fill (samplers use it to avoid allocation).
        """
        self._check_open()
        self._publish()
        names = self.schema.select(fields)
        idx = self._normalize(indices)
        for _ in range(100):
            phys = self.physical(idx)
            result = {}
            for name in names:
                f = self.schema[name]
                dst = out.get(name) if out is not None else None
                if dst is None or dst.shape[0] != len(phys):
                    dst = np.empty((len(phys), *f.shape), f.dtype)
                result[name] = self._gather(f, phys, dst)
            if not self.torn(idx):
                return result
            self.refresh()  # a writer overwrote rows we read: read them as of now
        raise CorruptStoreError(f"{self.path}: rows kept changing under 100 consecutive reads")

    def torn(self, logical: np.ndarray) -> bool:
        """After a read in a reader process: may a concurrent ring writer have overwritten
        any of these rows while they were copied? (Always False for writers and
        unbounded stores, whose committed rows never change.)"""
        if self._live_reader is None or not len(logical):
            return False
        return self._live_reader.floor > self.total - self.size + int(np.min(logical))

    def read_physical(self, phys: np.ndarray, names: Sequence[str], out: dict[str, np.ndarray]) -> dict:
        """Gather already-validated physical rows into ``out`` (the samplers' hot path)."""
        for name in names:
            self._gather(self.schema.fields[name], phys, out[name])
        return out

    def read_range(self, start: int, stop: int, fields: str | Sequence[str] | None = None) -> dict:
        """Logical rows ``[start, stop)`` as a dict of arrays (copies), read sequentially."""
        self._check_open()
        self._publish()
        names = self.schema.select(fields)
        n = self.size
        start, stop, _ = slice(start, stop).indices(n)
        stop = max(start, stop)
        ranges = ring.physical_ranges(start, stop, total=self.total, size=n, capacity=self.capacity)
        result = {}
        for name in names:
            f = self.schema[name]
            parts = []
            for a, b in ranges:
                if not self._mapped(f):
                    parts.append(self._gather(f, np.arange(a, b, dtype=np.int64), np.empty((b - a, *f.shape), f.dtype)))
                else:
                    parts.append(np.array(self._view(f).slice(a, b)))
            result[name] = (
                parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty((0, *f.shape), f.dtype)
            )
        return result

    def _check_open(self) -> None:
        if self._closed:
            raise StoreModeError(f"{self.path}: store is closed")

    def __getitem__(self, key: Any) -> dict[str, Any]:
        """``store[i]`` one row (a dict of scalars/arrays), ``store[a:b]`` rows as arrays."""
        if isinstance(key, slice):
            self._publish()
            start, stop, step = key.indices(self.size)
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

    # -- class indexes --------------------------------------------------------------------
    def _with_pages(self, idx: ClassIndex | None) -> ClassIndex | None:
        if idx is not None:
            idx.hugepages = self._use_hugepages()
        return idx

    def _persistent_index(self, spec: KeySpec) -> ClassIndex | None:
        idx = self._indexes.get(spec.name)
        if idx is None:
            if not self._local:  # not persisted remotely: kept current only once built
                return None
            idx = self._with_pages(ClassIndex.load(self.path, spec, self.capacity, writable=self.mode == "a"))
            if idx is None:
                idx = self._with_pages(ClassIndex.new(self.path, spec, self.capacity, persist=True))
            self._indexes[spec.name] = idx
        return idx

    def class_index(self, by: Any, *, key_fields=None, key_name: str | None = None) -> ClassIndex:
        """The per-class row index for ``by`` (a discrete field, ``"reward_sign"`` or a
        function of a dict of rows returning integer classes), built once and kept with
        the store. Writers keep field and reward-sign indexes current on every commit; an
        index behind the store catches up on the rows it misses when asked for."""
        import warnings

        from .files import WriterLock

        self._check_open()
        self._publish()
        spec = key_spec(self.schema, by, key_fields=key_fields, name=key_name)
        idx = self._indexes.get(spec.name)
        if idx is not None and idx.spec.kind == "callable":
            idx.spec = spec
        if not self._local:
            # zip and URL stores: the index is built in memory (from the key field only)
            # and kept current by this process's own appends
            if idx is None:
                idx = self._with_pages(ClassIndex.new(self.path, spec, self.capacity, persist=False))
            self._catch_up(idx)
            self._indexes[spec.name] = idx
            return idx
        if idx is None:
            idx = self._with_pages(ClassIndex.load(self.path, spec, self.capacity, writable=self.mode == "a"))
            if idx is not None:
                idx.spec = spec
        elif self.mode == "r":
            idx.reload()
        if idx is not None and idx.covered >= self.total:
            self._indexes[spec.name] = idx
            return idx
        # build or catch up: needs write access to persist
        lock = None
        persist = self.mode == "a"
        if self.mode == "r":
            lock = WriterLock(self.path)
            try:
                lock.acquire()
                persist = os.access(self.path, os.W_OK)
            except Exception:
                lock = None
                persist = False
            if not persist:
                warnings.warn(
                    f"{self.path}: building the {spec.name!r} class index in memory only (the store "
                    "is being written by another process or is read-only); it is rebuilt on each open",
                    stacklevel=3,
                )
        try:
            if idx is None or not persist and idx._memory is None:
                idx = self._with_pages(ClassIndex.new(self.path, spec, self.capacity, persist=persist))
            else:
                idx.writable = persist
            self._catch_up(idx)
            if persist and spec.persistent and self.mode == "a":
                specs = self._meta.setdefault("indexes", [])
                if spec.to_json() not in specs:
                    specs.append(spec.to_json())
                    self._commit_state(self._state)
        finally:
            if lock is not None:
                lock.release()
        self._indexes[spec.name] = idx
        return idx

    def _catch_up(self, idx: ClassIndex, block: int = 1 << 20) -> None:
        total, size = self.total, self.size
        lo = total - size
        start = max(idx.covered, lo)
        if start >= total:
            idx.add(np.empty(0, np.int64), total, total)
            return
        needs = idx.spec.needs()
        for a in range(start, total, block):
            b = min(total, a + block)
            rows = self.read_range(a - lo, b - lo, fields=needs)
            idx.add(idx.spec.keys(rows), a, b)

    # -- pandas ---------------------------------------------------------------------------
    def to_pandas(self, fields=None, start=None, stop=None, *, max_columns_per_field: int = 64):
        """Rows ``[start, stop)`` as a pandas DataFrame (see :func:`replaystore.inspect.to_pandas`)."""
        from ..inspect import to_pandas

        return to_pandas(self, fields=fields, start=start, stop=stop, max_columns_per_field=max_columns_per_field)

    def episodes(self):
        """One row per episode (see :func:`replaystore.inspect.episodes`)."""
        from ..inspect import episodes

        return episodes(self)

    # -- disk usage -----------------------------------------------------------------------
    def nbytes_on_disk(self) -> dict[str, int]:
        """Bytes each field's files occupy on disk (sparse regions not counted)."""
        out = {}
        if not self._local:
            sizes = self._loc.sizes()
            return {
                f.name: sum(v for k, v in sizes.items() if k.startswith(f.name + "/")) for f in self.schema
            }
        for f in self.schema:
            total = 0
            for dirpath, _, files in os.walk(self.path / f.name):
                for name in files:
                    st = os.stat(os.path.join(dirpath, name))
                    total += min(st.st_size, st.st_blocks * 512)
            out[f.name] = total
        return out
