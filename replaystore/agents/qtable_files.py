"""The files of a saved Q-table: ``Q.npy``, its JSON sidecar ``Q.json`` and ``Q.visits.npy``.

``Q.npy`` is a plain float64 ``(n_states, n_actions)`` array that numpy (or any tool)
reads; ``Q.json`` holds the format name and version and the hyperparameters;
``Q.visits.npy`` the int64 visit counts. A bare ``Q.npy`` without the other two is still
a readable table (:func:`read_bare_table`). Every file is written to a temporary name
and renamed.

>>> import tempfile, pathlib, numpy as np
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_qtable(d / "Q.npy", {"format": "x", "format_version": 1}, np.eye(2), np.ones((2, 2), int))
>>> meta, arrays = read_qtable(d / "Q.npy", "x", 1)
>>> arrays["q"].tolist(), sorted(p.name for p in d.iterdir())
([[1.0, 0.0], [0.0, 1.0]], ['Q.json', 'Q.npy', 'Q.visits.npy'])
"""

from __future__ import annotations

import json
import os
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
)

__all__ = ["qtable_paths", "write_qtable", "read_qtable", "read_bare_table"]


def qtable_paths(path: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """``(Q.npy, Q.json, Q.visits.npy)`` for ``path``, which must end in ``.npy``."""
    path = Path(path)
    if path.suffix != ".npy":
        raise AgentConfigError(f"Q-table path must end in '.npy', got {str(path)!r}")
    return path, path.with_suffix(".json"), path.with_suffix(".visits.npy")


def write_qtable(
    path: str | os.PathLike[str], meta: Mapping[str, Any], q: np.ndarray, visits: np.ndarray
) -> None:
    """Write the table, the visit counts and then the sidecar (``meta`` plus file names)."""
    q_path, json_path, visits_path = qtable_paths(path)
    doc = {**meta, "q_file": q_path.name, "visits_file": visits_path.name}
    for target, array in ((q_path, q), (visits_path, visits)):
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, target)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, json_path)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CorruptStoreError(f"{str(path)!r} is not a readable .npy file: {exc}") from exc


def read_qtable(
    path: str | os.PathLike[str], saved_format: str, version: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The sidecar and the arrays (``q``, ``visits``) of a table written by :func:`write_qtable`.

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
