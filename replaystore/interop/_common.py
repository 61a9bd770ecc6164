"""Shared pieces of the exporters and importers: what they return, optional imports,
output files written atomically and block sizes (progress: :mod:`replaystore.progress`)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    DatasetNotFoundError,
    InteropError,
    MissingExtraError,
    NotAStoreError,
    StoreExistsError,
    StoreModeError,
)

__all__ = ["InteropStats", "InteropWarning", "BLOCK_BYTES", "MAX_BLOCK_ROWS", "store_job"]

#: rows are read (and written) in blocks of about this many bytes of selected fields
BLOCK_BYTES = 64 * 2**20
#: ... and never more rows than this per block
MAX_BLOCK_ROWS = 1 << 20
#: a job is done in at least this many blocks (progress moves) unless its blocks would be
#: smaller than PROGRESS_LEAST_ROWS rows (a job that small is quick)
PROGRESS_BLOCKS = 32
PROGRESS_LEAST_ROWS = 1 << 16


class InteropWarning(UserWarning):
    """Something an export or import left out (image fields, partial episodes, rows
    without a next observation...). The same text is in :attr:`InteropStats.notes`."""


@dataclasses.dataclass
class InteropStats:
    """What one export or import did.

    ``rows`` rows (transitions) were written to ``out``; ``episodes`` complete or partial
    episodes among them (``None`` for tabular exports, which do not look at episodes);
    ``skipped_episodes`` / ``dropped_rows`` were left out (see ``notes``); ``columns`` are
    the columns (tabular) or fields (imports) written.
    """

    action: str
    fmt: str
    source: str
    out: str
    rows: int = 0
    episodes: int | None = None
    skipped_episodes: int = 0
    dropped_rows: int = 0
    columns: tuple[str, ...] = ()
    seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)

    def note(self, message: str) -> None:
        """Record ``message`` and warn with it (:class:`InteropWarning`)."""
        self.notes.append(message)
        warnings.warn(message, InteropWarning, stacklevel=3)

    def summary(self) -> str:
        """One line saying what was done (the CLI prints it)."""
        what = f"{self.rows:,} rows"
        if self.episodes is not None:
            what = f"{self.episodes:,} episodes ({self.rows:,} rows)"
        elif self.columns:
            what += f" x {len(self.columns):,} column{'' if len(self.columns) == 1 else 's'}"
        if self.action == "export":
            line = f"exported {what} of {self.source} to {self.fmt} {self.out}"
        else:
            line = f"imported {what} from {self.fmt} {self.source} into {self.out}"
        line += f" in {self.seconds:.1f}s"
        if self.notes:
            line += "; " + "; ".join(self.notes)
        return line


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional dependency or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{what} needs the optional package {module.split('.')[0]!r}, which is not installed "
            f"({e}): pip install \"replaystore[{extra}]\""
        ) from None


@contextlib.contextmanager
def opened_store(store: Any) -> Iterator[Any]:
    """``store`` itself if it is an open store, else the store at that path opened
    read-only (and closed afterwards)."""
    from ..storage.store import ReplayStore
    from ..storage.store import open as open_store

    if isinstance(store, ReplayStore):
        yield store
        return
    s = open_store(store, mode="r")
    try:
        yield s
    finally:
        s.close()


@contextlib.contextmanager
def discard_on_failure(store: Any) -> Iterator[Any]:
    """Close ``store`` at the end; if the body fails, delete it too, so a failed import
    leaves no half-written store behind."""
    try:
        yield store
        store.close()
    except BaseException:
        with contextlib.suppress(Exception):
            store.close()
        shutil.rmtree(store.path, ignore_errors=True)
        raise


def check_new_path(out: str | os.PathLike, overwrite: bool) -> Path:
    """``out`` as a Path; refuse (:class:`StoreExistsError`) if it exists, unless
    ``overwrite``; its directory must exist."""
    path = Path(out)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise StoreExistsError(f"{path}: already exists; pass overwrite=True to replace it",
                                  cli=f"{path}: already exists; use --overwrite to replace it")
        if path.is_dir() and not path.is_symlink():
            raise StoreExistsError(f"{path}: is a directory; refusing to replace it with a file")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise DatasetNotFoundError(f"{path}: directory {parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, overwrite: bool, *, action: str = "export") -> Iterator[Path]:
    """A temporary file next to ``out`` that replaces ``out`` only when the block succeeds;
    on failure it is removed and ``out`` is untouched (a killed export leaves a hidden
    temporary file, which the next job removes: :func:`replaystore.storage.jobs.job_output`)."""
    from ..storage.jobs import job_output

    path = check_new_path(out, overwrite)
    with job_output(path, action=action, overwrite=overwrite) as tmp:
        yield tmp


def check_store_target(out: str | os.PathLike, overwrite: bool) -> Path:
    """``out`` as a Path once a new store may be built there: it does not exist (or is an
    empty directory), or ``overwrite`` and it is a store. Nothing is changed."""
    from ..storage.metadata import load_meta

    path = Path(out)
    if path.suffix.lower() == ".zip":
        raise StoreModeError(f"{path}: a .zip store is read-only; import into a directory store and "
                             "pack it (replaystore pack)")
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise StoreExistsError(f"{path}: already exists and is not a directory; refusing to replace it")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise StoreExistsError(f"{path}: already exists; pass overwrite=True to replace it",
                                  cli=f"{path}: already exists; use --overwrite to replace it")
        if not (path / "zarr.json").exists():
            raise NotAStoreError(f"{path}: refusing to overwrite a non-empty directory that is not a store")
        try:
            load_meta(path)
        except NotAStoreError:
            raise NotAStoreError(f"{path}: refusing to overwrite a path that is not a replaystore store") from None
    parent = path.absolute().parent
    if not parent.is_dir():
        raise DatasetNotFoundError(f"{path}: directory {parent} does not exist")
    return path


def store_job(importer: Callable[..., InteropStats]) -> Callable[..., InteropStats]:
    """``importer(src, out, ...)`` made all-or-nothing: the store is built under a hidden
    name next to ``out`` and moved into place when the import succeeded; with
    ``overwrite=True`` the old store stays until then. A failed (or killed) import leaves
    ``out`` as it was."""
    from ..storage.backends import is_url

    @functools.wraps(importer)
    def run(src: Any, out: str | os.PathLike, *args: Any, overwrite: bool = False, **kwargs: Any) -> InteropStats:
        if is_url(str(out)):  # object stores: built in place, removed on failure
            return importer(src, out, *args, overwrite=overwrite, **kwargs)
        from ..storage.jobs import job_output

        final = check_store_target(out, overwrite)
        with job_output(final, action="import", overwrite=overwrite) as tmp:
            stats = importer(src, tmp, *args, overwrite=False, **kwargs)
        stats.out = str(out)
        return stats

    return run


def block_rows(row_bytes: int, requested: int | None = None, *, total: int | None = None,
               least: int = PROGRESS_LEAST_ROWS) -> int:
    """Rows per block: ``requested``, or as many as fit in :data:`BLOCK_BYTES`; given the
    ``total`` rows of the job, also at most 1/:data:`PROGRESS_BLOCKS` of them (but not
    fewer than ``least``), so that its progress moves block by block.

    >>> block_rows(8), block_rows(8, total=10_000_000), block_rows(8, total=100), block_rows(8, 5)
    (1048576, 312500, 65536, 5)
    """
    if requested is not None:
        if int(requested) < 1:
            raise InteropError(f"block_rows must be at least 1, got {requested}")
        return int(requested)
    step = int(max(1, min(MAX_BLOCK_ROWS, BLOCK_BYTES // max(1, int(row_bytes)))))
    if total is not None:
        step = min(step, max(int(least), -(-int(total) // PROGRESS_BLOCKS)))
    return step


def row_bytes(store: Any, names: Any) -> int:
    return sum(int(np.prod(store.schema[n].shape, dtype=np.int64)) * store.schema[n].dtype.itemsize
               for n in names)
