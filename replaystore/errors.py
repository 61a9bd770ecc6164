"""The replaystore error hierarchy.

Every error raised on purpose by replaystore derives from :class:`ReplayStoreError`
and also from the builtin exception that matches it, so ``except ValueError`` keeps
working for callers that do not know about replaystore.

>>> issubclass(SchemaError, ValueError) and issubclass(SchemaError, ReplayStoreError)
True
"""

from __future__ import annotations

__all__ = [
    "ReplayStoreError",
    "SchemaError",
    "SpaceError",
    "NotAStoreError",
    "FormatVersionError",
    "StoreModeError",
    "EmptyStoreError",
    "SamplerError",
    "CorruptStoreError",
    "StoreLockedError",
    "RowIndexError",
    "EnvError",
    "StoreExistsError",
    "AgentConfigError",
    "StoreWriteError",
    "RemoteStoreError",
    "MissingExtraError",
    "InteropError",
    "DatasetNotFoundError",
]


class ReplayStoreError(Exception):
    """Root of every error replaystore raises on purpose.

    ``cli`` is the same message in command-line words (``--overwrite`` where the message
    says ``overwrite=True``); the ``replaystore`` command prints it instead of ``str(e)``.

    >>> e = StoreExistsError("x.zarr: exists; pass overwrite=True", cli="x.zarr: exists; use --overwrite")
    >>> str(e), e.cli_message
    ('x.zarr: exists; pass overwrite=True', 'x.zarr: exists; use --overwrite')
    """

    def __init__(self, *args: object, cli: str | None = None) -> None:
        super().__init__(*args)
        self.cli_message = cli


class SchemaError(ReplayStoreError, ValueError):
    """Data does not match the store's schema (missing/unknown field, shape, dtype)."""


class SpaceError(ReplayStoreError, ValueError):
    """A gymnasium space cannot be stored, or a value does not fit its space."""


class NotAStoreError(ReplayStoreError, FileNotFoundError):
    """The path does not hold a replaystore store."""


class FormatVersionError(ReplayStoreError, ValueError):
    """The store was written by an incompatible format version."""


class StoreModeError(ReplayStoreError, PermissionError):
    """The operation needs a mode the store was not opened with (e.g. writing in mode 'r')."""


class EmptyStoreError(ReplayStoreError, IndexError):
    """Reading or sampling from a store that holds no rows."""


class SamplerError(ReplayStoreError, ValueError):
    """A sampler was configured with arguments that cannot work."""


class CorruptStoreError(ReplayStoreError, OSError):
    """Files of the store are damaged or missing."""


class StoreLockedError(ReplayStoreError, BlockingIOError):
    """Another process holds the store's writer lock."""


class RowIndexError(ReplayStoreError, IndexError):
    """A row index is outside the rows the store holds."""


class EnvError(ReplayStoreError, ValueError):
    """An environment id or its keyword arguments cannot be used."""


class StoreExistsError(ReplayStoreError, FileExistsError):
    """Creating a store where one (or another file or directory) already exists."""


class AgentConfigError(ReplayStoreError, ValueError):
    """An agent was given hyperparameters (or acting arguments) that cannot work."""


class StoreWriteError(ReplayStoreError, OSError):
    """Writing to the store's files failed (disk full, read-only file system, I/O error).

    Committed rows are intact; rows not yet committed stay buffered in memory.
    """


class MissingExtraError(ReplayStoreError, ImportError):
    """An optional dependency is not installed; the message names the extra to install
    (e.g. ``pip install "replaystore[parquet]"``)."""


class InteropError(ReplayStoreError, ValueError):
    """An export or import cannot be done: unknown format, a malformed source file or
    dataset (the message names the file and the key), or nothing to export."""


class DatasetNotFoundError(ReplayStoreError, FileNotFoundError):
    """A dataset to import (a file, or a Minari dataset id), or the directory an export
    should be written into, does not exist."""


class RemoteStoreError(ReplayStoreError, ConnectionError):
    """An object store (``s3://``...) could not be reached or refused the request: no
    credentials, a wrong endpoint, a missing bucket. The message names the URL."""


class RunMismatchError(ReplayStoreError, ValueError):
    """Resuming an online run with settings (env, agent, sampler, schedule, steps...) that
    differ from the saved run's, or a run state that does not fit the store's rows. The
    message names each differing setting with the saved and the given value."""


__all__.append("RunMismatchError")


class CurveLogError(ReplayStoreError, ValueError):
    """A file given as a learning-curves log (``replaystore learn --log``) is not one: no
    such header, a row with a bad kind or number, or no rows to draw. The message names
    the file, the line and what was expected."""


class CurveLogNotFoundError(CurveLogError, FileNotFoundError):
    """A learning-curves log to read does not exist (or is a directory)."""


__all__ += ["CurveLogError", "CurveLogNotFoundError"]


class PlotError(ReplayStoreError, ValueError):
    """What ``replaystore plot`` was asked to draw cannot be drawn: an unknown kind of
    source, a ``--by`` field that is not discrete, an env that is not a grid world or does
    not fit the agent, an output name that is neither ``.png`` nor ``.svg``."""


__all__.append("PlotError")


class SchedulerError(ReplayStoreError, ConnectionError):
    """The Dask scheduler could not be reached, or a task kept killing its workers."""


__all__.append("SchedulerError")
