"""Durable run state of an online run, kept next to its store (``<store>.run/``).

A run state is one ``.npz`` file per committed step, ``state-<step>.npz``: its arrays,
plus a JSON document (member ``__json__``) for everything else, in which each array is a
``{"__array__": name}`` reference. Nothing is pickled: a run directory is data. Files are
written to a temporary name, fsynced and renamed (and the directory fsynced), so a crash
leaves either the old file or the new one.

The consistency protocol with the store (see :class:`~replaystore.online.OnlineTrainer`):
the state for step ``k`` is written *before* the store commits its ``k``-th row, so the
state whose step equals the store's committed row count always exists; states of steps
the store never committed are stale and removed on resume.

>>> import tempfile, numpy as np
>>> d = RunDir(tempfile.mkdtemp() + "/buf.zarr.run")
>>> d.save(10, {"q": np.eye(2), "rng": {"state": 2**100}, "name": "x"})
>>> d.steps(), d.load(10)["rng"]["state"] == 2**100, d.load(10)["q"].tolist()
([10], True, [[1.0, 0.0], [0.0, 1.0]])
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptStoreError
from ..storage.files import fsync_dir

__all__ = ["RunDir", "to_json_and_arrays", "from_json_and_arrays"]

_NAME = re.compile(r"^state-(\d{12})\.npz$")


def to_json_and_arrays(obj: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Split a nested structure of dicts, lists, scalars and arrays into a JSON-ready
    document and the arrays it refers to."""
    arrays: dict[str, np.ndarray] = {}

    def walk(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            name = f"a{len(arrays)}"
            arrays[name] = v
            return {"__array__": name}
        if isinstance(v, dict):
            return {str(k): walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return float(v)
        return v

    return walk(obj), arrays


def from_json_and_arrays(doc: Any, arrays: Any) -> Any:
    """Inverse of :func:`to_json_and_arrays`."""
    if isinstance(doc, dict):
        if set(doc) == {"__array__"}:
            return np.array(arrays[doc["__array__"]])
        return {k: from_json_and_arrays(v, arrays) for k, v in doc.items()}
    if isinstance(doc, list):
        return [from_json_and_arrays(v, arrays) for v in doc]
    return doc




class RunDir:
    """The directory of run states of one store."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def file(self, step: int) -> Path:
        return self.path / f"state-{int(step):012d}.npz"

    def steps(self) -> list[int]:
        """Steps of the run states on disk, oldest first."""
        if not self.path.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.path.iterdir() if (m := _NAME.match(p.name)))

    def save(self, step: int, state: dict[str, Any]) -> None:
        """Write the state of ``step`` atomically and durably."""
        self.path.mkdir(parents=True, exist_ok=True)
        doc, arrays = to_json_and_arrays(state)
        text = json.dumps(doc, allow_nan=True).encode()
        buf = io.BytesIO()
        np.savez(buf, __json__=np.frombuffer(text, np.uint8), **arrays)
        final = self.file(step)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, buf.getbuffer())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_dir(self.path)

    def load(self, step: int) -> dict[str, Any]:
        """The state saved for ``step`` (:class:`CorruptStoreError` if unreadable)."""
        path = self.file(step)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            doc = json.loads(arrays.pop("__json__").tobytes().decode())
        except (OSError, ValueError, KeyError) as e:
            raise CorruptStoreError(f"{path}: run state is unreadable: {e}") from None
        return from_json_and_arrays(doc, arrays)

    def keep_only(self, step: int) -> None:
        """Remove every state but ``step``'s (and leftover temp files)."""
        if not self.path.is_dir():
            return
        for p in self.path.iterdir():
            m = _NAME.match(p.name)
            if (m and int(m.group(1)) != step) or p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
