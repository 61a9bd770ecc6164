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
  OUT is built under a hidden name next to it (``.OUT.rsjob-*.tmp``) and renamed into
  place when complete, so a failed or killed merge leaves nothing at OUT; what a killed
  merge left is removed by the next job writing into that directory
  (:func:`replaystore.storage.jobs.clean_leftovers`). It is unbounded unless ``capacity``
  is given; ``chunk_rows`` and ``codecs`` default to the first input's, per field (a ring
  input's chunks are at most its capacity long: pass ``chunk_rows`` for a large OUT).
  Appending keeps OUT's layout, and OUT's env counts like an input's (unless OUT never held
  a row and records none: then it takes the inputs' env). An append is **resumable**: each
  block of rows is committed together with its input's record (``copied``), so if an
  append fails or is killed part-way, the rows copied so far stay (``"status":
  "interrupted"`` or ``"running"``) and running the same merge again (same inputs,
  unchanged) goes on from the first row not yet copied: every input's rows are in OUT
  exactly once (``MergeStats.resumed_rows`` counts those the earlier run had copied).
* **Provenance.** ``info["merged_from"]`` gets one record per input: ``path`` (as given),
  ``rows``, ``episodes``, ``env``, ``created`` (the input's creation record), ``capacity``,
  ``input_rows`` (the input's row counters copied, ``[total - size, total]``), ``out_rows``
  (OUT's row counters they became), ``episode_offset``, ``info`` (the input's other
  ``info``, e.g. the provenance of an input that was itself merged), ``merged_at``,
  ``status`` (``"pending"``, ``"running"``, ``"complete"`` or ``"interrupted"``), ``copied``
  (its rows copied so far) and ``job`` (the index of the first record of the same merge). ``info["collections"]`` is the concatenation of the inputs' collection
  records, each tagged with ``"input": k`` (its index in ``merged_from``), so seeds and
  policies survive. ``info["merged_at"]`` is the time of the last merge. Times come from
  :func:`replaystore.storage.metadata.now_iso` (``SOURCE_DATE_EPOCH`` makes them fixed):
  the same merge run twice writes byte-identical files.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    SchemaError,
    StoreExistsError,
    StoreModeError,
    StoreWriteError,
)
from .merge_checks import check_compatible, check_envs, differences
from .merge_copy import MergePlan, copy_inputs, read_input_ids
from .progress import Progress
from .storage import SCALAR_FIELDS, Field, ReplayStore
from .storage import create as _create
from .storage import open as _open
from .storage import resolve_backend as resolve
from .storage.jobs import job_output, write_failure

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
    #: rows an interrupted run of the same merge had copied already (this run went on from there)
    resumed_rows: int = 0


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
                fsync: bool, buffer_rows: int) -> ReplayStore:
    rows, codec = _layout(ref, chunk_rows, codecs)
    obs, act = ref.observation_space, ref.action_space
    kw: dict[str, Any] = dict(capacity=capacity, chunk_rows=rows, codecs=codec, fsync=fsync,
                              buffer_rows=buffer_rows, **_WRITE_OPTIONS)
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
    first = store.id_range[0]
    for a in range(0, n, block):
        ep = read_input_ids(store, first + a, first + min(n, a + block), ["episode"])["episode"]
        bl, bh = int(ep.min()), int(ep.max())
        lo = bl if lo is None else min(lo, bl)
        hi = bh if hi is None else max(hi, bh)
    return lo, hi


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
    try:
        with contextlib.ExitStack() as stack:
            srcs, dst = _open_stores(stack, out, inputs, loc, append=append and exists,
                                     storage_options=storage_options, block_rows=block_rows)
            ref = dst if dst is not None else srcs[0]
            check_compatible(ref, srcs, into=dst is not None)
            envs, env_ref, mixed = check_envs(srcs, ref, dst, allow_different_env)
            block = int(block_rows) if block_rows else _default_block(srcs[0])
            plan = MergePlan(given=inputs, srcs=srcs, envs=envs, ranges=_episode_ranges(srcs, block),
                         block=block, env=None if mixed else env_ref, mixed=mixed)
            rows, episodes, size, resumed = _write_out(stack, out, loc, dst, plan, progress=progress,
                                                       capacity=capacity, chunk_rows=chunk_rows,
                                                       codecs=codecs, storage_options=storage_options)
    except StoreWriteError as e:
        if not (append and exists):
            raise
        # (the writer's advice is for a program holding the store open; this job has ended)
        raise StoreWriteError(
            f"{out}: merge --append failed: {write_failure(e)}; OUT keeps its rows and those copied "
            "before the failure (recorded in its info): fix the cause (e.g. free disk space) and "
            "run the same merge again to go on"
        ) from None
    return MergeStats(path=str(out), inputs=len(srcs), rows=rows, episodes=episodes, size=size,
                      seconds=time.perf_counter() - t0, resumed_rows=resumed)


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
            f"{out}: already exists; merge into a new path, or pass append=True to add the inputs "
            "to this store",
            cli=f"{out}: already exists; merge into a new path, or use --append to add the inputs to this store",
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
                 storage_options, block_rows) -> tuple[list[ReplayStore], ReplayStore | None]:
    """The inputs opened read-only, and OUT opened to append (``None`` for a new OUT) with a
    write buffer of one copy block (so each block is committed once, with its record)."""
    srcs = [stack.enter_context(_open(p, "r")) for p in inputs]
    if not append:
        return srcs, None
    block = int(block_rows) if block_rows else _default_block(srcs[0])
    for s in srcs:
        if _same_store(loc, s):
            raise SchemaError(f"{out}: a store cannot be merged into itself (it is also an input)")
    dst = stack.enter_context(_open(out, "a", storage_options=storage_options, buffer_rows=block,
                                    **_WRITE_OPTIONS))
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
def _write_out(stack: contextlib.ExitStack, out, loc, dst: ReplayStore | None, plan: MergePlan, *,
               progress: bool | Progress, capacity, chunk_rows, codecs,
               storage_options) -> tuple[int, int, int, int]:
    """Copy the inputs into ``dst`` (appending, resumably), or into a new OUT built aside and
    moved into place when complete; a failed or killed merge into a new OUT leaves nothing
    at OUT (a killed one leaves a hidden temporary directory, which the next job removes)."""
    local = loc.local
    if dst is not None:
        return copy_inputs(dst, plan, progress, out=out)
    if local is None:  # a new remote OUT: built in place, deleted on failure
        try:
            dst = _create_out(out, plan.srcs[0], capacity=capacity, chunk_rows=chunk_rows,
                              codecs=codecs, storage_options=storage_options, fsync=True,
                              buffer_rows=plan.block)
            stack.callback(dst.close)
            stats = copy_inputs(dst, plan, progress, out=out)
            dst.close()
        except BaseException:
            _discard_new_out(dst, loc)
            raise
        return stats
    with job_output(local, action="merge") as tmp:
        # synced once, file by file, before it is renamed into place: syncing at every
        # commit would buy nothing
        dst = _create_out(tmp, plan.srcs[0], capacity=capacity, chunk_rows=chunk_rows, codecs=codecs,
                          storage_options=storage_options, fsync=False, buffer_rows=plan.block)
        try:
            stats = copy_inputs(dst, plan, progress, out=out)
        except BaseException:
            with contextlib.suppress(Exception):
                dst.close()
            raise
        dst.close()
    return stats


def _discard_new_out(dst: ReplayStore | None, loc) -> None:
    """Remove the keys of a new remote OUT a merge failed to complete."""
    if dst is not None:
        with contextlib.suppress(Exception):
            dst.close()
    with contextlib.suppress(Exception):
        loc.delete_all()
