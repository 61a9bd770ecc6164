"""Copying rows for :func:`replaystore.merge.merge`, with provenance, and resuming an
interrupted ``merge --append``.

Every input gets a ``merged_from`` record when the merge starts (``"pending"``). Its rows are
copied in pieces of one block; each piece is committed together with the record that
counts it (``copied``, ``out_rows``, ``status``), in the same atomic write of OUT's
``zarr.json``, so after a crash the record and OUT's rows agree. A rerun of the same merge
(same inputs, unchanged) into the same OUT finds the unfinished records and goes on from
the first row not yet copied: every input's rows end up in OUT exactly once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ReplayStoreError, RowIndexError, SchemaError, StoreLockedError
from .progress import Progress, as_progress
from .storage import ReplayStore, now_iso

__all__: list[str] = []


@dataclass(frozen=True)
class MergePlan:
    """What one merge copies: the inputs as given and opened, their envs and episode id
    ranges, rows per block, and the env OUT records (``None`` when ``mixed``)."""

    given: list
    srcs: list[ReplayStore]
    envs: list[dict]
    ranges: list
    block: int
    env: dict | None
    mixed: bool


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
# copying, with provenance; resuming an interrupted append
# ---------------------------------------------------------------------------------------
def _stage_info(dst: ReplayStore, info: dict) -> None:
    """Put ``info`` into OUT's metadata without committing it: the next commit (the one that
    publishes the rows being copied) writes it in the same atomic step as their state."""
    dst.update_info(info, commit=False)


def _job_records(records: list) -> list[int]:
    """Indices of the records of an unfinished merge job (the last one), or ``[]``."""
    if not records or not isinstance(records[-1], dict):
        return []
    last = records[-1]
    if last.get("job") is None or last.get("status") == "complete" or "copied" not in last:
        return []
    return [i for i, r in enumerate(records) if isinstance(r, dict) and r.get("job") == last["job"]]


def _same_input(record: dict, path, src: ReplayStore) -> bool:
    return (record.get("path") == str(path) and record.get("created") == src.metadata.get("created", {})
            and record.get("input_rows") == [src.total - src.size, src.total])


def _resumable(dst: ReplayStore, plan: MergePlan, records: list) -> list[int]:
    """The records of an interrupted merge of exactly these inputs into ``dst`` (to go on
    with), or ``[]``; an interrupted merge of other inputs is marked ``"interrupted"``."""
    job = _job_records(records)
    if not job:
        return []
    if len(job) == len(plan.srcs) and all(
            _same_input(records[i], p, s) for i, p, s in zip(job, plan.given, plan.srcs, strict=True)):
        return job
    for i in job:
        if records[i].get("status") != "complete":
            records[i] = {**records[i], "status": "interrupted"}
    return []


def _copied_so_far(dst: ReplayStore, record: dict, out) -> int:
    """Rows of an input an interrupted merge copied into ``dst``: its record is committed
    with those rows, so OUT's row counter says which of the two last commits stands."""
    if record.get("status") == "pending" or record["out_rows"][0] is None:
        return 0
    base, copied, prev = record["out_rows"][0], int(record["copied"]), int(record.get("prev", record["copied"]))
    for c in (copied, prev):
        if dst.total == base + c:
            return c
    raise SchemaError(
        f"{out}: cannot go on with the interrupted merge of {record['path']}: OUT holds "
        f"{dst.total - base:,} rows after that input's first row, its record says {copied:,}; OUT "
        "was written after the merge was interrupted (merge into a new store instead)"
    )


def copy_inputs(dst: ReplayStore, plan: MergePlan, progress: bool | Progress, *, out) -> tuple[int, int, int, int]:
    """Copy every input's rows into ``dst``; returns rows and episodes of the inputs, rows OUT
    holds, and rows an interrupted run had copied already (a rerun goes on from there)."""
    info = dst.info
    records = list(info.get("merged_from", []))
    job = _resumable(dst, plan, records)
    if not job:
        job = _start_job(dst, plan, records, info)
    _record_env(dst, plan)
    resumed = 0
    total_rows = sum(len(s) for s in plan.srcs)
    episodes = 0
    with as_progress(progress).task(total_rows, "merge") as pbar:
        for k, src, rng in zip(job, plan.srcs, plan.ranges, strict=True):
            record = records[k]
            if record["status"] == "complete":
                resumed += len(src)
                episodes += int(record.get("episodes") or 0)
                pbar.update(len(src))
                continue
            start = _copied_so_far(dst, record, out)
            resumed += start
            pbar.update(start)
            if record["status"] == "pending" or record["out_rows"][0] is None:
                record.update(out_rows=[dst.total, dst.total], copied=0, prev=0)
            record["status"] = "running"
            episodes += _copy_input(dst, src, records, k, start=start, rng=rng, block=plan.block,
                                    pbar=pbar)
    return total_rows, episodes, len(dst), resumed


def _start_job(dst: ReplayStore, plan: MergePlan, records: list, info: dict) -> list[int]:
    """Record the inputs of a new merge (``"pending"``), committed before any row is copied."""
    merged_at = now_iso()
    collections = list(info.get("collections", []))
    k0 = len(records)
    next_id = dst.next_episode
    for path, src, env_k, rng in zip(plan.given, plan.srcs, plan.envs, plan.ranges, strict=True):
        offset = None if rng is None else next_id - rng[0]
        src_info = src.info
        records.append(_input_record(dst, src, src_info, path=path, rows=len(src), env=env_k,
                                     offset=offset, merged_at=merged_at, job=k0))
        collections.extend({**c, "input": len(records) - 1} for c in src_info.get("collections", []))
        if rng is not None:
            next_id += rng[1] - rng[0] + 1
    dst.update_info({"merged_from": records, "collections": collections, "merged_at": merged_at})
    return list(range(k0, len(records)))


def _record_env(dst: ReplayStore, plan: MergePlan) -> None:
    """OUT's env: mixed, the inputs' (if OUT records none yet), or OUT's own."""
    if plan.mixed:
        if dst.env_info != {"id": None, "kwargs": {}, "mixed": True}:
            dst.update_info(env={"id": None, "kwargs": {}, "mixed": True})
    elif plan.env and not dst.env_info.get("id"):
        dst.update_info(env=plan.env)


def _input_record(dst: ReplayStore, src: ReplayStore, src_info: dict, *, path, rows: int,
                  env: dict, offset: int | None, merged_at: str, job: int) -> dict[str, Any]:
    """One input's ``merged_from`` record as written before its rows are copied (``copied``,
    ``episodes``, OUT's rows and ``status`` follow the copy, committed with its rows)."""
    return {
        "path": str(path),
        "rows": rows,
        "episodes": None,
        "env": env,
        "created": src.metadata.get("created", {}),
        "capacity": src.capacity,
        "input_rows": [src.total - src.size, src.total],
        "out_rows": [None, None],
        "episode_offset": offset,
        "info": {key: v for key, v in src_info.items() if key != "collections"},
        "merged_at": merged_at,
        "status": "pending",
        "job": job,
        "copied": 0,
    }


def _copy_input(dst: ReplayStore, src: ReplayStore, records: list, k: int, *, start: int, rng,
                block: int, pbar) -> int:
    """Copy rows ``start..`` of ``src`` into ``dst``, each piece committed together with its
    record (``records[k]``: rows copied, ``"complete"`` with the last piece); a failure
    marks it ``"interrupted"`` (a rerun of the same merge goes on from there). Returns its
    distinct episodes."""
    record = records[k]
    n = len(src)
    lo = src.id_range[0]  # logical row a of src is the row with global id lo + a
    base = record["out_rows"][0]
    distinct = _Distinct(str(src.path), *rng, n) if rng is not None else None
    for a in range(0, start, block):  # episodes of the rows an earlier run copied
        distinct.add(read_input_ids(src, lo + a, lo + min(start, a + block), ["episode"])["episode"])
    piece = block if dst.capacity is None else max(1, min(block, dst.capacity))
    try:
        for a in range(start, n, piece):
            b = min(n, a + piece)
            rows = _read_block(src, lo + a, lo + b, distinct, record["episode_offset"])
            last = b == n
            record.update(copied=b, prev=a, out_rows=[base, base + b],
                          status="complete" if last else "running",
                          episodes=distinct.count() if last else None)
            _stage_info(dst, {"merged_from": records})
            try:
                dst.extend(rows)  # a full buffer is written and committed here, with the record
            except ReplayStoreError as e:
                raise type(e)(f"merge: rows {a}..{b - 1} of {src.path}: {e}") from None
            if dst.buffered:
                dst.flush()
            pbar.update(b - a)
        if start == n:  # (an input without rows, or one whose last commit was cut short)
            record.update(status="complete", episodes=distinct.count() if distinct else 0,
                          out_rows=[base, base + n], copied=n, prev=n)
            dst.update_info({"merged_from": records})
    except BaseException:
        with contextlib.suppress(Exception):
            dst.flush()
        copied = max(0, dst.total - base) if base is not None else 0
        record.update(status="interrupted", copied=copied, prev=copied, out_rows=[base, dst.total])
        with contextlib.suppress(Exception):
            dst.update_info({"merged_from": records})
        raise
    return int(record["episodes"] or 0)


def read_input_ids(src: ReplayStore, a: int, b: int, fields: list[str] | None = None) -> dict:
    """The rows of input ``src`` with global ids ``a..b``, whole (StoreLockedError if a ring
    writer in another process evicted or overwrote some of them)."""
    try:
        return src.read_ids(a, b, fields=fields)
    except RowIndexError:
        raise StoreLockedError(
            f"{src.path}: a writer overwrote rows of this ring while they were copied; "
            "stop the writer (or merge a copy of the store) and merge again"
        ) from None


def _read_block(src: ReplayStore, a: int, b: int, distinct: _Distinct | None, offset) -> dict:
    """The rows of ``src`` with global ids ``a..b``, whole, episode ids shifted by ``offset``."""
    rows = read_input_ids(src, a, b)
    ep = rows["episode"]
    distinct.add(ep)
    rows["episode"] = ep + np.int64(offset)
    return rows
