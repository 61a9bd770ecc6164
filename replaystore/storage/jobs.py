"""All-or-nothing outputs for jobs (import, export, merge, collect into a new store...).

A job that writes a new output builds it under a hidden temporary name next to it
(:func:`temp_path`, same directory, so the final rename is atomic) and moves it into place
only when it is complete (:func:`job_output`). With ``overwrite`` the old output stays in
place until the new one is complete, then the two are swapped in one step
(``renameat2(RENAME_EXCHANGE)`` where the system has it). A job killed outright leaves
only its temporary name, which the next job writing into the same directory removes
(:func:`clean_leftovers`): the name holds the pid of the job and a tag of this host, and
a leftover is removed only when that process is gone (or the pid now belongs to a
process started after the leftover was last written).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with job_output(d / "out.csv", action="export") as tmp:
...     _ = tmp.write_text("a,b\\n")
>>> sorted(p.name for p in d.iterdir())
['out.csv']
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import ReplayStoreError, StoreExistsError, StoreWriteError
from . import files, layout
from .files import exchange_paths, pid_alive

__all__ = ["temp_path", "is_job_temp", "clean_leftovers", "swap_into_place", "job_output",
           "job_failure", "write_failure", "sync_tree", "fsync_dir", "WRITE_ERRNOS"]

#: errors of writing (disk full, file too large for a limit, quota, read-only, I/O)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO})


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


_HOST = _host_tag()
#: ``.<name>.rsjob-<host>-<pid>.<tmp|old>``: a job's output being built / the old output
#: being replaced
_JOB = re.compile(r"^\.(?P<name>.+)\.rsjob-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.(?P<kind>tmp|old)$")
#: what pack/unpack write (``layout.temp_name``) and what older merges wrote
_PACK = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
_OLD_MERGE = re.compile(r"^(?P<name>.+)\.merging-(?P<pid>\d+)-[0-9a-f]{8}$")


def temp_path(final: str | os.PathLike, kind: str = "tmp") -> Path:
    """The hidden name next to ``final`` under which this process builds it (``kind="tmp"``)
    or sets the old one aside while swapping (``"old"``)."""
    final = Path(final)
    return final.with_name(f".{final.name}.rsjob-{_HOST}-{os.getpid()}.{kind}")


def is_job_temp(name: str) -> bool:
    """Whether ``name`` (a file name) is a job's temporary name (:func:`temp_path`)."""
    return bool(_JOB.match(name))


def _proc_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), if the system says."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return None


def _owner_alive(pid: int, mtime: float) -> bool:
    """Whether process ``pid`` may still be writing a leftover last changed at ``mtime``."""
    if pid == os.getpid():
        return True
    if not pid_alive(pid):
        return False
    start = _proc_start(pid)
    # a pid reused by a process that started after the leftover was last written is not its owner
    return start is None or start <= mtime + 2.0


def _looks_like_store_dir(p: Path) -> bool:
    """A directory holding a store's ``zarr.json``, or only (empty) directories."""
    if (p / layout.GROUP_META).is_file():
        return True
    return all(not f for _, _, f in os.walk(p))


def _looks_like_pack(p: Path) -> bool:
    """A zip whose first member is a store's metadata (``.../zarr.json``), or an empty file
    (pack had just begun)."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(30 + 1024)
    except OSError:
        return False
    if not head:
        return True
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return False
    name = head[30:30 + int.from_bytes(head[26:28], "little")]
    return name == b"zarr.json" or name.endswith(b"/zarr.json")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def clean_leftovers(directory: str | os.PathLike) -> list[Path]:
    """Remove what killed jobs left in ``directory``; returns the paths removed.

    Only names of this host's jobs (:func:`temp_path`) whose process is gone are touched,
    plus pack/unpack temporaries (``.<name>.<pid>.tmp``) and old merges' ``<name>.merging-*``
    directories of a dead pid that hold a store (or zip of one). An old output set aside by
    a swap that was killed half-way is put back when nothing took its place; never
    anything else.
    """
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        m = _JOB.match(name)
        if m:
            if m["host"] != _HOST or _owner_alive(int(m["pid"]), st.st_mtime):
                continue
            path = Path(entry.path)
            final = directory / m["name"]
            if m["kind"] == "old" and not os.path.lexists(final):
                with contextlib.suppress(OSError):
                    os.rename(path, final)  # the swap was killed between its two renames
                    continue
            _remove(path)
            removed.append(path)
            continue
        for pattern in (_PACK, _OLD_MERGE):
            m = pattern.match(name)
            if not m:
                continue
            if not _owner_alive(int(m["pid"]), st.st_mtime):
                path = Path(entry.path)
                if stat.S_ISDIR(st.st_mode):
                    ours = _looks_like_store_dir(path)
                else:
                    ours = pattern is _PACK and stat.S_ISREG(st.st_mode) and _looks_like_pack(path)
                if ours:
                    _remove(path)
                    removed.append(path)
            break
    return removed


def fsync_dir(p: str | os.PathLike) -> None:
    """fsync a directory (its entries reach the disk); errors are ignored."""
    with contextlib.suppress(OSError):
        files.fsync_dir(p)


def sync_tree(root: str | os.PathLike) -> None:
    """fsync every file and directory under ``root`` (or the file ``root``)."""
    root = Path(root)
    if not root.is_dir():
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def swap_into_place(tmp: Path, final: Path, *, replace: bool) -> None:
    """Move the complete output ``tmp`` to ``final``. Without ``replace``, ``final`` must
    not exist (an empty directory is fine); with it, an existing ``final`` is replaced in
    one step and removed afterwards."""
    if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
        final.rmdir()
    if not os.path.lexists(final):
        if tmp.is_dir():
            os.rename(tmp, final)  # fails if something took the name meanwhile
        else:
            os.link(tmp, final)  # never replaces a file that appeared meanwhile
            tmp.unlink()
    elif not replace:
        raise StoreExistsError(f"{final}: appeared while the job ran; the new output was discarded")
    elif not tmp.is_dir() and not final.is_dir():
        os.replace(tmp, final)
    elif exchange_paths(tmp, final):
        _remove(tmp)  # (now the old output)
    else:
        old = temp_path(final, "old")
        _remove(old)
        os.rename(final, old)  # a kill right here: clean_leftovers puts the old output back
        os.rename(tmp, final)
        _remove(old)
    fsync_dir(final.parent)


def job_failure(e: BaseException, final: Path, tmp: Path, *, action: str, existed: bool) -> BaseException:
    """The error to raise for ``e``, a failure of a job building ``final`` in ``tmp``:
    write errors (disk full, file too large...) become one :class:`StoreWriteError` line
    that names the path and says what is left; other errors that name ``tmp`` name
    ``final`` instead. ``e`` itself when nothing needs saying differently."""
    kept = (f"the existing {final.name} is unchanged" if existed else f"nothing was written to {final}")
    if isinstance(e, StoreWriteError):
        return StoreWriteError(f"{final}: {action} failed: {_short(e, tmp, final)}; {kept}")
    if isinstance(e, OSError) and not isinstance(e, ReplayStoreError) and (
            e.errno in WRITE_ERRNOS or "No space left" in str(e) or "File too large" in str(e)):
        what = e.strerror or " ".join(str(e).split())
        where = str(e.filename).replace(str(tmp), str(final)) if e.filename else None
        return StoreWriteError(f"{final}: {action} failed: {what}" + (f" (writing {where})" if where else "")
                               + f"; {kept}")
    if isinstance(e, ReplayStoreError) and str(tmp) in str(e):
        try:
            return type(e)(str(e).replace(str(tmp), str(final)))
        except Exception:  # pragma: no cover - an error type with another signature
            return e
    return e


def _short(e: BaseException, tmp: Path | None = None, final: Path | None = None) -> str:
    """What failed, from a :class:`StoreWriteError`'s message, without the writer's advice
    ("committed rows are intact ... call flush() again"), which is for a program holding the
    store open, not for a job that has ended."""
    text = str(e) if tmp is None else str(e).replace(str(tmp), str(final))
    text = " ".join(text.split())
    return text.split("; the ")[0].split(": ", 1)[-1]


def write_failure(e: StoreWriteError) -> str:
    """The part of a writer's :class:`StoreWriteError` message that says what failed."""
    return _short(e)


@contextlib.contextmanager
def job_output(final: str | os.PathLike, *, action: str, overwrite: bool = False,
               sync: bool = True) -> Iterator[Path]:
    """Build ``final`` (a directory or a file) under :func:`temp_path` and move it
    into place when the block succeeds; on failure (or a kill) ``final`` is untouched and
    the temporary output removed (by the next job, after a kill). Leftovers of killed jobs
    next to ``final`` are removed first. Write errors are raised as described in
    :func:`job_failure` (``action`` names the job in them, e.g. ``"import"``)."""
    final = Path(final)
    clean_leftovers(final.parent)
    tmp = temp_path(final)
    if os.path.lexists(tmp):
        _remove(tmp)  # an earlier job of this process that could not clean up
    existed = os.path.lexists(final) and not (final.is_dir() and not any(final.iterdir()))
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(errno.ENOENT, f"{action} wrote no output", str(tmp))
        if sync:
            sync_tree(tmp)
        swap_into_place(tmp, final, replace=overwrite)
    except BaseException as e:
        _remove(tmp)
        if isinstance(e, Exception):
            err = job_failure(e, final, tmp, action=action, existed=existed)
            if err is not e:
                raise err from None
        raise
