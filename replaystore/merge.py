"""Merge stores: concatenate compatible stores into one, keeping episodes apart.

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> d = tempfile.mkdtemp()
>>> for name in ("a", "b"):
...     with rs.create(f"{d}/{name}.zarr", gym.spaces.Discrete(4), gym.spaces.Discrete(2)) as s:
...         s.extend({"obs": [0, 1], "action": [0, 1], "reward": [0.0, 1.0], "next_obs": [1, 2],
...                   "terminated": [False, True], "truncated": [False, False]})
>>> stats = merge(f"{d}/all.zarr", [f"{d}/a.zarr", f"{d}/b.zarr"])
>>> stats.rows, stats.episodes
(4, 2)
>>> with rs.open(f"{d}/all.zarr") as s:
...     s.read_range(0, 4, fields=["episode", "step"])["episode"].tolist(), len(s.info["merged_from"])
([1, 1, 2, 2], 2)

What merging does:

* **Compatibility.** Every input must have the same fields (names, dtypes, per-row shapes)
  and the same observation and action spaces (:func:`replaystore.spaces.space_equal`) as
  the first input (or as OUT when appending); otherwise :class:`SchemaError` names both
  stores and what differs. Layout (chunking, codecs, capacity) may differ. Inputs recorded
  from different environments (env id or env kwargs) are refused with :class:`EnvError`
  unless ``allow_different_env=True``: their transitions mix different dynamics. A merge of
  different environments records ``env_info == {"id": None, "kwargs": {}, "mixed": True}``;
  each input's env is kept in the provenance.
* **Rows** are copied input by input in logical order (oldest first), in blocks of
  ``block_rows``, so memory stays bounded whatever the stores' size. Inputs are opened
  read-only and never modified. Every field is copied exactly, except ``episode``.
* **Episodes.** Input ``k``'s episode ids are shifted by one offset per input (recorded as
  ``episode_offset``) so they start at OUT's next free id: rows of one input episode stay
  one episode, episodes of different inputs never share an id, and ``step`` is kept. A ring
  input that evicted the start of an episode keeps that episode's remaining rows as a
  partial episode (its first ``step`` is not 0, so :meth:`ReplayStore.episodes` reports it
  as not ``complete``), and an input's unfinished last episode stays unfinished.
* **OUT** must not exist (:class:`StoreExistsError`), unless ``append=True``: then an
  existing compatible store takes the rows after its own (a missing OUT is created). A new
  OUT is built in a temporary directory next to it and renamed into place when complete,
  so a failed merge leaves nothing behind (a merge killed outright leaves
  ``OUT.merging-*``: delete it). It is unbounded unless ``capacity`` is given;
  ``chunk_rows`` and ``codecs`` default to the first input's, per field (a ring input's
  chunks are at most its capacity long: pass ``chunk_rows`` for a large OUT). Appending
  keeps OUT's layout, and OUT's env counts like an input's (unless OUT never held a row
  and records none: then it takes the inputs' env); if an append fails part-way, the rows
  copied so far stay, recorded with ``"status": "interrupted"``.
* **Provenance.** ``info["merged_from"]`` gets one record per input: ``path`` (as given),
  ``rows``, ``episodes``, ``env``, ``created`` (the input's creation record), ``capacity``,
  ``input_rows`` (the input's row counters copied, ``[total - size, total]``), ``out_rows``
  (OUT's row counters they became), ``episode_offset``, ``info`` (the input's other
  ``info``, e.g. the provenance of an input that was itself merged), ``merged_at`` and
  ``status``. ``info["collections"]`` is the concatenation of the inputs' collection
  records, each tagged with ``"input": k`` (its index in ``merged_from``), so seeds and
  policies survive. ``info["merged_at"]`` is the time of the last merge. Times come from
  :func:`replaystore.storage.metadata.now_iso` (``SOURCE_DATE_EPOCH`` makes them fixed):
  the same merge run twice writes byte-identical files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    ReplayStoreError,
    SchemaError,
    StoreExistsError,
    StoreLockedError,
    StoreModeError,
)
from .merge_checks import check_compatible, check_envs, differences
from .progress import Progress, as_progress
from .storage import SCALAR_FIELDS, Field, ReplayStore, now_iso
from .storage import create as _create
from .storage import open as _open
from .storage import resolve_backend as resolve

__all__ = ["merge", "MergeStats", "BLOCK_BYTES"]

#: bytes of rows (all fields) copied per block by default
BLOCK_BYTES = 32 * 2**20

# values in an input were accepted when it was written: copy them as they are
_WRITE_OPTIONS = {"bounds": "ignore", "nonfinite_rewards": "allow"}


@dataclass(frozen=True)
class MergeStats:
    """What :func:`merge` did."""

    path: str  #: OUT
    inputs: int  #: stores merged
    rows: int  #: rows copied
    episodes: int  #: distinct episodes copied (partial ones included)
    size: int  #: rows OUT holds now
    seconds: float


# ---------------------------------------------------------------------------------------
# OUT
# ---------------------------------------------------------------------------------------
def _layout(ref: ReplayStore, chunk_rows, codecs) -> tuple[dict, dict]:
    """Per-field chunk rows and codecs of OUT: the first input's, overridden by options."""
    rows = {f.name: f.chunk_rows for f in ref.schema}
    codec = {f.name: f.codec for f in ref.schema}
    for target, option, what in ((rows, chunk_rows, "chunk_rows"), (codec, codecs, "codecs")):
        if option is None:
            continue
        if isinstance(option, Mapping):
            unknown = sorted(set(option) - set(target))
            if unknown:
                raise SchemaError(f"merge: {what} names unknown field(s) {unknown}; the stores have "
                                  f"fields {list(target)}")
            target.update(option)
        else:
            target.update(dict.fromkeys(target, option))
    return rows, codec


def _create_out(path, ref: ReplayStore, *, capacity, chunk_rows, codecs, storage_options,
                fsync: bool) -> ReplayStore:
    rows, codec = _layout(ref, chunk_rows, codecs)
    obs, act = ref.observation_space, ref.action_space
    kw: dict[str, Any] = dict(capacity=capacity, chunk_rows=rows, codecs=codec, fsync=fsync, **_WRITE_OPTIONS)
    if storage_options:
        kw["storage_options"] = storage_options
    if obs is not None and act is not None:
        extra = [f for f in ref.schema if "role" not in f.meta and f.name not in
                 dict(SCALAR_FIELDS)]
        store = _create(path, obs, act, extra_fields=extra, **kw)
    else:
        fields = [Field(f.name, f.dtype, f.shape, f.chunk_rows, f.codec, f.meta) for f in ref.schema]
        store = _create(path, fields=fields, **kw)
    try:
        diff = differences(ref, store)
    except BaseException:
        store.close()
        raise
    if diff:  # pragma: no cover - create() rebuilds the schema it is given
        store.close()
        raise SchemaError(f"{ref.path}: merge cannot reproduce this store's fields: {'; '.join(diff)}")
    return store


def _is_empty_dir(p: Path) -> bool:
    return p.is_dir() and not any(p.iterdir())


def _sync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (its data reaches the disk)."""
    for dirpath, _, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(p: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _same_store(a, b: ReplayStore) -> bool:
    la, lb = a.local, getattr(b, "path", None)
    if la is None or not isinstance(lb, Path):
        return str(a) == str(lb)
    try:
        return la.exists() and lb.exists() and os.path.samefile(la, lb)
    except OSError:  # pragma: no cover
        return False


# ---------------------------------------------------------------------------------------
# episode ids of one input
# ---------------------------------------------------------------------------------------
def _episode_range(store: ReplayStore, block: int) -> tuple[int, int] | None:
    """Smallest and largest episode id in ``store`` (reads only the ``episode`` field)."""
    n = len(store)
    if n == 0:
        return None
    lo, hi = None, None
    for a in range(0, n, block):
        ep = store.read_range(a, min(n, a + block), fields=["episode"])["episode"]
        bl, bh = int(ep.min()), int(ep.max())
        lo = bl if lo is None else min(lo, bl)
        hi = bh if hi is None else max(hi, bh)
    return lo, hi


class _Distinct:
    """Count distinct episode ids in ``[lo, hi]``: a bitmap when the span is small (ids made
    by counters), else sorted unique ids (O(episodes) memory either way)."""

    def __init__(self, name: str, lo: int, hi: int, rows: int) -> None:
        self.name = name
        self.lo = lo
        span = hi - lo + 1
        self.seen = np.zeros(span, bool) if span <= 4 * rows + 65536 else None
        self.parts: list[np.ndarray] = []
        self.kept = 0

    def add(self, ep: np.ndarray) -> None:
        if self.seen is not None and len(ep):
            if int(ep.min()) < self.lo or int(ep.max()) - self.lo >= len(self.seen):
                # only if rows changed between the two passes (a ring written remotely,
                # where overwrites cannot be detected)
                raise StoreLockedError(f"{self.name}: rows changed while they were copied; stop "
                                       "the writer and merge again")  # pragma: no cover
            self.seen[ep - self.lo] = True
            return
        self.parts.append(np.unique(ep))
        n = sum(len(p) for p in self.parts)
        if n > 2 * self.kept + 65536:
            self.parts = [np.unique(np.concatenate(self.parts))]
            self.kept = len(self.parts[0])

    def count(self) -> int:
        if self.seen is not None:
            return int(self.seen.sum())
        return len(np.unique(np.concatenate(self.parts))) if self.parts else 0


# ---------------------------------------------------------------------------------------
# merge
# ---------------------------------------------------------------------------------------
def merge(
    out: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    *,
    append: bool = False,
    capacity: int | None = None,
    chunk_rows: int | Mapping[str, int] | None = None,
    codecs: str | Mapping[str, str | None] | None = None,
    allow_different_env: bool = False,
    block_rows: int | None = None,
    progress: bool | Progress = False,
    storage_options: Mapping[str, Any] | None = None,
) -> MergeStats:
    """Concatenate the stores ``inputs`` into a new store ``out`` (see the module docstring).

    ``append=True`` lets ``out`` be an existing compatible store (its layout and capacity
    are kept; ``capacity``, ``chunk_rows`` and ``codecs`` then must not be given, or must
    match). ``capacity=N`` makes a new OUT a ring keeping the newest ``N`` rows (default:
    unbounded, so nothing is dropped). ``chunk_rows``/``codecs`` override the first
    input's layout for every field (an int/str) or per field (a dict); ``codecs="none"``
    stores uncompressed. ``block_rows`` is the number of rows copied at a time (default:
    about 32 MiB of rows). Inputs may be directories, packed ``.zip`` stores or URLs; OUT
    is a directory or URL (``storage_options`` go to fsspec for OUT).

    Raises :class:`StoreExistsError` when OUT exists and ``append`` is false,
    :class:`NotAStoreError` for a missing input, :class:`SchemaError` for inputs whose
    fields or spaces differ, :class:`EnvError` for inputs of different environments
    (unless ``allow_different_env``). Nothing is written before all checks pass.
    """
    t0 = time.perf_counter()
    inputs = _check_arguments(out, inputs, block_rows)
    loc = resolve(out, storage_options)
    exists = _check_out(out, loc, append=append, capacity=capacity, chunk_rows=chunk_rows,
                        codecs=codecs, storage_options=storage_options)
    with contextlib.ExitStack() as stack:
        srcs, dst = _open_stores(stack, out, inputs, loc, append=append and exists,
                                 storage_options=storage_options)
        ref = dst if dst is not None else srcs[0]
        check_compatible(ref, srcs, into=dst is not None)
        envs, env_ref, mixed = check_envs(srcs, ref, dst, allow_different_env)
        block = int(block_rows) if block_rows else _default_block(ref)
        plan = _Plan(given=inputs, srcs=srcs, envs=envs, ranges=_episode_ranges(srcs, block),
                     block=block, env=None if mixed else env_ref, mixed=mixed)
        rows, episodes, size = _write_out(stack, out, loc, dst, plan, progress=progress,
                                          capacity=capacity, chunk_rows=chunk_rows, codecs=codecs,
                                          storage_options=storage_options)
    return MergeStats(path=str(out), inputs=len(srcs), rows=rows, episodes=episodes, size=size,
                      seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class _Plan:
    """What one merge copies: the inputs as given and opened, their envs and episode id
    ranges, rows per block, and the env OUT records (``None`` when ``mixed``)."""

    given: list
    srcs: list[ReplayStore]
    envs: list[dict]
    ranges: list
    block: int
    env: dict | None
    mixed: bool


# ---------------------------------------------------------------------------------------
# checks, before anything is written
# ---------------------------------------------------------------------------------------
def _check_arguments(out, inputs, block_rows) -> list:
    """``inputs`` as a list (one path alone is a list of one), once the arguments are valid."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise SchemaError(f"{out}: merge needs at least one input store")
    if block_rows is not None and (not isinstance(block_rows, int | np.integer) or block_rows <= 0):
        raise SchemaError(f"merge: block_rows must be a positive int, got {block_rows!r}")
    return inputs


def _check_out(out, loc, *, append: bool, capacity, chunk_rows, codecs, storage_options) -> bool:
    """Whether OUT (at ``loc``) exists, once it is known that the merge may write there."""
    local = loc.local
    if local is not None:
        exists = local.exists() and not _is_empty_dir(local)
    else:
        exists = not loc.is_empty()
    if not loc.writable:
        loc.close()  # only looked at: a .zip is never written
    if exists and not append:
        raise StoreExistsError(
            f"{out}: already exists; merge into a new path, or pass --append (append=True) to "
            "add the inputs to this store"
        )
    if not loc.writable or (local is not None and local.suffix.lower() == ".zip" and not exists):
        raise StoreModeError(
            f"{out}: a .zip store is read-only; merge into a directory, then pack it "
            "(replaystore pack)"
        )
    if append and exists:
        _check_append_options(out, capacity=capacity, chunk_rows=chunk_rows, codecs=codecs,
                              storage_options=storage_options)
    return exists


def _check_append_options(out, *, capacity, chunk_rows, codecs, storage_options) -> None:
    """Appending keeps the existing OUT's capacity and layout: refuse options that change them."""
    if capacity is None and chunk_rows is None and codecs is None:
        return
    with _open(out, "r", storage_options=storage_options) as probe:
        if capacity is not None and probe.capacity != capacity:
            raise SchemaError(
                f"{out}: appending to an existing store keeps its capacity "
                f"({probe.capacity}); got capacity={capacity}"
            )
        if chunk_rows is not None or codecs is not None:
            raise SchemaError(
                f"{out}: appending to an existing store keeps its chunking and codecs; "
                "drop chunk_rows/codecs (--chunk-rows/--codecs)"
            )


def _open_stores(stack: contextlib.ExitStack, out, inputs: list, loc, *, append: bool,
                 storage_options) -> tuple[list[ReplayStore], ReplayStore | None]:
    """The inputs opened read-only, and OUT opened to append (``None`` for a new OUT)."""
    srcs = [stack.enter_context(_open(p, "r")) for p in inputs]
    if not append:
        return srcs, None
    for s in srcs:
        if _same_store(loc, s):
            raise SchemaError(f"{out}: a store cannot be merged into itself (it is also an input)")
    dst = stack.enter_context(_open(out, "a", storage_options=storage_options, **_WRITE_OPTIONS))
    return srcs, dst


def _episode_ranges(srcs: list[ReplayStore], block: int) -> list:
    """Each input's smallest and largest episode id (``None`` for an empty input)."""
    ranges = [_episode_range(s, block) for s in srcs]
    for s, r in zip(srcs, ranges, strict=True):
        if r is not None and r[1] - r[0] > 2**62:
            raise SchemaError(f"{s.path}: episode ids {r[0]}..{r[1]} span too wide to renumber")
    return ranges


def _default_block(store: ReplayStore) -> int:
    row = sum(f.row_bytes for f in store.schema)
    return int(max(1, min(1 << 20, BLOCK_BYTES // max(1, row))))


# ---------------------------------------------------------------------------------------
# writing OUT
# ---------------------------------------------------------------------------------------
def _write_out(stack: contextlib.ExitStack, out, loc, dst: ReplayStore | None, plan: _Plan, *,
               progress: bool | Progress, capacity, chunk_rows, codecs,
               storage_options) -> tuple[int, int, int]:
    """Copy the inputs into ``dst`` (appending), or into a new OUT built aside and moved into
    place when complete; a failed merge into a new OUT leaves nothing behind."""
    local = loc.local
    tmp: Path | None = None
    new_remote = dst is None and local is None
    try:
        if dst is None:
            target: Any = out
            if local is not None:
                tmp = local.parent / f"{local.name}.merging-{os.getpid()}-{secrets.token_hex(4)}"
                target = tmp
            # a new local OUT is synced once, file by file, before it is renamed into
            # place: syncing at every commit would buy nothing
            dst = _create_out(target, plan.srcs[0], capacity=capacity, chunk_rows=chunk_rows,
                              codecs=codecs, storage_options=storage_options, fsync=tmp is None)
            stack.callback(dst.close)
        stats = _copy(dst, plan, progress)
        dst.close()
        if tmp is not None:
            _sync_tree(tmp)
            _move_into_place(tmp, local)
            tmp = None
    except BaseException:
        if tmp is not None or new_remote:
            _discard_new_out(dst, tmp, loc)
        raise
    return stats


def _discard_new_out(dst: ReplayStore | None, tmp: Path | None, loc) -> None:
    """Remove a new OUT a merge failed to complete: its temporary directory, or the remote keys."""
    if dst is not None:
        with contextlib.suppress(Exception):
            dst.close()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(Exception):
            loc.delete_all()


def _move_into_place(tmp: Path, final: Path) -> None:
    if _is_empty_dir(final):
        final.rmdir()
    try:
        os.rename(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreExistsError(f"{final}: appeared while merging ({e.strerror}); the merge was discarded") from None
    _fsync_dir(final.parent)


# ---------------------------------------------------------------------------------------
# copying, with provenance
# ---------------------------------------------------------------------------------------
def _copy(dst: ReplayStore, plan: _Plan, progress: bool | Progress) -> tuple[int, int, int]:
    """Copy every input's rows into ``dst``, recording provenance as it goes."""
    merged_at = now_iso()
    info = dst.info
    records = list(info.get("merged_from", []))
    collections = list(info.get("collections", []))
    _record_env(dst, plan)
    total_rows = sum(len(s) for s in plan.srcs)
    rows_copied = episodes = 0
    next_id = dst.next_episode
    with as_progress(progress).task(total_rows, "merge") as pbar:
        for path, src, env_k, rng in zip(plan.given, plan.srcs, plan.envs, plan.ranges, strict=True):
            k = len(records)
            n = len(src)
            offset = None if rng is None else next_id - rng[0]
            src_info = src.info
            records.append(_input_record(dst, src, src_info, path=path, rows=n, env=env_k,
                                         offset=offset, merged_at=merged_at))
            collections.extend({**c, "input": k} for c in src_info.get("collections", []))
            dst.update_info({"merged_from": records, "collections": collections, "merged_at": merged_at})
            count = _copy_input(dst, src, n, records, offset=offset, rng=rng, block=plan.block,
                                pbar=pbar)
            rows_copied += n
            episodes += count
            if rng is not None:
                next_id += rng[1] - rng[0] + 1
    return rows_copied, episodes, len(dst)


def _record_env(dst: ReplayStore, plan: _Plan) -> None:
    """OUT's env: mixed, the inputs' (if OUT records none yet), or OUT's own."""
    if plan.mixed:
        dst.update_info(env={"id": None, "kwargs": {}, "mixed": True})
    elif plan.env and not dst.env_info.get("id"):
        dst.update_info(env=plan.env)


def _input_record(dst: ReplayStore, src: ReplayStore, src_info: dict, *, path, rows: int,
                  env: dict, offset: int | None, merged_at: str) -> dict[str, Any]:
    """One input's ``merged_from`` record as written before its rows are copied (``episodes``
    and OUT's last row are filled in, and ``status`` set, when the copy ends)."""
    return {
        "path": str(path),
        "rows": rows,
        "episodes": None,
        "env": env,
        "created": src.metadata.get("created", {}),
        "capacity": src.capacity,
        "input_rows": [src.total - src.size, src.total],
        "out_rows": [dst.total + dst.buffered, None],
        "episode_offset": offset,
        "info": {key: v for key, v in src_info.items() if key != "collections"},
        "merged_at": merged_at,
        "status": "running",
    }


def _copy_input(dst: ReplayStore, src: ReplayStore, n: int, records: list, *, offset: int | None,
                rng, block: int, pbar) -> int:
    """Copy the ``n`` rows of ``src`` into ``dst`` and complete its record (``records[-1]``):
    ``"complete"``, or ``"interrupted"`` if the copy failed. Returns its distinct episodes."""
    record = records[-1]
    distinct = _Distinct(str(src.path), *rng, n) if rng is not None else None
    status = "interrupted"
    try:
        _copy_blocks(dst, src, n, offset=offset, distinct=distinct, block=block, pbar=pbar)
        dst.flush()
        status = "complete"
    finally:
        count = distinct.count() if distinct is not None else 0
        with contextlib.suppress(Exception):
            dst.flush()
        record.update(status=status, episodes=count, out_rows=[record["out_rows"][0], dst.total])
        if status == "complete":
            dst.update_info({"merged_from": records})
        else:
            with contextlib.suppress(Exception):
                dst.update_info({"merged_from": records})
    return count


def _copy_blocks(dst: ReplayStore, src: ReplayStore, n: int, *, offset: int | None,
                 distinct: _Distinct | None, block: int, pbar) -> None:
    """Append the rows of ``src`` to ``dst`` block by block, episode ids shifted by ``offset``."""
    for a in range(0, n, block):
        b = min(n, a + block)
        rows = src.read_range(a, b)
        if src.torn(np.array([a])):
            raise StoreLockedError(
                f"{src.path}: a writer overwrote rows of this ring while they were copied; "
                "stop the writer (or merge a copy of the store) and merge again"
            )
        ep = rows["episode"]
        distinct.add(ep)
        rows["episode"] = ep + np.int64(offset)
        try:
            dst.extend(rows)
        except ReplayStoreError as e:
            raise type(e)(f"merge: rows {a}..{b - 1} of {src.path}: {e}") from None
        pbar.update(b - a)
