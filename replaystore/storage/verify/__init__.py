"""Check a store against its checksums and side files, and repair it without losing data.

``verify`` checks every committed block of every field against its checksum, the state
in ``zarr.json`` against the arrays (and, when they disagree, the backup state against
the data), every class index against the key field, and the ``.live`` floor. ``repair``
rebuilds damaged side files from the data and drops only rows whose data itself fails
its checksum (see :mod:`.repair`).

>>> import tempfile, gymnasium as gym, numpy as np, replaystore as rs
>>> p = tempfile.mkdtemp() + "/s"
>>> with rs.create(p, gym.spaces.Discrete(4), gym.spaces.Discrete(2)) as s:
...     s.extend({"obs": [0, 1], "action": [0, 1], "reward": [0.0, 1.0], "next_obs": [1, 2],
...               "terminated": [False, True], "truncated": [False, False]})
>>> verify(p).ok
True
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import NotAStoreError, ReplayStoreError, StoreModeError
from .. import layout
from ..backends import LocalBackend, ZipBackend, is_local_dir, is_url, resolve
from ..files import read_json
from ..metadata import load_meta, parse_meta
from .check import StateCheck, check_state
from .indexes import check_indexes, check_live
from .priorities import check_priorities_array
from .repair import remove_leftovers
from .repair import repair as repair_store
from .report import Damage, SideDamage, VerifyReport
from .zipped import scratch_copy

__all__ = ["verify", "VerifyReport", "Damage", "SideDamage"]


def writer_pid(root: Path) -> str | None:
    """The pid of a process holding the store's writer lock, or None (probed with a shared
    ``flock`` on the existing lock file: nothing is created or written)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(root / layout.LOCK, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _backup(root: Path) -> tuple[dict, dict] | None:
    try:
        return parse_meta(read_json(root / layout.BACKUP, what="metadata backup"), root)
    except (OSError, ReplayStoreError):
        return None


def _rows_held(root: Path, meta: dict) -> int | None:
    """The fewest rows any field's array metadata says it holds (None if unreadable)."""
    held = None
    for f in meta.get("fields", []) if isinstance(meta.get("fields"), list) else []:
        name = f.get("name") if isinstance(f, dict) else None
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            continue
        try:
            rows = read_json(root / name / "zarr.json", what="array metadata")["shape"][0]
        except (OSError, KeyError, TypeError, IndexError, ReplayStoreError):
            continue
        if isinstance(rows, int):
            held = rows if held is None else min(held, rows)
    return held


def _describe(state: dict) -> str:
    return ", ".join(f"{k} {state.get(k)!r}" for k in ("size", "total", "cursor", "generation"))


def _choose(root: Path, report: VerifyReport, *, live_writer: bool) -> StateCheck | None:
    """The committed state to check (and repair to): ``zarr.json``'s, or the backup's when
    ``zarr.json`` cannot be read or disagrees with the data and the backup does not."""
    backup = _backup(root)
    try:
        primary = load_meta(root)
        err = None
    except NotAStoreError:
        if backup is None or not (root / layout.GROUP_META).exists() and not (root / layout.BACKUP).is_file():
            raise
        primary, err = None, f"{root / layout.GROUP_META} is missing or not a store's metadata"
    except ReplayStoreError as e:
        primary, err = None, str(e)
    if primary is None:
        report.problems.append(f"zarr.json: {err}")
        if backup is None:
            report.problems.append("no usable backup (.zarr.json.bak) either")
            return None
        chk = check_state(root, *backup, live_writer=False)
        chk.side.insert(0, SideDamage("zarr.json", f"cannot be read; restored from {layout.BACKUP} "
                                      f"(commit {backup[1].get('generation')})", "state"))
        return chk
    held = _rows_held(root, primary[0])
    if primary[0].get("capacity") is None and held is not None and int(primary[1]["total"]) > held:
        report.problems.append(f"committed state says {int(primary[1]['total']):,} rows were written, "
                               f"but the field arrays hold {held:,}")
    chk = check_state(root, *primary, live_writer=live_writer)
    if chk.clean or live_writer or backup is None or backup == primary:
        return chk
    other = check_state(root, *backup, live_writer=False)
    if not other.clean:
        return chk
    other.side.insert(0, SideDamage(
        "zarr.json", f"its committed state ({_describe(primary[1])}) does not match the data; "
        f"the backup's ({_describe(backup[1])}) does: restored from {layout.BACKUP}", "state"))
    return other


def verify(path: str | os.PathLike, *, repair: bool = False) -> VerifyReport:
    """Check the metadata, every committed block of every field, the class indexes and the
    ``.live`` floor.

    With ``repair=True``: damaged side files are rebuilt from the data (checksums, class
    indexes, ``.live``, the state from its backup when the data agree with it); rows are
    dropped only where the data itself fails its checksum, and the report says which. A
    store being written by another process is checked (blocks that change meanwhile are
    re-checked against the newest commit) but not repaired. A packed ``.zip`` is checked
    read-only (from a scratch copy of its members, see :mod:`.zipped`); repairing one is
    refused (``StoreModeError``: unpack it first).
    """
    if _is_packed(path):
        if repair:
            raise StoreModeError(f"{path}: a packed .zip is read-only, it cannot be repaired; "
                                 "unpack it (replaystore unpack) and repair the directory")
        return _verify_zip(Path(path))
    if is_url(path) or not is_local_dir(path):
        raise StoreModeError(
            f"{path}: verify checks local directory stores and packed .zip files (their "
            "checksums); copy a remote store to a local directory first"
        )
    root = Path(path)
    from ..dataset import is_dataset

    if is_dataset(root):
        return _verify_dataset(root, repair=repair)
    report = VerifyReport(str(root))
    lock = None
    if repair:
        lock = LocalBackend(root).lock()  # StoreLockedError naming the writer's pid
        remove_leftovers(root)
    try:
        report.writer_pid = None if repair else writer_pid(root)
        live = report.writer_pid is not None
        chk = _choose(root, report, live_writer=live)
        if chk is None:
            report.ok = False
            return report
        report.rows = int(chk.state.get("size", 0)) if isinstance(chk.state, dict) else 0
        if chk.schema is not None and not live:
            chk.side += check_indexes(root, chk.schema, chk.capacity, chk.state)
            chk.side += check_live(root, chk.capacity, chk.state)
            damage, notes = check_priorities_array(root, chk.capacity, chk.state)
            chk.side += damage
            report.notes += notes
        elif live:
            report.notes.append(f"being written by process {report.writer_pid}: blocks that changed "
                                "while checked were re-checked against the newest commit; class "
                                "indexes, priorities, .live and unused checksum records not checked")
        report.problems += chk.problems
        report.damage, report.side = chk.damage, chk.side
        report.rows_checked, report.blocks_checked = chk.rows_checked, chk.blocks_checked
        report.ok = not (report.problems or report.damage or report.side)
        if repair and not report.ok:
            repair_store(root, chk, report, lock)
    finally:
        if lock is not None:
            lock.release()
    return report



def _is_packed(path: str | os.PathLike) -> bool:
    if is_url(path) or is_local_dir(path) or not Path(path).is_file():
        return False
    backend = resolve(path)
    backend.close()
    return isinstance(backend, ZipBackend)


def _verify_zip(path: Path) -> VerifyReport:
    """Verify a packed store read-only, from a scratch copy of its members (see :mod:`.zipped`)."""
    with scratch_copy(path) as (root, problems):
        report = verify(root)
    report.path = str(path)

    def here(text: str) -> str:  # name the zip, not the scratch directory
        return text.replace(str(root), str(path))

    report.problems = [here(p) for p in report.problems]
    for d in report.damage:
        d.reason = here(d.reason)
    for s in report.side:
        s.reason = here(s.reason)
    report.notes = problems + [here(n) for n in report.notes]  # (zip CRCs: damage too)
    report.ok = report.ok and not problems
    return report


def _verify_dataset(root: Path, *, repair: bool) -> VerifyReport:
    """Verify (and repair) every shard of a sharded dataset: one report, each line naming
    its shard. A shard directory whose creation was cut off (no ``zarr.json``) held no row;
    it is noted (and, with ``repair``, removed)."""
    import dataclasses
    import shutil

    from ..dataset import SHARD_NAME

    report = VerifyReport(str(root))
    shards = root / "shards"
    names = sorted(os.listdir(shards)) if shards.is_dir() else []
    repaired = []
    for name in names:
        if not SHARD_NAME.match(name):
            continue
        d = shards / name
        if not (d / "zarr.json").exists():
            report.notes.append(f"{name}: a shard whose creation was cut off (no zarr.json, no rows)"
                                + ("; removed" if repair else ""))
            if repair:
                shutil.rmtree(d)
            continue
        r = verify(d, repair=repair)
        report.ok &= r.ok
        report.rows += r.rows
        report.rows_checked += r.rows_checked
        report.blocks_checked += r.blocks_checked
        report.problems += [f"{name}: {p}" for p in r.problems]
        # (row numbers stay the shard's own; the field names the shard)
        report.damage += [dataclasses.replace(d, field=f"{name}/{d.field}") for d in r.damage]
        report.side += [dataclasses.replace(x, what=f"{name}: {x.what}") for x in r.side]
        report.notes += [f"{name}: {n}" for n in r.notes]
        if r.repaired:
            repaired.append(f"{name}: {r.repaired}")
        report.writer_pid = report.writer_pid or r.writer_pid
    report.notes.insert(0, f"sharded dataset: {len([n for n in names if SHARD_NAME.match(n)])} shards")
    report.repaired = "; ".join(repaired) or None
    return report
