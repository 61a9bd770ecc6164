"""The file of a saved Q-learning agent: one ``.npz`` holding ``q``, ``visits`` and ``meta``.

``q`` is the float64 ``(n_states, n_actions)`` table, ``visits`` the int64 visit counts and
``meta`` a JSON string (format name and version, hyperparameters, the spaces' offsets). It
is a plain numpy zip: ``np.load(path)["q"]`` is the table, and reading it never unpickles
(``allow_pickle=False``) or imports code. :func:`write_agent_file` writes it under a
temporary name, fsyncs it and renames it into place, so a reader (or a crash) sees the old
file or the new one, never half of one. The file is written at exactly the given name
(``q.npz`` by convention; a ``.npy`` name is accepted too and holds the same zip).

Older layouts still read (:func:`read_agent_file` tells them apart by their first bytes):
the three files ``Q.npy`` + ``Q.json`` + ``Q.visits.npy`` older versions wrote
(:func:`read_qtable`) and a bare ``Q.npy`` table (:func:`read_bare_table`).

>>> import tempfile, pathlib, numpy as np
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_agent_file(d / "q.npz", {"format": "x", "format_version": 1}, np.eye(2), np.ones((2, 2), int))
>>> meta, arrays = read_agent_file(d / "q.npz", "x", 1)
>>> arrays["q"].tolist(), sorted(p.name for p in d.iterdir()), np.load(d / "q.npz")["q"].shape
([[1.0, 0.0], [0.0, 1.0]], ['q.npz'], (2, 2))
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from replaystore.errors import (
    AgentConfigError,
    CorruptStoreError,
    FormatVersionError,
    NotAStoreError,
    SpaceError,
    StoreExistsError,
)

__all__ = ["AGENT_SUFFIXES", "check_agent_path", "refuse_existing", "write_agent_file",
           "read_agent_file", "qtable_paths", "read_qtable", "read_bare_table"]

#: the names a saved agent may have (``.npz`` is the convention; ``.npy`` for old scripts)
AGENT_SUFFIXES = (".npz", ".npy")
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_MEMBERS = ("meta", "q", "visits")


def check_agent_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`Path`, if it is a name a saved agent may have (``.npz``, ``.npy``)."""
    path = Path(path)
    if path.suffix.lower() not in AGENT_SUFFIXES:
        raise AgentConfigError(
            f"{str(path)!r}: a saved agent is one .npz file; name it e.g. "
            f"{path.with_suffix('.npz').name!r}"
        )
    return path


def refuse_existing(path: str | os.PathLike[str] | None, overwrite: bool) -> None:
    """Raise :class:`~replaystore.errors.StoreExistsError` naming ``path`` if something is
    there and ``overwrite`` is false (``--overwrite`` in the commands' words)."""
    if path is None or overwrite or not os.path.lexists(path):
        return
    raise StoreExistsError(
        f"{path}: already exists; pass overwrite=True to replace it",
        cli=f"{path}: already exists; use --overwrite to replace it (or choose another --out)",
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_agent_file(
    path: str | os.PathLike[str], meta: Mapping[str, Any], q: np.ndarray, visits: np.ndarray
) -> None:
    """Write ``q``, ``visits`` and ``meta`` (as JSON) to the one file ``path``, atomically.

    Written to a hidden temporary name in the same directory, fsynced, renamed over
    ``path`` and the directory fsynced. An older three-file layout at the same name
    (``Q.json``, ``Q.visits.npy`` next to ``Q.npy``) is removed once the new file is in place.
    """
    path = Path(path)
    doc = json.dumps(dict(meta), indent=2, allow_nan=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(doc), q=np.asarray(q, np.float64),
                     visits=np.asarray(visits, np.int64))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    _drop_old_sidecars(path, meta.get("format"))


def _drop_old_sidecars(path: Path, saved_format: Any) -> None:
    """Remove the ``.json`` / ``.visits.npy`` an older save left for this very file name."""
    if path.suffix != ".npy":
        return
    sidecar = path.with_suffix(".json")
    try:
        old = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    if not isinstance(old, dict) or old.get("format") != saved_format or old.get("q_file") != path.name:
        return
    with contextlib.suppress(OSError):
        path.with_suffix(".visits.npy").unlink()
    with contextlib.suppress(OSError):
        sidecar.unlink()


def read_agent_file(
    path: str | os.PathLike[str], saved_format: str, version: int
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """The metadata and arrays (``q``, ``visits``) of the saved agent at ``path``.

    Reads the one-file ``.npz`` format, the older three-file layout and a bare ``.npy``
    table (``meta`` is then ``None`` and there is only ``q``), told apart by the file's
    first bytes. A missing file raises :class:`~replaystore.errors.NotAStoreError`, an
    unreadable one :class:`~replaystore.errors.CorruptStoreError`, another format or
    version :class:`~replaystore.errors.FormatVersionError`; all name the path.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not" if path.is_dir() else "does not exist; expected"
        raise NotAStoreError(f"{str(path)!r} {what} a saved agent (one .npz file written by "
                             "train or learn)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise CorruptStoreError(f"{str(path)!r}: cannot read it ({exc.strerror})") from exc
    if head.startswith(_ZIP_MAGIC):
        return _read_npz(path, saved_format, version)
    if head.startswith(_NPY_MAGIC):
        if path.suffix == ".npy" and path.with_suffix(".json").is_file():
            return read_qtable(path, saved_format, version)
        return None, {"q": read_bare_table(path)}
    raise CorruptStoreError(f"{str(path)!r} is not a saved agent (a .npz written by train or "
                            "learn) nor a Q-table .npy")


def _read_npz(path: Path, saved_format: str, version: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [m for m in _MEMBERS if m not in z.files]
            if missing:
                raise CorruptStoreError(f"{str(path)!r}: a saved agent holds {list(_MEMBERS)}; "
                                        f"{missing} missing (it has {sorted(z.files)})")
            raw, arrays = z["meta"], {"q": z["q"], "visits": z["visits"]}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, CorruptStoreError):
            raise
        raise CorruptStoreError(f"{str(path)!r} is not a readable saved agent (.npz): {exc}") from exc
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise CorruptStoreError(f"{str(path)!r}: 'meta' must be a JSON string, got {raw.dtype} {raw.shape}")
    try:
        meta = json.loads(str(raw[()]))
    except ValueError as exc:
        raise CorruptStoreError(f"{str(path)!r}: 'meta' is not valid JSON: {exc}") from exc
    _check_meta(path, meta, saved_format, version)
    return meta, arrays


def _check_meta(where: Path, meta: Any, saved_format: str, version: int) -> None:
    if not isinstance(meta, dict) or meta.get("format") != saved_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CorruptStoreError(f"{str(where)!r} does not describe a {saved_format} (its format is "
                                f"{found!r})")
    if meta.get("format_version") != version:
        raise FormatVersionError(
            f"{str(where)!r} has format_version {meta.get('format_version')!r}, "
            f"this replaystore reads {version}"
        )


def qtable_paths(path: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """``(Q.npy, Q.json, Q.visits.npy)`` of the older three-file layout at ``path`` (``.npy``)."""
    path = Path(path)
    if path.suffix != ".npy":
        raise AgentConfigError(f"Q-table path must end in '.npy', got {str(path)!r}")
    return path, path.with_suffix(".json"), path.with_suffix(".visits.npy")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CorruptStoreError(f"{str(path)!r} is not a readable .npy file: {exc}") from exc


def read_qtable(
    path: str | os.PathLike[str], saved_format: str, version: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The sidecar and the arrays (``q``, ``visits``) of the older three-file layout (read only).

    A missing file raises :class:`~replaystore.errors.NotAStoreError`, an unreadable one
    :class:`~replaystore.errors.CorruptStoreError`, another format or version
    :class:`~replaystore.errors.FormatVersionError`; all name the path.
    """
    q_path, json_path, visits_path = qtable_paths(path)
    for p in (q_path, json_path, visits_path):
        if not p.is_file():
            raise NotAStoreError(
                f"{str(p)!r} does not exist; a saved QLearningAgent needs "
                f"{q_path.name}, {json_path.name} and {visits_path.name}"
            )
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStoreError(f"{str(json_path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != saved_format:
        raise CorruptStoreError(f"{str(json_path)!r} does not describe a {saved_format}")
    if meta.get("format_version") != version:
        raise FormatVersionError(
            f"{str(json_path)!r} has format_version {meta.get('format_version')!r}, "
            f"this replaystore reads {version}"
        )
    return meta, {"q": _load_npy(q_path), "visits": _load_npy(visits_path)}


def read_bare_table(path: str | os.PathLike[str]) -> np.ndarray:
    """A Q-table from a ``.npy`` file alone (no sidecar): a 2-D numeric array, as float64."""
    path = Path(path)
    if not path.is_file():
        raise NotAStoreError(f"{str(path)!r}: no such Q-table file")
    q = _load_npy(path)
    if q.ndim != 2 or q.dtype.kind not in "iuf" or 0 in q.shape:
        raise SpaceError(
            f"{str(path)!r}: a Q-table must be a 2-D numeric array (n_states, n_actions), "
            f"got {q.dtype} array of shape {q.shape}"
        )
    return q.astype(np.float64)
